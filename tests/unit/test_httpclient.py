"""mercato.httpclient against servers whose bytes the test controls."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mercato import httpclient
from mercato.httpclient import ConnectError, HTTPClient, ProtocolError, target
from tests.helpers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """(head, body) of one request, or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def server(handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    port = free_port()
    srv = await asyncio.start_server(handler, "127.0.0.1", port, ssl=ssl_ctx)
    try:
        yield port
    finally:
        srv.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(srv.wait_closed(), 1)


def answering(*answers: bytes, log: list[tuple[int, bytes, bytes]] | None = None) -> Handler:
    """Answer each request on a connection with the next of ``answers`` (the last one
    repeats), logging (connection number, head, body)."""
    conns = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns[0] += 1
        n, i = conns[0], 0
        while (req := await read_request(reader)) is not None:
            if log is not None:
                log.append((n, *req))
            writer.write(answers[min(i, len(answers) - 1)])
            i += 1
            await writer.drain()
        writer.close()

    return handle


async def test_post_sends_the_body_and_reads_the_answer_over_one_kept_alive_connection() -> None:
    log: list[tuple[int, bytes, bytes]] = []
    client = HTTPClient()
    async with server(answering(OK, log=log)) as port:
        url = f"http://127.0.0.1:{port}/v1/chat/completions?x=1"
        for _ in range(3):
            answer = await client.post(url, b'{"q":1}', [("Content-Type", "application/json")], 5)
            assert answer.status == 200 and answer.body == b'{"ok":true}'
            assert answer.headers["content-type"] == "application/json"
    await client.close()
    assert [n for n, _, _ in log] == [1, 1, 1]  # one connection for all three
    head, body = log[0][1], log[0][2]
    assert head.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in head
    assert b"Content-Length: 7\r\n" in head and b"Accept-Encoding: identity\r\n" in head
    assert b"Content-Type: application/json\r\n" in head and body == b'{"q":1}'


async def test_chunked_and_close_delimited_bodies() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    client = HTTPClient()
    async with server(answering(chunked)) as port:
        answer = await client.post(f"http://127.0.0.1:{port}/", b"", [], 5)
        assert answer.body == b"abcde"

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with server(until_close) as port:
        for _ in range(2):  # not kept alive: a new connection each time
            answer = await client.post(f"http://127.0.0.1:{port}/", b"", [], 5)
            assert answer.status == 200 and answer.body == b"all of it"
    await client.close()


async def test_connection_close_is_honored() -> None:
    log: list[tuple[int, bytes, bytes]] = []
    closing = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    client = HTTPClient()
    async with server(answering(closing, log=log)) as port:
        for _ in range(2):
            assert (await client.post(f"http://127.0.0.1:{port}/", b"", [], 5)).status == 503
    await client.close()
    assert [n for n, _, _ in log] == [1, 2]


async def test_a_kept_alive_connection_the_server_dropped_is_replaced() -> None:
    """The server closes the connection after one answer without saying so: the next
    request finds it closed (or has its write cross the close) and goes out on a new
    connection, once."""
    log: list[tuple[int, bytes, bytes]] = []
    conns = [0]

    async def one_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns[0] += 1
        req = await read_request(reader)
        assert req is not None
        log.append((conns[0], *req))
        writer.write(OK)
        await writer.drain()
        writer.close()

    client = HTTPClient()
    async with server(one_then_drop) as port:
        url = f"http://127.0.0.1:{port}/"
        assert (await client.post(url, b"1", [], 5)).status == 200
        assert (await client.post(url, b"2", [], 5)).status == 200  # no sleep: a race
        await asyncio.sleep(0.05)
        assert (await client.post(url, b"3", [], 5)).status == 200  # the close was seen
    await client.close()
    assert [body for _, _, body in log] == [b"1", b"2", b"3"]


async def test_a_reused_connection_that_dies_mid_answer_is_not_retried() -> None:
    """Bytes of the answer arrived: the peer saw the request, so it is not sent again."""
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    log: list[bytes] = []
    client = HTTPClient()

    async def first_ok_then_partial(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        for answer in (OK, partial):
            req = await read_request(reader)
            assert req is not None
            log.append(req[1])
            writer.write(answer)
            await writer.drain()
        writer.close()

    async with server(first_ok_then_partial) as port:
        url = f"http://127.0.0.1:{port}/"
        await client.post(url, b"", [], 5)
        with pytest.raises(ConnectError, match="before the answer ended"):
            await client.post(url, b"", [], 5)
    await client.close()
    assert len(log) == 2


async def test_refused_connect_malformed_answer_and_timeout() -> None:
    client = HTTPClient(connect_timeout_s=1)
    with pytest.raises(ConnectError):
        await client.post(f"http://127.0.0.1:{free_port()}/", b"", [], 5)
    async with server(answering(b"SMTP ready\r\n\r\n")) as port:
        with pytest.raises(ProtocolError):
            await client.post(f"http://127.0.0.1:{port}/", b"", [], 5)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with server(silent) as port:
        with pytest.raises(TimeoutError):
            await client.post(f"http://127.0.0.1:{port}/", b"", [], 0.2)
    await client.close()


async def test_oversized_answers_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpclient, "MAX_BODY", 10)
    client = HTTPClient()
    async with server(answering(OK)) as port:  # 11 bytes
        with pytest.raises(ProtocolError, match="larger than 10 bytes"):
            await client.post(f"http://127.0.0.1:{port}/", b"", [], 5)
    await client.close()


async def test_header_injection_is_refused_before_anything_is_sent() -> None:
    client = HTTPClient()
    with pytest.raises(ValueError, match="CR or LF"):
        await client.post("http://127.0.0.1:1/", b"", [("X-A", "1\r\nX-Evil: 1")], 5)
    await client.close()


async def test_at_most_max_connections_are_open() -> None:
    open_now, most = [0], [0]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now[0] += 1
        most[0] = max(most[0], open_now[0])
        while await read_request(reader) is not None:
            await asyncio.sleep(0.02)
            writer.write(OK)
            await writer.drain()
        open_now[0] -= 1
        writer.close()

    client = HTTPClient(max_connections=3)
    async with server(slow) as port:
        url = f"http://127.0.0.1:{port}/"
        answers = await asyncio.gather(*(client.post(url, b"", [], 5) for _ in range(12)))
    await client.close()
    assert all(a.status == 200 for a in answers)
    assert most[0] == 3


def test_targets() -> None:
    t = target("https://api.example.com/v1/chat/completions")
    assert (t.tls, t.host, t.port, t.path, t.host_header) == (
        True,
        "api.example.com",
        443,
        b"/v1/chat/completions",
        b"api.example.com",
    )
    t = target("http://[::1]:8080/a?b=c")
    assert (t.host, t.port, t.path, t.host_header) == ("::1", 8080, b"/a?b=c", b"[::1]:8080")
    assert target("http://h").path == b"/"
    for bad in ("ftp://h/", "http:///x", "http://u:p@h/", "h:80/x"):
        with pytest.raises(ValueError):
            target(bad)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
    cmd += " -subj /CN=localhost -addext subjectAltName=DNS:localhost"
    subprocess.run(
        [*cmd.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    async with server(answering(OK), server_ctx) as port:
        url = f"https://localhost:{port}/v1"
        with pytest.raises(ConnectError):  # not trusted by default
            await HTTPClient().post(url, b"", [], 5)
        trusting = HTTPClient(ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert (await trusting.post(url, b"{}", [], 5)).body == b'{"ok":true}'
        await trusting.close()

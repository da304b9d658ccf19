"""mercato.asgi_server: one write per small response, and the frozen heap."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import httpx

from mercato.asgi_server import FrozenAfterStartup, HeadHoldingTransport
from tests.helpers import serve_app

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_head_and_body_leave_in_one_write() -> None:
    fake = FakeTransport()
    t = HeadHoldingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(HEAD)
    assert fake.writes == []
    t.write(b"ok")
    assert fake.writes == [HEAD + b"ok"]
    t.write(b"more")  # not a head: straight through
    assert fake.writes[-1] == b"more"
    assert t.get_extra_info("peername") == "info:peername"  # everything else delegates


async def test_a_held_head_goes_out_by_the_end_of_the_loop_iteration() -> None:
    fake = FakeTransport()
    t = HeadHoldingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(HEAD)
    await asyncio.sleep(0)  # one iteration: the app did not write its body yet
    assert fake.writes == [HEAD]
    t.write(b"ok")
    assert fake.writes == [HEAD, b"ok"]


async def test_interim_responses_are_not_held_and_close_flushes() -> None:
    fake = FakeTransport()
    t = HeadHoldingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert fake.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    t.write(HEAD)
    t.close()
    assert fake.writes[-1] == HEAD and fake.closed


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/small":
        headers = [(b"x-a", b"1"), (b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":
        body = b"x" * (1 << 20)
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    else:  # a stream whose first event comes later than its head
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(3):
            await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": b"e%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def test_responses_are_whole_through_a_real_server() -> None:
    """Held heads never lose, reorder or delay-forever anything (serve_app serves with
    OneWriteHttpProtocol, as the CLI does)."""
    async with serve_app(_app) as url, httpx.AsyncClient() as c:
        small = await c.get(f"{url}/small")
        assert small.status_code == 200 and small.content == b'{"ok":true}'
        assert small.headers["x-a"] == "1"
        assert (await c.get(f"{url}/empty")).status_code == 204
        assert (await c.head(f"{url}/small")).status_code == 200
        assert (await c.get(f"{url}/big")).content == b"x" * (1 << 20)
        assert (await c.get(f"{url}/stream")).content == b"e0\ne1\ne2\n"


async def test_heap_is_frozen_once_startup_is_complete() -> None:
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    frozen_at_startup: list[int] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            frozen_at_startup.append(gc.get_freeze_count())

    assert gc.get_freeze_count() == 0
    try:
        await FrozenAfterStartup(_app)({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        assert frozen_at_startup[0] > 10_000  # the interpreter, pytest and these modules
    finally:
        gc.unfreeze()

"""A pooled HTTP/1.1 client for whole request/response exchanges (the router's JSON path).

Why not aiohttp here: forwarding one small JSON request through an aiohttp session
costs ~290 µs of CPU on this machine against ~55 µs for the same exchange written
straight to a transport and parsed by httptools (benchmarks/notes.md, "router"); at
concurrency 1 that difference is a quarter of the router's whole added latency. This
client does only what the router's JSON forwarding needs: POST a body, read the whole
answer (Content-Length, chunked, or until the peer closes), keep-alive connections
pooled per origin, TLS, connect and total timeouts. Streams stay on aiohttp.

Errors: :class:`ConnectError` (the connection could not be made or broke before the
answer was complete; the request may or may not have reached the peer),
:class:`ProtocolError` (the peer did not speak HTTP/1.1), :class:`TimeoutError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_BODY = 64 * 1024 * 1024  # an answer larger than this is refused (ProtocolError)


class HTTPClientError(Exception):
    """A request that did not produce an answer."""


class ConnectError(HTTPClientError):
    pass


class ProtocolError(HTTPClientError):
    pass


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed URL: where to connect and what to put in the request line."""

    tls: bool
    host: str
    port: int
    path: bytes  # path and query, as sent
    host_header: bytes

    @property
    def origin(self) -> tuple[bool, str, int]:
        return self.tls, self.host, self.port


@lru_cache(maxsize=4096)
def target(url: str) -> Target:
    """``http(s)://host[:port]/path?query`` -> :class:`Target` (cached: upstream URLs
    are few and every request names one)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if parts.username or parts.password or parts.fragment:
        raise ValueError(f"credentials and fragments are not supported: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    if port != (443 if tls else 80):
        shown = f"{shown}:{port}"
    return Target(tls, host, port, path.encode("ascii"), shown.encode("ascii"))


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one exchange at a time."""

    def __init__(self, on_lost: Callable[[_Connection], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = False  # has carried an exchange before (a reused keep-alive connection)
        self.origin: tuple[bool, str, int] | None = None
        self._on_lost = on_lost
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self.responded = False  # the current exchange's answer has begun
        self._delimited = False  # its length is known (Content-Length or chunked)
        self.reusable = False

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is unusable
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            if self._waiter is not None:  # else a callback has failed the exchange already
                self._fail(ProtocolError(f"malformed answer: {exc}"))

    def eof_received(self) -> bool:
        self.closed = True
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_lost(self)
        if self._waiter is not None and not self._waiter.done():
            if self.responded and not self._delimited:  # the body ran to the end
                self._finish(reusable=False)
            else:
                self._fail(ConnectError(f"connection closed before the answer ended: {exc!r}"))

    # --- httptools callbacks
    def on_message_begin(self) -> None:
        self.responded = True
        self._headers = {}
        self._chunks = []
        self._size = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        h = self._headers
        self._delimited = (
            "content-length" in h or "chunked" in h.get("transfer-encoding", "").lower()
        )

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._fail(ProtocolError(f"answer larger than {MAX_BODY} bytes"))
            raise ProtocolError  # stops the parser
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self._finish(reusable=self._parser.should_keep_alive())

    # --- exchange
    def _finish(self, *, reusable: bool) -> None:
        waiter, self._waiter = self._waiter, None
        self.reusable = reusable and not self.closed
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        answer = Answer(self._parser.get_status_code(), self._headers, body)
        self._chunks = []
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def abort(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def send(self, head: bytes, body: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self.responded = False
        self.reusable = False
        self.used = True
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        return self._waiter


class HTTPClient:
    """Keep-alive connections per origin, at most ``max_connections`` open at once."""

    def __init__(
        self,
        *,
        max_connections: int = 1024,
        connect_timeout_s: float = 3.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._idle: dict[tuple[bool, str, int], deque[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._connect_timeout = connect_timeout_s
        self._ssl = ssl_context
        self._open: set[_Connection] = set()
        self._closed = False

    async def post(
        self, url: str | Target, body: bytes, headers: Iterable[tuple[str, str]], timeout_s: float
    ) -> Answer:
        """POST ``body`` and read the whole answer within ``timeout_s`` (connecting
        included). Header names and values must not contain CR or LF."""
        t = target(url) if isinstance(url, str) else url
        head = _head(t, body, headers)
        async with asyncio.timeout(timeout_s), self._slots:
            conn = await self._acquire(t)
            reused = conn.used
            try:
                answer = await conn.send(head, body)
            except ConnectError:
                conn.abort()
                if not reused or conn.responded:
                    raise
                # A kept-alive connection the peer closed while idle, before our request
                # reached it (the close crossed our write): once more, on a new one.
                conn = await self._acquire(t, fresh=True)
                try:
                    answer = await conn.send(head, body)
                except BaseException:
                    conn.abort()
                    raise
            except BaseException:
                conn.abort()
                raise
            self._release(t, conn)
            return answer

    async def _acquire(self, t: Target, *, fresh: bool = False) -> _Connection:
        if self._closed:
            raise ConnectError("client closed")
        idle = None if fresh else self._idle.get(t.origin)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have timed out
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if t.tls:
            context = self._ssl or _default_ssl()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    partial(_Connection, self._forget),
                    t.host,
                    t.port,
                    ssl=context,
                    server_hostname=t.host if t.tls else None,
                )
        except TimeoutError:
            raise ConnectError(f"connect to {t.host}:{t.port} timed out") from None
        except OSError as exc:
            raise ConnectError(f"connect to {t.host}:{t.port}: {exc}") from exc
        conn.origin = t.origin
        self._open.add(conn)
        return conn

    def _release(self, t: Target, conn: _Connection) -> None:
        if conn.reusable and not self._closed:
            self._idle.setdefault(t.origin, deque()).append(conn)
        else:
            conn.abort()

    def _forget(self, conn: _Connection) -> None:
        """A connection closed: out of the pool (if it was idle there)."""
        self._open.discard(conn)
        idle = self._idle.get(conn.origin) if conn.origin is not None else None
        if idle is not None:
            with contextlib.suppress(ValueError):
                idle.remove(conn)

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._open):
            if conn.transport is not None:
                conn.transport.close()
        self._open.clear()
        self._idle.clear()


def _head(t: Target, body: bytes, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [
        b"POST ",
        t.path,
        b" HTTP/1.1\r\nHost: ",
        t.host_header,
        b"\r\nContent-Length: ",
        str(len(body)).encode(),
        b"\r\nAccept-Encoding: identity\r\n",
    ]
    for name, value in headers:
        line = f"{name}: {value}\r\n"
        if "\r" in line[:-2] or "\n" in line[:-2]:
            raise ValueError(f"header {name!r}: CR or LF in a header")
        lines.append(line.encode("latin-1"))
    lines.append(b"\r\n")
    return b"".join(lines)


@lru_cache(maxsize=1)
def _default_ssl() -> ssl.SSLContext:
    return ssl.create_default_context()

"""A small closed-loop HTTP/1.1 load generator for streamed (SSE) chat completions that
times the first content token, which wrk cannot see.

An asyncio Protocol on uvloop, one keep-alive connection per concurrent client, no HTTP
library: each client sends the same pre-encoded POST and parses the answer (status,
headers, a chunked or Content-Length body) incrementally as bytes arrive. Until the
first ``data:`` event whose ``choices[0].delta.content`` (or ``.text``) is non-empty has
arrived, events are parsed with orjson; that moment is the request's time to first token
(TTFT). The rest of the body is only framed. Requests ending after the measuring window
(or sent in the first ``--warmup`` seconds, default none) are not counted.

    python -m benchmarks.loadgen URL --body-file FILE [--key KEY] [-c 16] [-d 5]

Prints one JSON object: rps, p50/p99 whole-response latency and TTFT (ms), requests,
errors (non-200 answers, dropped connections, streams without content).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import orjson


class BadResponse(Exception):
    pass


def first_content(events: bytes) -> bool:
    """Whether these complete SSE events hold a non-empty content delta."""
    for event in events.split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            for choice in doc.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content") or choice.get("text"):
                    return True
    return False


class Conn(asyncio.Protocol):
    """One keep-alive connection; parses responses incrementally as bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[float, float]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BadResponse("connection lost"))

    def send(self, request: bytes) -> asyncio.Future[tuple[float, float]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.head_done = False
        self.status = 0
        self.chunked = False
        self.length = -1
        self.keep = True
        self.ttft = 0.0
        self.pending = b""  # SSE text not yet split into whole events
        self.t0 = time.perf_counter()
        self.transport.write(request)
        return self.waiter

    def feed(self, data: bytes) -> None:
        if self.ttft:
            return
        self.pending += data
        cut = self.pending.rfind(b"\n\n")
        if cut >= 0:
            whole, self.pending = self.pending[: cut + 2], self.pending[cut + 2 :]
            if first_content(whole):
                self.ttft = time.perf_counter() - self.t0

    def finish(self) -> None:
        total = time.perf_counter() - self.t0
        waiter, self.waiter = self.waiter, None
        if not self.keep and self.transport is not None:
            self.transport.close()
            self.closed = True
        if waiter is None or waiter.done():
            return
        if self.status != 200 or not self.ttft:
            content = "seen" if self.ttft else "missing"
            waiter.set_exception(BadResponse(f"status {self.status}, content {content}"))
        else:
            waiter.set_result((self.ttft, total))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.waiter is None:
            return
        try:
            self._parse()
        except ValueError:  # not HTTP as we know it: fail the request, drop the connection
            buf.clear()
            self.keep = False
            self.status = -1
            self.finish()

    def _parse(self) -> None:
        buf = self.buf
        if not self.head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            del buf[: end + 4]
            self.head_done = True
            self.status = int(head[9:12])
            self.chunked = b"transfer-encoding: chunked" in head
            self.keep = b"connection: close" not in head
            at = head.find(b"content-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at)
                self.length = int(head[at + 15 : stop if stop >= 0 else None])
            elif not self.chunked:
                raise ValueError("neither chunked nor Content-Length")
        if self.chunked:
            while True:
                line = buf.find(b"\r\n")
                if line < 0:
                    return
                size = int(bytes(buf[:line]).split(b";")[0], 16)
                if size == 0:
                    if len(buf) < line + 4:
                        return
                    del buf[: line + 4]  # "0\r\n\r\n", no trailers expected
                    self.finish()
                    return
                if len(buf) < line + 2 + size + 2:
                    return
                self.feed(bytes(buf[line + 2 : line + 2 + size]))
                del buf[: line + 2 + size + 2]
        elif len(buf) >= self.length:
            self.feed(bytes(buf[: self.length]))
            del buf[: self.length]
            self.finish()


async def run(
    url: str, body: bytes, key: str | None, concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        + (f"Authorization: Bearer {key}\r\n" if key else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    request = head.encode() + body
    ttfts: list[float] = []
    totals: list[float] = []
    errors: dict[str, int] = {}
    begin = time.perf_counter() + warmup  # requests sent before this are not counted
    end = begin + seconds

    async def worker() -> None:
        loop = asyncio.get_running_loop()
        conn: Conn | None = None
        try:
            while time.perf_counter() < end:
                try:
                    if conn is None or conn.closed:
                        _, conn = await loop.create_connection(Conn, host, port)
                    ttft, total = await conn.send(request)
                except (BadResponse, OSError) as exc:
                    kind = f"{type(exc).__name__}: {exc}"[:120]
                    errors[kind] = errors.get(kind, 0) + 1
                    if conn is not None and conn.transport is not None:
                        conn.transport.close()
                    conn = None
                    await asyncio.sleep(0.01)
                    continue
                now = time.perf_counter()
                if begin <= now - total and now <= end:
                    ttfts.append(ttft)
                    totals.append(total)
        finally:
            if conn is not None and conn.transport is not None:
                conn.transport.close()

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), warmup + seconds + 30)
    except TimeoutError:
        for t in tasks:
            t.cancel()

    def pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "rps": len(totals) / seconds,
        "p50": pct(totals, 0.50),
        "p99": pct(totals, 0.99),
        "ttft_p50": pct(ttfts, 0.50),
        "ttft_p99": pct(ttfts, 0.99),
        "requests": len(totals),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--body-file", type=Path, required=True)
    ap.add_argument("--key")
    ap.add_argument("-c", "--concurrency", type=int, default=16)
    ap.add_argument("-d", "--seconds", type=float, default=5.0, help="measured window")
    ap.add_argument("--warmup", type=float, default=0.0, help="seconds not counted first")
    args = ap.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(
        run(
            args.url,
            args.body_file.read_bytes(),
            args.key,
            args.concurrency,
            args.seconds,
            args.warmup,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Small helpers shared by tests (no fixtures here)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn

from mercato.asgi_server import uvicorn_config

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def doc_blocks(doc: str, prefix: str) -> dict[str, str]:
    """Fenced blocks tagged ``prefix:name`` in docs/protocols/<doc>, keyed by name."""
    text = (ROOT / "docs" / "protocols" / doc).read_text()
    pattern = re.compile(r"```\w*\s+" + re.escape(prefix) + r":([\w-]+)\n(.*?)\n```", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(text)}


@contextlib.asynccontextmanager
async def serve_app(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 inside the test's event loop."""
    port = port or free_port()
    # As the CLI serves (one write per small response), but no gc.freeze() in pytest.
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, freeze_heap=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task

"""Helpers shared by the command modules: output, logging and clean failures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from mercato.errors import MercatoError

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("alembic", "httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def serve_asgi(app: Any, host: str, port: int) -> None:
    """Run an ASGI app in the foreground (see :mod:`mercato.asgi_server`) until
    Ctrl-C; exit 1 when it could not start (the reason has been logged)."""
    import uvicorn

    from mercato.asgi_server import uvicorn_config

    server = uvicorn.Server(uvicorn_config(app, host, port))
    server.run()
    if server.started is False:
        raise typer.Exit(1)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def friendly_errors(fn: F) -> F:
    """Turn expected failures into one clear line and a non-zero exit, not a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (MercatoError, FileNotFoundError, PermissionError, ValueError) as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.strerror or exc}")

    return wrapper  # type: ignore[return-value]

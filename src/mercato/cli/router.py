"""``mercato router``: run the router, manage keys and credits through its admin API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel

from mercato.cli.common import console, fail, friendly_errors, serve_asgi, setup_logging
from mercato.config import load_settings
from mercato.router.settings import RouterSettings
from mercato.router.state import RouterState

app = typer.Typer(help="Run the router and manage its API keys.", no_args_is_help=True)
ADMIN_ENV = "MERCATO_ROUTER__BILLING__ADMIN_TOKEN"


def _banner(state: RouterState) -> None:
    s = state.settings
    base = f"http://{s.host}:{s.port}"
    models = ", ".join(sorted(state.table.by_model)) or "none yet"
    console.print(
        Panel.fit(
            f"[bold]Mercato router[/] on [cyan]{base}[/]  offers [bold]{len(state.table.all())}"
            f"[/]  models [bold]{models}[/]\n"
            f"auth [bold]{s.billing.auth}[/]  discovery "
            f"[bold]{s.discovery.manifest or 'off (configured operators only)'}[/]\n\n"
            f"python: OpenAI(base_url='{base}/v1', api_key='sk-...')",
            title="ready",
        )
    )


@app.command("serve")
@friendly_errors
def serve(
    config: Annotated[
        Path | None, typer.Option(help="TOML settings file ([router] table).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Chain deployment manifest.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Database directory.")] = None,
) -> None:
    """Serve one OpenAI-compatible endpoint over every operator and provider."""
    over: dict[str, Any] = {"host": host, "port": port, "data_dir": data_dir}
    settings = load_settings(RouterSettings, config, **over)
    if manifest is not None:
        settings.discovery.manifest = manifest
    setup_logging(settings.log_level)
    from mercato.router.app import create_app

    serve_asgi(create_app(settings, on_ready=_banner), settings.host, settings.port)


def _admin(router: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    import httpx

    token = os.environ.get(ADMIN_ENV)
    if not token:
        fail(f"set {ADMIN_ENV} to the router's admin token")
    resp = httpx.request(method, router.rstrip("/") + path, json=body, timeout=30,
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    if resp.status_code >= 400:
        fail(f"{resp.status_code}: {resp.text}")
    return resp.json()


Router = Annotated[str, typer.Option(help="The router's base URL.")]


@app.command("create-key")
@friendly_errors
def create_key(
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    credits: Annotated[int, typer.Option(help="Initial credits (base units).")] = 0,
    router: Router = "http://127.0.0.1:8090",
) -> None:
    """Create an API key (printed once) with optional initial credits."""
    doc = _admin(router, "POST", "/admin/keys", {"name": name, "credits": credits or None})
    console.print(f"key [bold]{doc['key']}[/] (id {doc['key_id']}, balance {doc['balance']})")


@app.command("top-up")
@friendly_errors
def top_up(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    amount: Annotated[int, typer.Argument(help="Credits to add (base units).")],
    router: Router = "http://127.0.0.1:8090",
) -> None:
    """Add credits to a key."""
    doc = _admin(router, "POST", f"/admin/keys/{key_id}/credits", {"amount": amount})
    console.print(f"{key_id}: balance {doc['balance']}")


@app.command("revoke-key")
@friendly_errors
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    router: Router = "http://127.0.0.1:8090",
) -> None:
    """Revoke a key."""
    _admin(router, "DELETE", f"/admin/keys/{key_id}")
    console.print(f"{key_id}: revoked")


@app.command("operators")
@friendly_errors
def operators(router: Router = "http://127.0.0.1:8090") -> None:
    """List offers with their scores and circuit states."""
    for o in _admin(router, "GET", "/admin/operators")["data"]:
        sc = o["scores"]
        console.print(
            f"{o['kind']:8} {o['name']:16} {o['model']:28} in={o['price_in_per_m']} "
            f"out={o['price_out_per_m']} circuit={o['circuit']} "
            f"reputation={sc['reputation']:.2f} latency={sc['latency_s']}"
        )

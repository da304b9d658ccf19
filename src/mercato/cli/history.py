"""``mercato history``: your recent requests and spend, from the router's history API."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from mercato.cli.common import console, fail, friendly_errors

API_KEY_ENV = "MERCATO_API_KEY"


def _get(router: str, path: str, key: str, params: dict[str, Any]) -> Any:
    import httpx

    try:
        resp = httpx.get(router.rstrip("/") + path, params=params, timeout=15,
                         headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    except httpx.HTTPError as exc:
        fail(f"router {router} unreachable: {exc}")
    if resp.status_code == 401:
        fail("the router refused this API key (wrong or revoked)")
    if resp.status_code >= 400:
        fail(f"router answered {resp.status_code}: {resp.text[:200]}")
    return resp.json()


def history(
    router: Annotated[str, typer.Option(help="The router's base URL.")] = "http://127.0.0.1:8090",
    api_key: Annotated[
        str | None, typer.Option(help=f"API key (default: ${API_KEY_ENV}).", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(help="How many requests.")] = 20,
) -> None:
    """Your recent requests through the router: model, operator, tokens, cost, receipt."""
    key = api_key or os.environ.get(API_KEY_ENV)
    if not key:
        fail(f"give --api-key or set {API_KEY_ENV}")
    run = friendly_errors(_show)
    run(router, key, limit)


def _show(router: str, key: str, limit: int) -> None:
    rows = _get(router, "/v1/history", key, {"limit": limit})["data"]
    stats = _get(router, "/v1/analytics", key, {})
    table = Table("time (UTC)", "model", "operator", "status", "in", "out", "cost",
                  "latency", "receipt", title="history", title_justify="left")  # fmt: skip
    for r in rows:
        when = datetime.fromtimestamp(r["created_at"] / 1000, UTC).strftime("%m-%d %H:%M:%S")
        table.add_row(
            when, r["model"], r.get("upstream_name") or "-", str(r["status"]),
            str(r["prompt_tokens"]), str(r["completion_tokens"]), str(r["cost"]),
            f"{r['latency_ms']:.0f} ms", (r.get("receipt_signer") or "-")[:10],
        )  # fmt: skip
    console.print(table)
    total = stats.get("total") or {}
    console.print(
        f"requests {total.get('requests', 0)}  spend {total.get('spend', 0)}  "
        f"balance [bold]{stats.get('balance', '?')}[/] (base units)"
    )

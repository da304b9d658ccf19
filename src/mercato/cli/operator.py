"""``mercato operator``: run an operator node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel

from mercato.cli.common import console, friendly_errors, serve_asgi, setup_logging
from mercato.cli.operator_register import register
from mercato.config import load_settings
from mercato.crypto.keystore import KeystoreError
from mercato.operator.settings import OperatorSettings
from mercato.operator.state import OperatorState

app = typer.Typer(help="Run and manage an operator node.", no_args_is_help=True)
app.command("register")(register)


def _banner(state: OperatorState) -> None:
    s = state.settings
    base = f"http://{s.host}:{s.port}"
    model = state.backend.models()[0] if state.backend.models() else "MODEL"
    console.print(
        Panel.fit(
            f"[bold]Mercato operator[/] on [cyan]{base}[/]  backend [bold]{state.backend.kind}[/]\n"
            f"model [bold]{model}[/]  signing address [bold]{state.signer.signing_address}[/]\n\n"
            f"curl {base}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
            f'  -d \'{{"model": "{model}", "messages": '
            f'[{{"role": "user", "content": "Hello!"}}]}}\' -i\n\n'
            f"python: OpenAI(base_url='{base}/v1', api_key='unused')\n"
            f"verify: mercato verify --operator {base} --request req.json --response resp.json",
            title="ready",
        )
    )


@app.command("serve")
@friendly_errors
def serve(
    config: Annotated[
        Path | None, typer.Option(help="TOML settings file ([operator] table).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    backend: Annotated[str | None, typer.Option(help="llama-cpp, openai or managed.")] = None,
    model_path: Annotated[Path | None, typer.Option(help="GGUF file (llama-cpp).")] = None,
    upstream: Annotated[str | None, typer.Option(help="Base URL (openai backend).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Keys and database.")] = None,
) -> None:
    """Serve the OpenAI API with metered, signed responses."""
    backend_over: dict[str, Any] = {}
    if backend:
        backend_over["kind"] = backend
    if model_path:
        backend_over["llama_cpp"] = {"model_path": model_path}
    if upstream:
        backend_over["openai"] = {"base_url": upstream}
    settings = load_settings(
        OperatorSettings,
        config,
        host=host,
        port=port,
        data_dir=data_dir,
        backend=backend_over or None,
    )
    setup_logging(settings.log_level)
    from mercato.operator.app import create_app, open_keystore

    try:
        keys = open_keystore(settings)
    except KeystoreError as exc:
        raise ValueError(f"{exc} (keystore {settings.resolved_keystore_dir()})") from exc
    serve_asgi(create_app(settings, on_ready=_banner, keys=keys), settings.host, settings.port)

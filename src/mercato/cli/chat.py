"""``mercato chat``: an interactive chat through the router (API key credits) or straight
to an operator (paid from a local wallet), streaming each answer and showing its cost
and receipt verification. History stays on this machine; the oldest turns are dropped
when the context fills. Commands: /reset, /cost, /exit."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from mercato.cli.common import console, err_console, fail, friendly_errors


def _network() -> dict[str, Any]:
    """``$MERCATO_HOME/network.json`` written by ``mercato up`` (defaults), if any."""
    from mercato.chain.manifest import mercato_home

    try:
        doc = json.loads((mercato_home() / "network.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def chat(
    router: Annotated[
        str | None, typer.Option(help="Router base URL (default: mercato up's, or :8090).")
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="Talk straight to this operator's URL instead.")
    ] = None,
    payment: Annotated[
        str, typer.Option(help="With --operator: spendauth, channel or x402.")
    ] = "spendauth",
    api_key: Annotated[str | None, typer.Option(help="Router API key ($MERCATO_API_KEY).")] = None,
    wallet: Annotated[str | None, typer.Option("--wallet", "-w", help="Wallet name.")] = None,
    model: Annotated[str | None, typer.Option(help="Model (default: the first offered).")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens per answer.")] = 256,
    context: Annotated[int, typer.Option(help="The model's context, in tokens.")] = 2048,
    manifest: Annotated[Path | None, typer.Option(help="Chain manifest (channel, x402).")] = None,
    message: Annotated[
        list[str] | None, typer.Option("--message", "-m", help="Send these and exit (scripts).")
    ] = None,
) -> None:
    """Chat with the network, with cost and verification shown per answer."""
    run = friendly_errors(_chat)
    run(router, operator, payment, api_key, wallet, model, system, max_tokens, context,
        manifest, message or [])  # fmt: skip


def _client(
    router: str | None, operator: str | None, payment: str, api_key: str | None,
    wallet: str | None, manifest: Path | None,
) -> tuple[Any, str]:  # fmt: skip
    from mercato.client.sdk import Client
    from mercato.client.wallet import PASSWORD_ENV

    net = _network()
    if operator:
        if payment not in ("spendauth", "channel", "x402"):
            fail("--payment must be spendauth, channel or x402")
        name = wallet or net.get("wallet") or "default"
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = typer.prompt(f"password for wallet {name}", hide_input=True)
        path = manifest or (Path(net["manifest"]) if net.get("manifest") else None)
        client = Client(operator, payment=payment, wallet=name, password=password,  # type: ignore[arg-type]
                        manifest=path, strict=False)  # fmt: skip
        return client, f"operator {operator} ({payment} from wallet {name})"
    url = router or net.get("router_url") or "http://127.0.0.1:8090"
    key = api_key or os.environ.get("MERCATO_API_KEY") or net.get("api_key")
    if not key:
        fail("give --api-key (or set MERCATO_API_KEY), or --operator URL to pay from a wallet")
    return Client(url, api_key=key, strict=False), f"router {url} (API key credits)"


def _chat(
    router: str | None, operator: str | None, payment: str, api_key: str | None,
    wallet: str | None, model: str | None, system: str | None, max_tokens: int,
    context: int, manifest: Path | None, scripted: list[str],
) -> None:  # fmt: skip
    import openai

    from mercato.client.conversation import Conversation

    client, where = _client(router, operator, payment, api_key, wallet, manifest)
    try:
        if model is None:
            try:
                model = client.models.list().data[0].id
            except (openai.APIError, IndexError) as exc:
                fail(f"cannot list models at {client.base_url}: {_why(exc)}")
        conv = Conversation(context_tokens=context, reply_tokens=max_tokens, system=system)
        console.print(f"[bold]mercato chat[/] with [bold]{model}[/] via {where}")
        if not scripted:
            console.print("[dim]/reset forgets the conversation, /cost shows the total, "
                          "/exit or Ctrl-D leaves[/]")  # fmt: skip
        total = 0
        inputs = iter(scripted) if scripted else None
        while True:
            try:
                text = next(inputs) if inputs is not None else console.input("[bold cyan]you>[/] ")
            except (EOFError, KeyboardInterrupt, StopIteration):
                break
            text = text.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                conv.reset()
                console.print("[dim]conversation forgotten[/]")
                continue
            if text == "/cost":
                console.print(f"[dim]spent {total} base units (= {total / 1e6:g} mUSD)[/]")
                continue
            total += _turn(client, conv, model, text, max_tokens)
    finally:
        client.close()


def _why(exc: BaseException) -> str:
    import openai

    if isinstance(exc, openai.APIConnectionError):
        return "unreachable (is it running?)"
    if isinstance(exc, openai.APIStatusError):
        try:
            return f"{exc.status_code}: {exc.body['message']}"  # type: ignore[index]
        except (TypeError, KeyError):
            return f"{exc.status_code}: {exc.message}"
    return str(exc)


def _turn(client: Any, conv: Any, model: str, text: str, max_tokens: int) -> int:
    import openai

    before = conv.pruned
    sent = conv.ask(text)
    dropped = conv.pruned - before
    if dropped:
        console.print(f"[dim]({dropped} old messages dropped to fit the context)[/]")
    console.print("[bold magenta]ai>[/] ", end="")
    parts: list[str] = []
    usage = None
    try:
        stream = client.chat.completions.create(
            model=model, messages=sent, max_tokens=max_tokens, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                piece = choice.delta.content or ""
                parts.append(piece)
                console.print(piece, end="", markup=False, highlight=False)
    except openai.APIError as exc:
        console.print()
        err_console.print(f"[bold red]error:[/] {_why(exc)}")
        conv.forget_last_question()
        return 0
    console.print()
    conv.answer("".join(parts))
    if usage is not None:
        conv.observe(sent, usage.prompt_tokens)
    answer = client.last_answer
    if answer is None:
        console.print("[red]✗ no receipt[/]")
        return 0
    who = answer.served_by or ""
    signer = answer.operator or "?"
    tokens = f" · {usage.prompt_tokens}+{usage.completion_tokens} tokens" if usage else ""
    cost = answer.cost or 0
    mark = "[green]✓ verified[/]" if answer.verified else f"[red]✗ {answer.reason}[/]"
    console.print(
        f"[dim]{mark} · signed by {signer}{f' ({who})' if who else ''} · cost {cost} base units "
        f"= {cost / 1e6:g} mUSD, {answer.method}{tokens}[/]"
    )
    return int(cost)

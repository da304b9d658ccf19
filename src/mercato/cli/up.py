"""``mercato up``: the whole network here in one command — anvil, the contracts, three
paid operators at different prices, the router, a funded demo wallet and an API key.
Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mercato.cli.common import console, friendly_errors

if TYPE_CHECKING:
    from mercato.network.local import NetworkConfig, NetworkInfo


@friendly_errors
def up(
    home: Annotated[
        Path | None, typer.Option(help="State directory (default: $MERCATO_HOME or ./.mercato).")
    ] = None,
    router_port: Annotated[int, typer.Option(help="The router's port.")] = 8090,
    anvil_port: Annotated[int, typer.Option(help="anvil's JSON-RPC port.")] = 8545,
    operator_port: Annotated[
        int, typer.Option(help="First operator port (three consecutive ports).")
    ] = 8101,
    threads: Annotated[
        int | None, typer.Option(help="llama.cpp threads per operator (default: its own).")
    ] = None,
) -> None:
    """Start the whole local network and keep it running until Ctrl-C."""
    from mercato.chain.manifest import mercato_home
    from mercato.network.local import NetworkConfig

    config = NetworkConfig(
        home=home or mercato_home(),
        anvil_port=anvil_port,
        router_port=router_port,
        operator_ports=tuple(operator_port + i for i in range(3)),
        n_threads=threads,
    )
    raise typer.Exit(asyncio.run(_run(config)))


async def _run(config: NetworkConfig) -> int:
    from mercato.network.local import LocalNetwork

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    net = LocalNetwork(config)
    try:
        with console.status("starting the network...") as status:
            net._progress = lambda msg: status.update(msg + "...")
            starting = asyncio.ensure_future(net.start())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting
                console.print("interrupted during start-up")
                return 130
            stopped.cancel()
            info = starting.result()
        _print(info)
        while not stop.is_set():
            dead = net.dead_child()
            if dead is not None:
                console.print(f"[bold red]{dead.name} exited[/]; log {dead.log}:\n{dead.tail(800)}")
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        return 0
    finally:
        with console.status("stopping router, operators and anvil..."):
            await net.stop()
        console.print("network stopped.")


def _print(info: NetworkInfo) -> None:
    table = Table("operator", "address", "endpoint", "price in / out per 1M", title="operators",
                  title_justify="left", expand=False)  # fmt: skip
    for column in table.columns:
        column.no_wrap = True
    for op in info.operators:
        prices = f"{op.price_in_per_m / 1e6:g} / {op.price_out_per_m / 1e6:g} mUSD"
        table.add_row(op.slug, op.address, op.url, prices)
    console.print(table)
    r = info.router_url
    curl = (
        f"curl -s {r}/v1/chat/completions -H 'Authorization: Bearer {info.api_key}' \\\n"
        f"  -H 'Content-Type: application/json' -i \\\n"
        f'  -d \'{{"model": "{info.model}", "messages": '
        f'[{{"role": "user", "content": "Hello!"}}]}}\''
    )
    py = (
        "from openai import OpenAI\n"
        f"client = OpenAI(base_url='{r}/v1', api_key='{info.api_key}')\n"
        f"print(client.chat.completions.create(model='{info.model}', "
        "messages=[{'role': 'user', 'content': 'Hello!'}]).choices[0].message.content)"
    )
    sdk = (
        "from mercato.client.sdk import Client\n"
        f"client = Client('{info.operators[0].url}', payment='spendauth', wallet='{info.wallet}')\n"
        f"reply, paid = client.create_with_receipt(model='{info.model}', "
        "messages=[{'role': 'user', 'content': 'Hello!'}])\n"
        "print(reply.choices[0].message.content, paid.verified, paid.operator, paid.cost)"
    )
    home = f"MERCATO_HOME={info.home}"
    console.rule("[bold green]Mercato is up[/] — Ctrl-C stops everything")
    console.print(
        (
            f"[bold]router[/] {r}   [bold]chain[/] {info.rpc_url} (id {info.chain_id})\n"
            f"[bold]API key[/] {info.api_key} (100 mUSD of credits)\n"
            f"[bold]demo wallet[/] {info.wallet} {info.wallet_address} — password in "
            f"{info.wallet_password_file}\n\n"
            f"[bold]chat[/] (through the router, paid by the API key):\n"
            f"  {home} mercato chat\n"
            f"[bold]chat straight to an operator[/], paid from the demo wallet:\n"
            f"  export {home} MERCATO_WALLET_PASSWORD=$(cat {info.wallet_password_file})\n"
            f"  mercato chat --operator {info.operators[0].url} --payment channel\n\n"
            f"[bold]curl[/]:\n{curl}\n\n[bold]openai[/]:\n{py}\n\n"
            f"[bold]mercato SDK[/] (with {home} and MERCATO_WALLET_PASSWORD):\n{sdk}\n\n"
            f"[bold]more[/]: mercato wallet balance -w {info.wallet}   ·   "
            f"mercato history --router {r} --api-key {info.api_key}"
        ),
        soft_wrap=True,
        highlight=False,
    )
    console.rule()

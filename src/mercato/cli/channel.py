"""``mercato channel``: payment channels with operators (open, top up, status, close).

Opened channels are remembered in ``$MERCATO_HOME/channels/<payer>.json``, where the
SDK (``payment="channel"``) finds and keeps using them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mercato.cli.common import console, fail, friendly_errors
from mercato.cli.wallet import (
    ManifestOpt,
    RpcOpt,
    WalletOpt,
    fmt,
    to_base_units,
    unlock,
    with_chain,
)

if TYPE_CHECKING:
    from mercato.chain.client import ChainClient
    from mercato.chain.manifest import Manifest
    from mercato.client.paying import ChannelStore

app = typer.Typer(help="Payment channels with operators.", no_args_is_help=True)

Target = Annotated[
    str, typer.Argument(help="The operator (address or URL) or the channel id (0x + 64 hex).")
]


def _store(payer: str) -> ChannelStore:
    from mercato.chain.manifest import mercato_home
    from mercato.client.paying import ChannelStore

    return ChannelStore(mercato_home() / "channels", payer)


def operator_address(target: str) -> str:
    """An operator's address, or the one its 402 challenge names (for a URL)."""
    from eth_utils.address import is_address, to_checksum_address

    if is_address(target):
        return str(to_checksum_address(target))
    if not target.startswith(("http://", "https://")):
        fail(f"not an operator address or URL: {target!r}")
    import httpx

    from mercato.client.paying import PAYMENT_REQUIRED, parse_terms

    try:
        models = httpx.get(target.rstrip("/") + "/v1/models", timeout=10).json()["data"]
        resp = httpx.post(target.rstrip("/") + "/v1/chat/completions", timeout=10, json={
            "model": models[0]["id"], "max_tokens": 1,
            "messages": [{"role": "user", "content": "?"}],
        })  # fmt: skip
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        fail(f"operator {target} unreachable or not an operator: {exc}")
    terms = parse_terms(resp.headers.get(PAYMENT_REQUIRED))
    if terms is None:
        fail(f"{target} did not ask for payment (HTTP {resp.status_code}): is it in paid mode?")
    return str(to_checksum_address(terms.operator))


def _resolve(target: str, store: ChannelStore, m: Manifest) -> bytes:
    if target.startswith("0x") and len(target) == 66:
        return bytes.fromhex(target[2:])
    operator = operator_address(target)
    found = store.get(store.key(m.chain_id, m.addresses.escrow, operator))
    if found is None:
        fail(f"no channel with {operator} known here; open one with `mercato channel open`")
    return found


@app.command("open")
@friendly_errors
def open_(
    operator: Annotated[str, typer.Argument(help="The operator's address or URL.")],
    amount: Annotated[str, typer.Argument(help="Deposit, e.g. 5 (tokens).")],
    wallet: WalletOpt = "default",
    manifest: ManifestOpt = None,
    rpc_url: RpcOpt = None,
) -> None:
    """Open a channel to an operator with a deposit from the wallet."""
    address = operator_address(operator)
    account = unlock(wallet)
    store = _store(account.address)

    async def work(chain: ChainClient, m: Manifest) -> bytes:
        d = m.token_decimals
        units = to_base_units(amount, d)
        held = await chain.token.balance_of(account.address)
        if held < units:
            fail(f"insufficient funds: the wallet holds {fmt(held, d, m.token_symbol)}")
        with console.status("opening the channel..."):
            if await chain.token.allowance(account.address, chain.escrow.address) < units:
                await chain.token.approve(chain.escrow.address, units)
            channel_id, _ = await chain.escrow.open_channel(address, units, os.urandom(32))
        store.put(store.key(m.chain_id, m.addresses.escrow, address), channel_id)
        return channel_id

    channel_id = with_chain(manifest, rpc_url, account, work)
    console.print(f"channel [bold]0x{channel_id.hex()}[/] open with {address}, deposit {amount}")


@app.command("top-up")
@friendly_errors
def top_up(
    target: Target,
    amount: Annotated[str, typer.Argument(help="Tokens to add.")],
    wallet: WalletOpt = "default",
    manifest: ManifestOpt = None,
    rpc_url: RpcOpt = None,
) -> None:
    """Add to a channel's deposit."""
    account = unlock(wallet)
    store = _store(account.address)

    async def work(chain: ChainClient, m: Manifest) -> str:
        channel_id = _resolve(target, store, m)
        units = to_base_units(amount, m.token_decimals)
        if await chain.token.balance_of(account.address) < units:
            fail("insufficient funds in the wallet for this top-up")
        if await chain.token.allowance(account.address, chain.escrow.address) < units:
            await chain.token.approve(chain.escrow.address, units)
        await chain.escrow.top_up(channel_id, units)
        ch = await chain.escrow.channels(channel_id)
        deposit = fmt(ch.deposit, m.token_decimals, m.token_symbol)
        return f"channel 0x{channel_id.hex()}: deposit {deposit}"

    console.print(with_chain(manifest, rpc_url, account, work))


@app.command("status")
@friendly_errors
def status(
    wallet: WalletOpt = "default", manifest: ManifestOpt = None, rpc_url: RpcOpt = None
) -> None:
    """The wallet's known channels, read from the chain."""
    from mercato.client.wallet import wallet_address

    store = _store(wallet_address(wallet))

    async def work(chain: ChainClient, m: Manifest) -> Table:
        table = Table("channel", "operator", "deposit", "claimed", "remaining", "status",
                      title=f"channels of {wallet}", title_justify="left")  # fmt: skip
        d, sym = m.token_decimals, m.token_symbol
        for key, cid in store.load().items():
            if not key.startswith(f"{m.chain_id}:{m.addresses.escrow.lower()}:"):
                continue
            ch = await chain.escrow.channels(bytes.fromhex(cid[2:]))
            state = ch.status.name.lower()
            if ch.closes_at and state == "closing":
                state += f" (at {ch.closes_at})"
            table.add_row(cid[:10] + "…" + cid[-6:], ch.operator, fmt(ch.deposit, d, sym),
                          fmt(ch.claimed, d, sym), fmt(ch.remaining, d, sym), state)  # fmt: skip
        return table

    console.print(with_chain(manifest, rpc_url, None, work))


@app.command("close")
@friendly_errors
def close(
    target: Target,
    finalize: Annotated[
        bool, typer.Option(help="Finalize a close whose challenge period has passed.")
    ] = False,
    wallet: WalletOpt = "default",
    manifest: ManifestOpt = None,
    rpc_url: RpcOpt = None,
) -> None:
    """Start closing a channel (the operator may still claim during the challenge
    period), or --finalize it afterwards: the unspent deposit returns to the wallet."""
    account = unlock(wallet)
    store = _store(account.address)

    async def work(chain: ChainClient, m: Manifest) -> str:
        from mercato.chain.devnet import latest_timestamp

        channel_id = _resolve(target, store, m)
        ch = await chain.escrow.channels(channel_id)
        name = f"channel 0x{channel_id.hex()}"
        if finalize:
            now = await latest_timestamp(chain.w3)
            if ch.status.name != "CLOSING":
                fail(f"{name} is {ch.status.name.lower()}, not closing")
            if now < ch.closes_at:
                fail(f"{name} can be finalized in {ch.closes_at - now} s")
            await chain.escrow.finalize_close(channel_id)
            store.put(store.key(m.chain_id, m.addresses.escrow, ch.operator), None)
            return f"{name} closed; {fmt(ch.remaining, m.token_decimals, m.token_symbol)} refunded"
        if ch.status.name != "OPEN":
            fail(f"{name} is {ch.status.name.lower()}")
        await chain.escrow.start_close(channel_id)
        ch = await chain.escrow.channels(channel_id)
        return f"{name} closing; finalize after {ch.closes_at} (chain time) with --finalize"

    console.print(with_chain(manifest, rpc_url, account, work))

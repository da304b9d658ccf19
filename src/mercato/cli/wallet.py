"""``mercato wallet``: a local encrypted wallet, its balances and its escrow deposit.

Wallets are Ethereum keystore v3 files under ``$MERCATO_HOME/wallets/<name>.json``;
the password comes from a prompt or ``MERCATO_WALLET_PASSWORD``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from mercato.cli.common import console, fail, friendly_errors
from mercato.client.wallet import PASSWORD_ENV

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from mercato.chain.client import ChainClient
    from mercato.chain.manifest import Manifest

app = typer.Typer(help="Create, import and fund a local wallet.", no_args_is_help=True)
T = TypeVar("T")

WalletOpt = Annotated[
    str, typer.Option("--wallet", "-w", help="Wallet name (or path of a keystore file).")
]
ManifestOpt = Annotated[
    Path | None,
    typer.Option(help="Chain deployment manifest (default: $MERCATO_HOME/devnet/manifest.json)."),
]
RpcOpt = Annotated[str | None, typer.Option(help="JSON-RPC URL (default: the manifest's).")]


def password_for(name: str, *, confirm: bool = False) -> str:
    value = os.environ.get(PASSWORD_ENV)
    if value:
        return value
    return str(typer.prompt(f"password for wallet {name}", hide_input=True,
                            confirmation_prompt=confirm))  # fmt: skip


def unlock(name: str) -> LocalAccount:
    from mercato.client.wallet import load_wallet

    return load_wallet(name, password_for(name))


def to_base_units(amount: str, decimals: int) -> int:
    """``"1.5"`` mUSD -> 1_500_000 base units (6 decimals)."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        fail(f"not an amount: {amount!r}")
    units = value * (Decimal(10) ** decimals)
    if value <= 0 or units != units.to_integral_value():
        fail(f"amount must be positive with at most {decimals} decimals: {amount!r}")
    return int(units)


def fmt(units: int, decimals: int, symbol: str = "") -> str:
    text = f"{Decimal(units) / (Decimal(10) ** decimals):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {symbol}".strip()


def with_chain(
    manifest_path: Path | None,
    rpc_url: str | None,
    account: LocalAccount | None,
    work: Callable[[ChainClient, Manifest], Awaitable[T]],
) -> T:
    """Run ``work`` with a checked chain client (a clear error when the chain is down)."""
    from mercato.chain.client import ChainClient
    from mercato.chain.manifest import Manifest

    manifest = Manifest.load(manifest_path)

    async def run() -> T:
        async with ChainClient(manifest, rpc_url=rpc_url, account=account) as chain:
            await chain.check()
            return await work(chain, manifest)

    return asyncio.run(run())


@app.command("create")
@friendly_errors
def create(
    wallet: WalletOpt = "default",
    fast_kdf: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Create a wallet with a fresh key, encrypted with a password."""
    from mercato.client.wallet import create_wallet, wallet_path

    if wallet_path(wallet).exists():
        fail(f"wallet {wallet_path(wallet)} already exists")
    path, address = create_wallet(wallet, password_for(wallet, confirm=True), fast_kdf=fast_kdf)
    console.print(f"wallet [bold]{wallet}[/] address [bold]{address}[/]\nkeystore {path}")


@app.command("import")
@friendly_errors
def import_(
    wallet: WalletOpt = "default",
    key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the hex private key.")
    ] = None,
    fast_kdf: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Import a hex private key (from --key-env or a hidden prompt) into a new wallet."""
    from mercato.client.wallet import create_wallet

    if key_env is not None:
        key = os.environ.get(key_env)
        if not key:
            fail(f"environment variable {key_env} is not set")
    else:
        key = typer.prompt("private key (hex)", hide_input=True)
    path, address = create_wallet(
        wallet, password_for(wallet, confirm=True), private_key=key.strip(), fast_kdf=fast_kdf
    )
    console.print(f"wallet [bold]{wallet}[/] address [bold]{address}[/]\nkeystore {path}")


@app.command("list")
@friendly_errors
def list_() -> None:
    """Wallets under $MERCATO_HOME/wallets."""
    from mercato.client.wallet import list_wallets

    table = Table("name", "address", title="wallets", title_justify="left")
    for name, address in list_wallets():
        table.add_row(name, address)
    console.print(table)


@app.command("balance")
@friendly_errors
def balance(
    wallet: WalletOpt = "default", manifest: ManifestOpt = None, rpc_url: RpcOpt = None
) -> None:
    """The wallet's ETH, token and escrow balances (no password needed)."""
    from mercato.client.wallet import wallet_address

    address = wallet_address(wallet)

    async def work(chain: ChainClient, m: Manifest) -> dict[str, Any]:
        return {
            "eth": int(await chain.w3.eth.get_balance(address)),  # type: ignore[arg-type]
            "token": await chain.token.balance_of(address),
            "escrow": await chain.escrow.balance_of(address),
            "pending": await chain.escrow.pending_withdrawal(address),
        }

    doc = with_chain(manifest, rpc_url, None, work)
    from mercato.chain.manifest import Manifest

    m = Manifest.load(manifest)
    d, sym = m.token_decimals, m.token_symbol
    table = Table(show_header=False, title=f"wallet {wallet}", title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("address", address)
    table.add_row("ETH (gas)", fmt(doc["eth"], 18, "ETH"))
    table.add_row("wallet", fmt(doc["token"], d, sym))
    table.add_row("escrow deposit", fmt(doc["escrow"], d, sym))
    pending = doc["pending"]
    if pending.amount:
        table.add_row("withdrawal pending", f"{fmt(pending.amount, d, sym)} "
                      f"(available at {pending.available_at})")  # fmt: skip
    console.print(table)


@app.command("deposit")
@friendly_errors
def deposit(
    amount: Annotated[str, typer.Argument(help="Token amount, e.g. 10 or 2.5.")],
    wallet: WalletOpt = "default",
    manifest: ManifestOpt = None,
    rpc_url: RpcOpt = None,
) -> None:
    """Move tokens from the wallet into the payment escrow (pays spend authorizations)."""
    account = unlock(wallet)

    async def work(chain: ChainClient, m: Manifest) -> int:
        units = to_base_units(amount, m.token_decimals)
        held = await chain.token.balance_of(account.address)
        if held < units:
            holds = fmt(held, m.token_decimals, m.token_symbol)
            fail(f"insufficient funds: the wallet holds {holds}, the deposit needs {amount}")
        with console.status("approving and depositing..."):
            if await chain.token.allowance(account.address, chain.escrow.address) < units:
                await chain.token.approve(chain.escrow.address, units)
            await chain.escrow.deposit(units)
        return await chain.escrow.balance_of(account.address)

    m = _manifest(manifest)
    total = with_chain(manifest, rpc_url, account, work)
    console.print(f"deposited {amount} {m.token_symbol}; escrow balance "
                  f"[bold]{fmt(total, m.token_decimals, m.token_symbol)}[/]")  # fmt: skip


@app.command("withdraw")
@friendly_errors
def withdraw(
    amount: Annotated[
        str | None, typer.Argument(help="Amount to request (omit with --finalize).")
    ] = None,
    finalize: Annotated[
        bool, typer.Option(help="Complete a pending withdrawal once its delay has passed.")
    ] = False,
    wallet: WalletOpt = "default",
    manifest: ManifestOpt = None,
    rpc_url: RpcOpt = None,
) -> None:
    """Withdraw from the escrow: request (starts the delay), then --finalize."""
    account = unlock(wallet)
    m = _manifest(manifest)
    d, sym = m.token_decimals, m.token_symbol

    async def work(chain: ChainClient, _: Manifest) -> str:
        from mercato.chain.devnet import latest_timestamp

        if finalize:
            pending = await chain.escrow.pending_withdrawal(account.address)
            if not pending.amount:
                fail("no withdrawal pending; request one with `mercato wallet withdraw AMOUNT`")
            now = await latest_timestamp(chain.w3)
            if now < pending.available_at:
                fail(f"the withdrawal is available in {pending.available_at - now} s")
            await chain.escrow.withdraw()
            return f"withdrew {fmt(pending.amount, d, sym)} to the wallet"
        if amount is None:
            fail("give an AMOUNT, or --finalize")
        units = to_base_units(amount, d)
        held = await chain.escrow.balance_of(account.address)
        if held < units:
            fail(f"insufficient funds: the escrow holds {fmt(held, d, sym)}")
        await chain.escrow.request_withdraw(units)
        pending = await chain.escrow.pending_withdrawal(account.address)
        return (f"withdrawal of {amount} {sym} requested; run `mercato wallet withdraw "
                f"--finalize` after {pending.available_at} (chain time)")  # fmt: skip

    console.print(with_chain(manifest, rpc_url, account, work))


def _manifest(path: Path | None) -> Manifest:
    from mercato.chain.manifest import Manifest

    return Manifest.load(path)

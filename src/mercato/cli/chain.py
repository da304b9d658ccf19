"""``mercato chain``: a local devnet (anvil) with Mercato's contracts, or a deployment to
an existing chain. Both write the deployment manifest every other component reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from eth_account import Account
from eth_account.signers.local import LocalAccount
from rich.table import Table

from mercato.cli.common import console, fail, friendly_errors

if TYPE_CHECKING:  # chain modules import web3: load them only when a command runs
    from mercato.chain.anvil import AnvilConfig
    from mercato.chain.deploy import DeployConfig, DevnetFunding
    from mercato.chain.manifest import Manifest

app = typer.Typer(help="Local devnet and contract deployment.", no_args_is_help=True)

DEFAULT_PORT = 8545
_MANIFEST_HELP = "Where to write the manifest (default: $MERCATO_HOME/devnet/manifest.json)."
_PASSWORD_ENV = "MERCATO_KEY_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


@app.command("up")
@friendly_errors
def up(
    port: Annotated[int, typer.Option(help="Port of anvil's JSON-RPC on 127.0.0.1.")] = (
        DEFAULT_PORT
    ),
    block_time: Annotated[
        float | None,
        typer.Option(help="Seconds between blocks (default: a block per transaction)."),
    ] = None,
    accounts: Annotated[
        int, typer.Option(help="Demo accounts to fund (anvil dev accounts 1..N).")
    ] = 9,
    fund: Annotated[int, typer.Option(help="mUSD minted to each demo account.")] = 100_000,
    manifest: Annotated[
        Path | None,
        typer.Option(help=_MANIFEST_HELP),
    ] = None,
    show_keys: Annotated[
        bool, typer.Option(help="Print the demo accounts' (public, well-known) dev keys.")
    ] = True,
) -> None:
    """Start a local devnet: anvil on 127.0.0.1 with Mercato's contracts and funded accounts.

    Stays in the foreground until Ctrl-C, which stops anvil (the devnet's state is not
    kept) and removes the manifest.
    """
    from mercato.chain.anvil import AnvilConfig
    from mercato.chain.deploy import MUSD, DevnetFunding
    from mercato.chain.manifest import default_manifest_path

    if accounts < 0 or accounts > 99:
        fail("--accounts must be between 0 and 99")
    path = manifest or default_manifest_path()
    config = AnvilConfig(
        port=port,
        block_time=block_time,
        accounts=max(accounts + 1, 10),
        log_path=path.parent / "anvil.log",
    )
    funding = DevnetFunding(accounts=accounts, amount=fund * MUSD)
    code = asyncio.run(_up(config, funding, path, show_keys))
    raise typer.Exit(code)


async def _up(config: AnvilConfig, funding: DevnetFunding, path: Path, show_keys: bool) -> int:
    from mercato.chain.anvil import Anvil
    from mercato.chain.deploy import deploy_devnet

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    node = Anvil(config)
    with console.status("starting anvil and deploying contracts..."):
        await node.start()
        try:
            manifest = await deploy_devnet(node.rpc_url, funding=funding, manifest_path=path)
        except BaseException:
            await node.stop()
            raise
    try:
        _print_devnet(manifest, path, node.log_path, show_keys)
        console.print("[dim]Ctrl-C stops the devnet.[/]")
        anvil_exit = asyncio.ensure_future(node.wait())
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({anvil_exit, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (anvil_exit, stopped):
            task.cancel()
        if anvil_exit in done and not stopped.done():
            console.print(f"[bold red]anvil exited unexpectedly[/]; see {node.log_path}")
            return 1
        return 0
    finally:
        await node.stop()
        _remove_manifest(path, manifest.created_at.isoformat())
        console.print("devnet stopped; manifest removed (its contracts are gone).")


def _remove_manifest(path: Path, created_at: str) -> None:
    """Remove the manifest we wrote, unless something else has replaced it since."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("created_at", "").startswith(created_at[:19]):
            path.unlink()


def _print_devnet(manifest: Manifest, path: Path, log_path: Path | None, show_keys: bool) -> None:
    from mercato.chain.anvil import dev_account, dev_private_key

    table = Table(title="Mercato devnet", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("RPC", f"[cyan]{manifest.rpc_url}[/] (chain id {manifest.chain_id})")
    table.add_row("manifest", f"[bold]{path}[/]")
    table.add_row("token", f"{manifest.addresses.token} ({manifest.token_symbol}, "
                  f"{manifest.token_decimals} decimals)")  # fmt: skip
    table.add_row("registry", manifest.addresses.registry)
    table.add_row("escrow", manifest.addresses.escrow)
    dev0 = " (anvil account 0)" if manifest.deployer == dev_account(0).address else ""
    table.add_row("deployer", f"{manifest.deployer}{dev0}")
    params = manifest.parameters
    table.add_row("faucet / arbiter", f"{params.faucet} / {params.arbiter}")
    table.add_row("blueprints", ", ".join(f"{k}={v}" for k, v in manifest.blueprints.items()))
    if log_path is not None:
        table.add_row("anvil log", str(log_path))
    console.print(table)
    if manifest.funded_accounts:
        console.print("[bold]Demo accounts[/] (funded with ETH and mUSD)")
        if show_keys:
            console.print("[dim]anvil's well-known dev keys: for devnets only[/]")
        for i, address in enumerate(manifest.funded_accounts, start=1):
            key = f"  {dev_private_key(i)}" if show_keys else ""
            console.print(f"  {i:>2}  {address}{key}", soft_wrap=True, highlight=False)


@app.command("deploy")
@friendly_errors
def deploy(
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of the chain.")],
    key_file: Annotated[
        Path | None,
        typer.Option(help="Deployer key: an Ethereum keystore (v3 JSON) or a file with a hex key."),
    ] = None,
    private_key_env: Annotated[
        str | None, typer.Option(help="Name of an environment variable holding the hex key.")
    ] = None,
    password_env: Annotated[
        str, typer.Option(help="Environment variable with the keystore's password.")
    ] = _PASSWORD_ENV,
    dev_account: Annotated[
        int | None, typer.Option(help="Use anvil dev account N (local devnets only).")
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help=_MANIFEST_HELP),
    ] = None,
    min_stake: Annotated[int, typer.Option(help="Minimum operator stake, in mUSD.")] = 100,
    unstake_delay: Annotated[int, typer.Option(help="Seconds.")] = 7 * 24 * 3600,
    withdraw_delay: Annotated[int, typer.Option(help="Seconds.")] = 24 * 3600,
    challenge_period: Annotated[int, typer.Option(help="Seconds.")] = 3600,
    arbiter: Annotated[
        str | None, typer.Option(help="Slashing arbiter (default: the deployer).")
    ] = None,
    faucet: Annotated[
        str | None, typer.Option(help="Token minter (default: the deployer).")
    ] = None,
    fund_dev_accounts: Annotated[
        int, typer.Option(help="Also mint mUSD to anvil dev accounts 1..N (devnets).")
    ] = 0,
) -> None:
    """Deploy token, registry and escrow to an existing chain and write the manifest."""
    from mercato.chain.deploy import MUSD, DeployConfig, DevnetFunding
    from mercato.chain.manifest import default_manifest_path

    account = _load_deployer(key_file, private_key_env, password_env, dev_account)
    config = DeployConfig(
        min_stake=min_stake * MUSD,
        unstake_delay=unstake_delay,
        withdraw_delay=withdraw_delay,
        challenge_period=challenge_period,
        arbiter=arbiter,
        faucet=faucet,
    )
    path = manifest or default_manifest_path()
    funding = DevnetFunding(accounts=fund_dev_accounts) if fund_dev_accounts else None
    console.print(f"deploying from [bold]{account.address}[/] to {rpc} ...")
    result = asyncio.run(_deploy(rpc, account, config, funding, path))
    _print_devnet(result, path, None, show_keys=False)


async def _deploy(
    rpc: str,
    account: LocalAccount,
    config: DeployConfig,
    funding: DevnetFunding | None,
    path: Path,
) -> Manifest:
    from mercato.chain.contract import make_web3
    from mercato.chain.deploy import deploy_contracts, fund_accounts

    w3 = make_web3(rpc)
    try:
        manifest = await deploy_contracts(w3, account, config, rpc_url=rpc)
        if funding is not None:
            from mercato.chain.anvil import dev_account

            recipients = [dev_account(i).address for i in range(1, funding.accounts + 1)]
            await fund_accounts(w3, manifest, account, recipients, funding.amount)
            manifest = manifest.model_copy(update={"funded_accounts": recipients})
    finally:
        await w3.provider.disconnect()
    manifest.save(path)
    return manifest


def _load_deployer(
    key_file: Path | None, key_env: str | None, password_env: str, dev_index: int | None
) -> LocalAccount:
    chosen = [x is not None for x in (key_file, key_env, dev_index)]
    if sum(chosen) != 1:
        fail("give exactly one of --key-file, --private-key-env, --dev-account")
    if dev_index is not None:
        from mercato.chain.anvil import dev_account

        return dev_account(dev_index)
    if key_env is not None:
        value = os.environ.get(key_env)
        if not value:
            fail(f"environment variable {key_env} is not set")
        return _from_hex(value.strip(), f"${key_env}")
    assert key_file is not None
    text = key_file.read_text().strip()
    if text.startswith("{"):
        password = os.environ.get(password_env)
        if password is None:
            password = typer.prompt(f"password for {key_file}", hide_input=True)
        try:
            key = Account.decrypt(json.loads(text), password)
        except ValueError as exc:
            fail(f"cannot decrypt {key_file}: {exc}")
        account: LocalAccount = Account.from_key(key)
        return account
    return _from_hex(text, str(key_file))


def _from_hex(value: str, where: str) -> LocalAccount:
    try:
        account: LocalAccount = Account.from_key(value)
    except (ValueError, TypeError):
        fail(f"{where} does not hold a valid hex private key")
    return account

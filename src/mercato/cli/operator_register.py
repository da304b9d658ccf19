"""``mercato operator register``: put this operator on the market — stake, endpoint,
signer and an offer (model and prices) in the on-chain registry. Idempotent: a second
run updates the endpoint and prices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.common import console, fail, friendly_errors


@friendly_errors
def register(
    price_in: Annotated[int, typer.Option(help="Base units of the token per 1M prompt tokens.")],
    price_out: Annotated[
        int, typer.Option(help="Base units of the token per 1M completion tokens.")
    ],
    endpoint: Annotated[
        str | None, typer.Option(help="Public base URL (default: http://<host>:<port>).")
    ] = None,
    slug: Annotated[str | None, typer.Option(help="Unique name (default: op-<address>).")] = None,
    model: Annotated[str | None, typer.Option(help="Model id (default: the backend's).")] = None,
    max_context: Annotated[int, typer.Option(help="Context length offered.")] = 2048,
    config: Annotated[Path | None, typer.Option(help="TOML settings ([operator]).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="The operator's keys and database.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Chain deployment manifest.")] = None,
    devnet_fund: Annotated[
        bool, typer.Option(help="Local devnet only: give the operator gas and its stake first.")
    ] = False,
) -> None:
    """Register this operator's signing key on-chain with an offer."""
    import asyncio

    from eth_account import Account

    from mercato.config import load_settings
    from mercato.crypto.keystore import KeystoreError
    from mercato.operator.app import open_keystore
    from mercato.operator.register import Offer
    from mercato.operator.settings import OperatorSettings

    settings = load_settings(OperatorSettings, config, data_dir=data_dir)
    try:
        keys = open_keystore(settings)
    except KeystoreError as exc:
        fail(f"{exc} (keystore {settings.resolved_keystore_dir()})")
    account = Account.from_key(keys.ecdsa.secret)
    offer = Offer(model or settings.backend.llama_cpp.model_id, price_in, price_out, max_context)
    url = endpoint or f"http://{settings.host}:{settings.port}"
    name = slug or f"op-{account.address[2:10].lower()}"
    path = manifest or settings.payments.manifest
    ids = asyncio.run(_register(path, account, name, url, offer, devnet_fund))
    console.print(
        f"operator [bold]{account.address}[/] registered as [bold]{name}[/] at {url}; "
        f"offer {offer.model} in={price_in} out={price_out} per 1M "
        f"(service {', '.join(map(str, ids))})"
    )


async def _register(
    manifest_path: Path | None, account: object, slug: str, url: str, offer: object, fund: bool
) -> list[int]:
    from mercato.chain.client import ChainClient
    from mercato.chain.manifest import Manifest
    from mercato.operator.register import Offer, register_operator

    assert isinstance(offer, Offer)
    async with ChainClient(Manifest.load(manifest_path), account=account) as chain:  # type: ignore[arg-type]
        await chain.check()
        address = chain.address
        assert address is not None
        if fund:
            from mercato.chain.anvil import dev_account
            from mercato.chain.devnet import set_balance

            await set_balance(chain.w3, address, 10**20)
            stake = await chain.registry.min_stake()
            if await chain.token.balance_of(address) < stake:
                await chain.for_account(dev_account(0)).token.mint(address, stake)
        if await chain.w3.eth.get_balance(address) == 0:  # type: ignore[arg-type]
            fail(f"insufficient funds: {address} has no ETH for gas (fund it, or --devnet-fund)")
        stake = await chain.registry.min_stake()
        current = await chain.registry.operators(address)
        if not current.registered and await chain.token.balance_of(address) < stake:
            fail(f"insufficient funds: {address} needs {stake} token base units of stake")
        return await register_operator(chain, slug=slug, endpoint=url, offers=[offer])

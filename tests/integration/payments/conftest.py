"""A paid operator on a real anvil: registered on-chain with prices, serving the real
small model, settling every second."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.client import ChainClient
from mercato.chain.devnet import set_balance
from mercato.chain.manifest import Manifest
from mercato.client.payments import EscrowRef
from mercato.crypto.keystore import load_or_create, resolve_password
from mercato.operator.register import Offer, register_operator
from mercato.payments.pricing import Price
from tests.helpers import free_port
from tests.integration.chain.conftest import (
    anvil,
    anvil_binary,
    chain,
    faucet,
    manifest,
    new_account,
)
from tests.integration.conftest import MODEL, OperatorProcess, launch_operator

__all__ = ["anvil", "anvil_binary", "chain", "faucet", "manifest", "new_account"]

PRICE = Price(input_per_m=2_000_000, output_per_m=8_000_000)


@dataclass
class PaidOperator:
    process: OperatorProcess
    address: str
    data_dir: Path
    manifest_path: Path
    ref: EscrowRef

    @property
    def url(self) -> str:
        return self.process.url


def paid_env(manifest_path: Path, **extra: str) -> dict[str, str]:
    """A paid operator's settings. Claims do not wait for spend settlements (the
    default waits 300 s): tests that pay with bare authorizations wait for single claims;
    those that test settlements set MERCATO_OPERATOR__PAYMENTS__SETTLEMENT_WAIT_S."""
    return {
        "MERCATO_OPERATOR__PAYMENTS__MODE": "paid",
        "MERCATO_OPERATOR__PAYMENTS__MANIFEST": str(manifest_path),
        "MERCATO_OPERATOR__PAYMENTS__SETTLE_INTERVAL_S": "1",
        "MERCATO_OPERATOR__PAYMENTS__BALANCE_REFRESH_S": "0.5",
        "MERCATO_OPERATOR__PAYMENTS__SETTLEMENT_WAIT_S": "0",
        **extra,
    }


async def prepare_operator(
    chain: ChainClient,
    faucet: ChainClient,
    manifest: Manifest,
    data_dir: Path,
    slug: str,
    port: int,
) -> str:
    """Create the operator's keystore, fund it, register it with its offer."""
    keys_dir = data_dir / "keys"
    keys = load_or_create(keys_dir, resolve_password(keys_dir, None, None), fast_kdf=True)
    operator = Account.from_key(keys.ecdsa.secret)
    await set_balance(chain.w3, operator.address, 10**20)
    await faucet.token.mint(operator.address, await chain.registry.min_stake())
    await register_operator(
        chain.for_account(operator),
        slug=slug,
        endpoint=f"http://127.0.0.1:{port}",
        offers=[Offer(MODEL, PRICE.input_per_m, PRICE.output_per_m)],
    )
    return str(operator.address)


@pytest.fixture(scope="module")
async def paid_operator(
    chain: ChainClient,
    faucet: ChainClient,
    manifest: Manifest,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PaidOperator]:
    root = tmp_path_factory.mktemp("paid")
    manifest_path = root / "manifest.json"
    manifest.save(manifest_path)
    port = free_port()
    address = await prepare_operator(chain, faucet, manifest, root / "op", f"paid-{port}", port)
    process = launch_operator(root / "op", port, **paid_env(manifest_path))
    ref = EscrowRef(manifest.chain_id, manifest.addresses.escrow)
    yield PaidOperator(process, address, root / "op", manifest_path, ref)
    process.stop()


@pytest.fixture
async def payer(new_account, chain: ChainClient) -> LocalAccount:  # type: ignore[no-untyped-def]
    """A payer with 1,000 mUSD in its wallet and 100 mUSD deposited in the escrow."""
    account: LocalAccount = await new_account(1000)
    me = chain.for_account(account)
    await me.token.approve(chain.escrow.address, 10**12)
    await me.escrow.deposit(100 * 10**6)
    return account

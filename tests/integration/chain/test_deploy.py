"""Deployment to anvil, the manifest it writes, and the client built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercato.chain.anvil import dev_account
from mercato.chain.client import ChainClient
from mercato.chain.errors import ManifestError
from mercato.chain.manifest import Manifest, default_manifest_path
from mercato.chain.registry import Blueprint

from .conftest import CONFIG

pytestmark = pytest.mark.chain


async def test_manifest_describes_the_deployment(manifest: Manifest, chain: ChainClient) -> None:
    assert manifest.chain_id == 31337
    assert manifest.token_decimals == 6 and manifest.token_symbol == "mUSD"
    assert manifest.deployer == dev_account(0).address
    assert manifest.parameters.faucet == manifest.parameters.arbiter == manifest.deployer
    assert manifest.parameters.challenge_period == CONFIG.challenge_period
    assert set(manifest.abis) == {"token", "registry", "escrow"}
    assert manifest.blueprints == {"chat": 1}
    assert 0 < manifest.deployment_block <= await chain.block_number()
    await chain.check()

    assert await chain.token.name() == "Mercato USD"
    assert await chain.token.is_minter(manifest.deployer)
    assert await chain.registry.token() == manifest.addresses.token
    assert await chain.registry.min_stake() == manifest.parameters.min_stake
    assert await chain.registry.arbiter() == manifest.deployer
    assert await chain.escrow.token() == manifest.addresses.token
    assert await chain.escrow.withdraw_delay() == CONFIG.withdraw_delay
    assert await chain.registry.blueprints(1) == Blueprint(1, "chat", "chat")
    domain = await chain.escrow.eip712_domain()
    assert (domain.name, domain.chain_id) == ("Mercato PaymentEscrow", 31337)


async def test_demo_accounts_are_funded(manifest: Manifest, chain: ChainClient) -> None:
    assert manifest.funded_accounts == [dev_account(i).address for i in range(1, 10)]
    for address in manifest.funded_accounts:  # the tests never spend from dev accounts
        assert await chain.token.balance_of(address) == 100_000 * 10**6
        assert await chain.w3.eth.get_balance(chain.w3.to_checksum_address(address)) > 0


def test_manifest_round_trip(manifest: Manifest, tmp_path: Path) -> None:
    path = manifest.save(tmp_path / "sub" / "manifest.json")
    assert Manifest.load(path) == manifest


def test_manifest_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCATO_HOME", str(tmp_path / "home"))
    assert default_manifest_path() == tmp_path / "home" / "devnet" / "manifest.json"
    with pytest.raises(ManifestError, match="mercato chain up"):
        Manifest.load()
    bad = tmp_path / "bad.json"
    bad.write_text('{"chain_id": 1}')
    with pytest.raises(ManifestError, match="invalid manifest"):
        Manifest.load(bad)


async def test_client_refuses_another_chain(manifest: Manifest) -> None:
    other = manifest.model_copy(update={"chain_id": 1})
    async with ChainClient(other) as client:
        with pytest.raises(ManifestError, match="is chain 31337"):
            await client.check()

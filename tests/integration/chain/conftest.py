"""One anvil for the whole test session on a free port of 127.0.0.1, with Mercato's
contracts deployed once. Tests share the chain: each uses its own accounts and slugs,
and time only moves forward."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.anvil import Anvil, AnvilConfig, dev_account, find_anvil
from mercato.chain.client import ChainClient
from mercato.chain.deploy import DeployConfig, deploy_devnet
from mercato.chain.devnet import set_balance
from mercato.chain.errors import AnvilNotFound
from mercato.chain.manifest import Manifest

# Short delays keep time travel small; each is still checked before and after.
CONFIG = DeployConfig(unstake_delay=600, withdraw_delay=300, challenge_period=120)


@pytest.fixture(scope="session")
def anvil_binary() -> Path:
    try:
        return find_anvil()
    except AnvilNotFound as exc:
        pytest.skip(f"anvil is not installed: {exc}")


@pytest.fixture(scope="session")
async def anvil(anvil_binary: Path) -> AsyncIterator[Anvil]:
    async with Anvil(AnvilConfig(binary=str(anvil_binary))) as node:
        yield node


@pytest.fixture(scope="session")
def vyper_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vyper-cache")


@pytest.fixture(scope="session")
async def manifest(anvil: Anvil, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    path = tmp_path_factory.mktemp("devnet") / "manifest.json"
    return await deploy_devnet(anvil.rpc_url, config=CONFIG, manifest_path=path)


@pytest.fixture(scope="session")
async def chain(manifest: Manifest) -> AsyncIterator[ChainClient]:
    """A read-only client; ``chain.for_account(acct)`` sends from ``acct``."""
    async with ChainClient(manifest) as client:
        yield client


NewAccount = Callable[..., Awaitable[LocalAccount]]


@pytest.fixture(scope="session")
def faucet(chain: ChainClient) -> ChainClient:
    """Dev account 0: deployer, token faucet, registry owner and arbiter."""
    return chain.for_account(dev_account(0))


@pytest.fixture
def new_account(chain: ChainClient, faucet: ChainClient, manifest: Manifest) -> NewAccount:
    """A fresh account with ETH for gas and ``musd`` whole mUSD from the faucet."""

    async def make(musd: int = 0) -> LocalAccount:
        account: LocalAccount = Account.create()
        await set_balance(chain.w3, account.address, 10**20)
        if musd:
            await faucet.token.mint(account.address, musd * 10**manifest.token_decimals)
        return account

    return make

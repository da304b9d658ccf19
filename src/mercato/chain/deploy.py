"""Deploy PaymentToken, OperatorRegistry and PaymentEscrow and describe them in a manifest.

:func:`deploy_contracts` works on any EVM chain; :func:`deploy_devnet` also funds
anvil's dev accounts with mUSD through the faucet (dev account 0, the deployer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3

from mercato.chain.anvil import dev_account, dev_private_key
from mercato.chain.compile import CORE_CONTRACTS, Artifact, load_artifacts
from mercato.chain.contract import TxResult
from mercato.chain.errors import ChainError
from mercato.chain.manifest import ContractAddresses, DeploymentParameters, Manifest
from mercato.chain.registry import OperatorRegistry
from mercato.chain.token import PaymentToken
from mercato.chain.tx import TxSender, translate_errors

MUSD = 10**6  # base units per mUSD (6 decimals)
DEFAULT_BLUEPRINTS: tuple[tuple[str, str], ...] = (("chat", "chat"),)


@dataclass(frozen=True)
class DeployConfig:
    """Constructor arguments and set-up; addresses default to the deployer."""

    min_stake: int = 100 * MUSD
    unstake_delay: int = 7 * 24 * 3600
    withdraw_delay: int = 24 * 3600
    challenge_period: int = 3600
    arbiter: str | None = None
    faucet: str | None = None
    blueprints: tuple[tuple[str, str], ...] = DEFAULT_BLUEPRINTS  # (name, kind)
    contracts_dir: Path | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class DevnetFunding:
    """Devnet demo accounts: anvil's dev accounts ``1..accounts`` get ``amount`` mUSD."""

    accounts: int = 9
    amount: int = 100_000 * MUSD
    extra: Sequence[str] = field(default_factory=tuple)  # more addresses to fund


async def deploy_contracts(
    w3: AsyncWeb3[Any],
    deployer: LocalAccount,
    config: DeployConfig | None = None,
    *,
    rpc_url: str,
    artifacts: dict[str, Artifact] | None = None,
) -> Manifest:
    """Deploy the three contracts from ``deployer`` and create the default blueprints."""
    config = config or DeployConfig()
    if artifacts is None:
        artifacts = await asyncio.to_thread(
            load_artifacts,
            CORE_CONTRACTS,
            contracts_dir=config.contracts_dir,
            cache_dir=config.cache_dir,
        )
    sender = TxSender(w3, deployer)
    arbiter = config.arbiter or deployer.address
    faucet = config.faucet or deployer.address

    token_address, deployment_block = await _deploy(w3, sender, artifacts["PaymentToken"], faucet)
    registry_address, _ = await _deploy(
        w3, sender, artifacts["OperatorRegistry"],
        token_address, config.min_stake, config.unstake_delay, arbiter,
    )  # fmt: skip
    escrow_address, _ = await _deploy(
        w3, sender, artifacts["PaymentEscrow"],
        token_address, config.withdraw_delay, config.challenge_period,
    )  # fmt: skip

    token = PaymentToken(w3, token_address, artifacts["PaymentToken"].abi)
    registry = OperatorRegistry(
        w3, registry_address, artifacts["OperatorRegistry"].abi, sender=sender
    )
    blueprints: dict[str, int] = {}
    for name, kind in config.blueprints:
        blueprints[name] = await registry.create_blueprint_id(name, kind)

    with translate_errors("eth_chainId"):
        chain_id = int(await w3.eth.chain_id)
    return Manifest(
        chain_id=chain_id,
        rpc_url=rpc_url,
        deployment_block=deployment_block,
        addresses=ContractAddresses(
            token=token_address, registry=registry_address, escrow=escrow_address
        ),
        abis={
            "token": artifacts["PaymentToken"].abi,
            "registry": artifacts["OperatorRegistry"].abi,
            "escrow": artifacts["PaymentEscrow"].abi,
        },
        token_decimals=await token.decimals(),
        token_symbol=await token.symbol(),
        deployer=deployer.address,
        parameters=DeploymentParameters(
            min_stake=config.min_stake,
            unstake_delay=config.unstake_delay,
            withdraw_delay=config.withdraw_delay,
            challenge_period=config.challenge_period,
            arbiter=arbiter,
            faucet=faucet,
        ),
        blueprints=blueprints,
        compiler=artifacts["PaymentEscrow"].compiler,
    )


async def _deploy(
    w3: AsyncWeb3[Any], sender: TxSender, artifact: Artifact, *args: Any
) -> tuple[str, int]:
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(*args).data_in_transaction
    receipt = await sender.send(None, data, label=f"deploy {artifact.name}")
    address = receipt.get("contractAddress")
    if not address:
        raise ChainError(f"deploying {artifact.name} created no contract")
    return str(address), int(receipt["blockNumber"])


async def fund_accounts(
    w3: AsyncWeb3[Any],
    manifest: Manifest,
    faucet: LocalAccount,
    recipients: Sequence[str],
    amount: int,
) -> list[TxResult]:
    """Mint ``amount`` mUSD to each recipient from the faucet (sent concurrently)."""
    token = PaymentToken(
        w3, manifest.addresses.token, manifest.abis["token"], sender=TxSender(w3, faucet)
    )
    return list(await asyncio.gather(*(token.mint(to, amount) for to in recipients)))


async def deploy_devnet(
    rpc_url: str,
    deployer_key: str | None = None,
    *,
    config: DeployConfig | None = None,
    funding: DevnetFunding | None = None,
    manifest_path: Path | None = None,
    w3: AsyncWeb3[Any] | None = None,
) -> Manifest:
    """Deploy to a local devnet (anvil), fund demo accounts and, when ``manifest_path``
    is given, write the manifest there. ``deployer_key`` defaults to dev account 0,
    which is also the faucet."""
    from mercato.chain.contract import make_web3

    deployer: LocalAccount = Account.from_key(deployer_key or dev_private_key(0))
    funding = funding or DevnetFunding()
    own = w3 is None
    w3 = w3 or make_web3(rpc_url)
    try:
        manifest = await deploy_contracts(w3, deployer, config, rpc_url=rpc_url)
        recipients = [dev_account(i).address for i in range(1, funding.accounts + 1)]
        recipients += [w3.to_checksum_address(a) for a in funding.extra]
        if recipients and funding.amount > 0:
            await fund_accounts(w3, manifest, deployer, recipients, funding.amount)
        manifest = manifest.model_copy(update={"funded_accounts": recipients})
    finally:
        if own:
            await w3.provider.disconnect()
    if manifest_path is not None:
        manifest.save(manifest_path)
    return manifest

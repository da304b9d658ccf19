"""OperatorRegistry through the typed client on anvil: registration, services, the event
log a router syncs from, stake life cycle, slashing and revert reasons."""

from __future__ import annotations

import pytest
from eth_account import Account

from mercato.chain.client import ChainClient
from mercato.chain.devnet import increase_time
from mercato.chain.errors import ContractReverted
from mercato.chain.manifest import Manifest
from mercato.chain.registry import OperatorStatus, ServiceFlags
from mercato.chain.registry_events import (
    EndpointUpdated,
    Heartbeat,
    OperatorPaused,
    OperatorRegistered,
    OperatorResumed,
    ServiceActiveSet,
    ServiceAdded,
    ServiceUpdated,
    SignersUpdated,
    Slashed,
    StakeAdded,
    StakeWithdrawn,
    UnstakeRequested,
)

from .conftest import CONFIG, NewAccount

pytestmark = pytest.mark.chain

MUSD = 10**6


async def registered(
    chain: ChainClient, new_account: NewAccount, manifest: Manifest, slug: str
) -> tuple[ChainClient, str]:
    """A fresh operator registered with the minimum stake; its client and signer."""
    account = await new_account(1_000)
    op = chain.for_account(account)
    signer = Account.create().address
    stake = manifest.parameters.min_stake
    await op.token.approve(op.registry.address, stake)
    await op.registry.register(slug, f"https://{slug}.example", [signer], "none", stake)
    return op, signer


async def test_register_add_service_and_sync_events(
    chain: ChainClient, new_account: NewAccount, manifest: Manifest
) -> None:
    start = await chain.block_number() + 1
    op, signer = await registered(chain, new_account, manifest, "alpha")
    assert op.address is not None
    chat = manifest.blueprints["chat"]
    flags = ServiceFlags.TEE | ServiceFlags.ZERO_DATA_RETENTION
    service_id = await op.registry.add_service_id(chat, "smollm2-135m", 100_000, 200_000,
                                                   8192, flags)  # fmt: skip
    await op.registry.update_service(service_id, 90_000, 180_000, 4096, flags)
    await op.registry.heartbeat()
    await op.registry.update_endpoint("https://alpha-2.example")
    signers = [signer, Account.create().address]
    await op.registry.set_signers(signers)
    await op.registry.pause()
    await op.registry.resume()
    await op.token.approve(op.registry.address, 5 * MUSD)
    await op.registry.add_stake(5 * MUSD)

    record = await chain.registry.operators(op.address)
    assert record.status is OperatorStatus.ACTIVE
    assert (record.slug, record.endpoint, record.attestation_kind) == (
        "alpha", "https://alpha-2.example", "none")  # fmt: skip
    assert record.stake == manifest.parameters.min_stake + 5 * MUSD
    assert await chain.registry.operator_signers(op.address) == signers
    assert await chain.registry.is_signer(op.address, signers[1])
    assert await chain.registry.slug_owner("alpha") == op.address
    assert await chain.registry.slug_owner("nobody") is None
    assert await chain.registry.operator_services(op.address) == [service_id]
    service = await chain.registry.services(service_id)
    assert (service.model, service.price_in_per_m, service.max_context) == (
        "smollm2-135m", 90_000, 4096)  # fmt: skip
    assert service.flags == flags and service.active and service.blueprint_id == chat

    # What a router sees, in (block, log index) order, with tiny chunks to exercise paging.
    events = await chain.fetch_registry_events(start, chunk_size=2)
    mine = [e for e in events if getattr(e, "operator", None) == op.address
            or getattr(e, "service_id", None) == service_id]  # fmt: skip
    assert [type(e) for e in mine] == [
        OperatorRegistered, ServiceAdded, ServiceUpdated, Heartbeat, EndpointUpdated,
        SignersUpdated, OperatorPaused, OperatorResumed, StakeAdded,
    ]  # fmt: skip
    assert [e.position for e in events] == sorted(e.position for e in events)
    reg = mine[0]
    assert isinstance(reg, OperatorRegistered)
    assert (reg.slug, reg.endpoint, reg.signers, reg.attestation_kind, reg.stake) == (
        "alpha",
        "https://alpha.example",
        (signer,),
        "none",
        manifest.parameters.min_stake,
    )
    added = mine[1]
    assert isinstance(added, ServiceAdded)
    assert (added.service_id, added.operator, added.blueprint_id, added.model) == (
        service_id, op.address, chat, "smollm2-135m")  # fmt: skip
    assert (added.price_in_per_m, added.price_out_per_m, added.flags) == (100_000, 200_000, 3)
    assert isinstance(mine[5], SignersUpdated) and mine[5].signers == tuple(signers)
    assert await chain.fetch_registry_events(start, chunk_size=2000) == events


async def test_revert_reasons_are_domain_errors(
    chain: ChainClient, new_account: NewAccount, manifest: Manifest
) -> None:
    op, signer = await registered(chain, new_account, manifest, "bravo")
    rival = chain.for_account(await new_account(1_000))
    stake = manifest.parameters.min_stake
    await rival.token.approve(rival.registry.address, 2 * stake)
    with pytest.raises(ContractReverted) as info:
        await rival.registry.register("bravo", "https://x", [signer], "none", stake)
    assert info.value.reason == "registry: slug taken"
    assert info.value.function == "register"
    with pytest.raises(ContractReverted, match="stake below minimum"):
        await rival.registry.register("charlie", "https://x", [signer], "none", stake - 1)
    with pytest.raises(ContractReverted, match="duplicate signer"):
        await rival.registry.register("charlie", "https://x", [signer, signer], "none", stake)
    with pytest.raises(ContractReverted, match="unknown blueprint"):
        await op.registry.add_service(999, "m", 1, 1, 1)
    with pytest.raises(ContractReverted, match="not the arbiter"):
        await rival.registry.slash(op.address or "", 1, "no")
    with pytest.raises(ContractReverted, match="caller is not the owner"):
        await rival.registry.create_blueprint("x", "y")
    with pytest.raises(ContractReverted, match="not paused"):
        await op.registry.resume()


async def test_unstake_after_delay_and_slash(
    chain: ChainClient, faucet: ChainClient, new_account: NewAccount, manifest: Manifest
) -> None:
    op, _ = await registered(chain, new_account, manifest, "delta")
    assert op.address is not None
    service_id = await op.registry.add_service_id(manifest.blueprints["chat"], "m", 1, 2, 512)
    arbiter_before = await chain.token.balance_of(faucet.address or "")
    slashed = await faucet.registry.slash(op.address, 7 * MUSD, "served garbage")
    assert slashed.event(Slashed).reason == "served garbage"
    assert await chain.token.balance_of(faucet.address or "") == arbiter_before + 7 * MUSD

    requested = (await op.registry.request_unstake()).event(UnstakeRequested)
    record = await chain.registry.operators(op.address)
    assert record.status is OperatorStatus.UNSTAKING
    assert record.unstake_available_at == requested.available_at
    with pytest.raises(ContractReverted, match="unstake delay running"):
        await op.registry.withdraw_stake()
    with pytest.raises(ContractReverted, match="unstaking"):
        await op.registry.heartbeat()

    await increase_time(chain.w3, CONFIG.unstake_delay)
    balance = await chain.token.balance_of(op.address)
    result = await op.registry.withdraw_stake()
    remaining = manifest.parameters.min_stake - 7 * MUSD
    assert result.event(StakeWithdrawn).amount == remaining
    assert result.event(ServiceActiveSet).active is False
    assert await chain.token.balance_of(op.address) == balance + remaining
    assert not (await chain.registry.operators(op.address)).registered
    assert await chain.registry.slug_owner("delta") is None
    assert not (await chain.registry.services(service_id)).active

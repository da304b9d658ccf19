"""Discovery on anvil: operators registered through the chain client become offers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from eth_account import Account

from mercato.chain.client import ChainClient
from mercato.chain.manifest import Manifest
from mercato.chain.registry import ServiceFlags
from mercato.router.discovery import Discovery
from mercato.router.selection import Candidate, Offer, Route, rank
from mercato.router.settings import DiscoverySettings
from mercato.router.stats import StatsBoard
from mercato.storage.db import make_engine, migrate
from tests.integration.chain.conftest import NewAccount

pytestmark = pytest.mark.chain


async def register(
    chain: ChainClient,
    new_account: NewAccount,
    manifest: Manifest,
    slug: str,
    endpoint: str,
    price: int,
    flags: int = 0,
    kind: str = "none",
    model: str = "disc-model",
) -> tuple[ChainClient, str, int]:
    account = await new_account(1_000)
    op = chain.for_account(account)
    signer = Account.create().address
    stake = manifest.parameters.min_stake
    await op.token.approve(op.registry.address, stake)
    await op.registry.register(slug, endpoint, [signer], kind, stake)
    sid = await op.registry.add_service_id(
        manifest.blueprints["chat"], model, price, 2 * price, 4096, flags
    )
    return op, signer, sid


async def test_sync_builds_offers_and_follows_changes(
    chain: ChainClient, new_account: NewAccount, manifest: Manifest, tmp_path: Path, db_url: str
) -> None:
    tag = uuid.uuid4().hex[:6]  # the chain is shared by the SQLite and PostgreSQL runs
    model = f"disc-{tag}"

    async def reg(slug: str, endpoint: str, price: int, flags: int = 0, kind: str = "none"):  # type: ignore[no-untyped-def]
        return await register(
            chain, new_account, manifest, f"{slug}-{tag}", endpoint, price, flags, kind, model
        )

    a, _, ida = await reg("disc-a", "http://127.0.0.1:1/", 300)
    b, sb, idb = await reg(
        "disc-b",
        "http://127.0.0.1:2/v1",
        100,
        int(ServiceFlags.TEE | ServiceFlags.ZERO_DATA_RETENTION),
        "dstack",
    )
    c, _, idc = await reg("disc-c", "http://127.0.0.1:3", 200, int(ServiceFlags.TEE))
    # (disc-c claims TEE without an attestation kind)
    engine = make_engine(db_url)
    migrate(engine)
    seen: list[list[Offer]] = []
    settings = DiscoverySettings(probe_interval_s=3600)
    disc = Discovery(settings, engine, StatsBoard(), seen.append, ChainClient(manifest))
    try:
        assert await disc.sync_once() > 0
        offers = {o.name.removesuffix(f"-{tag}"): o for o in seen[-1] if o.model == model}
        assert set(offers) == {"disc-a", "disc-b", "disc-c"}
        ob = offers["disc-b"]
        assert ob.base_url == "http://127.0.0.1:2/v1" and offers["disc-a"].base_url.endswith(
            ":1/v1"
        )
        assert (ob.price_in_per_m, ob.price_out_per_m, ob.service_id) == (100, 200, idb)
        assert ob.signers == (sb,) and ob.upstream == b.address and ob.blueprint_id == 1
        assert ob.tee and ob.zdr and not ob.compliance_verified  # self-declared
        assert not offers["disc-c"].tee  # a TEE flag without attestation is not believed
        route = Route(model, "cheapest")
        ranked = rank([Candidate(o) for o in offers.values()], route)
        assert [x.offer.name for x in ranked] == [f"disc-{n}-{tag}" for n in "bca"]

        # changes on chain, then an incremental sync
        new_signer = Account.create().address
        await a.registry.update_service(ida, 50, 60, 4096, 0)
        await b.registry.pause()
        await c.registry.set_signers([new_signer])
        await c.registry.update_endpoint("http://127.0.0.1:4")
        before = disc.sync.last_block
        assert await disc.sync_once() >= 4
        assert disc.sync.last_block is not None and before is not None
        assert disc.sync.last_block > before
        offers = {o.name.removesuffix(f"-{tag}"): o for o in seen[-1] if o.model == model}
        assert set(offers) == {"disc-a", "disc-c"}  # paused: gone
        assert (offers["disc-a"].price_in_per_m, offers["disc-a"].price_out_per_m) == (50, 60)
        assert offers["disc-c"].signers == (new_signer,)
        assert offers["disc-c"].base_url == "http://127.0.0.1:4/v1"
        await b.registry.resume()
        await c.registry.set_service_active(idc, False)
        await disc.sync_once()
        offers = {o.name.removesuffix(f"-{tag}"): o for o in seen[-1] if o.model == model}
        assert set(offers) == {"disc-a", "disc-b"}
        assert await disc.sync_once() == 0  # nothing new
    finally:
        await disc.close()
    # a restart serves what the database knows before talking to the chain
    again: list[list[Offer]] = []
    disc2 = Discovery(settings, engine, StatsBoard(), again.append, None)
    disc2.sync.source = disc.sync.source
    await disc2.start()
    await disc2.close()
    assert {o.name.removesuffix(f"-{tag}") for o in again[0] if o.model == model} == {
        "disc-a",
        "disc-b",
    }
    engine.dispose()

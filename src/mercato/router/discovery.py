"""Discovery: the registry's event log replayed into the database, and health probes.

``sync_once`` fetches the registry's events since the last synced block (the
deployment block the first time), applies them in (block, log index) order to the
router's mirror tables in one transaction together with the new sync height, then
rebuilds the offer table that selection reads. ``run`` repeats it every
``interval_s``. Probes ``GET <endpoint>/health`` of every operator every
``probe_interval_s``; the answers feed the upstream's stats and breaker, and what the
operator says about itself is stored apart from the on-chain facts.

Reorgs are not undone: set ``confirmations`` to sync only blocks that deep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mercato.chain.client import ChainClient
from mercato.chain.registry import OperatorStatus, ServiceFlags
from mercato.chain.registry_events import (
    AttestationKindUpdated,
    BlueprintCreated,
    EndpointUpdated,
    Heartbeat,
    OperatorPaused,
    OperatorRegistered,
    OperatorResumed,
    RegistryEvent,
    ServiceActiveSet,
    ServiceAdded,
    ServiceUpdated,
    SignersUpdated,
    Slashed,
    StakeAdded,
    StakeWithdrawn,
    UnstakeRequested,
)
from mercato.router.selection import Offer
from mercato.router.settings import DiscoverySettings
from mercato.router.stats import StatsBoard
from mercato.router.table import normalize_base_url
from mercato.storage.router_models import (
    RouterBlueprint,
    RouterChainOperator,
    RouterOperatorReport,
    RouterService,
    RouterSyncState,
)

log = logging.getLogger(__name__)


def apply_events(session: Session, events: Iterable[RegistryEvent]) -> int:
    """Apply registry events, in order, to the mirror tables; the number applied."""
    n = 0

    def operator(address: str) -> RouterChainOperator | None:
        return session.get(RouterChainOperator, address)

    for ev in events:
        n += 1
        block = ev.block_number
        if isinstance(ev, BlueprintCreated):
            session.merge(RouterBlueprint(blueprint_id=ev.blueprint_id, name=ev.name, kind=ev.kind))
        elif isinstance(ev, OperatorRegistered):
            session.merge(
                RouterChainOperator(
                    address=ev.operator,
                    slug=ev.slug,
                    stake=str(ev.stake),
                    status=int(OperatorStatus.ACTIVE),
                    signers=json.dumps(list(ev.signers)),
                    attestation_kind=ev.attestation_kind,
                    registered_block=block,
                    last_heartbeat=0,
                    slashed="0",
                    updated_block=block,
                )
            )
            _set_endpoint(session, ev.operator, ev.endpoint)
        elif isinstance(ev, ServiceAdded):
            session.merge(
                RouterService(
                    service_id=ev.service_id,
                    operator=ev.operator,
                    blueprint_id=ev.blueprint_id,
                    model=ev.model,
                    price_in_per_m=str(ev.price_in_per_m),
                    price_out_per_m=str(ev.price_out_per_m),
                    max_context=ev.max_context,
                    flags=ev.flags,
                    active=True,
                )
            )
        elif isinstance(ev, ServiceUpdated | ServiceActiveSet):
            svc = session.get(RouterService, ev.service_id)
            if svc is None:
                continue
            if isinstance(ev, ServiceUpdated):
                svc.price_in_per_m, svc.price_out_per_m = (
                    str(ev.price_in_per_m),
                    str(ev.price_out_per_m),
                )
                svc.max_context, svc.flags = ev.max_context, ev.flags
            else:
                svc.active = ev.active
        elif isinstance(ev, EndpointUpdated):
            _set_endpoint(session, ev.operator, ev.endpoint)
        else:
            op = operator(getattr(ev, "operator", ""))
            if op is None:
                continue
            op.updated_block = block
            if isinstance(ev, SignersUpdated):
                op.signers = json.dumps(list(ev.signers))
            elif isinstance(ev, AttestationKindUpdated):
                op.attestation_kind = ev.kind
            elif isinstance(ev, OperatorPaused):
                op.status = int(OperatorStatus.PAUSED)
            elif isinstance(ev, OperatorResumed):
                op.status = int(OperatorStatus.ACTIVE)
            elif isinstance(ev, Heartbeat):
                op.last_heartbeat = ev.timestamp
            elif isinstance(ev, StakeAdded):
                op.stake = str(ev.total)
            elif isinstance(ev, UnstakeRequested):
                op.status = int(OperatorStatus.UNSTAKING)
            elif isinstance(ev, StakeWithdrawn):
                op.status, op.stake, op.signers = int(OperatorStatus.NONE), "0", "[]"
            elif isinstance(ev, Slashed):
                op.stake = str(int(op.stake) - ev.amount)
                op.slashed = str(int(op.slashed) + ev.amount)
        session.flush()
    return n


def _set_endpoint(session: Session, address: str, endpoint: str) -> None:
    report = session.get(RouterOperatorReport, address)
    if report is None:
        session.add(RouterOperatorReport(address=address, endpoint=endpoint, probe_ok=False))
    else:
        report.endpoint = endpoint


def load_offers(session: Session) -> list[Offer]:
    """Offers of active operators' active services, from the mirror tables."""
    rows = session.execute(
        select(RouterService, RouterChainOperator, RouterOperatorReport)
        .join(RouterChainOperator, RouterChainOperator.address == RouterService.operator)
        .join(RouterOperatorReport, RouterOperatorReport.address == RouterService.operator)
        .where(RouterService.active.is_(True))
        .where(RouterChainOperator.status == int(OperatorStatus.ACTIVE))
        .order_by(RouterService.service_id)
    )
    offers = []
    for svc, op, report in rows:
        flags = ServiceFlags(int(svc.flags) & 7)
        offers.append(
            Offer(
                kind="operator",
                upstream=op.address,
                name=op.slug,
                model=svc.model,
                base_url=normalize_base_url(report.endpoint),
                price_in_per_m=int(svc.price_in_per_m),
                price_out_per_m=int(svc.price_out_per_m),
                service_id=int(svc.service_id),
                blueprint_id=int(svc.blueprint_id),
                tee=ServiceFlags.TEE in flags and op.attestation_kind != "none",
                zdr=ServiceFlags.ZERO_DATA_RETENTION in flags,
                no_train=ServiceFlags.NO_TRAINING in flags,
                compliance_verified=False,  # self-declared by the operator
                signers=tuple(json.loads(op.signers)),
            )
        )
    return offers


@dataclass
class SyncStatus:
    source: str
    last_block: int | None = None
    last_sync: float | None = None
    last_error: str | None = None
    events: int = 0


class Discovery:
    def __init__(
        self,
        settings: DiscoverySettings,
        engine: Engine,
        stats: StatsBoard,
        on_offers: Callable[[list[Offer]], None],
        chain: ChainClient | None,
        *,
        extra_probe_targets: Callable[[], list[Offer]] | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._stats = stats
        self._on_offers = on_offers
        self._chain = chain
        self._extra = extra_probe_targets or (lambda: [])
        self._offers: list[Offer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()
        source = "none"
        if chain is not None:
            source = f"{chain.manifest.chain_id}:{chain.manifest.addresses.registry}"
        self.sync = SyncStatus(source)

    def status(self) -> dict[str, Any]:
        s = self.sync
        return {
            "source": s.source,
            "last_block": s.last_block,
            "last_sync": s.last_sync,
            "last_error": s.last_error,
            "events": s.events,
        }

    async def start(self) -> None:
        """Load what the database knows, sync once, then keep syncing and probing."""
        self._http = httpx.AsyncClient(timeout=self.settings.probe_timeout_s)
        self._offers = await asyncio.to_thread(self._load)
        self._on_offers(self._offers)
        if self._chain is not None:
            try:
                await self.sync_once()
            except Exception as exc:  # the chain may be down: serve what we know
                self.sync.last_error = repr(exc)
                log.warning("initial registry sync failed: %r", exc)
            self._tasks.append(asyncio.create_task(self._sync_loop(), name="router-sync"))
        self._tasks.append(asyncio.create_task(self._probe_loop(), name="router-probe"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._http is not None:
            await self._http.aclose()
        if self._chain is not None:
            await self._chain.close()

    def _load(self) -> list[Offer]:
        with Session(self._engine) as session:
            state = session.get(RouterSyncState, self.sync.source)
            self.sync.last_block = state.last_block if state else None
            return load_offers(session)

    async def sync_once(self) -> int:
        """Replay new registry events; the number applied."""
        chain = self._chain
        if chain is None:
            return 0
        async with self._lock:
            latest = await chain.block_number() - self.settings.confirmations
            last = self.sync.last_block
            start = chain.manifest.deployment_block if last is None else last + 1
            if latest < start:
                self.sync.last_sync = time.time()
                return 0
            events = await chain.fetch_registry_events(
                start, latest, chunk_size=self.settings.log_chunk
            )
            n, offers = await asyncio.to_thread(self._apply, events, latest)
            self.sync.last_block, self.sync.last_sync = latest, time.time()
            self.sync.events += n
            self.sync.last_error = None
            self._offers = offers
            self._on_offers(offers)
            return n

    def _apply(self, events: list[RegistryEvent], to_block: int) -> tuple[int, list[Offer]]:
        with Session(self._engine) as session, session.begin():
            n = apply_events(session, events)
            session.merge(
                RouterSyncState(
                    source=self.sync.source, last_block=to_block, updated_at=int(time.time())
                )
            )
            session.flush()
            return n, load_offers(session)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.sync_once()
            except Exception as exc:
                self.sync.last_error = repr(exc)
                log.warning("registry sync failed: %r", exc)

    async def _probe_loop(self) -> None:
        while True:
            try:
                await self.probe_all()
            except Exception:
                log.exception("health probes failed")
            await asyncio.sleep(self.settings.probe_interval_s)

    async def probe_all(self) -> None:
        """Probe each operator's /health once (concurrently)."""
        targets: dict[str, Offer] = {}
        for offer in [*self._offers, *self._extra()]:
            if offer.kind == "operator":
                targets.setdefault(offer.upstream, offer)
        if not targets:
            return
        results = await asyncio.gather(*(self._probe(o) for o in targets.values()))
        reports = [r for r in results if r is not None]
        if reports:
            await asyncio.to_thread(self._store_reports, reports)

    async def _probe(self, offer: Offer) -> dict[str, Any] | None:
        assert self._http is not None
        url = offer.base_url.removesuffix("/v1") + "/health"
        started = time.monotonic()
        doc: dict[str, Any] = {}
        try:
            resp = await self._http.get(url)
            ok = resp.status_code == 200
            with contextlib.suppress(ValueError):
                doc = resp.json()
        except httpx.HTTPError:
            ok = False
        latency = time.monotonic() - started
        signer = doc.get("signing_address") if isinstance(doc, dict) else None
        if (
            ok
            and signer
            and offer.signers
            and signer.lower() not in {s.lower() for s in offer.signers}
        ):
            log.warning("%s signs with %s, not a registered signer", offer.name, signer)
            ok = False
        self._stats.get(offer.upstream).record_probe(ok, latency, time.monotonic())
        return {
            "address": offer.upstream,
            "probe_ok": ok,
            "probe_latency_ms": latency * 1000,
            "probed_at": int(time.time()),
            "backend": _str(doc.get("backend")),
            "models": json.dumps(doc["models"]) if isinstance(doc.get("models"), list) else None,
            "signing_address": _str(signer),
            "attestation": _str(doc.get("attestation")),
            "hardware": json.dumps(doc["hardware"]) if "hardware" in doc else None,
        }

    def _store_reports(self, reports: list[dict[str, Any]]) -> None:
        with Session(self._engine) as session, session.begin():
            for r in reports:
                row = session.get(RouterOperatorReport, r["address"])
                if row is None:
                    continue  # configured operators have no mirror row
                for k, v in r.items():
                    if k != "address":
                        setattr(row, k, v)


def _str(value: Any) -> str | None:
    return str(value)[:64] if value is not None else None

"""The router's ASGI app: built from settings, everything created in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mercato.operator.app import install_error_handlers
from mercato.router import admin, routes
from mercato.router.asgi import RouterASGI
from mercato.router.breaker import BreakerConfig
from mercato.router.credits import Credits
from mercato.router.discovery import Discovery
from mercato.router.feedback import FeedbackBook
from mercato.router.forward import ForwardConfig, Forwarder
from mercato.router.history import History
from mercato.router.keys import KeyRing
from mercato.router.metrics import RouterMetrics
from mercato.router.payer import NoPayment, Payer
from mercato.router.selection import Offer
from mercato.router.settings import RouterSettings
from mercato.router.state import RouterState
from mercato.router.stats import StatsBoard
from mercato.router.table import provider_offers, static_offers
from mercato.router.writer import Writer
from mercato.storage.db import make_engine, migrate

log = logging.getLogger(__name__)


def _provider_headers(settings: RouterSettings) -> Callable[[Offer], dict[str, str]]:
    keys = {
        p.name: {"Authorization": f"Bearer {p.api_key.get_secret_value()}"}
        for p in settings.providers
        if p.api_key is not None
    }
    return lambda offer: keys.get(offer.name, {})


async def _refresh_keys(keys: KeyRing, interval_s: float) -> None:
    """Re-read keys so that revocations made by another replica take effect."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await keys.load()
        except Exception:
            log.exception("reloading API keys failed")


def create_app(
    settings: RouterSettings,
    *,
    payer: Payer | None = None,
    on_ready: Callable[[RouterState], None] | None = None,
) -> RouterASGI:
    """The router as an ASGI app (inference endpoints served directly, see asgi.py).
    ``payer`` defaults to :class:`NoPayment` (operators in free mode)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        r = settings.routing
        engine = make_engine(settings.resolved_database_url())
        migrate(engine)
        stats = StatsBoard(
            BreakerConfig(
                threshold=r.breaker_threshold,
                cooldown_s=r.breaker_cooldown_s,
                max_cooldown_s=r.breaker_max_cooldown_s,
            )
        )
        forwarder = Forwarder(
            ForwardConfig(
                max_retries=r.max_retries,
                attempt_timeout_s=r.attempt_timeout_s,
                connect_timeout_s=r.connect_timeout_s,
                total_timeout_s=r.total_timeout_s,
                max_connections=r.max_connections,
            ),
            stats,
            payer or NoPayment(),
            _provider_headers(settings),
        )
        writer = Writer(
            engine,
            flush_interval_s=settings.history.flush_interval_s,
            max_batch=settings.history.max_batch,
            max_queued=settings.history.max_queued,
        )
        credits = Credits(engine, writer, durable=settings.billing.durable_capture)
        keys = KeyRing(engine)
        await credits.load()
        await keys.load()
        configured = [*static_offers(settings.operators), *provider_offers(settings.providers)]
        state = RouterState(
            settings=settings,
            engine=engine,
            stats=stats,
            forwarder=forwarder,
            writer=writer,
            credits=credits,
            keys=keys,
            history=History(engine),
            feedback=FeedbackBook(engine, stats, writer),
            metrics=RouterMetrics(),
            static_offers=configured,
        )
        state.set_chain_offers([])
        chain = None
        if settings.discovery.manifest is not None:
            from mercato.chain.client import ChainClient

            chain = ChainClient.load(
                settings.discovery.manifest, rpc_url=settings.discovery.rpc_url
            )
        state.discovery = Discovery(
            settings.discovery,
            engine,
            stats,
            state.set_chain_offers,
            chain,
            extra_probe_targets=lambda: state.static_offers,
        )
        await state.feedback.load()
        await forwarder.start()
        await writer.start()
        await state.discovery.start()
        refresher = asyncio.create_task(
            _refresh_keys(keys, settings.billing.key_refresh_s), name="router-keys"
        )
        app.state.router = state
        log.info("router ready: %d offers", len(state.table.all()))
        if on_ready is not None:
            on_ready(state)
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await state.discovery.close()
            try:  # the payer's last settlements (posted and answered, or given up on)
                await forwarder.payer.close()
            except Exception:
                log.exception("closing the payer failed")
            await forwarder.close()
            await writer.close()
            engine.dispose()

    app = FastAPI(title="Mercato router", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(admin.router)
    return RouterASGI(app)

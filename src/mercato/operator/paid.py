"""Wiring of paid mode: chain client, prices from the on-chain offer, payment service,
x402 challenge and the settlement worker, started and stopped with the app."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from eth_account import Account
from sqlalchemy import Engine

from mercato.chain.client import ChainClient
from mercato.chain.manifest import Manifest
from mercato.crypto.keystore import SigningKeys
from mercato.errors import ConfigError
from mercato.operator.settings import PaymentSettings
from mercato.payments.chainview import ChainView
from mercato.payments.pricing import Price
from mercato.payments.rules import PaymentContext
from mercato.payments.service import PaymentService
from mercato.payments.settlement import SettlementPolicy, SettlementWorker
from mercato.payments.store import PaymentStore
from mercato.payments.x402 import X402, X402Config

log = logging.getLogger(__name__)


@dataclass
class PaidMode:
    service: PaymentService
    prices: dict[str, Price]
    worker: SettlementWorker
    chain: ChainClient


async def load_prices(chain: ChainClient, operator: str, models: list[str]) -> dict[str, Price]:
    """Each served model's price from this operator's active on-chain offers."""
    prices: dict[str, Price] = {}
    for service_id in await chain.registry.operator_services(operator):
        offer = await chain.registry.services(service_id)
        if offer.active and offer.model in models:
            prices[offer.model] = Price(offer.price_in_per_m, offer.price_out_per_m)
    missing = [m for m in models if m not in prices]
    if missing:
        raise ConfigError(
            f"operator {operator} has no active on-chain offer for {', '.join(missing)}: "
            "register it first (mercato operator register)"
        )
    return prices


@contextlib.asynccontextmanager
async def paid_mode(
    settings: PaymentSettings, keys: SigningKeys, engine: Engine, models: list[str]
) -> AsyncIterator[PaidMode]:
    manifest = Manifest.load(settings.manifest)
    account = Account.from_key(keys.ecdsa.secret)
    chain = ChainClient(manifest, rpc_url=settings.rpc_url, account=account)
    try:
        await chain.check()
        operator = keys.ecdsa.address
        prices = await load_prices(chain, operator, models)
        ctx = PaymentContext(
            operator=operator,
            chain_id=manifest.chain_id,
            escrow=manifest.addresses.escrow,
            domain_separator=await chain.escrow.domain_separator(),
            settle_margin_s=settings.settle_margin_s,
        )
        view = ChainView(chain.escrow, settings.balance_refresh_s)
        service = PaymentService(
            PaymentStore(engine),
            view,
            ctx,
            methods=tuple(settings.methods),
            allow_key_hashes=frozenset(h.lower() for h in settings.allow_key_sha256),
            channel_credit_limit=settings.channel_credit_limit,
            inline_db=engine.dialect.name == "sqlite",
        )
        x402 = None
        if "x402" in settings.methods:
            domain = await chain.token.eip712_domain()
            x402 = X402(
                service,
                ctx,
                X402Config(
                    token=manifest.addresses.token,
                    token_name=domain.name,
                    token_version=domain.version,
                    token_separator=await chain.token.domain_separator(),
                    max_timeout_s=settings.x402_max_timeout_s,
                ),
                chain.token,
            )
            service.challenge = x402
        policy = SettlementPolicy(
            interval_s=settings.settle_interval_s,
            batch_size=settings.settle_batch_size,
            urgent_s=settings.urgent_s,
            settlement_wait_s=settings.settlement_wait_s,
        )
        worker = SettlementWorker(service, chain.escrow, operator, policy, x402)
        await service.start()
        if x402 is not None:
            await x402.start()
        await view.start()
        await worker.start()
        log.info("paid mode: %s on chain %d", ", ".join(settings.methods), manifest.chain_id)
        try:
            yield PaidMode(service, prices, worker, chain)
        finally:
            await worker.close()
            with contextlib.suppress(Exception):
                await worker.settle_once()  # a last round on a clean shutdown
            await view.close()
            await service.close()
    finally:
        await chain.close()

"""Putting an operator on the market: stake, register its endpoint and signer, offer
its models at its prices. Idempotent: what is already on-chain is left alone, prices
of existing offers are updated."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.chain.client import ChainClient
from mercato.chain.registry import OperatorStatus


@dataclass(frozen=True, slots=True)
class Offer:
    model: str
    price_in_per_m: int
    price_out_per_m: int
    max_context: int = 2048
    flags: int = 0
    blueprint_id: int = 1  # the devnet's "chat" blueprint


async def register_operator(
    chain: ChainClient,
    *,
    slug: str,
    endpoint: str,
    offers: list[Offer],
    stake: int | None = None,
    attestation_kind: str = "none",
) -> list[int]:
    """Register the client's account (the operator's signing key) and its offers;
    returns the service ids, one per offer."""
    operator = chain.address
    if operator is None:
        raise ValueError("the chain client needs the operator's account")
    current = await chain.registry.operators(operator)
    if current.status == OperatorStatus.NONE:
        amount = stake if stake is not None else await chain.registry.min_stake()
        await chain.token.approve(chain.registry.address, amount)
        await chain.registry.register(slug, endpoint, [operator], attestation_kind, amount)
    elif current.endpoint != endpoint:
        await chain.registry.update_endpoint(endpoint)
    existing = {}
    for service_id in await chain.registry.operator_services(operator):
        service = await chain.registry.services(service_id)
        existing[(service.blueprint_id, service.model)] = service
    ids = []
    for offer in offers:
        found = existing.get((offer.blueprint_id, offer.model))
        if found is None:
            ids.append(
                await chain.registry.add_service_id(
                    offer.blueprint_id,
                    offer.model,
                    offer.price_in_per_m,
                    offer.price_out_per_m,
                    offer.max_context,
                    offer.flags,
                )
            )
            continue
        if (found.price_in_per_m, found.price_out_per_m, found.max_context, int(found.flags)) != (
            offer.price_in_per_m, offer.price_out_per_m, offer.max_context, offer.flags,
        ):  # fmt: skip
            await chain.registry.update_service(
                found.service_id, offer.price_in_per_m, offer.price_out_per_m,
                offer.max_context, offer.flags,
            )  # fmt: skip
        if not found.active:
            await chain.registry.set_service_active(found.service_id, True)
        ids.append(found.service_id)
    return ids

"""The in-memory offer table that selection reads, rebuilt after each discovery sync.

Readers get plain lists (no I/O, no locks): the table is replaced, never mutated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mercato.router.selection import Offer
from mercato.router.settings import ProviderConfig, StaticOperator


def normalize_base_url(endpoint: str) -> str:
    """An operator's registered endpoint as an OpenAI base URL (``.../v1``)."""
    base = endpoint.strip().rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def provider_offers(providers: Iterable[ProviderConfig]) -> list[Offer]:
    return [
        Offer(
            kind="provider",
            upstream=f"provider:{p.name}",
            name=p.name,
            model=model,
            base_url=p.base_url.rstrip("/"),
            price_in_per_m=p.price_in_per_m,
            price_out_per_m=p.price_out_per_m,
            tee=p.tee,
            zdr=p.zdr,
            no_train=p.no_train,
            compliance_verified=True,
            upstream_model=p.model_map.get(model),
        )
        for p in providers
        for model in p.models
    ]


def static_offers(operators: Iterable[StaticOperator]) -> list[Offer]:
    return [
        Offer(
            kind="operator",
            upstream=o.address,
            name=o.slug,
            model=model,
            base_url=normalize_base_url(o.endpoint),
            price_in_per_m=o.price_in_per_m,
            price_out_per_m=o.price_out_per_m,
            service_id=o.service_id,
            blueprint_id=o.blueprint_id,
            tee=o.tee,
            signers=tuple(o.signers),
        )
        for o in operators
        for model in o.models
    ]


@dataclass(frozen=True)
class OfferTable:
    by_model: dict[str, list[Offer]] = field(default_factory=dict)

    @classmethod
    def build(cls, offers: Iterable[Offer]) -> OfferTable:
        by_model: dict[str, list[Offer]] = {}
        for offer in offers:
            by_model.setdefault(offer.model, []).append(offer)
        return cls(by_model)

    def offers(self, model: str) -> list[Offer]:
        return self.by_model.get(model, [])

    def all(self) -> list[Offer]:
        return [o for offers in self.by_model.values() for o in offers]

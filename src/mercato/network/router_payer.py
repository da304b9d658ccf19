"""A :class:`mercato.router.payer.Payer` for paid operators: the router pays each
attempt with a fresh spend authorization from its own escrow deposit, capped at a
bound of the request's cost at that operator's price (operators charge the metered
cost, never more than the cap)."""

from __future__ import annotations

from collections.abc import Mapping

from eth_account.signers.local import LocalAccount

from mercato.client.payments import EscrowRef, NonceAllocator, sign_spend_authorization
from mercato.payments.pricing import Price
from mercato.payments.wire import SPEND_AUTH_HEADER
from mercato.router.pricing import Estimate
from mercato.router.selection import Offer

TEMPLATE_TOKENS = 512  # room for the chat template the operator adds to the prompt


class SpendAuthPayer:
    def __init__(self, account: LocalAccount, ref: EscrowRef, *, ttl_s: int = 3600) -> None:
        self.account = account
        self.ref = ref
        self.ttl_s = ttl_s
        self.nonces = NonceAllocator()

    def cap(self, offer: Offer, estimate: Estimate) -> int:
        price = Price(offer.price_in_per_m, offer.price_out_per_m)
        return max(
            price.cost(2 * estimate.prompt_tokens + TEMPLATE_TOKENS, estimate.completion_tokens), 1
        )

    async def payment_headers(self, operator: Offer, estimate: Estimate) -> dict[str, str]:
        signed = sign_spend_authorization(
            self.account,
            self.ref,
            operator.upstream,
            self.cap(operator, estimate),
            self.nonces.next(),
            ttl_s=self.ttl_s,
        )
        return {SPEND_AUTH_HEADER: signed.encode()}

    async def on_response(
        self, operator: Offer, status: int, headers: Mapping[str, str], cost: int | None
    ) -> None:
        return None

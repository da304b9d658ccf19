"""A :class:`mercato.router.payer.Payer` for paid operators: the router pays each
attempt with a fresh spend authorization from its own escrow deposit, capped at a
bound of the request's cost at that operator's price (operators charge the metered
cost, never more than the cap).

Like the SDK, it then settles what the operators' verified receipts say they charged
with spend settlements (one signature per operator and nonce word, posted to the
operator's ``POST /v1/payments/settlements``: docs/protocols/spendauth.md) every
``settle_every`` answers of a word, when its nonce allocator moves to a new word,
``settle_after_s`` after a word's first unsettled answer, and on :meth:`close`, so
that the operator settles them with one ``claim_settlements`` instead of one claim
each. A refused or undelivered settlement is logged and counted; the operator then
claims those authorizations one by one."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from eth_account.signers.local import LocalAccount

from mercato.client.payments import EscrowRef, NonceAllocator, sign_spend_authorization
from mercato.client.settling import Payee, SpendSettler, charged_of
from mercato.payments.errors import PaymentRejected
from mercato.payments.pricing import Price
from mercato.payments.wire import SPEND_AUTH_HEADER, SignedSpendAuthorization
from mercato.protocol.receipts import Receipt
from mercato.router.pricing import Estimate
from mercato.router.selection import Offer

TEMPLATE_TOKENS = 512  # room for the chat template the operator adds to the prompt


class SpendAuthPayer:
    def __init__(
        self,
        account: LocalAccount,
        ref: EscrowRef,
        *,
        ttl_s: int = 3600,
        settle: bool = True,
        settle_every: int = 64,
        # well within the operators' default settlement_wait_s (300 s)
        settle_after_s: float | None = 120.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.account = account
        self.ref = ref
        self.ttl_s = ttl_s
        self.nonces = NonceAllocator()
        self.settle = settle
        self.settler = SpendSettler(
            account,
            every=settle_every,
            ttl_s=ttl_s,
            max_age_s=settle_after_s,
            http=http,
            keep=100,
        )

    def cap(self, offer: Offer, estimate: Estimate) -> int:
        price = Price(offer.price_in_per_m, offer.price_out_per_m)
        return max(
            price.cost(2 * estimate.prompt_tokens + TEMPLATE_TOKENS, estimate.completion_tokens), 1
        )

    async def payment_headers(self, operator: Offer, estimate: Estimate) -> dict[str, str]:
        nonce = self.nonces.next()
        signed = sign_spend_authorization(
            self.account,
            self.ref,
            operator.upstream,
            self.cap(operator, estimate),
            nonce,
            ttl_s=self.ttl_s,
        )
        if self.settle:
            self.settler.allocated(nonce)
        return {SPEND_AUTH_HEADER: signed.encode()}

    async def on_response(
        self,
        operator: Offer,
        status: int,
        headers: Mapping[str, str],
        receipt: Receipt | None,
        sent: Mapping[str, str],
    ) -> None:
        value = sent.get(SPEND_AUTH_HEADER)
        charged = charged_of(receipt) if status == 200 else None
        if not self.settle or value is None or charged is None:
            return  # not served: the operator charges it nothing (or claims it alone)
        try:
            auth = SignedSpendAuthorization.decode(value).auth
        except PaymentRejected:
            return
        payee = Payee(operator.base_url.removesuffix("/v1"), operator.upstream, self.ref)
        self.settler.answered(payee, auth.nonce, charged, auth.max_amount)

    async def close(self) -> None:
        """Settle every answered nonce now and wait for the operators' answers."""
        await self.settler.flush()

    @property
    def settlement_counts(self) -> dict[str, int]:
        """Settlements posted, by outcome: accepted, refused, failed (not delivered)."""
        return dict(self.settler.counts)

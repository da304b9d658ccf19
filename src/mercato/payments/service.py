"""The operator's payment service: decides, before serving, whether a request is paid
for, and records what it cost once served. The only payment module with I/O on the
request path: one SQLite/PostgreSQL write to reserve, one to capture, and cached chain
state (``ChainView``); no transaction is ever sent here (see ``settlement``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mercato.chain.escrow import ChannelStatus
from mercato.errors import NotFound
from mercato.payments.chainview import ChainView
from mercato.payments.errors import PaymentRejected, Reason, SettlementRefused
from mercato.payments.pricing import Estimate, Price, charge
from mercato.payments.rules import (
    ChannelFacts,
    PaymentContext,
    check_spend_authorization,
    check_spend_settlement,
    check_voucher,
)
from mercato.payments.store import PaymentStore
from mercato.payments.wire import (
    SPEND_AUTH_HEADER,
    VOUCHER_HEADER,
    SignedSpendAuthorization,
    SignedSpendSettlement,
    SignedVoucher,
)

log = logging.getLogger(__name__)
Method = Literal["free", "spendauth", "channel", "x402"]


@dataclass
class Payment:
    """A request's accepted payment, from before serving until it is captured."""

    method: Method
    payer: str
    max_amount: int
    price: Price
    reference: str  # spendauth:<payer>:<nonce> | channel:<id> | x402:<payer>:<nonce>
    key: Any = None  # method-specific: (payer, nonce) or channel id
    captured: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Charge:
    method: Method
    reference: str
    payer: str
    amount: int
    prompt_tokens: int
    completion_tokens: int
    channel_consumed: int | None = None  # a channel's new total, for the client's next voucher

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "method": self.method,
            "reference": self.reference,
            "payer": self.payer,
            "charged": str(self.amount),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
        if self.channel_consumed is not None:
            doc["channel_consumed"] = str(self.channel_consumed)
        return doc


class Challenge(Protocol):
    """The 402 challenge and its extra payment schemes (x402)."""

    def headers(
        self, est: Estimate, resource: str, reason: Reason, price: Price
    ) -> dict[str, str]: ...

    async def authorize(
        self, headers: Mapping[str, str], price: Price, est: Estimate, resource: str
    ) -> Payment | None: ...

    async def capture(self, payment: Payment, request_id: str) -> None: ...

    async def release(self, payment: Payment) -> None: ...


@dataclass
class _ChannelState:
    payer: str
    best: int
    consumed: int
    inflight: int = 0


class PaymentService:
    def __init__(
        self,
        store: PaymentStore,
        view: ChainView | None,
        ctx: PaymentContext | None,
        *,
        methods: tuple[str, ...] = ("spendauth", "channel", "x402"),
        allow_key_hashes: frozenset[str] = frozenset(),
        channel_credit_limit: int = 0,
        challenge: Challenge | None = None,
        inline_db: bool = False,
    ) -> None:
        """``inline_db``: run the two per-request writes (reserve, capture) on the event
        loop instead of the database thread. Right for SQLite, where the write (~90 µs)
        costs less than the hand-off to a thread (~140 µs); wrong for a networked DB."""
        self.store = store
        self.view = view
        self.ctx = ctx
        self.methods = methods
        self._allow = allow_key_hashes
        self._credit_limit = channel_credit_limit
        self._owed: dict[str, int] = {}  # payer -> unsettled claims + in-flight maximums
        self._channels: dict[str, _ChannelState] = {}
        self._db = ThreadPoolExecutor(1, thread_name_prefix="payments-db")
        self.challenge = challenge  # builds the 402 challenge headers (x402)
        self._inline = inline_db

    @property
    def paid(self) -> bool:
        return self.ctx is not None

    async def run_db(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def hot_db(self, fn: Any, *args: Any) -> Any:
        """A short per-request write: inline for SQLite, else on the database thread."""
        return fn(*args) if self._inline else await self.run_db(fn, *args)

    async def start(self) -> None:
        voided = await self.run_db(self.store.void_unfinished)
        if voided:
            log.warning("%d requests were cut off by a restart: not charged", voided)
        await self.run_db(self.store.void_unfinished_x402)
        self._owed = await self.run_db(self.store.unsettled_by_payer)

    async def close(self) -> None:
        self._db.shutdown(wait=True)

    # -- before serving ---------------------------------------------------------------

    def allowed_free(self, headers: Mapping[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if not self._allow or not auth.lower().startswith("bearer "):
            return False
        digest = hashlib.sha256(auth[7:].strip().encode()).hexdigest()
        return any(secrets.compare_digest(digest, allowed) for allowed in self._allow)

    async def authorize(
        self, headers: Mapping[str, str], price: Price, est: Estimate, resource: str
    ) -> Payment | None:
        """The accepted payment for a request, None when it is free, or PaymentRejected."""
        if self.ctx is None or price.is_free or self.allowed_free(headers):
            return None
        try:
            return await self._authorize(headers, price, est, resource)
        except PaymentRejected as exc:
            if not exc.headers and self.challenge is not None:
                exc.headers = self.challenge.headers(est, resource, exc.reason, price)
            raise

    async def _authorize(
        self, headers: Mapping[str, str], price: Price, est: Estimate, resource: str
    ) -> Payment:
        if "spendauth" in self.methods and (value := headers.get(SPEND_AUTH_HEADER.lower())):
            signed = SignedSpendAuthorization.decode(value)
            return await self.spend_authorization(signed, price, est, resource)
        if "channel" in self.methods and (value := headers.get(VOUCHER_HEADER.lower())):
            return await self._voucher(value, price, est, resource)
        if self.challenge is not None:
            payment = await self.challenge.authorize(headers, price, est, resource)
            if payment is not None:
                return payment
        raise self.rejection(
            Reason.PAYMENT_REQUIRED, "this operator needs payment", est, resource, price
        )

    def rejection(
        self, reason: Reason, message: str, est: Estimate, resource: str, price: Price
    ) -> PaymentRejected:
        headers = self.challenge.headers(est, resource, reason, price) if self.challenge else {}
        return PaymentRejected(reason, message, headers=headers)

    async def spend_authorization(
        self, signed: SignedSpendAuthorization, price: Price, est: Estimate, resource: str
    ) -> Payment:
        """Accept a spend authorization (from our header or an x402 payload) or refuse."""
        assert self.ctx is not None and self.view is not None
        reason = check_spend_authorization(signed, self.ctx, est.amount, int(time.time()))
        if reason is not None:
            raise self.rejection(
                reason, f"spend authorization refused: {reason.value}", est, resource, price
            )
        auth = signed.auth
        payer = auth.payer.lower()
        try:
            funds = await self.view.funds(payer)
            if funds.available - self._owed.get(payer, 0) < auth.max_amount:
                funds = await self.view.funds(payer, fresh=True)
        except Exception as exc:
            raise self.rejection(
                Reason.CHAIN_UNAVAILABLE, f"cannot read escrow: {exc}", est, resource, price
            ) from exc
        if funds.available - self._owed.get(payer, 0) < auth.max_amount:
            raise self.rejection(
                Reason.INSUFFICIENT_ESCROW,
                f"escrow balance {funds.available} minus unsettled {self._owed.get(payer, 0)} "
                f"is below the authorized maximum {auth.max_amount}",
                est,
                resource,
                price,
            )
        self._owed[payer] = self._owed.get(payer, 0) + auth.max_amount  # before any await
        try:
            fresh = await self.hot_db(self.store.reserve_spend, signed)
        except BaseException:
            self._owed[payer] -= auth.max_amount
            raise
        if not fresh:
            self._owed[payer] -= auth.max_amount
            raise self.rejection(
                Reason.NONCE_USED, "spend authorization already used", est, resource, price
            )
        return Payment(
            "spendauth",
            payer,
            auth.max_amount,
            price,
            f"spendauth:{payer}:{auth.nonce}",
            key=(payer, auth.nonce),
        )

    async def _voucher(self, value: str, price: Price, est: Estimate, resource: str) -> Payment:
        assert self.ctx is not None and self.view is not None
        voucher = SignedVoucher.decode(value)
        cid = "0x" + voucher.channel_id.hex()
        facts = await self._channel_facts(voucher, cid)
        reason = check_voucher(voucher, facts, self.ctx, est.amount, self._credit_limit)
        if reason in (
            Reason.VOUCHER_EXCEEDS_DEPOSIT,
            Reason.CHANNEL_NOT_OPEN,
            Reason.CHANNEL_UNKNOWN,
        ):
            facts = await self._channel_facts(voucher, cid, fresh=True)  # a top-up may have landed
            reason = check_voucher(voucher, facts, self.ctx, est.amount, self._credit_limit)
        if reason is not None:
            raise self.rejection(reason, f"voucher refused: {reason.value}", est, resource, price)
        assert facts is not None
        state = self._channels[cid]
        state.best = voucher.cumulative_amount  # before any await: concurrent vouchers see it
        state.inflight += est.amount
        try:
            accepted = await self.run_db(
                self.store.accept_voucher,
                cid,
                facts.payer,
                voucher.cumulative_amount,
                voucher.signature,
            )
        except BaseException:
            state.inflight -= est.amount
            raise
        if not accepted:
            state.inflight -= est.amount
            raise self.rejection(
                Reason.VOUCHER_NOT_INCREASING, "voucher refused", est, resource, price
            )
        return Payment("channel", facts.payer.lower(), est.amount, price, f"channel:{cid}", key=cid)

    async def _channel_facts(
        self, voucher: SignedVoucher, cid: str, *, fresh: bool = False
    ) -> ChannelFacts | None:
        assert self.view is not None
        try:
            ch = await self.view.channel(voucher.channel_id, fresh=fresh)
        except Exception as exc:
            raise PaymentRejected(Reason.CHAIN_UNAVAILABLE, f"cannot read channel: {exc}") from exc
        if ch is None:
            return None
        state = self._channels.get(cid)
        if state is None:
            row = await self.run_db(self.store.channel, cid)
            state = self._channels.setdefault(
                cid,
                _ChannelState(
                    ch.payer.lower(), row.best_cumulative if row else 0, row.consumed if row else 0
                ),
            )
        return ChannelFacts(
            payer=ch.payer,
            operator=ch.operator,
            deposit=ch.deposit,
            open=ch.status == ChannelStatus.OPEN,
            best_cumulative=state.best,
            owed=state.consumed + state.inflight,
        )

    # -- after serving ------------------------------------------------------------------

    async def capture(
        self, payment: Payment, prompt_tokens: int, completion_tokens: int, request_id: str
    ) -> Charge:
        """Persist the charge for what was served (idempotent per payment)."""
        amount = charge(payment.price, prompt_tokens, completion_tokens, payment.max_amount)
        consumed: int | None = None
        if payment.captured:
            raise RuntimeError("payment captured twice")
        payment.captured = True
        if payment.method == "spendauth":
            payer, nonce = payment.key
            await self.hot_db(self.store.capture_spend, payer, nonce, amount, request_id)
            self._owed[payer] = self._owed.get(payer, 0) - payment.max_amount + amount
        elif payment.method == "channel":
            state = self._channels[payment.key]
            state.inflight -= payment.max_amount
            state.consumed += amount
            consumed = await self.run_db(self.store.charge_channel, payment.key, amount, request_id)
        elif payment.method == "x402" and self.challenge is not None:
            amount = payment.max_amount  # "exact": the price was paid up front
            await self.challenge.capture(payment, request_id)
        return Charge(
            payment.method,
            payment.reference,
            payment.payer,
            amount,
            prompt_tokens,
            completion_tokens,
            consumed,
        )

    async def release(self, payment: Payment) -> None:
        """Nothing was served (the backend failed before the first token): charge nothing."""
        if payment.captured:
            return
        if payment.method == "x402" and self.challenge is not None:
            payment.captured = True
            await self.challenge.release(payment)
            return
        await self.capture(payment, 0, 0, "")

    # -- spend settlements (POST /v1/payments/settlements) -----------------------------

    async def offer_settlement(self, raw: bytes) -> dict[str, Any]:
        """Check and store a payer's spend settlement; the settlement worker sends it.
        Raises SettlementRefused (422) with the first reason it is refused."""
        if self.ctx is None or "spendauth" not in self.methods:
            raise NotFound("this operator takes no spend authorizations")
        try:
            signed = SignedSpendSettlement.from_json(raw)
        except PaymentRejected as exc:
            raise SettlementRefused(exc.reason, exc.message) from exc
        reason = check_spend_settlement(signed, self.ctx, int(time.time()))
        if reason is not None:
            raise SettlementRefused(reason, f"spend settlement refused: {reason.value}")
        st = signed.settlement
        offer = await self.run_db(
            self.store.offer_settlement,
            st.payer, st.word, st.mask, st.total, st.deadline, signed.signature,
        )  # fmt: skip
        if offer.reason is not None:
            raise SettlementRefused(offer.reason, f"spend settlement refused: {offer.message}")
        return {
            "object": "spend_settlement",
            "payer": st.payer,
            "word": str(st.word),
            "mask": str(st.mask),
            "total": str(st.total),
            "status": offer.status,
            "replaced": offer.replaced,
        }

    def settled(self, payer: str, amount: int) -> None:
        """Called by the settlement worker once claims are paid on-chain."""
        key = payer.lower()
        self._owed[key] = max(0, self._owed.get(key, 0) - amount)

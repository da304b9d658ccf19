"""Spend settlements on the payer's side (docs/protocols/spendauth.md, "Spend
settlements"): the charges of answered spend authorizations, kept per operator and
nonce word, and the signed settlements posted for them in the background.

Shared by the SDK (:class:`mercato.client.paying.SpendAuthPayment`) and the router's
own payer (:class:`mercato.network.router_payer.SpendAuthPayer`). A word's answered
nonces are settled every ``every`` answers, when the nonce allocator moves on to a new
word (every other word), optionally ``max_age_s`` after the word's first unsettled
answer, and on :meth:`SpendSettler.flush`. A settlement that is refused or cannot be
delivered is only logged and counted: the operator then claims those authorizations
one by one, for the same amounts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount

from mercato.client.payments import EscrowRef, sign_spend_settlement
from mercato.protocol.receipts import Receipt

SETTLEMENTS_PATH = "/v1/payments/settlements"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Payee:
    """Where a settlement goes and whom it pays."""

    target: str  # the operator's URL without ``/v1``: settlements go to target + SETTLEMENTS_PATH
    operator: str  # the operator's address (the authorizations' ``operator``)
    ref: EscrowRef


def charged_of(receipt: Receipt | None) -> int | None:
    """What a spend-authorized answer was charged, from the operator's receipt (None when
    the receipt gives no spend-authorization charge)."""
    payment = receipt.payment if receipt is not None else None
    if not payment or payment.get("method") != "spendauth" or payment.get("charged") is None:
        return None
    try:
        return int(payment["charged"])
    except (TypeError, ValueError):
        return None


Key = tuple[Payee, int]  # (payee, nonce word)


class SpendSettler:
    """The answered nonces not yet in a settlement, and the settlements' posting."""

    def __init__(
        self,
        account: LocalAccount,
        *,
        every: int = 64,
        ttl_s: int = 3600,
        max_age_s: float | None = None,
        http: httpx.AsyncClient | None = None,
        timeout_s: float = 10.0,
        keep: int | None = None,
    ) -> None:
        self.account = account
        self.every = every
        self.ttl_s = ttl_s
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self._http = http
        self._open: dict[Key, dict[int, int]] = {}  # bit -> charged, answered, not settled
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._word: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # the operators' answers (the last ``keep``), and how the posts went
        self.answers: deque[dict[str, Any]] = deque(maxlen=keep)
        self.counts = {"accepted": 0, "refused": 0, "failed": 0, "overcharged": 0}

    @property
    def unsettled(self) -> int:
        """Answered nonces waiting for their settlement."""
        return sum(len(charges) for charges in self._open.values())

    def allocated(self, nonce: int) -> None:
        """A nonce was allocated: when its word is a new one, settle every other word."""
        word = nonce >> 8
        if self._word is not None and word != self._word:
            self._settle(lambda key: key[1] != word)
        self._word = word

    def answered(self, payee: Payee, nonce: int, charged: int, authorized: int) -> None:
        """The operator answered the request paid with ``nonce`` (an authorization of at
        most ``authorized``) and says it charged ``charged``. A charge outside 0 ..
        ``authorized`` is never signed for: the operator's receipt is its own word, and
        a settlement's total is not checked against the authorizations on chain."""
        if not 0 <= charged <= authorized:
            self.counts["overcharged"] += 1
            log.warning(
                "%s reported a charge of %d for an authorization of at most %d: "
                "left out of settlements",
                payee.operator,
                charged,
                authorized,
            )
            return
        key = (payee, nonce >> 8)
        charges = self._open.get(key)
        if charges is None:
            charges = self._open[key] = {}
            if self.max_age_s is not None:
                self._timers[key] = asyncio.get_running_loop().call_later(
                    self.max_age_s, self._settle, lambda k: k == key
                )
        charges[nonce & 255] = charged
        if len(charges) >= self.every:
            self._settle(lambda k: k == key)

    def _settle(self, which: Callable[[Key], bool]) -> None:
        """Sign and post, in the background, a settlement of every selected word."""
        for key in [k for k in self._open if which(k)]:
            charges = self._open.pop(key)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            if not any(charges.values()):
                continue  # nothing to pay: the operator has nothing to claim either
            task = asyncio.get_running_loop().create_task(self._post(key[0], key[1], charges))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, payee: Payee, word: int, charges: dict[int, int]) -> None:
        try:
            signed = sign_spend_settlement(
                self.account, payee.ref, payee.operator, word, charges, ttl_s=self.ttl_s
            )
            http = self._http or httpx.AsyncClient(timeout=self.timeout_s)
            try:
                response = await http.post(payee.target + SETTLEMENTS_PATH, json=signed.to_doc())
            finally:
                if self._http is None:
                    await http.aclose()
            try:
                doc = response.json() if response.content else {}
            except ValueError:
                doc = {}
            if not isinstance(doc, dict):
                doc = {}
            if response.status_code == 200:
                self.counts["accepted"] += 1
            else:
                # the operator then claims these authorizations one by one, as it may
                self.counts["refused"] += 1
                log.info(
                    "spend settlement refused by %s (%d): %s",
                    payee.target, response.status_code, response.text[:200],
                )  # fmt: skip
            self.answers.append({"status_code": response.status_code, **doc})
        except Exception as exc:  # a settlement is an optimization: never fail anyone
            self.counts["failed"] += 1
            log.info("spend settlement to %s not delivered: %r", payee.target, exc)

    async def flush(self) -> None:
        """Settle every answered nonce now and wait for the operators' answers."""
        self._settle(lambda key: True)
        await self.wait()

    async def wait(self) -> None:
        """Wait for the settlements being posted."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

"""Background settlement: turns persisted claims into on-chain payments, in batches.

- Spend authorizations: every ``interval_s``, or at once when ``batch_size`` claims are
  waiting or one of them comes within ``urgent_s`` of its deadline, the payers' stored
  spend settlements are sent first (``claim_settlements``: one signature for many
  authorizations), then the claimable rows they do not cover in ``claim_batch``
  transactions (sorted by payer and nonce: claims of one payer in one nonce word share
  a group, which is cheapest). A claim waits ``settlement_wait_s`` (default 300 s; 0:
  not at all) after its capture for its payer's settlement before it is claimed on its
  own, but never past ``urgent_s + interval_s`` before its deadline, so that a
  settlement that never comes costs nothing but the wait. A settlement rejected
  on-chain (or gone stale) returns its authorizations to the claimable rows. A claim
  whose fields do not fit the batch packing (deadline >= 2**56, amounts >= 2**96) can
  never settle: it is marked rejected ("unencodable") instead of blocking its batch.
- Channels: a channel whose metered consumption passed what was settled is claimed
  with its best voucher.
- x402: signed EIP-3009 transfers are submitted (by the x402 module's ``submit``).

Rows are marked ``submitted`` before their transaction is sent. After a crash or a
failed send, a ``submitted`` settlement is reconciled with the chain (its nonce word's
bits: all set = paid, none = send again, some = rejected) and then a ``submitted`` row
(``is_nonce_used``) before anything is sent again, so a claim is never paid twice (the
contract would refuse a second payment anyway). Failures back off exponentially
(capped) with jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from mercato.chain.batch import fits
from mercato.chain.escrow import MAX_SETTLEMENTS, PaymentEscrow, SignedSettlement, SpendClaim
from mercato.chain.events import ClaimRejected, SettlementRejected, SpendsClaimed, SpendsSettled
from mercato.payments.service import PaymentService
from mercato.payments.store import FALLBACK, PendingSpend, StoredSettlement
from mercato.protocol.eip712 import SpendAuthorization, SpendSettlement
from mercato.storage.payment_models import CLAIMABLE, REJECTED, SETTLED, SUBMITTED

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SettlementPolicy:
    interval_s: float = 10.0
    batch_size: int = 100
    urgent_s: int = 60  # settle at once when a deadline is this close
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    settlement_wait_s: float = 300.0  # how long a claim waits for its payer's settlement


class SettlementWorker:
    def __init__(
        self,
        service: PaymentService,
        escrow: PaymentEscrow,
        operator: str,
        policy: SettlementPolicy,
        x402: Any = None,
    ) -> None:
        self._service = service
        self._store = service.store
        self._escrow = escrow
        self._operator = operator
        self._policy = policy
        self._x402 = x402
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="settlement")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def nudge(self) -> None:
        """A new claim was recorded: settle now if a batch is full."""
        self._wake.set()

    async def _run(self) -> None:
        last = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._policy.interval_s)
            self._wake.clear()
            try:
                forced = time.monotonic() - last >= self._policy.interval_s
                if await self.settle_once(force=forced):
                    last = time.monotonic()
                self.failures = 0
            except Exception as exc:
                self.failures += 1
                delay = min(self._policy.backoff_max_s, self._policy.backoff_s * 2**self.failures)
                delay *= random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not crypto)
                log.warning("settlement failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def settle_once(self, *, force: bool = True) -> bool:
        """One settlement round; True when it sent anything."""
        submitted = await self._service.run_db(self._store.settlements, SUBMITTED)
        await self._reconcile_settlements(submitted)
        pending: list[PendingSpend] = await self._service.run_db(self._store.pending_spends)
        await self._reconcile([p for p in pending if p.status == SUBMITTED])
        claimable = [p for p in pending if p.status == CLAIMABLE]
        now = int(time.time())
        urgent = any(p.deadline - now <= self._policy.urgent_s for p in claimable)
        sent = False
        if claimable and (force or urgent or len(claimable) >= self._policy.batch_size):
            if await self._settle_settlements(now):
                sent = True
                pending = await self._service.run_db(self._store.pending_spends)
                claimable = [p for p in pending if p.status == CLAIMABLE]
            live = [p for p in claimable if p.deadline >= now and self._due(p, now)]
            expired = [(p.payer, p.nonce) for p in claimable if p.deadline < now]
            if expired:
                log.error("%d claims expired before settlement", len(expired))
                await self._service.run_db(
                    lambda: self._store.mark_spends(expired, REJECTED, reason="expired")
                )
            for i in range(0, len(live), self._policy.batch_size):
                await self._settle_spends(live[i : i + self._policy.batch_size])
                sent = True
        if force:
            sent = await self._settle_channels() or sent
            if self._x402 is not None:
                sent = await self._x402.submit_pending() or sent
        return sent

    def _due(self, p: PendingSpend, now: int) -> bool:
        """Claim on its own now, or wait a little longer for the payer's settlement."""
        wait = self._policy.settlement_wait_s
        return (
            wait <= 0
            or p.reason == FALLBACK  # its settlement failed: no other is coming
            or now - p.updated_at >= wait
            or p.deadline - now <= self._policy.urgent_s + self._policy.interval_s
        )

    # -- spend settlements ---------------------------------------------------------------

    def _signed_settlement(self, st: StoredSettlement) -> SignedSettlement:
        payer = to_checksum_address(st.payer)
        settlement = SpendSettlement(payer, self._operator, st.word, st.mask, st.total, st.deadline)
        return SignedSettlement(settlement, st.signature)

    async def _settle_settlements(self, now: int) -> bool:
        """Send every stored settlement (MAX_SETTLEMENTS per transaction); True when any
        was sent. One too close to its deadline is dropped: its nonces go one by one."""
        stored = await self._service.run_db(self._store.settlements, CLAIMABLE)
        late = [st for st in stored if st.deadline < now + self._policy.urgent_s]
        for st in late:
            await self._service.run_db(
                lambda st=st: self._store.finish_settlement(st, REJECTED, tx_hash=None,
                                                            reason="expired")
            )  # fmt: skip
        stored = [st for st in stored if st not in late]
        sent = False
        for i in range(0, len(stored), MAX_SETTLEMENTS):
            chunk = stored[i : i + MAX_SETTLEMENTS]
            ready = await self._service.run_db(self._store.submit_settlements, chunk)
            if ready:
                await self._send_settlements(ready)
                sent = True
        return sent

    async def _send_settlements(self, ready: list[StoredSettlement]) -> None:
        result = await self._escrow.claim_settlements([self._signed_settlement(s) for s in ready])
        accepted = {(e.payer.lower(), e.word, e.mask) for e in result.events_of(SpendsSettled)}
        rejected = {
            (e.payer.lower(), e.word, e.mask): e.reason
            for e in result.events_of(SettlementRejected)
        }
        paid: dict[str, int] = {}
        for st in ready:
            if st.key in accepted:
                await self._service.run_db(
                    lambda st=st: self._store.finish_settlement(st, SETTLED,
                                                                tx_hash=result.tx_hash)
                )  # fmt: skip
                paid[st.payer] = paid.get(st.payer, 0) + st.total
                continue
            reason = f"onchain:{int(rejected.get(st.key, 0))}"
            log.error("settlement %s rejected on-chain (%s): claiming one by one", st.key, reason)
            await self._service.run_db(
                lambda st=st, r=reason: self._store.finish_settlement(
                    st, REJECTED, tx_hash=result.tx_hash, reason=r
                )
            )
        if paid:
            await self._after_payment(paid)
        log.info(
            "settled %d settlements (%d rejected) in %s", len(accepted), len(rejected),
            result.tx_hash,
        )  # fmt: skip

    async def _reconcile_settlements(self, submitted: list[StoredSettlement]) -> None:
        """Settlements left 'submitted' by a crash or a failed send: ask the chain."""
        paid: dict[str, int] = {}
        for st in submitted:
            bits = await self._escrow.nonce_bitmap(to_checksum_address(st.payer), st.word)
            if bits & st.mask == st.mask:
                status, reason = SETTLED, None
                paid[st.payer] = paid.get(st.payer, 0) + st.total
            elif bits & st.mask == 0:
                status, reason = CLAIMABLE, None  # never landed: send it again
            else:
                status, reason = REJECTED, "partial"  # its nonces are reconciled one by one
            await self._service.run_db(
                lambda st=st, s=status, r=reason: self._store.finish_settlement(
                    st, s, tx_hash=None, reason=r
                )
            )
        if paid:
            await self._after_payment(paid)

    def _claim(self, p: PendingSpend) -> SpendClaim:
        auth = SpendAuthorization(
            to_checksum_address(p.payer), self._operator, p.max_amount, p.nonce, p.deadline
        )
        return SpendClaim(auth, p.amount, p.signature)

    async def _settle_spends(self, batch: list[PendingSpend]) -> None:
        unfit = [p for p in batch if not fits(self._claim(p).authorization, p.amount)]
        batch = sorted((p for p in batch if p not in unfit), key=lambda p: (p.payer, p.nonce))
        if unfit:
            log.error("%d claims do not fit claim_batch's packing; rejected", len(unfit))
            bad = [(p.payer, p.nonce) for p in unfit]
            await self._service.run_db(
                lambda: self._store.mark_spends(bad, REJECTED, reason="unencodable")
            )
            owed: dict[str, int] = {}
            for p in unfit:
                owed[p.payer] = owed.get(p.payer, 0) + p.amount  # no longer owed
            await self._after_payment(owed)
        if not batch:
            return
        keys = [(p.payer, p.nonce) for p in batch]
        await self._service.run_db(lambda: self._store.mark_spends(keys, SUBMITTED))
        claims = [self._claim(p) for p in batch]
        result = await self._escrow.claim_batch(claims)
        paid: dict[str, int] = {}
        settled: list[tuple[str, int]] = []
        for event in result.events_of(SpendsClaimed):
            payer = event.payer.lower()
            paid[payer] = paid.get(payer, 0) + event.amount
            settled += [(payer, nonce) for nonce in event.nonces]
        rejected = {(e.payer.lower(), e.nonce): e.reason for e in result.events_of(ClaimRejected)}
        await self._service.run_db(
            lambda: self._store.mark_spends(settled, SETTLED, tx_hash=result.tx_hash)
        )
        for key, reason in rejected.items():
            log.error("claim %s rejected on-chain: reason %s", key, reason)
            await self._service.run_db(
                lambda k=key, r=reason: self._store.mark_spends(
                    [k], REJECTED, tx_hash=result.tx_hash, reason=f"onchain:{int(r)}"
                )
            )
        for p in batch:
            if (p.payer, p.nonce) in rejected:
                paid[p.payer] = paid.get(p.payer, 0) + p.amount  # no longer owed either way
        await self._after_payment(paid)
        log.info(
            "settled %d claims (%d rejected) in %s", len(settled), len(rejected), result.tx_hash
        )

    async def _after_payment(self, paid: dict[str, int]) -> None:
        view = self._service.view
        for payer, amount in paid.items():
            if view is not None:
                with contextlib.suppress(Exception):
                    await view.funds(payer, fresh=True)  # balance first, then owed
            self._service.settled(payer, amount)

    async def _reconcile(self, submitted: list[PendingSpend]) -> None:
        """Rows left 'submitted' by a crash or a failed send: ask the chain."""
        paid: dict[str, int] = {}
        for p in submitted:
            used = await self._escrow.is_nonce_used(to_checksum_address(p.payer), p.nonce)
            status = SETTLED if used else CLAIMABLE
            await self._service.run_db(
                lambda p=p, s=status: self._store.mark_spends([(p.payer, p.nonce)], s)
            )
            if used:
                paid[p.payer] = paid.get(p.payer, 0) + p.amount
        if paid:
            await self._after_payment(paid)

    async def _settle_channels(self) -> bool:
        rows = await self._service.run_db(self._store.channels_to_settle)
        for row in rows:
            if not row.best_signature:
                continue
            amount = min(row.consumed, row.best_cumulative)
            if amount <= row.settled:
                continue
            channel_id = bytes.fromhex(row.channel_id[2:])
            signature = bytes.fromhex(row.best_signature[2:])
            result = await self._escrow.claim_channel_upto(
                channel_id, row.best_cumulative, signature, amount
            )
            await self._service.run_db(self._store.mark_channel_settled, row.channel_id, amount)
            log.info("channel %s settled to %d in %s", row.channel_id, amount, result.tx_hash)
        return bool(rows)

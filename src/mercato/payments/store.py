"""Persistence of payment state (SQLAlchemy, sync; the service runs it off the loop).

Every method is one short transaction. Inserting a spend authorization is how its
nonce is checked and recorded atomically: the primary key (payer, nonce) refuses a
replay, even across restarts and between concurrent requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.payments.errors import Reason
from mercato.payments.wire import SignedSpendAuthorization
from mercato.protocol.eip712 import mask_nonces
from mercato.storage.payment_models import (
    CLAIMABLE,
    REJECTED,
    RESERVED,
    SETTLED,
    SUBMITTED,
    VOID,
    ChannelChargeRow,
    ChannelRow,
    SpendAuthorizationRow,
    SpendSettlementRow,
    X402PaymentRow,
)

_INSERT_SPEND = insert(SpendAuthorizationRow)
_CAPTURE_SPEND = (
    update(SpendAuthorizationRow)
    .where(
        SpendAuthorizationRow.payer == bindparam("p"),
        SpendAuthorizationRow.nonce == bindparam("n"),
        SpendAuthorizationRow.status == RESERVED,
    )
    .values(
        status=bindparam("s"),
        amount=bindparam("a"),
        request_id=bindparam("r"),
        updated_at=bindparam("t"),
    )
)


FALLBACK = "settlement_rejected"  # a claimable row whose settlement failed


@dataclass(frozen=True, slots=True)
class PendingSpend:
    payer: str
    nonce: int
    max_amount: int
    deadline: int
    signature: bytes
    amount: int
    status: str
    tx_hash: str | None
    updated_at: int = 0  # for a claimable one: when it was captured
    reason: str | None = None  # FALLBACK: a settlement covering it failed


@dataclass(frozen=True, slots=True)
class StoredSettlement:
    payer: str  # lower case
    word: int
    mask: int
    total: int
    deadline: int
    signature: bytes
    status: str

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.payer, self.word, self.mask)

    @property
    def nonces(self) -> list[int]:
        return mask_nonces(self.word, self.mask)


@dataclass(frozen=True, slots=True)
class SettlementOffer:
    """What :meth:`PaymentStore.offer_settlement` did: ``reason`` None when stored (or
    already held: ``status`` then says how far it got)."""

    reason: Reason | None
    message: str = ""
    status: str = CLAIMABLE
    replaced: int = 0  # stored settlements of the word it replaced (subsets of it)


def _settlement(row: SpendSettlementRow) -> StoredSettlement:
    return StoredSettlement(
        row.payer,
        int(row.word),
        int(row.mask),
        int(row.total),
        row.deadline,
        bytes.fromhex(row.signature[2:]),
        row.status,
    )


def _zero_charge(row: SpendAuthorizationRow) -> bool:
    """Served for nothing (amount 0): settled locally at capture, never sent on-chain."""
    return row.status == SETTLED and not row.amount and row.tx_hash is None


class PaymentStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- spend authorizations -------------------------------------------------------

    def reserve_spend(self, signed: SignedSpendAuthorization) -> bool:
        """Record a new authorization as in use; False when its nonce was seen before."""
        a, now = signed.auth, int(time.time())
        row = {
            "payer": a.payer.lower(),
            "nonce": str(a.nonce),
            "max_amount": str(a.max_amount),
            "deadline": a.deadline,
            "signature": "0x" + signed.signature.hex(),
            "status": RESERVED,
            "created_at": now,
            "updated_at": now,
        }
        try:  # Core, not the ORM: this runs once per paid request
            with self._engine.begin() as conn:
                conn.execute(_INSERT_SPEND, row)
        except IntegrityError:
            return False
        return True

    def capture_spend(self, payer: str, nonce: int, amount: int, request_id: str) -> None:
        status = CLAIMABLE if amount > 0 else SETTLED
        with self._engine.begin() as conn:
            conn.execute(
                _CAPTURE_SPEND,
                {"p": payer.lower(), "n": str(nonce), "s": status, "a": amount,
                 "r": request_id, "t": int(time.time())},
            )  # fmt: skip

    def void_unfinished(self) -> int:
        """At start-up: requests that were being served when the process died are void."""
        with Session(self._engine) as session, session.begin():
            result = session.execute(
                update(SpendAuthorizationRow)
                .where(SpendAuthorizationRow.status == RESERVED)
                .values(status=VOID, updated_at=int(time.time()))
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def pending_spends(self) -> list[PendingSpend]:
        """Claimable or submitted-but-unconfirmed authorizations, oldest deadline first."""
        with Session(self._engine) as session:
            rows = session.scalars(
                select(SpendAuthorizationRow)
                .where(SpendAuthorizationRow.status.in_((CLAIMABLE, SUBMITTED)))
                .order_by(SpendAuthorizationRow.deadline)
            ).all()
        return [
            PendingSpend(
                r.payer,
                int(r.nonce),
                int(r.max_amount),
                r.deadline,
                bytes.fromhex(r.signature[2:]),
                r.amount or 0,
                r.status,
                r.tx_hash,
                r.updated_at,
                r.reason,
            )
            for r in rows
        ]

    def mark_spends(
        self,
        keys: list[tuple[str, int]],
        status: str,
        *,
        tx_hash: str | None = None,
        reason: str | None = None,
    ) -> None:
        if not keys:
            return
        now = int(time.time())
        with Session(self._engine) as session, session.begin():
            for payer, nonce in keys:
                values: dict[str, object] = {"status": status, "updated_at": now}
                if tx_hash is not None:
                    values["tx_hash"] = tx_hash
                if reason is not None:
                    values["reason"] = reason
                session.execute(
                    update(SpendAuthorizationRow)
                    .where(
                        SpendAuthorizationRow.payer == payer.lower(),
                        SpendAuthorizationRow.nonce == str(nonce),
                    )
                    .values(**values)
                )

    def unsettled_by_payer(self) -> dict[str, int]:
        """What each payer owes this operator and has not been settled yet."""
        owed: dict[str, int] = {}
        with Session(self._engine) as session:
            rows = session.execute(
                select(SpendAuthorizationRow.payer, SpendAuthorizationRow.amount).where(
                    SpendAuthorizationRow.status.in_((CLAIMABLE, SUBMITTED))
                )
            ).all()
        for payer, amount in rows:
            owed[payer] = owed.get(payer, 0) + int(amount or 0)
        return owed

    def spend_status(self, payer: str, nonce: int) -> tuple[str, int | None] | None:
        with Session(self._engine) as session:
            row = session.get(SpendAuthorizationRow, (payer.lower(), str(nonce)))
            return (row.status, row.amount) if row else None

    # -- spend settlements ------------------------------------------------------------

    def offer_settlement(
        self, payer: str, word: int, mask: int, total: int, deadline: int, signature: bytes
    ) -> SettlementOffer:
        """Store a payer's settlement (its signature already checked) if every nonce it
        covers is an authorization of this payer captured here and not yet sent
        on-chain (or served for nothing), and ``total`` is the sum of their charges. One
        transaction: the checks and the write see the same rows."""
        payer, now = payer.lower(), int(time.time())
        sig = "0x" + signature.hex()
        nonces = [str(n) for n in mask_nonces(word, mask)]
        with Session(self._engine) as session, session.begin():
            live = session.scalars(
                select(SpendSettlementRow).where(
                    SpendSettlementRow.payer == payer,
                    SpendSettlementRow.word == str(word),
                    SpendSettlementRow.status.in_((CLAIMABLE, SUBMITTED, SETTLED)),
                )
            ).all()
            replace: list[SpendSettlementRow] = []
            for row in live:
                old = int(row.mask)
                if old == mask and row.signature == sig:
                    return SettlementOffer(None, "already stored", row.status)
                if old & mask == 0:
                    continue
                if row.status == CLAIMABLE and old & ~mask == 0:
                    replace.append(row)
                    continue
                return SettlementOffer(
                    Reason.SETTLEMENT_CONFLICT,
                    f"overlaps a stored settlement (mask {old}, {row.status}) it cannot replace",
                )
            rows = session.scalars(
                select(SpendAuthorizationRow).where(
                    SpendAuthorizationRow.payer == payer, SpendAuthorizationRow.nonce.in_(nonces)
                )
            ).all()
            by_nonce = {r.nonce: r for r in rows}
            for nonce in nonces:
                spend = by_nonce.get(nonce)
                if spend is None or spend.status in (RESERVED, VOID, REJECTED):
                    return SettlementOffer(
                        Reason.SETTLEMENT_UNKNOWN_NONCE,
                        f"nonce {nonce} is not a served authorization of this payer here",
                    )
                if spend.status != CLAIMABLE and not _zero_charge(spend):
                    return SettlementOffer(
                        Reason.NONCE_USED, f"nonce {nonce} was already sent for settlement"
                    )
            charged = sum(int(r.amount or 0) for r in rows)
            if charged != total:
                return SettlementOffer(
                    Reason.SETTLEMENT_TOTAL, f"total {total} is not the sum of charges {charged}"
                )
            for row in replace:
                row.status, row.reason, row.updated_at = REJECTED, "replaced", now
            session.execute(
                delete(SpendSettlementRow).where(
                    SpendSettlementRow.payer == payer,
                    SpendSettlementRow.word == str(word),
                    SpendSettlementRow.mask == str(mask),
                )
            )  # a same-mask one replaced above, or an earlier rejected one
            session.add(
                SpendSettlementRow(
                    payer=payer,
                    word=str(word),
                    mask=str(mask),
                    total=str(total),
                    deadline=deadline,
                    signature=sig,
                    status=CLAIMABLE,
                    created_at=now,
                    updated_at=now,
                )
            )
            return SettlementOffer(None, "stored", CLAIMABLE, len(replace))

    def settlements(self, status: str) -> list[StoredSettlement]:
        with Session(self._engine) as session:
            rows = session.scalars(
                select(SpendSettlementRow)
                .where(SpendSettlementRow.status == status)
                .order_by(SpendSettlementRow.deadline)
            ).all()
            return [_settlement(r) for r in rows]

    def submit_settlements(self, stored: list[StoredSettlement]) -> list[StoredSettlement]:
        """Mark stored settlements and the claimable authorizations they cover
        ``submitted``, before their transaction is sent. One whose nonces are no longer
        all claimable (claimed one by one meanwhile) is rejected here ("superseded") and
        left out of the result."""
        ready: list[StoredSettlement] = []
        now = int(time.time())
        with Session(self._engine) as session, session.begin():
            for st in stored:
                row = session.get(SpendSettlementRow, (st.payer, str(st.word), str(st.mask)))
                if row is None or row.status != CLAIMABLE:
                    continue
                nonces = [str(n) for n in st.nonces]
                spends = session.scalars(
                    select(SpendAuthorizationRow).where(
                        SpendAuthorizationRow.payer == st.payer,
                        SpendAuthorizationRow.nonce.in_(nonces),
                    )
                ).all()
                ok = len(spends) == len(nonces) and all(
                    s.status == CLAIMABLE or _zero_charge(s) for s in spends
                )
                if not ok:
                    row.status, row.reason, row.updated_at = REJECTED, "superseded", now
                    for spend in spends:
                        if spend.status == CLAIMABLE:
                            spend.reason = FALLBACK
                    continue
                row.status, row.updated_at = SUBMITTED, now
                for spend in spends:
                    if spend.status == CLAIMABLE:
                        spend.status, spend.reason, spend.updated_at = SUBMITTED, "settlement", now
                ready.append(st)
        return ready

    def finish_settlement(
        self, st: StoredSettlement, status: str, *, tx_hash: str | None, reason: str | None = None
    ) -> None:
        """A settlement's outcome: SETTLED pays the authorizations it covers; CLAIMABLE
        (send it again) returns them to ``claimable``; REJECTED too, marked FALLBACK so
        that they are claimed one by one without waiting for another settlement."""
        now = int(time.time())
        spend_status = SETTLED if status == SETTLED else CLAIMABLE
        covered = (SUBMITTED, CLAIMABLE) if status == REJECTED else (SUBMITTED,)
        values: dict[str, object] = {"status": spend_status, "updated_at": now}
        if tx_hash is not None:
            values["tx_hash"] = tx_hash
        if status == REJECTED:
            values["reason"] = FALLBACK
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(SpendSettlementRow)
                .where(
                    SpendSettlementRow.payer == st.payer,
                    SpendSettlementRow.word == str(st.word),
                    SpendSettlementRow.mask == str(st.mask),
                )
                .values(status=status, tx_hash=tx_hash, reason=reason, updated_at=now)
            )
            session.execute(
                update(SpendAuthorizationRow)
                .where(
                    SpendAuthorizationRow.payer == st.payer,
                    SpendAuthorizationRow.nonce.in_([str(n) for n in st.nonces]),
                    SpendAuthorizationRow.status.in_(covered),
                )
                .values(**values)
            )

    # -- channels -----------------------------------------------------------------------

    def channel(self, channel_id: str) -> ChannelRow | None:
        with Session(self._engine) as session:
            row = session.get(ChannelRow, channel_id)
            if row is not None:
                session.expunge(row)
            return row

    def accept_voucher(
        self, channel_id: str, payer: str, cumulative: int, signature: bytes
    ) -> bool:
        """Raise the channel's best voucher; False when one at least as high exists."""
        now = int(time.time())
        sig = "0x" + signature.hex()
        with Session(self._engine) as session, session.begin():
            row = session.get(ChannelRow, channel_id, with_for_update=True)
            if row is None:
                session.add(
                    ChannelRow(
                        channel_id=channel_id,
                        payer=payer.lower(),
                        best_cumulative=cumulative,
                        best_signature=sig,
                        consumed=0,
                        settled=0,
                        updated_at=now,
                    )
                )
                return True
            if cumulative <= row.best_cumulative:
                return False
            row.best_cumulative, row.best_signature, row.updated_at = cumulative, sig, now
            return True

    def charge_channel(self, channel_id: str, amount: int, request_id: str) -> int:
        """Add a served request's charge; returns the channel's new consumed total."""
        now = int(time.time())
        with Session(self._engine) as session, session.begin():
            session.add(
                ChannelChargeRow(
                    channel_id=channel_id, request_id=request_id, amount=amount, created_at=now
                )
            )
            session.execute(
                update(ChannelRow)
                .where(ChannelRow.channel_id == channel_id)
                .values(consumed=ChannelRow.consumed + amount, updated_at=now)
            )
            row = session.get(ChannelRow, channel_id)
            return row.consumed if row else amount

    def channels_to_settle(self) -> list[ChannelRow]:
        with Session(self._engine) as session:
            rows = list(
                session.scalars(
                    select(ChannelRow).where(ChannelRow.consumed > ChannelRow.settled)
                ).all()
            )
            for row in rows:
                session.expunge(row)
            return rows

    def mark_channel_settled(self, channel_id: str, settled: int) -> None:
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(ChannelRow)
                .where(ChannelRow.channel_id == channel_id)
                .values(settled=settled, updated_at=int(time.time()))
            )

    # -- x402 -------------------------------------------------------------------------

    def reserve_x402(self, row: X402PaymentRow) -> bool:
        try:
            with Session(self._engine) as session, session.begin():
                session.add(row)
        except IntegrityError:
            return False
        return True

    def set_x402(self, payer: str, nonce: str, status: str, **values: object) -> None:
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(X402PaymentRow)
                .where(X402PaymentRow.payer == payer.lower(), X402PaymentRow.nonce == nonce)
                .values(status=status, updated_at=int(time.time()), **values)
            )

    def pending_x402(self) -> list[X402PaymentRow]:
        with Session(self._engine) as session:
            rows = list(
                session.scalars(
                    select(X402PaymentRow)
                    .where(X402PaymentRow.status.in_((CLAIMABLE, SUBMITTED)))
                    .order_by(X402PaymentRow.valid_before)
                ).all()
            )
            for row in rows:
                session.expunge(row)
            return rows

    def void_unfinished_x402(self) -> None:
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(X402PaymentRow)
                .where(X402PaymentRow.status == RESERVED)
                .values(status=VOID, updated_at=int(time.time()))
            )

"""Persistence of payment state (SQLAlchemy, sync; the service runs it off the loop).

Every method is one short transaction. Inserting a spend authorization is how its
nonce is checked and recorded atomically: the primary key (payer, nonce) refuses a
replay, even across restarts and between concurrent requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.payments.wire import SignedSpendAuthorization
from mercato.storage.payment_models import (
    CLAIMABLE,
    RESERVED,
    SETTLED,
    SUBMITTED,
    VOID,
    ChannelChargeRow,
    ChannelRow,
    SpendAuthorizationRow,
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

"""Prepaid credits: in-memory balances in front of a double-entry ledger.

Accounts: ``key:<id>`` (a key's spendable credits), ``held:<id>`` (held for requests in
flight), ``router:revenue``, ``external:topups`` (where top-ups come from). Every
journal balances to zero.

Request path, no database read or write before forwarding:

1. :meth:`Credits.hold` reserves the request's maximum cost in memory, or fails closed
   with 402 ``insufficient_credits``. Available = the balance last committed to the
   database minus this process's pending holds and uncommitted charges.
2. The request is forwarded.
3. :meth:`Credits.settle` charges the actual cost (never more than the hold): the hold,
   capture and release journals of the request go to the writer together, with the
   request's history row, in one transaction; with ``durable`` the answer waits for that
   commit (a group commit shared with every other request finishing at that moment).
   A request that failed releases its hold in memory and writes no journal.

Crash safety: a hold is never on disk without its capture and release (they commit
together), so a SIGKILL leaves no dangling hold; a request killed before its commit
is not charged (its client got no complete answer: with ``durable`` the answer waits
for the commit); the journals' ``idem_key`` makes a repeated request id a no-op, so no
request is charged twice, ever. See docs/protocols/routing.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mercato.errors import PaymentRequired
from mercato.router.writer import Job, Journal, Writer
from mercato.storage.router_models import RouterBalance

log = logging.getLogger(__name__)

REVENUE = "router:revenue"
TOPUPS = "external:topups"


def key_account(key_id: str) -> str:
    return f"key:{key_id}"


def held_account(key_id: str) -> str:
    return f"held:{key_id}"


@dataclass(frozen=True, slots=True)
class Hold:
    key_id: str
    request_id: str
    amount: int


def request_journals(hold: Hold, cost: int) -> list[Journal]:
    """hold (key -> held), capture (held -> revenue), release (held -> key)."""
    if hold.amount <= 0:
        return []
    user, held, rid = key_account(hold.key_id), held_account(hold.key_id), hold.request_id
    journals = [
        Journal(f"req:{rid}:hold", "hold", ((user, -hold.amount), (held, hold.amount)), rid)
    ]
    if cost > 0:
        journals.append(
            Journal(f"req:{rid}:capture", "capture", ((held, -cost), (REVENUE, cost)), rid)
        )
    rest = hold.amount - cost
    if rest > 0:
        journals.append(
            Journal(f"req:{rid}:release", "release", ((held, -rest), (user, rest)), rid)
        )
    return journals


class Credits:
    def __init__(
        self,
        engine: Engine,
        writer: Writer,
        *,
        durable: bool = True,
        commit_timeout_s: float = 10.0,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self.durable = durable
        self._commit_timeout = commit_timeout_s
        self._persisted: dict[str, int] = {}
        self._pending: dict[str, int] = defaultdict(int)  # holds + uncommitted charges

    async def load(self) -> None:
        self._persisted = await asyncio.to_thread(self._read_balances)

    def _read_balances(self) -> dict[str, int]:
        with Session(self._engine) as session:
            rows = session.execute(select(RouterBalance.account, RouterBalance.balance))
            return {a: int(b) for a, b in rows}

    def balance(self, key_id: str) -> int:
        """Spendable now: committed balance less what this process has in flight."""
        account = key_account(key_id)
        return self._persisted.get(account, 0) - self._pending.get(account, 0)

    def hold(self, key_id: str, request_id: str, amount: int) -> Hold:
        available = self.balance(key_id)
        if amount > available:
            raise PaymentRequired(
                f"insufficient credits: this request may cost up to {amount}, "
                f"{max(available, 0)} available",
                code="insufficient_credits",
            )
        self._pending[key_account(key_id)] += amount
        return Hold(key_id, request_id, amount)

    def release(self, hold: Hold) -> None:
        self._pending[key_account(hold.key_id)] -= hold.amount

    async def settle(self, hold: Hold, cost: int, history: dict[str, Any] | None) -> int:
        """Charge ``cost`` (capped at the hold); returns what was charged."""
        cost = max(0, min(cost, hold.amount))
        account = key_account(hold.key_id)
        self._pending[account] -= hold.amount - cost
        journals = request_journals(hold, cost)
        if not journals:
            self._pending[account] -= cost
            if history is not None:
                self._writer.add_history(history)
            return 0

        def committed(applied: list[bool], balances: dict[str, int]) -> None:
            self._pending[account] -= cost
            self._persisted.update(balances)

        future: asyncio.Future[list[bool]] | None = None
        if self.durable:
            future = asyncio.get_running_loop().create_future()
        self._writer.submit(Job(journals, history, future, committed))
        if future is not None:
            try:
                applied = await asyncio.wait_for(asyncio.shield(future), self._commit_timeout)
            except TimeoutError:
                log.error(
                    "charge of %s not committed after %ss; still queued",
                    hold.request_id,
                    self._commit_timeout,
                )
                return cost
            if not applied[0]:
                return 0  # this request id was charged before: not again
        return cost

    async def topup(self, key_id: str, amount: int, topup_id: str) -> int:
        """Add credits (idempotent per ``topup_id``); the new committed balance."""
        if amount <= 0:
            raise ValueError("top-up amount must be positive")
        account = key_account(key_id)
        journal = Journal(f"topup:{topup_id}", "topup", ((TOPUPS, -amount), (account, amount)))
        done: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()

        def committed(applied: list[bool], balances: dict[str, int]) -> None:
            self._persisted.update(balances)

        self._writer.submit(Job([journal], None, done, committed))
        await done
        return self._persisted.get(account, 0)

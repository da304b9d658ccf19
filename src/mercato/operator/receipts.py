"""Signing receipts and keeping them.

``ReceiptSigner`` signs the vllm-proxy text with both keys. ``ReceiptStore`` keeps
receipts for ``GET /v1/signature/{id}``: new receipts are visible at once from memory
and written to the database in batches by a background task (never on the request
path); expired ones are deleted by the same task.

A receipt is always handed to the client inline as well, so the store's write-behind
window (``flush_interval_s``, 50 ms by default) is the most a crash can lose from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mercato.crypto.keystore import SigningKeys
from mercato.protocol.receipts import Receipt, payment_text, receipt_text
from mercato.storage.models import ReceiptRow

log = logging.getLogger(__name__)


class ReceiptSigner:
    def __init__(self, keys: SigningKeys) -> None:
        self._keys = keys
        self.signing_address = keys.ecdsa.address
        self.ecdsa_public_key = keys.ecdsa.public_key_hex
        self.ed25519_public_key = keys.ed25519.public_key_hex

    def sign(
        self,
        response_id: str,
        request_sha256: str,
        response_sha256: str,
        payment: dict[str, Any] | None = None,
    ) -> Receipt:
        text = receipt_text(request_sha256, response_sha256).encode()
        payment_signature = None
        if payment is not None:
            ptext = payment_text(request_sha256, response_sha256, payment).encode()
            payment_signature = "0x" + self._keys.ecdsa.sign_personal(ptext).hex()
        return Receipt(
            id=response_id,
            request_sha256=request_sha256,
            response_sha256=response_sha256,
            signing_address=self.signing_address,
            ecdsa_signature="0x" + self._keys.ecdsa.sign_personal(text).hex(),
            ed25519_public_key=self.ed25519_public_key,
            ed25519_signature=self._keys.ed25519.sign(text).hex(),
            created_at=int(time.time()),
            payment=payment,
            payment_signature=payment_signature,
        )


class ReceiptStore:
    def __init__(self, engine: Engine, *, retention_s: float, flush_interval_s: float) -> None:
        self._engine = engine
        self._retention_s = retention_s
        self._interval = flush_interval_s
        self._pending: dict[str, Receipt] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="receipt-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    def put(self, receipt: Receipt) -> None:
        self._pending[receipt.id] = receipt

    async def get(self, receipt_id: str) -> Receipt | None:
        pending = self._pending.get(receipt_id)
        if pending is not None:
            return pending
        return await asyncio.to_thread(self._load, receipt_id)

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await asyncio.to_thread(self._write, list(batch.values()))
        except Exception:
            # Keep them for the next round; newer receipts with the same id win.
            self._pending = {**batch, **self._pending}
            raise

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
                now = time.monotonic()
                if now - self._last_purge > 60:
                    self._last_purge = now
                    await asyncio.to_thread(self._purge)
            except Exception:
                log.exception("receipt writer failed; retrying")

    def _write(self, receipts: list[Receipt]) -> None:
        rows = []
        for r in receipts:
            row = asdict(r)
            payment = {
                "payment": row.pop("payment"),
                "payment_signature": row.pop("payment_signature"),
            }
            row["extra"] = json.dumps(payment) if r.payment is not None else None
            rows.append(row)
        dialect = self._engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(ReceiptRow).values(rows)
        stmt = stmt.on_conflict_do_nothing(index_elements=["id"])
        with Session(self._engine) as session, session.begin():
            session.execute(stmt)

    def _load(self, receipt_id: str) -> Receipt | None:
        cutoff = int(time.time() - self._retention_s)
        with Session(self._engine) as session:
            row = session.scalars(
                select(ReceiptRow).where(
                    ReceiptRow.id == receipt_id, ReceiptRow.created_at >= cutoff
                )
            ).first()
        if row is None:
            return None
        extra = json.loads(row.extra) if row.extra else {}
        fields = {f: getattr(row, f) for f in Receipt.__dataclass_fields__ if hasattr(row, f)}
        return Receipt(**{**fields, **extra})

    def _purge(self) -> None:
        cutoff = int(time.time() - self._retention_s)
        with Session(self._engine) as session, session.begin():
            session.execute(delete(ReceiptRow).where(ReceiptRow.created_at < cutoff))

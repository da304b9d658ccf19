from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from mercato.crypto.keystore import SigningKeys
from mercato.crypto.signers import EcdsaSigner, Ed25519Signer
from mercato.operator.receipts import ReceiptSigner, ReceiptStore
from mercato.storage.db import make_engine, migrate

SIGNER = ReceiptSigner(
    SigningKeys(EcdsaSigner.from_bytes(b"\x01" * 32), Ed25519Signer.from_seed(b"\x02" * 32))
)


async def test_write_behind_persists_and_expires(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'op.db'}")
    migrate(engine)
    migrate(engine)  # idempotent
    store = ReceiptStore(engine, retention_s=3600, flush_interval_s=0.01)
    await store.start()
    fresh = SIGNER.sign("chatcmpl-a", "aa" * 32, "bb" * 32)
    old = replace(
        SIGNER.sign("chatcmpl-old", "cc" * 32, "dd" * 32), created_at=int(time.time()) - 7200
    )
    store.put(fresh)
    store.put(old)
    assert await store.get("chatcmpl-a") == fresh  # visible before the flush
    await store.close()

    reopened = ReceiptStore(engine, retention_s=3600, flush_interval_s=0.01)
    assert await reopened.get("chatcmpl-a") == fresh
    assert await reopened.get("chatcmpl-old") is None  # past retention
    assert await reopened.get("nope") is None
    reopened._purge()
    with engine.connect() as conn:
        count = conn.exec_driver_sql("select count(*) from receipts").scalar()
    assert count == 1
    engine.dispose()

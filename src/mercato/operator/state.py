"""Everything one operator process holds, built once by the app's lifespan."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import Engine

from mercato.attestation import QuoteProvider
from mercato.operator.backends.base import Backend
from mercato.operator.metrics import OperatorMetrics
from mercato.operator.receipts import ReceiptSigner, ReceiptStore
from mercato.operator.settings import OperatorSettings
from mercato.payments.pricing import Price
from mercato.payments.service import PaymentService


@dataclass
class OperatorState:
    settings: OperatorSettings
    backend: Backend
    signer: ReceiptSigner
    receipts: ReceiptStore
    attestation: QuoteProvider
    metrics: OperatorMetrics
    engine: Engine
    payments: PaymentService | None = None
    prices: dict[str, Price] = field(default_factory=dict)  # model -> on-chain offer
    started_at: int = field(default_factory=lambda: int(time.time()))

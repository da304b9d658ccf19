"""Everything one router process holds, built once by the app's lifespan."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from mercato.router.credits import Credits
from mercato.router.feedback import FeedbackBook
from mercato.router.forward import Forwarder
from mercato.router.history import History
from mercato.router.keys import KeyRing
from mercato.router.metrics import RouterMetrics
from mercato.router.selection import Offer
from mercato.router.settings import RouterSettings
from mercato.router.stats import StatsBoard
from mercato.router.table import OfferTable
from mercato.router.writer import Writer

if TYPE_CHECKING:
    from mercato.router.discovery import Discovery


@dataclass
class RouterState:
    settings: RouterSettings
    engine: Engine
    stats: StatsBoard
    forwarder: Forwarder
    writer: Writer
    credits: Credits
    keys: KeyRing
    history: History
    feedback: FeedbackBook
    metrics: RouterMetrics
    static_offers: list[Offer]
    table: OfferTable = field(default_factory=OfferTable)
    discovery: Discovery | None = None
    rng: random.Random = field(default_factory=random.Random)
    started_at: int = field(default_factory=lambda: int(time.time()))

    def set_chain_offers(self, offers: list[Offer]) -> None:
        """Replace the routing table: chain offers, then configured ones."""
        self.table = OfferTable.build([*offers, *self.static_offers])
        self.metrics.offers.set(len(self.table.all()))

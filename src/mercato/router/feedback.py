"""Client feedback: one score from 0 (bad) to 1 (good) per answered request.

``POST /v1/feedback {"request_id": ..., "score": ...}`` from whoever made the request
(the same API key; keyless requests take keyless feedback). Scores are stored in
``router_feedback``, so they survive restarts and every replica sees them, and feed the
upstream's in-memory reputation (selection.Health.reputation: 0.2 of it is feedback)
as they arrive; at start-up each upstream's feedback is seeded from its latest stored
scores.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.errors import InvalidRequest, NotFound
from mercato.router.history import now_ms
from mercato.router.stats import StatsBoard
from mercato.router.writer import Writer
from mercato.storage.router_models import RouterFeedback, RouterRequest

SEED_SCORES = 200  # latest scores per upstream replayed at start-up


def parse_feedback(doc: dict[str, Any]) -> tuple[str, float]:
    request_id = doc.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
        raise InvalidRequest(
            "request_id must be the X-Mercato-Request-Id of an answer",
            param="request_id",
            code="invalid_parameter",
        )
    score = doc.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise InvalidRequest(
            "score must be a number from 0 (bad) to 1 (good)",
            param="score",
            code="invalid_parameter",
        )
    return request_id, float(score)


class FeedbackBook:
    def __init__(self, engine: Engine, stats: StatsBoard, writer: Writer) -> None:
        self._engine = engine
        self._stats = stats
        self._writer = writer

    async def load(self) -> None:
        """Seed each upstream's feedback from its latest stored scores, oldest first."""
        for upstream, scores in (await asyncio.to_thread(self._latest)).items():
            for score in scores:
                self._stats.get(upstream).record_feedback(score)

    def _latest(self) -> dict[str, list[float]]:
        f = RouterFeedback
        rank = (
            func.row_number()
            .over(partition_by=f.upstream, order_by=f.created_at.desc())
            .label("rank")
        )
        inner = select(f.upstream, f.score, f.created_at, rank).subquery()
        stmt = (
            select(inner.c.upstream, inner.c.score)
            .where(inner.c.rank <= SEED_SCORES)
            .order_by(inner.c.created_at)
        )
        out: dict[str, list[float]] = {}
        with Session(self._engine) as session:
            for upstream, score in session.execute(stmt):
                out.setdefault(upstream, []).append(score)
        return out

    async def give(self, key_id: str | None, request_id: str, score: float) -> dict[str, Any]:
        found = await asyncio.to_thread(self._answered_by, key_id, request_id)
        if found is None:  # its history row may still be queued: commit it and look again
            await self._writer.write([])
            found = await asyncio.to_thread(self._answered_by, key_id, request_id)
        if found is None:
            raise NotFound(f"no request {request_id} of yours", code="unknown_request")
        upstream, status = found
        if upstream is None or status != 200:
            raise InvalidRequest(
                "that request was not answered; there is nothing to score",
                code="request_not_answered",
            )
        row = RouterFeedback(
            request_id=request_id,
            key_id=key_id,
            upstream=upstream,
            score=score,
            created_at=now_ms(),
        )
        if not await asyncio.to_thread(self._insert, row):
            raise InvalidRequest(
                f"request {request_id} already has feedback", status=409, code="feedback_exists"
            )
        stats = self._stats.get(upstream)
        stats.record_feedback(score)
        return {
            "request_id": request_id,
            "upstream": upstream,
            "score": score,
            "upstream_feedback": round(stats.feedback, 4),
        }

    def _answered_by(self, key_id: str | None, request_id: str) -> tuple[str | None, int] | None:
        with Session(self._engine) as session:
            row = session.get(RouterRequest, request_id)
            if row is None or row.key_id != key_id:
                return None
            return row.upstream, row.status

    def _insert(self, row: RouterFeedback) -> bool:
        with Session(self._engine) as session:
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                return False
        return True

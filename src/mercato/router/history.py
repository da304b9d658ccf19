"""Request history and analytics: rows come from the writer (never the request path);
reads run in a worker thread. Times are Unix milliseconds; days are UTC."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Engine, case, cast, func, select
from sqlalchemy.orm import Session

from mercato.storage.router_models import RouterRequest

DAY_MS = 86_400_000


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    key_id: str | None
    payer: str | None
    model: str
    endpoint: str
    stream: bool
    strategy: str
    upstream_kind: str | None
    upstream: str | None
    upstream_name: str | None
    service_id: int | None
    status: int
    prompt_tokens: int
    completion_tokens: int
    cost: int
    latency_ms: float
    ttft_ms: float | None
    attempts: int
    receipt_id: str | None
    receipt_signer: str | None
    created_at: int

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(RequestRecord))


def now_ms() -> int:
    return int(time.time() * 1000)


class History:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def recent(
        self, *, key_id: str | None, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._list, key_id, limit, before)

    def _list(self, key_id: str | None, limit: int, before: int | None) -> list[dict[str, Any]]:
        stmt = select(RouterRequest).order_by(RouterRequest.created_at.desc()).limit(limit)
        if key_id is not None:
            stmt = stmt.where(RouterRequest.key_id == key_id)
        if before is not None:
            stmt = stmt.where(RouterRequest.created_at < before)
        with Session(self._engine) as session:
            return [
                {c: getattr(r, c) for c in RequestRecord.__dataclass_fields__}
                for r in session.scalars(stmt)
            ]

    async def analytics(self, *, key_id: str | None, since: int | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self._analytics, key_id, since)

    def _analytics(self, key_id: str | None, since: int | None) -> dict[str, Any]:
        t = RouterRequest
        ok = case((t.status == 200, 1), else_=0)
        measures = (
            func.count().label("requests"),
            func.sum(ok).label("succeeded"),
            func.coalesce(func.sum(t.cost), 0).label("spend"),
            func.coalesce(func.sum(t.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(t.completion_tokens), 0).label("completion_tokens"),
            func.avg(t.latency_ms).label("avg_latency_ms"),
        )

        def query(*group: Any) -> Any:
            stmt = select(*group, *measures)
            if key_id is not None:
                stmt = stmt.where(t.key_id == key_id)
            if since is not None:
                stmt = stmt.where(t.created_at >= since)
            if group:
                stmt = stmt.group_by(*group).order_by(*group)
            return stmt

        def rows(stmt: Any, *names: str) -> list[dict[str, Any]]:
            out = []
            for r in session.execute(stmt):
                m = r._mapping
                doc = {n: m[n] for n in names}
                requests = int(m["requests"])
                doc.update(
                    requests=requests,
                    spend=int(m["spend"]),
                    prompt_tokens=int(m["prompt_tokens"]),
                    completion_tokens=int(m["completion_tokens"]),
                    success_rate=(int(m["succeeded"] or 0) / requests) if requests else None,
                    avg_latency_ms=float(m["avg_latency_ms"]) if m["avg_latency_ms"] else None,
                )
                out.append(doc)
            return out

        day = cast(t.created_at // DAY_MS, BigInteger).label("day")
        with Session(self._engine) as session:
            total = rows(query())[0]
            by_day = rows(query(day), "day")
            for d in by_day:
                d["day"] = datetime.fromtimestamp(int(d["day"]) * 86400, UTC).date().isoformat()
            by_model = rows(query(t.model), "model")
            by_operator = rows(
                query(t.upstream_kind, t.upstream, t.upstream_name),
                "upstream_kind",
                "upstream",
                "upstream_name",
            )
        return {"total": total, "by_day": by_day, "by_model": by_model, "by_operator": by_operator}

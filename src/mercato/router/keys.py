"""API keys ``sk-<key id>-<secret>``: the secret's SHA-256 is stored, never the key.

Keys are cached in memory (checked with ``secrets.compare_digest``, no database on the
request path) and re-read every few seconds so that a revocation made by another
replica takes effect.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from mercato.errors import AuthenticationFailed, NotFound
from mercato.storage.router_models import RouterApiKey

PREFIX = "sk-"
_ID_LEN = 16


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(token: str) -> tuple[str, str] | None:
    if not token.startswith(PREFIX) or len(token) < len(PREFIX) + _ID_LEN + 2:
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("-")
    if len(key_id) != _ID_LEN or sep != "-" or not secret:
        return None
    return key_id, secret


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    secret_sha256: str
    name: str
    created_at: int
    revoked_at: int | None = None


class KeyRing:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._keys: dict[str, ApiKey] = {}

    async def load(self) -> None:
        """(Re-)read every key. Keys are never deleted, only revoked: one known here but
        not (yet) read, or revoked here but not (yet) there, stays as known here."""
        fresh = await asyncio.to_thread(self._read)
        for key_id, known in self._keys.items():
            row = fresh.setdefault(key_id, known)
            if known.revoked_at is not None and row.revoked_at is None:
                fresh[key_id] = known
        self._keys = fresh

    def _read(self) -> dict[str, ApiKey]:
        with Session(self._engine) as session:
            return {
                r.key_id: ApiKey(r.key_id, r.secret_sha256, r.name, r.created_at, r.revoked_at)
                for r in session.scalars(select(RouterApiKey))
            }

    def authenticate(self, token: str | None) -> ApiKey:
        parts = split_key(token) if token else None
        key = self._keys.get(parts[0]) if parts else None
        # Hash and compare even for unknown ids, so timing tells nothing.
        expected = key.secret_sha256 if key else "0" * 64
        ok = secrets.compare_digest(_digest(parts[1] if parts else ""), expected)
        if key is None or not ok or key.revoked_at is not None:
            raise AuthenticationFailed("invalid or revoked API key")
        return key

    def get(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    def all(self) -> list[ApiKey]:
        return list(self._keys.values())

    async def create(self, name: str = "") -> tuple[str, ApiKey]:
        """A new key: the full token (shown once) and its record."""
        key_id = secrets.token_hex(_ID_LEN // 2)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(key_id, _digest(secret), name, int(time.time()))
        await asyncio.to_thread(self._insert, key)
        self._keys[key_id] = key
        return f"{PREFIX}{key_id}-{secret}", key

    def _insert(self, key: ApiKey) -> None:
        with Session(self._engine) as session, session.begin():
            session.add(
                RouterApiKey(
                    key_id=key.key_id,
                    secret_sha256=key.secret_sha256,
                    name=key.name,
                    created_at=key.created_at,
                )
            )

    async def revoke(self, key_id: str) -> ApiKey:
        key = self._keys.get(key_id)
        if key is None:
            raise NotFound(f"no API key {key_id!r}", code="key_not_found")
        now = int(time.time())
        await asyncio.to_thread(self._revoke, key_id, now)
        revoked = ApiKey(key.key_id, key.secret_sha256, key.name, key.created_at, now)
        self._keys[key_id] = revoked
        return revoked

    def _revoke(self, key_id: str, now: int) -> None:
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(RouterApiKey).where(RouterApiKey.key_id == key_id).values(revoked_at=now)
            )

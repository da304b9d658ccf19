"""API keys against SQLite: hashed at rest, cached, revocable."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.errors import AuthenticationFailed
from mercato.router.keys import KeyRing
from mercato.storage.db import make_engine, migrate
from mercato.storage.router_models import RouterApiKey


async def test_keys_are_hashed_cached_and_revocable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    migrate(engine)
    ring = KeyRing(engine)
    await ring.load()
    token, key = await ring.create("alice")
    assert token.startswith(f"sk-{key.key_id}-")
    assert ring.authenticate(token).key_id == key.key_id
    with Session(engine) as s:
        row = s.scalars(select(RouterApiKey)).one()
        assert token.split("-", 2)[2] not in row.secret_sha256  # only the hash is stored
    for bad in (None, "", "sk-nope", token[:-1] + "x", "sk-0000000000000000-" + "a" * 43):
        with pytest.raises(AuthenticationFailed):
            ring.authenticate(bad)
    other = KeyRing(engine)  # a restart (or another replica) loads the same keys
    await other.load()
    assert other.authenticate(token).name == "alice"
    await ring.revoke(key.key_id)
    with pytest.raises(AuthenticationFailed):
        ring.authenticate(token)
    await other.load()
    with pytest.raises(AuthenticationFailed):
        other.authenticate(token)
    engine.dispose()

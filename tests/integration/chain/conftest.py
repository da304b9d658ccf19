"""One anvil for the whole test session, on a free port of 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mercato.chain.anvil import Anvil, AnvilConfig, find_anvil
from mercato.chain.errors import AnvilNotFound


@pytest.fixture(scope="session")
def anvil_binary() -> Path:
    try:
        return find_anvil()
    except AnvilNotFound as exc:
        pytest.skip(f"anvil is not installed: {exc}")


@pytest.fixture(scope="session")
async def anvil(anvil_binary: Path) -> AsyncIterator[Anvil]:
    async with Anvil(AnvilConfig(binary=str(anvil_binary))) as node:
        yield node


@pytest.fixture(scope="session")
def vyper_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vyper-cache")

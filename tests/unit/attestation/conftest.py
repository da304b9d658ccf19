"""Fixtures for the attestation tests: recorded agent answers and a fake dstack agent.

The fake agent is a real HTTP server (aiohttp) on a unix socket, so DstackProvider is
exercised over the same transport it uses in a CVM. It answers from the recorded
fixtures in ``fixtures/`` (see fixtures/README.md); for any other report_data it makes
a synthetic quote, as a real agent would make a real one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from .attest_fake_agent import FakeAgent, agent_app

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture(scope="session")
def nearai_quote() -> dict[str, Any]:
    return load_fixture("dstack_quote_nearai.json")


@pytest.fixture(scope="session")
def synthetic_quote() -> dict[str, Any]:
    return load_fixture("dstack_quote_synthetic.json")


@pytest.fixture(scope="session")
def dstack_info() -> dict[str, Any]:
    return load_fixture("dstack_info.json")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="mq-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def fake_agent(
    short_tmp: Path,
    nearai_quote: dict[str, Any],
    synthetic_quote: dict[str, Any],
    dstack_info: dict[str, Any],
) -> AsyncIterator[FakeAgent]:
    recorded = {
        fx["agent_request"]["report_data"]: fx["agent_response"]
        for fx in (nearai_quote, synthetic_quote)
    }
    agent = FakeAgent(str(short_tmp / "dstack.sock"), recorded, dstack_info["agent_response"])
    runner = web.AppRunner(agent_app(agent))
    await runner.setup()
    site = web.UnixSite(runner, agent.socket_path)
    await site.start()
    try:
        yield agent
    finally:
        await runner.cleanup()

"""The generic layer (sender, binding, event decoding, log sync) on a tiny contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from mercato.chain.anvil import Anvil, dev_account, free_port
from mercato.chain.compile import compile_contract
from mercato.chain.contract import ChainEvent, ContractBinding
from mercato.chain.errors import ChainError, ChainUnavailable, ContractReverted
from mercato.chain.tx import TxSender

pytestmark = pytest.mark.chain

TINY = Path(__file__).parent / "contracts" / "Tiny.vy"


@dataclass(frozen=True, kw_only=True)
class Set(ChainEvent):
    who: str
    value: int
    note: str


class Tiny(ContractBinding):
    EVENTS = (Set,)

    async def value(self) -> int:
        return int(await self.call("value"))

    async def set(self, value: int, note: str = "") -> Any:
        return await self.send("set", value, note)


@pytest.fixture(scope="module")
async def tiny(anvil: Anvil, vyper_cache: Path) -> AsyncIterator[Tiny]:
    artifact = compile_contract(TINY, cache_dir=vyper_cache)
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.rpc_url))
    sender = TxSender(w3, dev_account(5))
    w3c = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = await sender.send(None, w3c.constructor(5).data_in_transaction, label="deploy")
    yield Tiny(w3, str(receipt["contractAddress"]), artifact.abi, sender=sender)
    await w3.provider.disconnect()


def test_compile_cache_hit(vyper_cache: Path) -> None:
    first = compile_contract(TINY, cache_dir=vyper_cache)
    again = compile_contract(TINY, cache_dir=vyper_cache)
    assert first == again
    assert list(vyper_cache.rglob(f"Tiny-{first.source_hash}.json"))


async def test_call_send_and_decode(tiny: Tiny) -> None:
    assert await tiny.value() == 5
    result = await tiny.set(7, "hello")
    assert await tiny.value() == 7
    (event,) = result.events_of(Set)
    assert (event.who, event.value, event.note) == (tiny.sender.address, 7, "hello")  # type: ignore[union-attr]
    assert event.block_number == result.block_number
    assert result.event(Set) is event


async def test_revert_reason_from_estimate(tiny: Tiny) -> None:
    with pytest.raises(ContractReverted) as info:
        await tiny.set(13)
    assert info.value.reason == "unlucky"
    assert info.value.function == "set"
    assert info.value.code == "contract_reverted"


async def test_revert_reason_from_mined_receipt(tiny: Tiny) -> None:
    """With an explicit gas limit nothing is estimated: the failure comes from the receipt."""
    with pytest.raises(ContractReverted) as info:
        await tiny.send("set", 13, "", gas=200_000)
    assert info.value.reason == "unlucky"
    assert info.value.tx_hash is not None


async def test_concurrent_sends_get_distinct_nonces(tiny: Tiny) -> None:
    results = await asyncio.gather(*(tiny.set(100 + i, f"n{i}") for i in range(8)))
    assert len({r.tx_hash for r in results}) == 8


async def test_fetch_events_in_chunks(tiny: Tiny) -> None:
    start = (await tiny.set(1, "a")).block_number
    await tiny.set(2, "b")
    end = (await tiny.set(3, "c")).block_number
    for chunk in (1, 2, 2000):
        events = await tiny.fetch_events(start, end, chunk_size=chunk)
        assert [e.note for e in events if isinstance(e, Set)] == ["a", "b", "c"]
    everything = await tiny.fetch_events(0)
    assert [e.position for e in everything] == sorted(e.position for e in everything)


async def test_read_only_binding_cannot_send(tiny: Tiny) -> None:
    with pytest.raises(ChainError, match="no signing account"):
        await tiny.with_sender(None).set(1)


async def test_unreachable_rpc_is_chain_unavailable(tiny: Tiny) -> None:
    w3 = AsyncWeb3(AsyncHTTPProvider(f"http://127.0.0.1:{free_port()}"))
    dead = Tiny(w3, tiny.address, tiny.contract.abi)
    with pytest.raises(ChainUnavailable):
        await dead.value()
    await w3.provider.disconnect()

"""Devnet-only JSON-RPC methods of anvil: move time, mine, snapshot and revert."""

from __future__ import annotations

from typing import Any

from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from mercato.chain.errors import ChainError
from mercato.chain.tx import translate_errors


async def _rpc(w3: AsyncWeb3[Any], method: str, params: list[Any]) -> Any:
    with translate_errors(method):
        response = await w3.provider.make_request(RPCEndpoint(method), params)
    if "error" in response:
        raise ChainError(f"{method}: {response['error']}")
    return response.get("result")


async def mine(w3: AsyncWeb3[Any], blocks: int = 1) -> None:
    await _rpc(w3, "anvil_mine", [hex(blocks)])


async def increase_time(w3: AsyncWeb3[Any], seconds: int) -> int:
    """Move the clock forward and mine a block stamped with the new time; the new
    latest block's timestamp."""
    await _rpc(w3, "evm_increaseTime", [seconds])
    await _rpc(w3, "evm_mine", [])
    block = await w3.eth.get_block("latest")
    return int(block["timestamp"])


async def latest_timestamp(w3: AsyncWeb3[Any]) -> int:
    with translate_errors("eth_getBlockByNumber"):
        block = await w3.eth.get_block("latest")
    return int(block["timestamp"])


async def snapshot(w3: AsyncWeb3[Any]) -> str:
    return str(await _rpc(w3, "evm_snapshot", []))


async def revert(w3: AsyncWeb3[Any], snapshot_id: str) -> bool:
    return bool(await _rpc(w3, "evm_revert", [snapshot_id]))


async def set_balance(w3: AsyncWeb3[Any], address: str, wei: int) -> None:
    """Give ``address`` exactly ``wei`` of the native coin (for gas)."""
    await _rpc(w3, "anvil_setBalance", [address, hex(wei)])

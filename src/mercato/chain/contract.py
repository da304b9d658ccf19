"""Generic async contract binding: calls, transactions, typed event decoding, log sync.

Typed wrappers (:mod:`mercato.chain.token`, ``registry``, ``escrow``) subclass
:class:`ContractBinding`, list their event dataclasses in ``EVENTS`` and give each
contract function a typed method that delegates to :meth:`ContractBinding.call` or
:meth:`ContractBinding.send`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar, cast

from hexbytes import HexBytes
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import Web3RPCError
from web3.types import BlockIdentifier, FilterParams, LogReceipt, TxReceipt

from mercato.chain.errors import ChainError
from mercato.chain.tx import TxSender, translate_errors

DEFAULT_LOG_CHUNK = 2_000


def make_web3(rpc_url: str, *, timeout: float = 30.0) -> AsyncWeb3[Any]:
    """An async web3 over HTTP JSON-RPC (one pooled session; close with
    ``await w3.provider.disconnect()``)."""
    return AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


@dataclass(frozen=True, kw_only=True)
class ChainEvent:
    """A decoded log. Subclasses add the event's arguments, named as in the contract."""

    EVENT: ClassVar[str] = ""  # the ABI event name; the class name when empty

    block_number: int
    log_index: int
    tx_hash: str
    address: str

    @classmethod
    def event_name(cls) -> str:
        return cls.EVENT or cls.__name__

    @property
    def position(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)

    @classmethod
    def from_decoded(cls, args: Mapping[str, Any], log: Mapping[str, Any]) -> Self:
        values = {key: _plain(value) for key, value in args.items()}
        return cls(
            block_number=int(log["blockNumber"]),
            log_index=int(log["logIndex"]),
            tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
            address=str(log["address"]),
            **values,
        )


def _plain(value: Any) -> Any:
    """HexBytes -> bytes, lists -> tuples (events are frozen and hashable)."""
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


E = TypeVar("E", bound=ChainEvent)


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction and the events it emitted (of known contracts)."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[ChainEvent, ...]
    contract_address: str | None = None

    def events_of(self, cls: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, cls)]

    def event(self, cls: type[E]) -> E:
        """The first event of type ``cls``; :class:`ChainError` when there is none."""
        found = self.events_of(cls)
        if not found:
            raise ChainError(f"transaction {self.tx_hash} emitted no {cls.event_name()}")
        return found[0]


class EventDecoder:
    """Decodes logs of any registered contract into :class:`ChainEvent` objects."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, bytes], tuple[Any, type[ChainEvent]]] = {}

    def register(self, contract: AsyncContract, events: Iterable[type[ChainEvent]]) -> None:
        address = str(contract.address).lower()
        for cls in events:
            name = cls.event_name()
            try:
                abi_event = contract.events[name]
            except Exception as exc:  # web3 raises several kinds for a missing name
                raise ChainError(f"ABI of {contract.address} has no event {name}") from exc
            fields = {f.name for f in dataclasses.fields(cls)} - _META_FIELDS
            inputs = {str(i["name"]) for i in abi_event.abi["inputs"]}
            if fields != inputs:
                raise ChainError(
                    f"{cls.__name__} fields {sorted(fields)} do not match the ABI's {name} "
                    f"arguments {sorted(inputs)}"
                )
            topic = bytes(HexBytes(abi_event.topic))
            self._handlers[(address, topic)] = (abi_event, cls)

    def decode(self, log: LogReceipt) -> ChainEvent | None:
        """The typed event, or ``None`` for a log of an unknown contract or event."""
        topics = log["topics"]
        if not topics:
            return None
        handler = self._handlers.get((str(log["address"]).lower(), bytes(topics[0])))
        if handler is None:
            return None
        abi_event, cls = handler
        decoded = abi_event.process_log(log)
        return cls.from_decoded(decoded["args"], log)

    def decode_receipt(self, receipt: TxReceipt) -> list[ChainEvent]:
        events = (self.decode(log) for log in receipt["logs"])
        return [event for event in events if event is not None]


_META_FIELDS = frozenset(f.name for f in dataclasses.fields(ChainEvent))


class ContractBinding:
    """One deployed contract: typed wrappers subclass this."""

    EVENTS: ClassVar[tuple[type[ChainEvent], ...]] = ()

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        address: str,
        abi: Sequence[Mapping[str, Any]],
        *,
        sender: TxSender | None = None,
        decoder: EventDecoder | None = None,
    ) -> None:
        self.w3 = w3
        self.contract: AsyncContract = w3.eth.contract(
            address=w3.to_checksum_address(address), abi=cast(Any, list(abi))
        )
        self.address = str(self.contract.address)
        self.sender = sender
        self.decoder = decoder or EventDecoder()
        self.decoder.register(self.contract, self.EVENTS)
        self._own = EventDecoder()
        self._own.register(self.contract, self.EVENTS)

    def with_sender(self, sender: TxSender | None) -> Self:
        """The same contract, sending from another account (shares the event decoder)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.sender = sender
        return clone

    async def call(self, fn: str, *args: Any, block: BlockIdentifier = "latest") -> Any:
        """Run a view (``eth_call``); reverts raise :class:`ContractReverted`."""
        with translate_errors(fn):
            return await self.contract.functions[fn](*args).call(block_identifier=block)

    def encode(self, fn: str, *args: Any) -> str:
        return str(self.contract.encode_abi(fn, args=list(args)))

    async def send(self, fn: str, *args: Any, value: int = 0, gas: int | None = None) -> TxResult:
        """Send a transaction calling ``fn`` and return it with its decoded events."""
        if self.sender is None:
            raise ChainError(f"{fn}: this client has no signing account")
        receipt = await self.sender.send(
            self.address, self.encode(fn, *args), value=value, gas=gas, label=fn
        )
        return self.result(receipt)

    def result(self, receipt: TxReceipt) -> TxResult:
        return TxResult(
            tx_hash=HexBytes(receipt["transactionHash"]).to_0x_hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=tuple(self.decoder.decode_receipt(receipt)),
        )

    async def fetch_events(
        self,
        from_block: int,
        to_block: int | None = None,
        *,
        chunk_size: int = DEFAULT_LOG_CHUNK,
    ) -> list[ChainEvent]:
        """This contract's known events in ``[from_block, to_block]`` (``None``: latest),
        fetched ``chunk_size`` blocks per ``eth_getLogs`` (halved when the node refuses a
        range), in (block, log index) order."""
        if to_block is None:
            with translate_errors("eth_blockNumber"):
                to_block = int(await self.w3.eth.block_number)
        events: list[ChainEvent] = []
        start, size = from_block, max(chunk_size, 1)
        while start <= to_block:
            end = min(start + size - 1, to_block)
            params: FilterParams = {
                "address": self.contract.address,
                "fromBlock": start,
                "toBlock": end,
            }
            logs: list[LogReceipt] | None = None
            with translate_errors("eth_getLogs"):
                try:
                    logs = await self.w3.eth.get_logs(params)
                except Web3RPCError:
                    if size == 1:
                        raise
            if logs is None:
                size = max(size // 2, 1)  # "range too large" / "too many results"
                continue
            for log in logs:
                event = self._own.decode(log)
                if event is not None:
                    events.append(event)
            start = end + 1
        events.sort(key=lambda e: e.position)
        return events


@dataclass(frozen=True)
class Eip712Domain:
    """EIP-5267 ``eip712Domain()``."""

    fields: bytes
    name: str
    version: str
    chain_id: int
    verifying_contract: str
    salt: bytes
    extensions: tuple[int, ...]


async def read_eip712_domain(binding: ContractBinding) -> Eip712Domain:
    fields, name, version, chain_id, contract, salt, extensions = await binding.call("eip712Domain")
    return Eip712Domain(
        bytes(fields), str(name), str(version), int(chain_id), str(contract), bytes(salt),
        tuple(int(e) for e in extensions),
    )  # fmt: skip

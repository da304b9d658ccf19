"""Decoded events of OperatorRegistry: the log a router replays to know the market."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.chain.contract import ChainEvent
from mercato.chain.events import OwnershipTransferred as OwnershipTransferred  # also the token's


@dataclass(frozen=True, kw_only=True)
class BlueprintCreated(ChainEvent):
    blueprint_id: int
    name: str
    kind: str


@dataclass(frozen=True, kw_only=True)
class OperatorRegistered(ChainEvent):
    operator: str
    slug: str
    endpoint: str
    signers: tuple[str, ...]
    attestation_kind: str
    stake: int


@dataclass(frozen=True, kw_only=True)
class ServiceAdded(ChainEvent):
    service_id: int
    operator: str
    blueprint_id: int
    model: str
    price_in_per_m: int
    price_out_per_m: int
    max_context: int
    flags: int


@dataclass(frozen=True, kw_only=True)
class ServiceUpdated(ChainEvent):
    service_id: int
    price_in_per_m: int
    price_out_per_m: int
    max_context: int
    flags: int


@dataclass(frozen=True, kw_only=True)
class ServiceActiveSet(ChainEvent):
    service_id: int
    active: bool


@dataclass(frozen=True, kw_only=True)
class EndpointUpdated(ChainEvent):
    operator: str
    endpoint: str


@dataclass(frozen=True, kw_only=True)
class SignersUpdated(ChainEvent):
    operator: str
    signers: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class AttestationKindUpdated(ChainEvent):
    operator: str
    kind: str


@dataclass(frozen=True, kw_only=True)
class OperatorPaused(ChainEvent):
    operator: str


@dataclass(frozen=True, kw_only=True)
class OperatorResumed(ChainEvent):
    operator: str


@dataclass(frozen=True, kw_only=True)
class Heartbeat(ChainEvent):
    operator: str
    timestamp: int


@dataclass(frozen=True, kw_only=True)
class StakeAdded(ChainEvent):
    operator: str
    amount: int
    total: int


@dataclass(frozen=True, kw_only=True)
class UnstakeRequested(ChainEvent):
    operator: str
    available_at: int


@dataclass(frozen=True, kw_only=True)
class StakeWithdrawn(ChainEvent):
    """The operator is deregistered: its slug is free, its services are inactive."""

    operator: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class Slashed(ChainEvent):
    operator: str
    amount: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class ArbiterSet(ChainEvent):
    arbiter: str


REGISTRY_EVENTS: tuple[type[ChainEvent], ...] = (
    BlueprintCreated,
    OperatorRegistered,
    ServiceAdded,
    ServiceUpdated,
    ServiceActiveSet,
    EndpointUpdated,
    SignersUpdated,
    AttestationKindUpdated,
    OperatorPaused,
    OperatorResumed,
    Heartbeat,
    StakeAdded,
    UnstakeRequested,
    StakeWithdrawn,
    Slashed,
    ArbiterSet,
    OwnershipTransferred,
)

RegistryEvent = (
    BlueprintCreated
    | OperatorRegistered
    | ServiceAdded
    | ServiceUpdated
    | ServiceActiveSet
    | EndpointUpdated
    | SignersUpdated
    | AttestationKindUpdated
    | OperatorPaused
    | OperatorResumed
    | Heartbeat
    | StakeAdded
    | UnstakeRequested
    | StakeWithdrawn
    | Slashed
    | ArbiterSet
    | OwnershipTransferred
)

"""Typed wrapper of OperatorRegistry: operators, stakes, blueprints and service offers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from mercato.chain.contract import ContractBinding, TxResult
from mercato.chain.registry_events import REGISTRY_EVENTS, BlueprintCreated, ServiceAdded

MAX_SIGNERS = 4
MAX_SERVICES_PER_OPERATOR = 64


class OperatorStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    PAUSED = 2
    UNSTAKING = 3


class ServiceFlags(IntFlag):
    """``Service.flags`` bits (others reserved)."""

    NONE = 0
    TEE = 1
    ZERO_DATA_RETENTION = 2
    NO_TRAINING = 4


@dataclass(frozen=True)
class Operator:
    address: str
    slug: str
    endpoint: str
    attestation_kind: str
    stake: int
    status: OperatorStatus
    registered_at: int
    last_heartbeat: int
    unstake_available_at: int

    @property
    def registered(self) -> bool:
        return self.status != OperatorStatus.NONE


@dataclass(frozen=True)
class Service:
    service_id: int
    operator: str
    blueprint_id: int
    model: str
    price_in_per_m: int
    price_out_per_m: int
    max_context: int
    flags: ServiceFlags
    active: bool


@dataclass(frozen=True)
class Blueprint:
    blueprint_id: int
    name: str
    kind: str


class OperatorRegistry(ContractBinding):
    EVENTS = REGISTRY_EVENTS

    # --- configuration views ---------------------------------------------------------

    async def token(self) -> str:
        return str(await self.call("token"))

    async def min_stake(self) -> int:
        return int(await self.call("min_stake"))

    async def unstake_delay(self) -> int:
        return int(await self.call("unstake_delay"))

    async def arbiter(self) -> str:
        return str(await self.call("arbiter"))

    async def owner(self) -> str:
        return str(await self.call("owner"))

    # --- operators -------------------------------------------------------------------

    async def operators(self, operator: str) -> Operator:
        """The operator's record (``status`` NONE when not registered)."""
        (
            slug,
            endpoint,
            kind,
            stake,
            status,
            registered_at,
            heartbeat,
            available_at,
        ) = await self.call("operators", operator)
        return Operator(
            self.w3.to_checksum_address(operator), str(slug), str(endpoint), str(kind),
            int(stake), OperatorStatus(int(status)), int(registered_at), int(heartbeat),
            int(available_at),
        )  # fmt: skip

    async def operator_signers(self, operator: str) -> list[str]:
        return [str(a) for a in await self.call("operator_signers", operator)]

    async def operator_services(self, operator: str) -> list[int]:
        return [int(i) for i in await self.call("operator_services", operator)]

    async def slug_owner(self, slug: str) -> str | None:
        owner = str(await self.call("slug_owner", slug))
        return None if int(owner, 16) == 0 else owner

    async def is_signer(self, operator: str, signer: str) -> bool:
        return bool(await self.call("is_signer", operator, signer))

    async def register(
        self,
        slug: str,
        endpoint: str,
        signers: Sequence[str],
        attestation_kind: str,
        stake: int,
    ) -> TxResult:
        """Register the sender (approve ``stake`` to the registry first)."""
        return await self.send("register", slug, endpoint, list(signers), attestation_kind, stake)

    async def update_endpoint(self, endpoint: str) -> TxResult:
        return await self.send("update_endpoint", endpoint)

    async def set_signers(self, signers: Sequence[str]) -> TxResult:
        return await self.send("set_signers", list(signers))

    async def set_attestation_kind(self, kind: str) -> TxResult:
        return await self.send("set_attestation_kind", kind)

    async def pause(self) -> TxResult:
        return await self.send("pause")

    async def resume(self) -> TxResult:
        return await self.send("resume")

    async def heartbeat(self) -> TxResult:
        return await self.send("heartbeat")

    # --- stake -----------------------------------------------------------------------

    async def add_stake(self, amount: int) -> TxResult:
        return await self.send("add_stake", amount)

    async def request_unstake(self) -> TxResult:
        return await self.send("request_unstake")

    async def withdraw_stake(self) -> TxResult:
        return await self.send("withdraw_stake")

    # --- blueprints and services -----------------------------------------------------

    async def blueprint_count(self) -> int:
        return int(await self.call("blueprint_count"))

    async def blueprints(self, blueprint_id: int) -> Blueprint:
        name, kind = await self.call("blueprints", blueprint_id)
        return Blueprint(blueprint_id, str(name), str(kind))

    async def create_blueprint(self, name: str, kind: str) -> TxResult:
        """Owner only."""
        return await self.send("create_blueprint", name, kind)

    async def create_blueprint_id(self, name: str, kind: str) -> int:
        """Create a blueprint and return its id (ids start at 1)."""
        return (await self.create_blueprint(name, kind)).event(BlueprintCreated).blueprint_id

    async def service_count(self) -> int:
        return int(await self.call("service_count"))

    async def services(self, service_id: int) -> Service:
        (
            operator,
            blueprint_id,
            model,
            price_in,
            price_out,
            max_context,
            flags,
            active,
        ) = await self.call("services", service_id)
        return Service(
            service_id, str(operator), int(blueprint_id), str(model), int(price_in),
            int(price_out), int(max_context), ServiceFlags(int(flags)), bool(active),
        )  # fmt: skip

    async def add_service(
        self,
        blueprint_id: int,
        model: str,
        price_in_per_m: int,
        price_out_per_m: int,
        max_context: int,
        flags: int = 0,
    ) -> TxResult:
        return await self.send(
            "add_service", blueprint_id, model, price_in_per_m, price_out_per_m, max_context,
            int(flags),
        )  # fmt: skip

    async def add_service_id(
        self,
        blueprint_id: int,
        model: str,
        price_in_per_m: int,
        price_out_per_m: int,
        max_context: int,
        flags: int = 0,
    ) -> int:
        """Add a service offer and return its id."""
        result = await self.add_service(
            blueprint_id, model, price_in_per_m, price_out_per_m, max_context, flags
        )
        return result.event(ServiceAdded).service_id

    async def update_service(
        self,
        service_id: int,
        price_in_per_m: int,
        price_out_per_m: int,
        max_context: int,
        flags: int = 0,
    ) -> TxResult:
        return await self.send(
            "update_service", service_id, price_in_per_m, price_out_per_m, max_context,
            int(flags),
        )  # fmt: skip

    async def set_service_active(self, service_id: int, active: bool) -> TxResult:
        return await self.send("set_service_active", service_id, active)

    # --- owner and arbiter -----------------------------------------------------------

    async def set_arbiter(self, arbiter: str) -> TxResult:
        return await self.send("set_arbiter", arbiter)

    async def slash(self, operator: str, amount: int, reason: str) -> TxResult:
        """Arbiter only; the slashed tokens go to the arbiter."""
        return await self.send("slash", operator, amount, reason)

    async def transfer_ownership(self, new_owner: str) -> TxResult:
        return await self.send("transfer_ownership", new_owner)

    async def renounce_ownership(self) -> TxResult:
        return await self.send("renounce_ownership")

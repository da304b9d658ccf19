"""OperatorRegistry: blueprints, registration, services, lifecycle, stake and slashing."""

from __future__ import annotations

from typing import Any

import boa
import pytest

from .conftest import MIN_STAKE, UNSTAKE_DELAY, USD, logs, now

pytestmark = pytest.mark.chain

ZERO = "0x" + "00" * 20
TEE, ZDR, NO_TRAINING = 1, 2, 4


@pytest.fixture
def arbiter() -> Any:
    return boa.env.generate_address("arbiter")


@pytest.fixture
def registry(registry_factory: Any, token: Any, deployer: Any, arbiter: Any) -> Any:
    with boa.env.prank(deployer):
        return registry_factory.deploy(token.address, MIN_STAKE, UNSTAKE_DELAY, arbiter)


@pytest.fixture
def chat(registry: Any, deployer: Any) -> int:
    with boa.env.prank(deployer):
        return int(registry.create_blueprint("chat", "chat"))


@pytest.fixture
def op(registry: Any, token: Any, mint: Any) -> Any:
    """An address with 10x the minimum stake and an unlimited allowance for the registry."""
    addr = boa.env.generate_address("op")
    mint(addr, 10 * MIN_STAKE)
    with boa.env.prank(addr):
        token.approve(registry.address, 2**256 - 1)
    return addr


@pytest.fixture
def signer() -> Any:
    return boa.env.generate_address("signer")


def register(
    registry: Any, op: Any, signers: list[Any], slug: str = "alpha", stake: int = MIN_STAKE
) -> None:
    with boa.env.prank(op):
        registry.register(slug, "https://alpha.example/v1", signers, "none", stake)


@pytest.fixture
def registered(registry: Any, op: Any, signer: Any) -> Any:
    register(registry, op, [signer])
    return op


def test_constructor(registry: Any, token: Any, deployer: Any, arbiter: Any) -> None:
    assert registry.token() == token.address
    assert registry.min_stake() == MIN_STAKE
    assert registry.unstake_delay() == UNSTAKE_DELAY
    assert registry.arbiter() == arbiter
    assert registry.owner() == deployer
    assert registry.service_count() == 0
    assert registry.blueprint_count() == 0


def test_blueprints(registry: Any, deployer: Any) -> None:
    with boa.env.prank(deployer):
        assert registry.create_blueprint("chat", "chat") == 1
        ev = logs(registry, "BlueprintCreated")[0]
        assert (ev.blueprint_id, ev.name, ev.kind) == (1, "chat", "chat")
        assert registry.create_blueprint("embeddings", "embeddings") == 2
        with boa.reverts("registry: empty name"):
            registry.create_blueprint("", "chat")
        with boa.reverts("registry: empty kind"):
            registry.create_blueprint("x", "")
    assert registry.blueprint_count() == 2
    assert registry.blueprints(2) == ("embeddings", "embeddings")
    with boa.env.prank(boa.env.generate_address()), boa.reverts("ownable: caller is not the owner"):
        registry.create_blueprint("custom", "custom")


def test_register(registry: Any, token: Any, op: Any, signer: Any) -> None:
    second = boa.env.generate_address()
    with boa.env.prank(op):
        registry.register(
            "alpha", "https://alpha.example/v1", [signer, second], "tdx", 2 * MIN_STAKE
        )
    ev = logs(registry, "OperatorRegistered")[0]
    assert ev.operator == op and ev.slug == "alpha" and ev.endpoint == "https://alpha.example/v1"
    assert list(ev.signers) == [signer, second]
    assert (ev.attestation_kind, ev.stake) == ("tdx", 2 * MIN_STAKE)
    assert token.balanceOf(registry.address) == 2 * MIN_STAKE
    o = registry.operators(op)
    assert (o.slug, o.endpoint, o.attestation_kind, o.stake, o.status) == (
        "alpha",
        "https://alpha.example/v1",
        "tdx",
        2 * MIN_STAKE,
        1,
    )
    assert o.registered_at == now() and o.last_heartbeat == now() and o.unstake_available_at == 0
    assert list(registry.operator_signers(op)) == [signer, second]
    assert registry.slug_owner("alpha") == op
    assert registry.slug_owner("beta") == ZERO
    assert registry.is_signer(op, signer) and registry.is_signer(op, second)
    assert not registry.is_signer(op, op)
    assert not registry.is_signer(signer, signer)


@pytest.mark.parametrize(
    ("slug", "endpoint", "kind", "signers", "stake", "error"),
    [
        ("", "https://x", "none", "S", MIN_STAKE, "registry: empty slug"),
        ("x", "", "none", "S", MIN_STAKE, "registry: empty endpoint"),
        ("x", "https://x", "", "S", MIN_STAKE, "registry: empty attestation kind"),
        ("x", "https://x", "none", "", MIN_STAKE, "registry: no signers"),
        ("x", "https://x", "none", "Z", MIN_STAKE, "registry: zero signer"),
        ("x", "https://x", "none", "SS", MIN_STAKE, "registry: duplicate signer"),
        ("x", "https://x", "none", "S", MIN_STAKE - 1, "registry: stake below minimum"),
    ],
)
def test_register_rejects(
    registry: Any,
    op: Any,
    signer: Any,
    slug: str,
    endpoint: str,
    kind: str,
    signers: str,
    stake: int,
    error: str,
) -> None:
    addrs = [{"S": signer, "Z": ZERO}[c] for c in signers]
    with boa.env.prank(op), boa.reverts(error):
        registry.register(slug, endpoint, addrs, kind, stake)


def test_register_twice_and_slug_taken(
    registry: Any, registered: Any, signer: Any, mint: Any, token: Any
) -> None:
    with boa.env.prank(registered), boa.reverts("registry: already registered"):
        registry.register("other", "https://x", [signer], "none", MIN_STAKE)
    other = boa.env.generate_address()
    mint(other, MIN_STAKE)
    with boa.env.prank(other), boa.reverts("registry: slug taken"):
        registry.register("alpha", "https://x", [signer], "none", MIN_STAKE)
    with boa.env.prank(other), boa.reverts("erc20: insufficient allowance"):
        registry.register("beta", "https://x", [signer], "none", MIN_STAKE)


def test_services(registry: Any, registered: Any, chat: int, deployer: Any) -> None:
    op = registered
    with boa.env.prank(op):
        sid = registry.add_service(chat, "smollm2-135m", 100_000, 200_000, 8192, TEE | ZDR)
        ev = logs(registry, "ServiceAdded")[0]
        assert sid == 1 and registry.add_service(chat, "llama-3-8b", 1, 2, 4096, 0) == 2
    assert (ev.service_id, ev.operator, ev.blueprint_id, ev.model) == (1, op, chat, "smollm2-135m")
    assert (ev.price_in_per_m, ev.price_out_per_m, ev.max_context, ev.flags) == (
        100_000,
        200_000,
        8192,
        3,
    )
    assert registry.service_count() == 2
    assert tuple(registry.services(1)) == (
        op,
        chat,
        "smollm2-135m",
        100_000,
        200_000,
        8192,
        3,
        True,
    )
    assert list(registry.operator_services(op)) == [1, 2]

    with boa.env.prank(op):
        registry.update_service(1, 150_000, 250_000, 16384, TEE | ZDR | NO_TRAINING)
        ev = logs(registry, "ServiceUpdated")[0]
        assert (ev.service_id, ev.price_in_per_m, ev.price_out_per_m, ev.max_context, ev.flags) == (
            1,
            150_000,
            250_000,
            16384,
            7,
        )
        registry.set_service_active(1, False)
        ev = logs(registry, "ServiceActiveSet")[0]
        assert (ev.service_id, ev.active) == (1, False)
    s = registry.services(1)
    assert (s.price_in_per_m, s.price_out_per_m, s.max_context, s.flags, s.active) == (
        150_000,
        250_000,
        16384,
        7,
        False,
    )


def test_service_rejects(
    registry: Any, registered: Any, chat: int, op: Any, signer: Any, mint: Any, token: Any
) -> None:
    stranger = boa.env.generate_address()
    with boa.env.prank(stranger), boa.reverts("registry: not registered"):
        registry.add_service(chat, "m", 1, 1, 1, 0)
    with boa.env.prank(registered):
        with boa.reverts("registry: unknown blueprint"):
            registry.add_service(0, "m", 1, 1, 1, 0)
        with boa.reverts("registry: unknown blueprint"):
            registry.add_service(chat + 1, "m", 1, 1, 1, 0)
        with boa.reverts("registry: empty model"):
            registry.add_service(chat, "", 1, 1, 1, 0)
        with boa.reverts("registry: zero max context"):
            registry.add_service(chat, "m", 1, 1, 0, 0)
        sid = registry.add_service(chat, "m", 1, 1, 1, 0)
        with boa.reverts("registry: zero max context"):
            registry.update_service(sid, 1, 1, 0, 0)
    # another registered operator cannot touch it
    other = boa.env.generate_address()
    mint(other, MIN_STAKE)
    with boa.env.prank(other):
        token.approve(registry.address, MIN_STAKE)
        registry.register("beta", "https://beta", [signer], "none", MIN_STAKE)
        with boa.reverts("registry: not the service operator"):
            registry.update_service(sid, 2, 2, 2, 0)
        with boa.reverts("registry: not the service operator"):
            registry.set_service_active(sid, False)


def test_service_limit(registry: Any, registered: Any, chat: int) -> None:
    with boa.env.prank(registered):
        for _ in range(64):
            registry.add_service(chat, "m", 1, 1, 1, 0)
        with boa.reverts("registry: too many services"):
            registry.add_service(chat, "m", 1, 1, 1, 0)


def test_operator_updates(registry: Any, registered: Any, signer: Any) -> None:
    op = registered
    new_signer = boa.env.generate_address()
    with boa.env.prank(op):
        registry.update_endpoint("https://new.example/v1")
        ev = logs(registry, "EndpointUpdated")[0]
        assert (ev.operator, ev.endpoint) == (op, "https://new.example/v1")
        registry.set_signers([new_signer])
        ev = logs(registry, "SignersUpdated")[0]
        assert list(ev.signers) == [new_signer]
        registry.set_attestation_kind("tdx")
        ev = logs(registry, "AttestationKindUpdated")[0]
        assert ev.kind == "tdx"
        with boa.reverts("registry: empty endpoint"):
            registry.update_endpoint("")
        with boa.reverts("registry: no signers"):
            registry.set_signers([])
        with boa.reverts("registry: duplicate signer"):
            registry.set_signers([signer, new_signer, signer])
        with boa.reverts("registry: empty attestation kind"):
            registry.set_attestation_kind("")
    assert registry.operators(op).endpoint == "https://new.example/v1"
    assert registry.operators(op).attestation_kind == "tdx"
    assert registry.is_signer(op, new_signer) and not registry.is_signer(op, signer)
    stranger = boa.env.generate_address()
    with boa.env.prank(stranger):
        for call in (
            lambda: registry.update_endpoint("https://x"),
            lambda: registry.set_signers([stranger]),
            lambda: registry.set_attestation_kind("none"),
            registry.heartbeat,
            registry.pause,
            registry.resume,
            registry.request_unstake,
            registry.withdraw_stake,
            lambda: registry.add_stake(1),
        ):
            with boa.reverts("registry: not registered"):
                call()


def test_pause_resume_heartbeat(registry: Any, registered: Any) -> None:
    op = registered
    with boa.env.prank(op):
        with boa.reverts("registry: not paused"):
            registry.resume()
        registry.pause()
        assert logs(registry, "OperatorPaused")[0].operator == op
        assert registry.operators(op).status == 2
        with boa.reverts("registry: not active"):
            registry.pause()
        boa.env.time_travel(seconds=100)
        registry.heartbeat()  # allowed while paused
        ev = logs(registry, "Heartbeat")[0]
        assert (ev.operator, ev.timestamp) == (op, now())
        registry.resume()
        assert logs(registry, "OperatorResumed")[0].operator == op
    o = registry.operators(op)
    assert o.status == 1 and o.last_heartbeat == now() and o.registered_at == now() - 100


def test_stake_and_unstake(
    registry: Any, registered: Any, token: Any, chat: int, mint: Any, signer: Any
) -> None:
    op = registered
    balance = token.balanceOf(op)
    with boa.env.prank(op):
        registry.add_stake(5 * USD)
        ev = logs(registry, "StakeAdded")[0]
        assert (ev.amount, ev.total) == (5 * USD, MIN_STAKE + 5 * USD)
        with boa.reverts("registry: zero amount"):
            registry.add_stake(0)
        sid = registry.add_service(chat, "m", 1, 1, 1, 0)
        with boa.reverts("registry: unstake not requested"):
            registry.withdraw_stake()
        registry.request_unstake()
        ev = logs(registry, "UnstakeRequested")[0]
        assert ev.available_at == now() + UNSTAKE_DELAY
        o = registry.operators(op)
        assert o.status == 3 and o.unstake_available_at == now() + UNSTAKE_DELAY
        for call, error in (
            (registry.request_unstake, "registry: unstaking"),
            (registry.heartbeat, "registry: unstaking"),
            (registry.pause, "registry: not active"),
            (lambda: registry.add_stake(1), "registry: unstaking"),
            (lambda: registry.add_service(chat, "m", 1, 1, 1, 0), "registry: unstaking"),
            (lambda: registry.update_service(sid, 1, 1, 1, 0), "registry: unstaking"),
            (lambda: registry.set_service_active(sid, True), "registry: unstaking"),
            (lambda: registry.update_endpoint("https://x"), "registry: unstaking"),
        ):
            with boa.reverts(error):
                call()
        boa.env.time_travel(seconds=UNSTAKE_DELAY - 1)
        with boa.reverts("registry: unstake delay running"):
            registry.withdraw_stake()
        boa.env.time_travel(seconds=1)
        registry.withdraw_stake()
        events = registry.get_logs()
    names = [type(e).__name__ for e in events]
    assert "ServiceActiveSet" in names and "StakeWithdrawn" in names
    withdrawn = next(e for e in events if type(e).__name__ == "StakeWithdrawn")
    assert withdrawn.amount == MIN_STAKE + 5 * USD
    assert token.balanceOf(op) == balance + MIN_STAKE  # the registration stake came back too
    assert registry.operators(op).status == 0
    assert registry.slug_owner("alpha") == ZERO
    assert list(registry.operator_signers(op)) == []
    assert not registry.is_signer(op, signer)
    assert registry.services(sid).active is False
    # the address can register again, the slug is free; old services stay with the old registration
    register(registry, op, [signer])
    with boa.env.prank(op), boa.reverts("registry: service of an old registration"):
        registry.set_service_active(sid, True)


def test_slash(registry: Any, registered: Any, token: Any, arbiter: Any, deployer: Any) -> None:
    op = registered
    with boa.env.prank(op), boa.reverts("registry: caller is not the arbiter"):
        registry.slash(op, 1, "self")
    with boa.env.prank(arbiter):
        registry.slash(op, MIN_STAKE // 2, "bad receipts")
        ev = logs(registry, "Slashed")[0]
        assert (ev.operator, ev.amount, ev.reason) == (op, MIN_STAKE // 2, "bad receipts")
        with boa.reverts("registry: amount exceeds stake"):
            registry.slash(op, MIN_STAKE, "too much")
        with boa.reverts("registry: zero amount"):
            registry.slash(op, 0, "nothing")
        with boa.reverts("registry: not registered"):
            registry.slash(arbiter, 1, "stranger")
    assert token.balanceOf(arbiter) == MIN_STAKE // 2
    assert registry.operators(op).stake == MIN_STAKE // 2
    with boa.env.prank(op):
        registry.pause()
        with boa.reverts("registry: stake below minimum"):
            registry.resume()
        registry.add_stake(MIN_STAKE // 2)
        registry.resume()
    # the arbiter can slash during the unstake delay; withdraw returns the rest
    with boa.env.prank(op):
        registry.request_unstake()
    with boa.env.prank(arbiter):
        registry.slash(op, 1, "late")
    boa.env.time_travel(seconds=UNSTAKE_DELAY)
    with boa.env.prank(op):
        registry.withdraw_stake()
        assert logs(registry, "StakeWithdrawn")[0].amount == MIN_STAKE - 1


def test_set_arbiter(registry: Any, deployer: Any, registered: Any) -> None:
    new = boa.env.generate_address()
    with boa.env.prank(new), boa.reverts("ownable: caller is not the owner"):
        registry.set_arbiter(new)
    with boa.env.prank(deployer):
        registry.set_arbiter(new)
        assert logs(registry, "ArbiterSet")[0].arbiter == new
    assert registry.arbiter() == new
    with boa.env.prank(new):
        registry.slash(registered, 1, "new arbiter")


def test_ownership(registry: Any, deployer: Any) -> None:
    new = boa.env.generate_address()
    with boa.env.prank(deployer):
        registry.transfer_ownership(new)
    with boa.env.prank(new):
        registry.create_blueprint("x", "custom")
        registry.renounce_ownership()
    assert registry.owner() == ZERO

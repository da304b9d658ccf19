"""Every function and event in the compiled ABIs has a typed wrapper (no anvil needed)."""

from __future__ import annotations

import re

import pytest

from mercato.chain.compile import CORE_CONTRACTS, load_artifacts
from mercato.chain.contract import ContractBinding
from mercato.chain.escrow import PaymentEscrow
from mercato.chain.registry import OperatorRegistry
from mercato.chain.token import PaymentToken

pytestmark = pytest.mark.chain

BINDINGS: dict[str, type[ContractBinding]] = {
    "PaymentToken": PaymentToken,
    "OperatorRegistry": OperatorRegistry,
    "PaymentEscrow": PaymentEscrow,
}


def snake(name: str) -> str:
    if name.isupper():  # DOMAIN_SEPARATOR
        return name.lower()
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@pytest.mark.parametrize("name", CORE_CONTRACTS)
def test_every_abi_function_and_event_is_wrapped(name: str) -> None:
    abi = load_artifacts([name])[name].abi
    binding = BINDINGS[name]
    functions = {snake(str(item["name"])) for item in abi if item["type"] == "function"}
    missing = sorted(f for f in functions if not callable(getattr(binding, f, None)))
    assert not missing, f"{binding.__name__} lacks {missing}"
    events = {str(item["name"]) for item in abi if item["type"] == "event"}
    assert events == {cls.event_name() for cls in binding.EVENTS}

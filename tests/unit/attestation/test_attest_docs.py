"""The worked examples in docs/protocols/attestation.md match the code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import coincurve
import nacl.signing
import pytest
from eth_account import Account

from mercato.attestation import NoneProvider, build_attestation_report, build_report_data

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocols" / "attestation.md"
_BLOCK = re.compile(r"<!-- check: ([\w-]+) -->\s*```json\n(.*?)```", re.DOTALL)
ANVIL0_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")


@pytest.fixture(scope="module")
def blocks() -> dict[str, Any]:
    found = {name: json.loads(body) for name, body in _BLOCK.findall(DOC.read_text())}
    assert set(found) == {"report-data-ecdsa", "report-data-ed25519", "report-none"}
    return found


def _anvil0() -> tuple[str, str]:
    """(address, public key without 04) of anvil's key 0, derived here."""
    public = coincurve.PrivateKey(ANVIL0_KEY).public_key.format(compressed=False)[1:]
    return Account.from_key(ANVIL0_KEY).address, public.hex()


@pytest.mark.parametrize("name", ["report-data-ecdsa", "report-data-ed25519"])
def test_report_data_examples(blocks: dict[str, Any], name: str) -> None:
    ex = blocks[name]
    rd = build_report_data(ex["signing_algo"], ex["signing_address"], bytes.fromhex(ex["nonce"]))
    assert rd.hex() == ex["report_data"]


def test_example_signers_are_the_named_keys(blocks: dict[str, Any]) -> None:
    address, _ = _anvil0()
    assert blocks["report-data-ecdsa"]["signing_address"] == address
    ed_pub = bytes(nacl.signing.SigningKey(RFC8032_SEED).verify_key).hex()
    assert blocks["report-data-ed25519"]["signing_address"] == ed_pub


async def test_none_report_example_is_exactly_what_we_send(blocks: dict[str, Any]) -> None:
    address, public = _anvil0()
    ex = blocks["report-none"]
    assert ex["signing_public_key"] == public
    report = await build_attestation_report(
        NoneProvider(), "ecdsa", address, public, bytes.fromhex(ex["request_nonce"])
    )
    assert report == ex
    assert list(report) == list(ex)  # field order as documented

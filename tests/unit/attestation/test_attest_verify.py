"""verify_report_binding: passes only when the quote binds the expected signer and nonce."""

from __future__ import annotations

from typing import Any

import pytest

from mercato.attestation import (
    AttestationError,
    AttestationMismatch,
    NoHardwareAttestation,
    build_report_data,
    verify_report_binding,
)

from .attest_synthetic import synthetic_tdx_quote

ANVIL0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ANVIL1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
NONCE = bytes(range(32))
OTHER_NONCE = bytes(range(1, 33))


def _report(
    algo: str = "ecdsa",
    signer: str = ANVIL0,
    nonce: bytes = NONCE,
    quote: bytes | None = None,
) -> dict[str, Any]:
    rd = build_report_data(algo, signer, nonce)  # type: ignore[arg-type]
    q = (quote if quote is not None else synthetic_tdx_quote(rd)).hex()
    return {
        "signing_address": signer,
        "signing_algo": algo,
        "signing_public_key": "00" * 64,
        "request_nonce": nonce.hex(),
        "intel_quote": q,
        "quote": q,
        "event_log": [],
        "vm_config": None,
        "nvidia_payload": None,
        "info": {},
        "tee": "tdx",
        "report_data": rd.hex(),
        "version": 1,
    }


def _code(report: dict[str, Any], signer: str = ANVIL0, nonce: bytes = NONCE) -> str:
    with pytest.raises(AttestationMismatch) as err:
        verify_report_binding(report, signer, nonce)
    return err.value.code


def _flip(quote_hex: str, offset: int) -> str:
    quote = bytearray.fromhex(quote_hex)
    quote[offset] ^= 0x01
    return quote.hex()


def test_matching_synthetic_quote_passes() -> None:
    quote = verify_report_binding(_report(), ANVIL0, NONCE)
    assert quote.report_data == build_report_data("ecdsa", ANVIL0, NONCE)
    verify_report_binding(_report(), ANVIL0.lower(), NONCE.hex(), signing_algo="ecdsa")


def test_real_quote_passes(nearai_quote: dict[str, Any]) -> None:
    answer = nearai_quote["agent_response"]
    report = {
        "signing_address": nearai_quote["signing_address"],
        "signing_algo": "ecdsa",
        "request_nonce": nearai_quote["request_nonce"],
        "intel_quote": answer["quote"],
        "report_data": answer["report_data"],
        "tee": "tdx",
    }
    verify_report_binding(report, nearai_quote["signing_address"], nearai_quote["request_nonce"])
    with pytest.raises(AttestationMismatch):
        verify_report_binding(report, ANVIL0, nearai_quote["request_nonce"])


def test_ed25519_report_passes() -> None:
    key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    verify_report_binding(_report("ed25519", key), key, NONCE, signing_algo="ed25519")


def test_wrong_address() -> None:
    assert _code(_report(), signer=ANVIL1) == "signer_mismatch"


def test_wrong_nonce() -> None:
    assert _code(_report(), nonce=OTHER_NONCE) == "nonce_mismatch"


def test_quote_binding_another_signer() -> None:
    # the report's fields claim ANVIL0, but the quote was made for ANVIL1
    forged = synthetic_tdx_quote(build_report_data("ecdsa", ANVIL1, NONCE))
    report = _report(quote=forged)
    report.pop("report_data")
    assert _code(report) == "quote_signer_mismatch"


def test_quote_binding_another_nonce() -> None:
    replayed = synthetic_tdx_quote(build_report_data("ecdsa", ANVIL0, OTHER_NONCE))
    report = _report(quote=replayed)
    report.pop("report_data")
    assert _code(report) == "quote_nonce_mismatch"


@pytest.mark.parametrize(
    ("offset", "keep_field", "code"),
    [
        (568 + 3, True, "report_data_field_mismatch"),  # signer byte; field still claims old
        (568 + 3, False, "quote_signer_mismatch"),
        (568 + 25, False, "quote_signer_mismatch"),  # one of the 12 padding bytes
        (600 + 31, False, "quote_nonce_mismatch"),  # last nonce byte
    ],
)
def test_one_byte_changed_in_report_data(offset: int, keep_field: bool, code: str) -> None:
    report = _report()
    report["intel_quote"] = report["quote"] = _flip(report["intel_quote"], offset)
    if not keep_field:
        report.pop("report_data")
    assert _code(report) == code


def test_byte_outside_report_data_is_not_detected_by_the_binding_check() -> None:
    # Documented limit: only the Intel signature (not checked here) covers the rest.
    report = _report()
    report["intel_quote"] = report["quote"] = _flip(report["intel_quote"], 200)  # in mr_td
    verify_report_binding(report, ANVIL0, NONCE)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"intel_quote": None, "quote": None}, "quote_missing"),
        ({"intel_quote": None, "quote": None, "tee": None}, "quote_missing"),
        ({"quote": "04" + "00" * 700}, "quote_field_mismatch"),
        ({"intel_quote": "zz", "quote": None}, "quote_malformed"),
        ({"intel_quote": "0400", "quote": None}, "quote_malformed"),
        ({"signing_algo": "rsa"}, "report_malformed"),
        ({"signing_address": "0x1234"}, "report_malformed"),
        ({"request_nonce": None}, "nonce_mismatch"),
    ],
)
def test_bad_reports(change: dict[str, Any], code: str) -> None:
    report = {**_report(), **change}
    assert _code(report) == code


def test_sgx_quote_is_unsupported() -> None:
    quote = bytearray(synthetic_tdx_quote(build_report_data("ecdsa", ANVIL0, NONCE)))
    quote[4] = 0x00  # tee_type SGX
    assert _code(_report(quote=bytes(quote))) == "quote_unsupported"


def test_algo_mismatch() -> None:
    with pytest.raises(AttestationMismatch) as err:
        verify_report_binding(_report(), ANVIL0, NONCE, signing_algo="ed25519")
    assert err.value.code == "signing_algo_mismatch"


def test_none_tee_is_its_own_outcome() -> None:
    report = {**_report(), "intel_quote": None, "quote": None, "tee": "none"}
    with pytest.raises(NoHardwareAttestation) as err:
        verify_report_binding(report, ANVIL0, NONCE)
    assert not isinstance(err.value, AttestationMismatch)
    assert isinstance(err.value, AttestationError)


def test_malformed_expectations_are_value_errors() -> None:
    with pytest.raises(ValueError):
        verify_report_binding(_report(), "0x1234", NONCE)
    with pytest.raises(ValueError):
        verify_report_binding(_report(), ANVIL0, NONCE[:16])

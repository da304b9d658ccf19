"""TDX quote parsing and dstack event-log checks, on a real quote and synthetic ones."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import pytest

from mercato.attestation import (
    AttestationMismatch,
    QuoteFormatError,
    build_report_data,
    check_event_log,
    extract_report_data,
    parse_tdx_quote,
    replay_rtmr,
)

from .attest_synthetic import SYNTHETIC_EVENT_LOG, synthetic_tdx_quote

RD = bytes(range(64))


def test_real_quote_report_data_sits_at_568(nearai_quote: dict[str, Any]) -> None:
    quote = bytes.fromhex(nearai_quote["agent_response"]["quote"])
    expected = build_report_data(
        "ecdsa", nearai_quote["signing_address"], bytes.fromhex(nearai_quote["request_nonce"])
    )
    assert extract_report_data(quote) == expected == quote[568:632]
    parsed = parse_tdx_quote(quote)
    assert (parsed.version, parsed.att_key_type, parsed.tee_type) == (4, 2, 0x81)
    assert parsed.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"
    assert parsed.signature_data_len == 4300
    compose_hash = "3a5b9747bc6731c5de6c6d6740c3c37cc4522a935b1655e2b757d81089df31f0"
    assert parsed.mr_config_id.hex() == "01" + compose_hash + "00" * 15


def test_real_event_log_replays_to_the_real_rtmr3(nearai_quote: dict[str, Any]) -> None:
    answer = nearai_quote["agent_response"]
    quote = parse_tdx_quote(bytes.fromhex(answer["quote"]))
    events = check_event_log(quote, json.loads(answer["event_log"]))
    assert events["compose-hash"] == quote.mr_config_id[1:33].hex()
    assert events["app-id"] == "f550fdfb4eb8ad787c1bcd423f091cbb4a4431ae"


def test_tampered_event_log_is_caught(nearai_quote: dict[str, Any]) -> None:
    answer = nearai_quote["agent_response"]
    quote = parse_tdx_quote(bytes.fromhex(answer["quote"]))
    log = json.loads(answer["event_log"])
    app_id = next(e for e in log if e["event"] == "app-id")
    app_id["event_payload"] = "00" * 20
    with pytest.raises(AttestationMismatch) as err:
        check_event_log(quote, log)
    assert err.value.code == "event_digest_mismatch"
    dropped = [e for e in json.loads(answer["event_log"]) if e["event"] != "boot-mr-done"]
    with pytest.raises(AttestationMismatch) as err:
        check_event_log(quote, dropped)
    assert err.value.code == "rtmr3_mismatch"


def test_synthetic_quote_is_self_consistent() -> None:
    quote = parse_tdx_quote(synthetic_tdx_quote(RD))
    assert quote.report_data == RD
    assert replay_rtmr(SYNTHETIC_EVENT_LOG, 3) == quote.rtmr[3]
    assert "compose-hash" in check_event_log(quote, SYNTHETIC_EVENT_LOG)


def test_v5_quote_body_starts_after_the_descriptor() -> None:
    quote = synthetic_tdx_quote(RD, version=5)
    assert quote[574:638] == RD
    parsed = parse_tdx_quote(quote)
    assert (parsed.version, parsed.body_type, parsed.report_data) == (5, 2, RD)


def _patch(quote: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(quote)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    ("version", "mangle", "unsupported"),
    [
        (4, lambda q: q[:47], False),
        (4, lambda q: q[:600], False),
        (4, lambda q: q[:635], False),
        (4, lambda q: _patch(q, 632, "<I", 10_000), False),  # signature data past the end
        (4, lambda q: _patch(q, 0, "<H", 3), True),  # SGX-era quote version
        (4, lambda q: _patch(q, 4, "<I", 0), True),  # tee_type SGX
        (5, lambda q: _patch(q, 48, "<H", 1), True),  # v5 body type 1 = SGX enclave report
        (5, lambda q: _patch(q, 50, "<I", 600), False),  # v5 body size wrong
    ],
)
def test_malformed_quotes_are_refused(
    version: int, mangle: Callable[[bytes], bytes], unsupported: bool
) -> None:
    with pytest.raises(QuoteFormatError) as err:
        parse_tdx_quote(mangle(synthetic_tdx_quote(RD, version=version)))
    assert err.value.unsupported is unsupported

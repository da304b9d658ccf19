"""DstackProvider against a fake dstack agent on a real unix socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from mercato.attestation import (
    build_attestation_report,
    build_report_data,
    parse_nonce,
    parse_tdx_quote,
    verify_report_binding,
)
from mercato.attestation.dstack import DstackProvider
from mercato.errors import Unavailable, UpstreamError

from .attest_fake_agent import FakeAgent
from .attest_synthetic import synthetic_tdx_quote

PUB = "ab" * 64


async def test_get_quote_returns_the_recorded_real_quote(
    fake_agent: FakeAgent, nearai_quote: dict[str, Any]
) -> None:
    provider = DstackProvider(fake_agent.socket_path)
    report_data = bytes.fromhex(nearai_quote["agent_request"]["report_data"])
    quote = await provider.get_quote(report_data)
    await provider.close()
    assert fake_agent.requests == [("/GetQuote", {"report_data": report_data.hex()})]
    assert quote.quote_hex == nearai_quote["agent_response"]["quote"]
    assert quote.report_data_hex == report_data.hex()
    assert isinstance(quote.event_log, list) and len(quote.event_log) == 11
    assert quote.event_log[-1]["event"] == "system-ready"
    assert quote.vm_config is not None and json.loads(quote.vm_config)["cpu_count"] == 4


async def test_info_decodes_tcb_info_and_is_cached(
    fake_agent: FakeAgent, nearai_quote: dict[str, Any]
) -> None:
    provider = DstackProvider(fake_agent.socket_path)
    info = await provider.info()
    info["app_id"] = "mutated by caller"
    again = await provider.info()
    await provider.close()
    assert [path for path, _ in fake_agent.requests] == ["/Info"]
    assert again["app_id"] == "f550fdfb4eb8ad787c1bcd423f091cbb4a4431ae"
    tcb = again["tcb_info"]
    assert isinstance(tcb, dict) and isinstance(tcb["event_log"], list)
    real = parse_tdx_quote(bytes.fromhex(nearai_quote["agent_response"]["quote"]))
    assert tcb["mrtd"] == real.mr_td.hex()
    assert tcb["rtmr3"] == real.rtmr[3].hex()


async def test_worked_example_report_verifies(
    fake_agent: FakeAgent, synthetic_quote: dict[str, Any]
) -> None:
    provider = DstackProvider(fake_agent.socket_path)
    address = synthetic_quote["signing_address"]
    nonce = bytes.fromhex(synthetic_quote["request_nonce"])
    report = await build_attestation_report(provider, "ecdsa", address, PUB, nonce)
    await provider.close()
    assert report["tee"] == "tdx"
    assert report["intel_quote"] == report["quote"] == synthetic_quote["agent_response"]["quote"]
    assert report["info"]["app_name"] == "dstack-0.5.4"
    assert report["event_log"][0]["event"] == "system-preparing"
    assert report["all_attestations"][0]["intel_quote"] == report["intel_quote"]
    verify_report_binding(report, address, nonce)
    # the fixture is what the test helper builds (so it can be regenerated)
    rd = build_report_data("ecdsa", address, nonce)
    assert synthetic_quote["agent_response"]["quote"] == synthetic_tdx_quote(rd).hex()


async def test_fresh_nonce_round_trip(fake_agent: FakeAgent) -> None:
    provider = DstackProvider(fake_agent.socket_path)
    nonce = parse_nonce(None)
    key = bytes(range(32)).hex()
    report = await build_attestation_report(provider, "ed25519", key, key, nonce)
    await provider.close()
    quote = verify_report_binding(report, key, nonce.hex(), signing_algo="ed25519")
    assert quote.report_data == bytes(range(32)) + nonce


async def test_legacy_tappd_agent(fake_agent: FakeAgent) -> None:
    provider = DstackProvider(fake_agent.socket_path, legacy_tappd=True)
    report_data = bytes(range(64))
    quote = await provider.get_quote(report_data)
    await provider.info()
    await provider.close()
    assert fake_agent.requests[0] == (
        "/prpc/Tappd.TdxQuote",
        {"report_data": report_data.hex(), "hash_algorithm": "raw"},
    )
    assert fake_agent.requests[1][0] == "/prpc/Tappd.Info"
    assert bytes.fromhex(quote.quote_hex)[568:632] == report_data


async def test_missing_socket_is_unavailable(short_tmp: Path) -> None:
    provider = DstackProvider(str(short_tmp / "absent.sock"))
    with pytest.raises(Unavailable) as err:
        await provider.get_quote(bytes(64))
    await provider.close()
    assert err.value.code == "attestation_unavailable"
    assert err.value.status == 503
    assert "does not exist" in err.value.message


async def test_socket_nobody_listens_on_is_unavailable(short_tmp: Path) -> None:
    path = str(short_tmp / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # bound, never listening: connect() is refused
    provider = DstackProvider(path)
    try:
        with pytest.raises(Unavailable) as err:
            await provider.info()
    finally:
        stale.close()
        await provider.close()
    assert err.value.code == "attestation_unavailable"
    assert "cannot reach" in err.value.message


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("http_error", "attestation_agent_error", "tdx device busy"),
        ("bad_json", "attestation_agent_bad_response", "invalid JSON"),
        ("bad_event_log", "attestation_agent_bad_response", "event_log"),
        ("wrong_quote", "attestation_agent_bad_response", "requested report_data"),
    ],
)
async def test_agent_answering_badly_is_an_upstream_error(
    fake_agent: FakeAgent, mode: str, code: str, words: str
) -> None:
    fake_agent.mode = mode
    provider = DstackProvider(fake_agent.socket_path)
    with pytest.raises(UpstreamError) as err:
        await provider.get_quote(bytes(range(64)))
    await provider.close()
    assert err.value.code == code
    assert err.value.status == 502
    assert words in err.value.message


async def test_report_data_must_be_64_bytes(fake_agent: FakeAgent) -> None:
    provider = DstackProvider(fake_agent.socket_path)
    with pytest.raises(ValueError):
        await provider.get_quote(bytes(32))
    await provider.close()
    assert fake_agent.requests == []

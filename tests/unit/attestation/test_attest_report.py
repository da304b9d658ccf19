"""The report body (none provider, GPU seam, signer filter) and the provider factory."""

from __future__ import annotations

import json

import pytest

from mercato.attestation import (
    REPORT_VERSION,
    NoHardwareAttestation,
    NoneProvider,
    build_attestation_report,
    ensure_signer_served,
    make_quote_provider,
    verify_report_binding,
)
from mercato.attestation.dstack import DstackProvider
from mercato.errors import ConfigError, NotFound

ANVIL0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PUB0 = (
    "8318535b54105d4a7aae60c08fc45f9687181b4fdfc625bd1a753fa7397fed75"
    "3547f11ca8696646f2f3acb08e31016afac23e630c5d11f59f61fef57b0d2aa5"
)
NONCE = bytes(range(32))
REPORT_KEYS = {
    "signing_address",
    "signing_algo",
    "signing_public_key",
    "request_nonce",
    "intel_quote",
    "quote",
    "event_log",
    "vm_config",
    "nvidia_payload",
    "info",
    "tee",
    "report_data",
    "version",
    "all_attestations",
}


async def test_none_provider_never_invents_a_quote() -> None:
    provider = NoneProvider()
    with pytest.raises(NoHardwareAttestation):
        await provider.get_quote(bytes(64))
    info = await provider.info()
    assert info["tee"] == "none"
    assert info["hardware_attestation"] is False
    assert "no hardware attestation" in info["message"]
    await provider.close()


async def test_none_report_says_so_plainly() -> None:
    report = await build_attestation_report(NoneProvider(), "ecdsa", ANVIL0, PUB0, NONCE)
    assert set(report) == REPORT_KEYS
    assert report["tee"] == "none"
    assert report["intel_quote"] is None
    assert report["quote"] is None
    assert report["event_log"] == []
    assert report["vm_config"] is None
    assert report["nvidia_payload"] is None
    assert report["info"]["hardware_attestation"] is False
    assert report["request_nonce"] == NONCE.hex()
    assert report["report_data"] == ANVIL0[2:].lower() + "00" * 12 + NONCE.hex()
    assert report["version"] == REPORT_VERSION == 1
    (inner,) = report["all_attestations"]
    assert inner == {k: v for k, v in report.items() if k != "all_attestations"}


async def test_none_report_does_not_verify_as_a_pass() -> None:
    report = await build_attestation_report(NoneProvider(), "ecdsa", ANVIL0, PUB0, NONCE)
    with pytest.raises(NoHardwareAttestation) as err:
        verify_report_binding(report, ANVIL0, NONCE)
    assert err.value.code == "no_hardware_attestation"


class _FixedGpu:
    async def get_payload(self, nonce: bytes) -> str:
        return json.dumps({"nonce": nonce.hex(), "evidence_list": [], "arch": "HOPPER"})


async def test_gpu_seam_fills_nvidia_payload() -> None:
    report = await build_attestation_report(
        NoneProvider(), "ecdsa", ANVIL0, PUB0, NONCE, gpu=_FixedGpu()
    )
    assert NONCE.hex() in report["nvidia_payload"]


def test_signer_filter() -> None:
    ensure_signer_served(None, "ecdsa", ANVIL0)
    ensure_signer_served(ANVIL0.lower(), "ecdsa", ANVIL0)
    for other in ("0x" + "11" * 20, "garbage"):
        with pytest.raises(NotFound) as err:
            ensure_signer_served(other, "ecdsa", ANVIL0)
        assert err.value.status == 404
        assert err.value.code == "signing_address_not_found"


async def test_factory() -> None:
    assert isinstance(make_quote_provider("none", None), NoneProvider)
    dstack = make_quote_provider("dstack", None)
    assert isinstance(dstack, DstackProvider)
    assert (dstack.kind, dstack.socket_path) == ("dstack", "/var/run/dstack.sock")
    tappd = make_quote_provider("tappd", "/tmp/x.sock")
    assert isinstance(tappd, DstackProvider)
    assert (tappd.kind, tappd.socket_path) == ("tappd", "/tmp/x.sock")
    await dstack.close()
    await tappd.close()
    with pytest.raises(ConfigError) as err:
        make_quote_provider("sgx", None)
    assert err.value.code == "unknown_quote_provider"
    assert "none, dstack, tappd" in err.value.message

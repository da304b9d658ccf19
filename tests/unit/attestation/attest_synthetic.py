"""Synthetic TDX quotes for tests, laid out like real ones (no Intel signature).

A plain module (not conftest) so tests can import it by a unique name.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

# Synthetic but plausible values; the QE vendor id is Intel's real one.
_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
_SYNTHETIC_CERT_DATA = b"SYNTHETIC TEST QUOTE: NOT SIGNED BY ANY INTEL KEY\n"
SYNTHETIC_APP_COMPOSE = '{"manifest_version":2,"name":"mercato-operator","runner":"docker-compose"}'


def _mr(label: str) -> bytes:
    return hashlib.sha384(f"mercato synthetic {label}".encode()).digest()


def _runtime_event(name: str, payload: bytes) -> dict[str, Any]:
    digest = hashlib.sha384(struct.pack("<I", 0x08000001) + f":{name}:".encode() + payload)
    return {
        "imr": 3,
        "event_type": 0x08000001,
        "digest": digest.hexdigest(),
        "event": name,
        "event_payload": payload.hex(),
    }


# dstack-style RTMR3 events for the synthetic CVM; the synthetic quote's RTMR3 is
# their replay and its mr_config_id is 0x01 || compose hash, as in a real dstack CVM.
SYNTHETIC_EVENT_LOG: list[dict[str, Any]] = [
    _runtime_event("system-preparing", b""),
    _runtime_event("app-id", hashlib.sha256(b"synthetic app").digest()[:20]),
    _runtime_event("compose-hash", hashlib.sha256(SYNTHETIC_APP_COMPOSE.encode()).digest()),
    _runtime_event("instance-id", hashlib.sha256(b"synthetic instance").digest()[:20]),
    _runtime_event("boot-mr-done", b""),
    _runtime_event("system-ready", b""),
]


def _replay(events: list[dict[str, Any]]) -> bytes:
    value = bytes(48)
    for event in events:
        value = hashlib.sha384(value + bytes.fromhex(event["digest"])).digest()
    return value


def synthetic_td_body(report_data: bytes, *, tdx15: bool = False) -> bytes:
    """A TD report body (584 bytes; 648 for TDX 1.5) with the given report_data."""
    assert len(report_data) == 64
    compose_hash = hashlib.sha256(SYNTHETIC_APP_COMPOSE.encode()).digest()
    body = b"".join(
        [
            bytes.fromhex("0b010200") + bytes(12),  # tee_tcb_svn
            _mr("mr_seam"),
            bytes(48),  # mr_signer_seam: zero for Intel's TDX module
            bytes(8),  # seam_attributes
            bytes.fromhex("0000001000000000"),  # td_attributes
            bytes.fromhex("e702060000000000"),  # xfam
            _mr("mr_td"),
            (b"\x01" + compose_hash).ljust(48, b"\x00"),  # mr_config_id
            bytes(48),  # mr_owner
            bytes(48),  # mr_owner_config
            _mr("rtmr0"),
            _mr("rtmr1"),
            _mr("rtmr2"),
            _replay(SYNTHETIC_EVENT_LOG),  # rtmr3
            report_data,
        ]
    )
    if tdx15:
        body += bytes(16) + bytes(48)  # tee_tcb_svn2, mr_servicetd
    return body


def synthetic_tdx_quote(report_data: bytes, *, version: int = 4) -> bytes:
    """A quote laid out like a real TDX v4 (or v5) quote, with a fake signature."""
    header = struct.pack("<HHI", version, 2, 0x81) + bytes(4) + _QE_VENDOR_ID + bytes(20)
    assert len(header) == 48
    body = synthetic_td_body(report_data)
    if version == 5:
        body = struct.pack("<HI", 2, len(body)) + body
    signature = hashlib.sha512(b"synthetic quote signature").digest()  # 64 bytes
    attestation_key = hashlib.sha512(b"synthetic attestation key").digest()  # 64 bytes
    cert_data = struct.pack("<HI", 5, len(_SYNTHETIC_CERT_DATA)) + _SYNTHETIC_CERT_DATA
    sig_data = signature + attestation_key + cert_data
    return header + body + struct.pack("<I", len(sig_data)) + sig_data

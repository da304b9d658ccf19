"""dstack event logs: replay RTMR3 and read the app identity it measures. Pure.

dstack extends RTMR3 at boot with named runtime events (event_type 0x08000001):
``system-preparing``, ``app-id``, ``compose-hash``, ``instance-id``, ``boot-mr-done``,
``mr-kms``, ``os-image-hash``, ``key-provider``, ``system-ready``, ... Each entry's
digest is ``sha384(event_type as u32 LE || ":" || event || ":" || payload)``, and an
RTMR is the fold ``rtmr = sha384(rtmr || digest)`` from 48 zero bytes.

:func:`check_event_log` replays RTMR3 against a parsed quote and, where dstack put the
compose hash in ``mr_config_id`` (``0x01 || sha256(app_compose)``), checks that the
logged compose hash is that one. Like the binding check this trusts the quote's bytes:
it is meaningful only together with a check of the quote's Intel signature.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Final

from mercato.attestation.errors import AttestationMismatch
from mercato.attestation.tdx import TdxQuote

DSTACK_RUNTIME_EVENT: Final = 0x08000001
RTMR_LEN: Final = 48


def _fail(code: str, message: str) -> AttestationMismatch:
    return AttestationMismatch(message, code=code)


def runtime_event_digest(event_type: int, event: str, payload: bytes) -> bytes:
    return hashlib.sha384(
        struct.pack("<I", event_type) + b":" + event.encode() + b":" + payload
    ).digest()


def _entry(raw: object) -> tuple[int, int, bytes, str, bytes]:
    if not isinstance(raw, dict):
        raise _fail("event_log_malformed", "event log entry is not an object")
    try:
        imr, event_type = int(raw["imr"]), int(raw["event_type"])
        digest = bytes.fromhex(str(raw["digest"]))
        event = str(raw.get("event", ""))
        payload = bytes.fromhex(str(raw.get("event_payload", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail("event_log_malformed", f"event log entry unusable: {exc}") from exc
    if len(digest) != RTMR_LEN:
        raise _fail("event_log_malformed", f"event digest is {len(digest)} bytes, not 48")
    return imr, event_type, digest, event, payload


def replay_rtmr(event_log: Sequence[object], imr: int) -> bytes:
    """Fold the digests of ``imr``'s entries into the RTMR value they produce."""
    value = bytes(RTMR_LEN)
    for raw in event_log:
        entry_imr, _, digest, _, _ = _entry(raw)
        if entry_imr == imr:
            value = hashlib.sha384(value + digest).digest()
    return value


def check_event_log(quote: TdxQuote, event_log: Sequence[object]) -> dict[str, str]:
    """Check the event log against ``quote``; return the RTMR3 events as ``{name: hex}``.

    Raises :class:`AttestationMismatch` with ``event_log_malformed``,
    ``event_digest_mismatch``, ``rtmr3_mismatch`` or ``compose_hash_mismatch``.
    """
    events: dict[str, str] = {}
    for raw in event_log:
        imr, event_type, digest, event, payload = _entry(raw)
        if imr != 3 or event_type != DSTACK_RUNTIME_EVENT:
            continue
        if runtime_event_digest(event_type, event, payload) != digest:
            raise _fail("event_digest_mismatch", f"event {event!r}: digest does not match")
        events[event] = payload.hex()
    if replay_rtmr(event_log, 3) != quote.rtmr[3]:
        raise _fail("rtmr3_mismatch", "event log does not replay to the quote's RTMR3")
    compose = events.get("compose-hash")
    dstack_config = quote.mr_config_id[:1] == b"\x01"
    if compose is not None and dstack_config and quote.mr_config_id[1:33].hex() != compose:
        raise _fail("compose_hash_mismatch", "compose-hash event differs from mr_config_id")
    return events

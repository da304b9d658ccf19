"""The 64 bytes a quote binds: ``signer (zero-padded to 32) || nonce (32)``.

Pure: no I/O. The layout is the one Dstack's vllm-proxy uses (its ``version`` 1), so
existing verifiers check Mercato operators unchanged; docs/protocols/attestation.md
has the exact bytes and a worked example.

- ``ecdsa``: the 20 bytes of the Ethereum address, then 12 zero bytes.
- ``ed25519``: the 32 bytes of the public key.
- then the 32-byte nonce the client chose (or the server drew, when none was given).
"""

from __future__ import annotations

import os
import re
from typing import Final, Literal, get_args

from mercato.errors import InvalidRequest

SigningAlgo = Literal["ecdsa", "ed25519"]
SIGNING_ALGOS: Final[tuple[SigningAlgo, ...]] = get_args(SigningAlgo)
DEFAULT_SIGNING_ALGO: Final[SigningAlgo] = "ecdsa"

NONCE_LEN: Final = 32
REPORT_DATA_LEN: Final = 64
SIGNER_FIELD_LEN: Final = 32
_SIGNER_LEN: Final[dict[SigningAlgo, int]] = {"ecdsa": 20, "ed25519": 32}

_NONCE_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_HEX_RE: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")


def parse_signing_algo(value: str | None) -> SigningAlgo:
    """``None`` means the default (``ecdsa``); anything but ecdsa/ed25519 is a 400."""
    if value is None:
        return DEFAULT_SIGNING_ALGO
    for algo in SIGNING_ALGOS:
        if value == algo:
            return algo
    raise InvalidRequest(
        "Invalid signing algorithm. Must be 'ed25519' or 'ecdsa'",
        code="invalid_signing_algo",
        param="signing_algo",
    )


def parse_nonce(value: str | None) -> bytes:
    """Exactly 64 hex characters (either case, no ``0x``) -> 32 bytes.

    ``None`` (the parameter was left out) draws a fresh random nonce; the report
    echoes it as ``request_nonce``. An empty string is not "left out": it is a 400.
    The strict form matches vllm-proxy, so a client written for one works with both.
    """
    if value is None:
        return os.urandom(NONCE_LEN)
    if _NONCE_RE.fullmatch(value) is None:
        raise InvalidRequest(
            "nonce must be exactly 64 hex characters (32 bytes), without 0x",
            code="invalid_nonce",
            param="nonce",
        )
    return bytes.fromhex(value)


def _hex_bytes(value: str) -> bytes | None:
    text = value[2:] if value[:2] in ("0x", "0X") else value
    if _HEX_RE.fullmatch(text) is None:
        return None
    return bytes.fromhex(text)


def signer_bytes(signing_algo: SigningAlgo, signer: str | bytes) -> bytes:
    """The raw signer identity: 20 address bytes (ecdsa) or 32 public-key bytes (ed25519).

    ``signer`` is raw bytes or hex, with or without ``0x``, any case (the EIP-55
    checksum is not enforced here: case carries no bytes).
    """
    if signing_algo not in _SIGNER_LEN:
        raise ValueError(f"unknown signing algorithm {signing_algo!r}")
    raw = signer if isinstance(signer, bytes) else _hex_bytes(signer)
    want = _SIGNER_LEN[signing_algo]
    if raw is None or len(raw) != want:
        what = "address" if signing_algo == "ecdsa" else "public key"
        raise ValueError(f"{signing_algo} signer must be a {want}-byte {what}, got {signer!r}")
    return raw


def build_report_data(signing_algo: SigningAlgo, signer: str | bytes, nonce: bytes) -> bytes:
    """``signer_bytes`` right-padded with zeros to 32 bytes, then the 32-byte nonce."""
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"nonce must be {NONCE_LEN} bytes, got {len(nonce)}")
    return signer_bytes(signing_algo, signer).ljust(SIGNER_FIELD_LEN, b"\x00") + nonce

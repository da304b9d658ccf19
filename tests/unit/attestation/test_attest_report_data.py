"""report_data layout, nonce and signing_algo parsing."""

from __future__ import annotations

import nacl.signing
import pytest

from mercato.attestation import (
    build_report_data,
    parse_nonce,
    parse_signing_algo,
    signer_bytes,
)
from mercato.errors import InvalidRequest

ANVIL0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
NONCE = bytes(range(32))
# RFC 8032, test 1
ED_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ED_PUB = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def test_ecdsa_layout_is_address_then_12_zero_bytes_then_nonce() -> None:
    rd = build_report_data("ecdsa", ANVIL0, NONCE)
    assert len(rd) == 64
    assert rd[:20] == bytes.fromhex(ANVIL0[2:])
    assert rd[20:32] == bytes(12)
    assert rd[32:] == NONCE


def test_ed25519_layout_is_public_key_then_nonce() -> None:
    pub = bytes(nacl.signing.SigningKey(ED_SEED).verify_key)
    assert pub.hex() == ED_PUB
    rd = build_report_data("ed25519", ED_PUB, NONCE)
    assert rd == pub + NONCE


@pytest.mark.parametrize(
    "signer",
    [ANVIL0, ANVIL0.lower(), ANVIL0[2:].upper(), "0X" + ANVIL0[2:], bytes.fromhex(ANVIL0[2:])],
)
def test_signer_forms_are_equivalent(signer: str | bytes) -> None:
    assert build_report_data("ecdsa", signer, NONCE) == build_report_data("ecdsa", ANVIL0, NONCE)


@pytest.mark.parametrize(
    ("algo", "signer"),
    [
        ("ecdsa", ED_PUB),  # 32 bytes is not an address
        ("ed25519", ANVIL0),  # 20 bytes is not an Ed25519 key
        ("ecdsa", "0x1234"),
        ("ecdsa", "not hex at all, not hex at all, not hex at"),
        ("ed25519", b"\x01" * 31),
    ],
)
def test_wrong_signer_size_is_refused(algo: str, signer: str | bytes) -> None:
    with pytest.raises(ValueError):
        signer_bytes(algo, signer)  # type: ignore[arg-type]


def test_nonce_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        build_report_data("ecdsa", ANVIL0, NONCE[:31])


def test_parse_nonce_accepts_64_hex_either_case() -> None:
    assert parse_nonce(NONCE.hex()) == NONCE
    assert parse_nonce(NONCE.hex().upper()) == NONCE


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0x" + "ab" * 32,
        "ab" * 31 + "a",
        "ab" * 32 + "a",
        "ab" * 64,
        "zz" * 32,
        " " + "ab" * 32,
        "ab" * 32 + "\n",
    ],
)
def test_parse_nonce_rejects_anything_else(bad: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_nonce(bad)
    assert err.value.code == "invalid_nonce"
    assert err.value.status == 400
    assert err.value.param == "nonce"


def test_missing_nonce_draws_a_fresh_one() -> None:
    first, second = parse_nonce(None), parse_nonce(None)
    assert len(first) == len(second) == 32
    assert first != second


def test_parse_signing_algo() -> None:
    assert parse_signing_algo(None) == "ecdsa"
    assert parse_signing_algo("ecdsa") == "ecdsa"
    assert parse_signing_algo("ed25519") == "ed25519"
    for bad in ("ECDSA", "secp256k1", ""):
        with pytest.raises(InvalidRequest) as err:
            parse_signing_algo(bad)
        assert err.value.code == "invalid_signing_algo"

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.crypto.keystore import KeystoreError, load_or_create, resolve_password
from mercato.crypto.signers import EcdsaSigner, Ed25519Signer, recover_personal, verify_ed25519

KEY = EcdsaSigner.from_bytes(
    bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300))
def test_personal_sign_matches_eth_account(message: bytes) -> None:
    sig = KEY.sign_personal(message)
    assert sig == bytes(
        Account.sign_message(encode_defunct(primitive=message), KEY.secret).signature
    )
    assert recover_personal(message, sig) == KEY.address
    assert Account.recover_message(encode_defunct(primitive=message), signature=sig) == KEY.address


def test_recover_rejects_malformed_and_high_s() -> None:
    sig = KEY.sign_personal(b"x")
    with pytest.raises(ValueError):
        recover_personal(b"x", sig[:64])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(sig[32:64], "big")
    flipped = sig[:32] + (n - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    with pytest.raises(ValueError, match="high-s"):
        recover_personal(b"x", flipped)


def test_ed25519_roundtrip_and_tamper() -> None:
    signer = Ed25519Signer.from_seed(os.urandom(32))
    sig = signer.sign(b"hello")
    pub = bytes.fromhex(signer.public_key_hex)
    assert verify_ed25519(b"hello", sig, pub)
    assert not verify_ed25519(b"hellp", sig, pub)
    assert not verify_ed25519(b"hello", sig[:-1] + bytes([sig[-1] ^ 1]), pub)


def test_reprs_never_show_keys() -> None:
    assert KEY.secret.hex() not in repr(KEY)
    ed = Ed25519Signer.from_seed(bytes(32))
    assert bytes(32).hex() not in repr(ed)


def test_keystore_is_stable_encrypted_and_standard(tmp_path: Path) -> None:
    keys = load_or_create(tmp_path, "correct horse", fast_kdf=True)
    again = load_or_create(tmp_path, "correct horse", fast_kdf=True)
    assert again.ecdsa.address == keys.ecdsa.address
    assert again.ed25519.public_key_hex == keys.ed25519.public_key_hex
    for name in ("ecdsa.json", "ed25519.json"):
        raw = (tmp_path / name).read_text()
        assert keys.ecdsa.secret.hex() not in raw and keys.ed25519.seed.hex() not in raw
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    # The secp256k1 key is a standard Ethereum keystore v3 file.
    doc = json.loads((tmp_path / "ecdsa.json").read_text())
    assert doc["version"] == 3
    assert bytes(Account.decrypt(doc, "correct horse")) == keys.ecdsa.secret


def test_keystore_wrong_password(tmp_path: Path) -> None:
    load_or_create(tmp_path, "right", fast_kdf=True)
    with pytest.raises(KeystoreError, match="wrong keystore password"):
        load_or_create(tmp_path, "wrong", fast_kdf=True)


def test_keystore_corrupt_file(tmp_path: Path) -> None:
    load_or_create(tmp_path, "pw", fast_kdf=True)
    (tmp_path / "ed25519.json").write_text("{not json")
    with pytest.raises(KeystoreError, match="cannot read keystore"):
        load_or_create(tmp_path, "pw", fast_kdf=True)


def test_generated_password_is_private_and_reused(tmp_path: Path) -> None:
    first = resolve_password(tmp_path, None, None)
    assert resolve_password(tmp_path, None, None) == first
    assert (tmp_path / "password").stat().st_mode & 0o777 == 0o600
    assert resolve_password(tmp_path, "given", None) == "given"
    pw_file = tmp_path / "pw.txt"
    pw_file.write_text("from-file\n")
    assert resolve_password(tmp_path, None, pw_file) == "from-file"
    with pytest.raises(KeystoreError):
        resolve_password(tmp_path, None, tmp_path / "missing")

"""Encrypted keystore for an operator's two signing keys.

Layout of a keystore directory:

- ``ecdsa.json``: the secp256k1 key as an Ethereum keystore v3 file (scrypt + AES-128-CTR,
  written and read by ``eth_account``), so any Ethereum wallet can import it and the
  operator's address is stable across restarts (it is the operator's on-chain identity).
- ``ed25519.json``: the Ed25519 seed sealed with PyNaCl's SecretBox (XSalsa20-Poly1305)
  under a key derived from the same password with Argon2id.

Keys are created on first use. Nothing here logs or returns the password or the keys.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
from eth_account import Account

from mercato.crypto.signers import EcdsaSigner, Ed25519Signer

ECDSA_FILE = "ecdsa.json"
ED25519_FILE = "ed25519.json"
UNLOCK_FILE = "password"


class KeystoreError(Exception):
    """The keystore cannot be opened: wrong password, corrupt or unreadable file."""


@dataclass(frozen=True, slots=True)
class SigningKeys:
    ecdsa: EcdsaSigner
    ed25519: Ed25519Signer


def _write_private(path: Path, data: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _seal_ed25519(seed: bytes, password: str, *, fast_kdf: bool) -> dict[str, Any]:
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    argon = nacl.pwhash.argon2id
    ops, mem = (
        (argon.OPSLIMIT_INTERACTIVE, argon.MEMLIMIT_INTERACTIVE)
        if fast_kdf
        else (argon.OPSLIMIT_MODERATE, argon.MEMLIMIT_MODERATE)
    )
    key = nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, password.encode(), salt, ops, mem
    )
    box = nacl.secret.SecretBox(key)
    return {
        "version": 1,
        "kind": "ed25519",
        "public_key": Ed25519Signer.from_seed(seed).public_key_hex,
        "crypto": {
            "kdf": "argon2id",
            "opslimit": ops,
            "memlimit": mem,
            "salt": salt.hex(),
            "cipher": "xsalsa20-poly1305",
            "ciphertext": bytes(box.encrypt(seed)).hex(),
        },
    }


def _open_ed25519(doc: dict[str, Any], password: str) -> Ed25519Signer:
    try:
        c = doc["crypto"]
        key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            password.encode(),
            bytes.fromhex(c["salt"]),
            int(c["opslimit"]),
            int(c["memlimit"]),
        )
        seed = nacl.secret.SecretBox(key).decrypt(bytes.fromhex(c["ciphertext"]))
    except nacl.exceptions.CryptoError as exc:
        raise KeystoreError("wrong keystore password (ed25519 key)") from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise KeystoreError(f"corrupt ed25519 keystore: {exc}") from exc
    signer = Ed25519Signer.from_seed(seed)
    if signer.public_key_hex != doc.get("public_key"):
        raise KeystoreError("ed25519 keystore public key does not match its sealed seed")
    return signer


def resolve_password(directory: Path, password: str | None, password_file: Path | None) -> str:
    """The password from the argument, a file, or a generated one kept beside the keys.

    The generated password (mode 0600 file in the keystore directory) is for local
    devnets only; production operators pass a password or a password file.
    """
    if password:
        return password
    if password_file is not None:
        try:
            return password_file.read_text().strip()
        except OSError as exc:
            raise KeystoreError(f"cannot read password file {password_file}: {exc}") from exc
    generated = directory / UNLOCK_FILE
    if generated.exists():
        return generated.read_text().strip()
    directory.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    _write_private(generated, value)
    return value


def load_or_create(directory: Path, password: str, *, fast_kdf: bool = False) -> SigningKeys:
    """Open the keystore in ``directory``, creating missing keys first.

    ``fast_kdf`` lowers the key-derivation cost of newly created files (scrypt n=2**14,
    Argon2id "interactive") for tests and throw-away devnets; opening uses whatever
    parameters the files record.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ecdsa_path, ed_path = directory / ECDSA_FILE, directory / ED25519_FILE
    if not ecdsa_path.exists():
        secret = EcdsaSigner.from_bytes(secrets.token_bytes(32)).secret
        doc = Account.encrypt(
            secret, password, kdf="scrypt", iterations=2**14 if fast_kdf else 2**18
        )
        _write_private(ecdsa_path, json.dumps(doc))
    if not ed_path.exists():
        _write_private(
            ed_path, json.dumps(_seal_ed25519(secrets.token_bytes(32), password, fast_kdf=fast_kdf))
        )
    try:
        ecdsa_doc = json.loads(ecdsa_path.read_text())
        ed_doc = json.loads(ed_path.read_text())
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"cannot read keystore in {directory}: {exc}") from exc
    try:
        ecdsa = EcdsaSigner.from_bytes(bytes(Account.decrypt(ecdsa_doc, password)))
    except ValueError as exc:
        raise KeystoreError("wrong keystore password (ecdsa key)") from exc
    return SigningKeys(ecdsa=ecdsa, ed25519=_open_ed25519(ed_doc, password))

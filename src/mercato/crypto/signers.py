"""Signing keys: secp256k1 (EIP-191 personal_sign, via coincurve) and Ed25519 (PyNaCl).

Both sign the same receipt text; the encodings match Dstack's vllm-proxy so that
existing verifiers accept them:

- ECDSA: 65 bytes ``r || s || v`` with ``v`` in {27, 28}, hex with ``0x``; the
  signer is the checksummed Ethereum address of the key.
- Ed25519: 64-byte signature as lower-case hex without ``0x``; the signer is the
  32-byte public key as lower-case hex.
"""

from __future__ import annotations

from dataclasses import dataclass

import coincurve
import nacl.exceptions
import nacl.signing
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def eip191_digest(message: bytes) -> bytes:
    """keccak256("\\x19Ethereum Signed Message:\\n" + len(message) + message)."""
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)


def address_from_public_key(public_key: coincurve.PublicKey) -> str:
    return to_checksum_address(keccak(public_key.format(compressed=False)[1:])[-20:])


@dataclass(frozen=True, slots=True)
class EcdsaSigner:
    """A secp256k1 key that signs EIP-191 personal messages."""

    _key: coincurve.PrivateKey

    @classmethod
    def from_bytes(cls, secret: bytes) -> EcdsaSigner:
        if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < _SECP256K1_N:
            raise ValueError("not a valid secp256k1 private key")
        return cls(coincurve.PrivateKey(secret))

    @property
    def secret(self) -> bytes:
        return bytes(self._key.secret)

    @property
    def address(self) -> str:
        return address_from_public_key(self._key.public_key)

    @property
    def public_key_hex(self) -> str:
        """Uncompressed public key without the 0x04 prefix (128 hex chars)."""
        return self._key.public_key.format(compressed=False)[1:].hex()

    def sign_personal(self, message: bytes) -> bytes:
        sig = self._key.sign_recoverable(eip191_digest(message), hasher=None)
        return sig[:64] + bytes([sig[64] + 27])

    def __repr__(self) -> str:  # never print the key
        return f"EcdsaSigner(address={self.address})"


@dataclass(frozen=True, slots=True)
class Ed25519Signer:
    _key: nacl.signing.SigningKey

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Signer:
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    @property
    def public_key_hex(self) -> str:
        return bytes(self._key.verify_key).hex()

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:
        return f"Ed25519Signer(public_key={self.public_key_hex})"


def recover_personal(message: bytes, signature: bytes) -> str:
    """The checksummed address that produced an EIP-191 ``signature`` over ``message``."""
    return to_checksum_address(recover_digest(eip191_digest(message), signature))


def verify_ed25519(message: bytes, signature: bytes, public_key: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def recover_digest(digest: bytes, signature: bytes) -> str:
    """The lower-case 0x address that signed a 32-byte ``digest`` (e.g. an EIP-712 hash;
    lower case because checksumming costs another keccak on the hot path).

    ``signature`` is 65 bytes ``r || s || v`` (v in {0, 1, 27, 28}); high-s signatures
    are refused, as the contracts refuse them. Raises ValueError.
    """
    if len(digest) != 32 or len(signature) != 65:
        raise ValueError("need a 32-byte digest and a 65-byte signature")
    v = signature[64] - 27 if signature[64] >= 27 else signature[64]
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if v not in (0, 1) or not 0 < r < _SECP256K1_N or not 0 < s <= _SECP256K1_N // 2:
        raise ValueError("malformed or non-canonical (high-s) signature")
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([v]), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises plain Exception for bad points
        raise ValueError("unrecoverable signature") from exc
    return "0x" + keccak(public_key.format(compressed=False)[1:])[-20:].hex()

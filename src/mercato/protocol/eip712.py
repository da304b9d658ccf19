"""EIP-712 typed data for Mercato's payment contracts: pure builders and hashes, no I/O.

- PaymentEscrow (domain "Mercato PaymentEscrow" / "1"): ``SpendAuthorization``,
  ``SpendSettlement`` and ``Voucher`` — docs/protocols/spendauth.md and
  docs/protocols/channels.md.
- PaymentToken (domain "Mercato USD" / "1"): EIP-2612 ``Permit`` and EIP-3009
  ``TransferWithAuthorization`` / ``ReceiveWithAuthorization`` / ``CancelAuthorization``.

The ``*_typed_data`` functions return the full message dict accepted by
``eth_account.Account.sign_typed_data(full_message=...)`` and
``eth_account.messages.encode_typed_data(full_message=...)``. The ``*_digest``
functions compute the same 32-byte hash directly (keccak + ABI words) for hot paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mercato.crypto.signers import recover_digest

ESCROW_DOMAIN_NAME = "Mercato PaymentEscrow"
ESCROW_DOMAIN_VERSION = "1"
TOKEN_DOMAIN_NAME = "Mercato USD"  # noqa: S105 (a name, not a secret)
TOKEN_DOMAIN_VERSION = "1"  # noqa: S105

#: secp256k1 group order; signatures with s > N // 2 are refused (EIP-2).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

Field = dict[str, str]

EIP712_DOMAIN_FIELDS: list[Field] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
SPEND_AUTHORIZATION_FIELDS: list[Field] = [
    {"name": "payer", "type": "address"},
    {"name": "operator", "type": "address"},
    {"name": "maxAmount", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
SPEND_SETTLEMENT_FIELDS: list[Field] = [
    {"name": "payer", "type": "address"},
    {"name": "operator", "type": "address"},
    {"name": "word", "type": "uint256"},
    {"name": "mask", "type": "uint256"},
    {"name": "total", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
VOUCHER_FIELDS: list[Field] = [
    {"name": "channelId", "type": "bytes32"},
    {"name": "cumulativeAmount", "type": "uint256"},
]
PERMIT_FIELDS: list[Field] = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
_AUTHORIZATION_FIELDS: list[Field] = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
CANCEL_AUTHORIZATION_FIELDS: list[Field] = [
    {"name": "authorizer", "type": "address"},
    {"name": "nonce", "type": "bytes32"},
]


def _type_string(name: str, fields: list[Field]) -> str:
    return name + "(" + ",".join(f"{f['type']} {f['name']}" for f in fields) + ")"


EIP712_DOMAIN_TYPE = _type_string("EIP712Domain", EIP712_DOMAIN_FIELDS)
SPEND_AUTHORIZATION_TYPE = _type_string("SpendAuthorization", SPEND_AUTHORIZATION_FIELDS)
SPEND_SETTLEMENT_TYPE = _type_string("SpendSettlement", SPEND_SETTLEMENT_FIELDS)
VOUCHER_TYPE = _type_string("Voucher", VOUCHER_FIELDS)
PERMIT_TYPE = _type_string("Permit", PERMIT_FIELDS)
TRANSFER_WITH_AUTHORIZATION_TYPE = _type_string("TransferWithAuthorization", _AUTHORIZATION_FIELDS)
RECEIVE_WITH_AUTHORIZATION_TYPE = _type_string("ReceiveWithAuthorization", _AUTHORIZATION_FIELDS)
CANCEL_AUTHORIZATION_TYPE = _type_string("CancelAuthorization", CANCEL_AUTHORIZATION_FIELDS)

EIP712_DOMAIN_TYPEHASH = keccak(text=EIP712_DOMAIN_TYPE)
SPEND_AUTHORIZATION_TYPEHASH = keccak(text=SPEND_AUTHORIZATION_TYPE)
SPEND_SETTLEMENT_TYPEHASH = keccak(text=SPEND_SETTLEMENT_TYPE)
VOUCHER_TYPEHASH = keccak(text=VOUCHER_TYPE)
PERMIT_TYPEHASH = keccak(text=PERMIT_TYPE)
TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak(text=TRANSFER_WITH_AUTHORIZATION_TYPE)
RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak(text=RECEIVE_WITH_AUTHORIZATION_TYPE)
CANCEL_AUTHORIZATION_TYPEHASH = keccak(text=CANCEL_AUTHORIZATION_TYPE)


# --- domains ----------------------------------------------------------------------------


def eip712_domain(
    name: str, version: str, chain_id: int, verifying_contract: str
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def escrow_domain(chain_id: int, escrow_address: str) -> dict[str, Any]:
    """The PaymentEscrow's EIP-712 domain."""
    return eip712_domain(ESCROW_DOMAIN_NAME, ESCROW_DOMAIN_VERSION, chain_id, escrow_address)


def token_domain(
    chain_id: int,
    token_address: str,
    name: str = TOKEN_DOMAIN_NAME,
    version: str = TOKEN_DOMAIN_VERSION,
) -> dict[str, Any]:
    """An ERC-20's EIP-712 domain (defaults: the devnet PaymentToken "Mercato USD" / "1")."""
    return eip712_domain(name, version, chain_id, token_address)


def domain_separator(domain: Mapping[str, Any]) -> bytes:
    """hashStruct(EIP712Domain) for a domain with name, version, chainId, verifyingContract."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                EIP712_DOMAIN_TYPEHASH,
                keccak(text=domain["name"]),
                keccak(text=domain["version"]),
                int(domain["chainId"]),
                to_checksum_address(domain["verifyingContract"]),
            ],
        )
    )


def typed_data_digest(separator: bytes, struct_hash: bytes) -> bytes:
    """keccak256(0x1901 || domainSeparator || structHash)."""
    return keccak(b"\x19\x01" + separator + struct_hash)


def _full_message(
    domain: Mapping[str, Any], primary: str, fields: list[Field], message: dict[str, Any]
) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": list(EIP712_DOMAIN_FIELDS), primary: list(fields)},
        "primaryType": primary,
        "domain": dict(domain),
        "message": message,
    }


def _hex32(value: bytes | str) -> str:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else value
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return "0x" + raw.hex()


def _bytes32(value: bytes | str) -> bytes:
    return bytes.fromhex(_hex32(value)[2:])


# --- spend authorizations -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpendAuthorization:
    """A payer's permission for ``operator`` to take up to ``max_amount`` once, by
    ``deadline`` (unix seconds, inclusive), identified by the unordered ``nonce``."""

    payer: str
    operator: str
    max_amount: int
    nonce: int
    deadline: int

    def typed_data(self, domain: Mapping[str, Any]) -> dict[str, Any]:
        return spend_authorization_typed_data(
            domain, self.payer, self.operator, self.max_amount, self.nonce, self.deadline
        )

    def struct_hash(self) -> bytes:
        return spend_authorization_struct_hash(
            self.payer, self.operator, self.max_amount, self.nonce, self.deadline
        )

    def digest(self, separator: bytes) -> bytes:
        return typed_data_digest(separator, self.struct_hash())


def spend_authorization_typed_data(
    domain: Mapping[str, Any],
    payer: str,
    operator: str,
    max_amount: int,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    return _full_message(
        domain,
        "SpendAuthorization",
        SPEND_AUTHORIZATION_FIELDS,
        {
            "payer": to_checksum_address(payer),
            "operator": to_checksum_address(operator),
            "maxAmount": max_amount,
            "nonce": nonce,
            "deadline": deadline,
        },
    )


def _word_address(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {address!r}")
    return b"\x00" * 12 + raw


def _word_uint(value: int) -> bytes:
    return value.to_bytes(32, "big")  # OverflowError for values outside uint256


def spend_authorization_struct_hash(
    payer: str, operator: str, max_amount: int, nonce: int, deadline: int
) -> bytes:
    """hashStruct(SpendAuthorization): every field is one 32-byte word, so the ABI
    encoding is plain concatenation (checked against eth_account by the tests)."""
    return keccak(
        SPEND_AUTHORIZATION_TYPEHASH
        + _word_address(payer)
        + _word_address(operator)
        + _word_uint(max_amount)
        + _word_uint(nonce)
        + _word_uint(deadline)
    )


def spend_authorization_digest(
    separator: bytes, payer: str, operator: str, max_amount: int, nonce: int, deadline: int
) -> bytes:
    """The digest the payer signs; ``separator`` is ``domain_separator(escrow_domain(...))``."""
    return typed_data_digest(
        separator, spend_authorization_struct_hash(payer, operator, max_amount, nonce, deadline)
    )


def nonce_word(nonce: int) -> int:
    """The bitmap word a nonce lives in (``nonce >> 8``)."""
    return nonce >> 8


def nonce_bit(nonce: int) -> int:
    """The bit position of a nonce inside its word (``nonce & 255``)."""
    return nonce & 255


def make_nonce(word: int, bit: int) -> int:
    if not 0 <= bit < 256 or not 0 <= word < 2**248:
        raise ValueError("word must be < 2**248 and bit < 256")
    return (word << 8) | bit


def mask_nonces(word: int, mask: int) -> list[int]:
    """The nonces ``word << 8 | i`` for every bit ``i`` set in ``mask``, in order."""
    return [(word << 8) | bit for bit in range(256) if mask >> bit & 1]


# --- spend settlements ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpendSettlement:
    """A payer's agreement that ``operator`` settles the payer's nonces
    ``word << 8 | i`` for every bit ``i`` set in ``mask``, for ``total`` in all, by
    ``deadline`` (unix seconds, inclusive). Signed after the fact, once the charges of
    those requests are known; one signature settles up to 256 spend authorizations."""

    payer: str
    operator: str
    word: int
    mask: int
    total: int
    deadline: int

    @property
    def nonces(self) -> list[int]:
        return mask_nonces(self.word, self.mask)

    def typed_data(self, domain: Mapping[str, Any]) -> dict[str, Any]:
        return spend_settlement_typed_data(
            domain, self.payer, self.operator, self.word, self.mask, self.total, self.deadline
        )

    def struct_hash(self) -> bytes:
        return spend_settlement_struct_hash(
            self.payer, self.operator, self.word, self.mask, self.total, self.deadline
        )

    def digest(self, separator: bytes) -> bytes:
        return typed_data_digest(separator, self.struct_hash())


def spend_settlement_typed_data(
    domain: Mapping[str, Any],
    payer: str,
    operator: str,
    word: int,
    mask: int,
    total: int,
    deadline: int,
) -> dict[str, Any]:
    return _full_message(
        domain,
        "SpendSettlement",
        SPEND_SETTLEMENT_FIELDS,
        {
            "payer": to_checksum_address(payer),
            "operator": to_checksum_address(operator),
            "word": word,
            "mask": mask,
            "total": total,
            "deadline": deadline,
        },
    )


def spend_settlement_struct_hash(
    payer: str, operator: str, word: int, mask: int, total: int, deadline: int
) -> bytes:
    """hashStruct(SpendSettlement): six 32-byte words after the type hash."""
    return keccak(
        SPEND_SETTLEMENT_TYPEHASH
        + _word_address(payer)
        + _word_address(operator)
        + _word_uint(word)
        + _word_uint(mask)
        + _word_uint(total)
        + _word_uint(deadline)
    )


def spend_settlement_digest(
    separator: bytes, payer: str, operator: str, word: int, mask: int, total: int, deadline: int
) -> bytes:
    """The digest the payer signs; ``separator`` is ``domain_separator(escrow_domain(...))``."""
    return typed_data_digest(
        separator, spend_settlement_struct_hash(payer, operator, word, mask, total, deadline)
    )


# --- claim encoding (PaymentEscrow.claim_batch) --------------------------------------------


def split_signature(signature: bytes) -> tuple[int, int, int]:
    """(v, r, s) of a 65-byte ``r || s || v`` (v 27/28 or 0/1) or 64-byte EIP-2098 signature."""
    if len(signature) == 65:
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:64], "big")
        v = signature[64]
        if v < 27:
            v += 27
    elif len(signature) == 64:
        r = int.from_bytes(signature[:32], "big")
        vs = int.from_bytes(signature[32:], "big")
        s = vs & ((1 << 255) - 1)
        v = 27 + (vs >> 255)
    else:
        raise ValueError(f"signature must be 64 or 65 bytes, got {len(signature)}")
    if v not in (27, 28):
        raise ValueError(f"bad signature v: {v}")
    return v, r, s


def to_compact(signature: bytes) -> tuple[bytes, bytes]:
    """EIP-2098 ``(r, vs)`` with ``vs = (yParity << 255) | s``."""
    v, r, s = split_signature(signature)
    if s > SECP256K1_N // 2:
        raise ValueError("high-s signature (not canonical)")
    return r.to_bytes(32, "big"), (((v - 27) << 255) | s).to_bytes(32, "big")


def recover_signer(digest: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``digest`` (65-byte or 64-byte compact
    signature); rejects high-s signatures like the contracts do. Raises ValueError."""
    v, r, s = split_signature(signature)
    full = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    return str(to_checksum_address(recover_digest(digest, full)))


# --- payment channels ------------------------------------------------------------------------


def channel_id(escrow: str, chain_id: int, payer: str, operator: str, salt: bytes | str) -> bytes:
    """keccak256(abi.encode(escrow, chainId, payer, operator, salt))."""
    return keccak(
        abi_encode(
            ["address", "uint256", "address", "address", "bytes32"],
            [escrow, chain_id, payer, operator, _bytes32(salt)],
        )
    )


@dataclass(frozen=True, slots=True)
class Voucher:
    """The payer's statement that ``cumulative_amount`` in total is owed on ``channel_id``."""

    channel_id: bytes
    cumulative_amount: int

    def typed_data(self, domain: Mapping[str, Any]) -> dict[str, Any]:
        return voucher_typed_data(domain, self.channel_id, self.cumulative_amount)

    def struct_hash(self) -> bytes:
        return voucher_struct_hash(self.channel_id, self.cumulative_amount)

    def digest(self, separator: bytes) -> bytes:
        return typed_data_digest(separator, self.struct_hash())


def voucher_typed_data(
    domain: Mapping[str, Any], channel_id: bytes | str, cumulative_amount: int
) -> dict[str, Any]:
    return _full_message(
        domain,
        "Voucher",
        VOUCHER_FIELDS,
        {"channelId": _hex32(channel_id), "cumulativeAmount": cumulative_amount},
    )


def voucher_struct_hash(channel_id: bytes | str, cumulative_amount: int) -> bytes:
    return keccak(VOUCHER_TYPEHASH + _bytes32(channel_id) + _word_uint(cumulative_amount))


def voucher_digest(separator: bytes, channel_id: bytes | str, cumulative_amount: int) -> bytes:
    return typed_data_digest(separator, voucher_struct_hash(channel_id, cumulative_amount))


# --- token: EIP-2612 and EIP-3009 -----------------------------------------------------------


def permit_typed_data(
    domain: Mapping[str, Any], owner: str, spender: str, value: int, nonce: int, deadline: int
) -> dict[str, Any]:
    return _full_message(
        domain,
        "Permit",
        PERMIT_FIELDS,
        {
            "owner": to_checksum_address(owner),
            "spender": to_checksum_address(spender),
            "value": value,
            "nonce": nonce,
            "deadline": deadline,
        },
    )


def _authorization_typed_data(
    primary: str,
    domain: Mapping[str, Any],
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes | str,
) -> dict[str, Any]:
    return _full_message(
        domain,
        primary,
        _AUTHORIZATION_FIELDS,
        {
            "from": to_checksum_address(from_),
            "to": to_checksum_address(to),
            "value": value,
            "validAfter": valid_after,
            "validBefore": valid_before,
            "nonce": _hex32(nonce),
        },
    )


def transfer_with_authorization_typed_data(
    domain: Mapping[str, Any],
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes | str,
) -> dict[str, Any]:
    """EIP-3009 TransferWithAuthorization (valid strictly after ``valid_after`` and strictly
    before ``valid_before``; ``nonce`` is a random 32-byte value)."""
    return _authorization_typed_data(
        "TransferWithAuthorization", domain, from_, to, value, valid_after, valid_before, nonce
    )


def receive_with_authorization_typed_data(
    domain: Mapping[str, Any],
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes | str,
) -> dict[str, Any]:
    return _authorization_typed_data(
        "ReceiveWithAuthorization", domain, from_, to, value, valid_after, valid_before, nonce
    )


def cancel_authorization_typed_data(
    domain: Mapping[str, Any], authorizer: str, nonce: bytes | str
) -> dict[str, Any]:
    return _full_message(
        domain,
        "CancelAuthorization",
        CANCEL_AUTHORIZATION_FIELDS,
        {"authorizer": to_checksum_address(authorizer), "nonce": _hex32(nonce)},
    )


def transfer_with_authorization_digest(
    separator: bytes,
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes | str,
) -> bytes:
    struct_hash = keccak(
        abi_encode(
            ["bytes32", "address", "address", "uint256", "uint256", "uint256", "bytes32"],
            [
                TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
                from_,
                to,
                value,
                valid_after,
                valid_before,
                _bytes32(nonce),
            ],
        )
    )
    return typed_data_digest(separator, struct_hash)

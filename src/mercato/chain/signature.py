"""Signature layouts the contracts take: (v, r, s) and EIP-2098 compact (r, vs)."""

from __future__ import annotations

SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def split_vrs(signature: bytes) -> tuple[int, bytes, bytes]:
    """``(v, r, s)`` of a 65-byte ``r || s || v`` signature (``v`` as 27/28)."""
    if len(signature) != 65:
        raise ValueError(f"expected a 65-byte signature, got {len(signature)} bytes")
    v = signature[64]
    if v < 27:
        v += 27
    return v, signature[:32], signature[32:64]


def to_compact(signature: bytes) -> tuple[bytes, bytes]:
    """EIP-2098 ``(r, vs)`` with ``vs = s | (v - 27) << 255``; a 64-byte input is
    already compact and is split as it is."""
    if len(signature) == 64:
        return signature[:32], signature[32:]
    v, r, s = split_vrs(signature)
    if v not in (27, 28):
        raise ValueError(f"bad recovery id v={v}")
    vs = int.from_bytes(s, "big") | ((v - 27) << 255)
    return r, vs.to_bytes(32, "big")

"""docs/protocols/receipts.md's worked example, recomputed and checked by third-party code."""

from __future__ import annotations

import hashlib

import nacl.signing
from eth_account import Account
from eth_account.messages import encode_defunct

from mercato.crypto.keystore import SigningKeys
from mercato.crypto.signers import EcdsaSigner, Ed25519Signer
from mercato.operator.receipts import ReceiptSigner
from mercato.protocol.receipts import verify_receipt
from tests.helpers import doc_blocks

DEV_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_worked_example_matches_the_doc() -> None:
    ex = doc_blocks("receipts.md", "receipt-example")
    request, response = ex["request"].encode(), ex["response"].encode()
    text = f"{hashlib.sha256(request).hexdigest()}:{hashlib.sha256(response).hexdigest()}"
    assert text == ex["text"]

    keys = SigningKeys(
        EcdsaSigner.from_bytes(bytes.fromhex(DEV_KEY)), Ed25519Signer.from_seed(bytes(range(32)))
    )
    req_hash, resp_hash = text.split(":")
    receipt = ReceiptSigner(keys).sign(
        "chatcmpl-0123456789abcdef0123456789abcdef", req_hash, resp_hash
    )
    assert receipt.ecdsa_signature == ex["ecdsa"]
    assert receipt.ed25519_public_key == ex["ed25519-key"]
    assert receipt.ed25519_signature == ex["ed25519"]

    # Independent tools agree with the documented values.
    assert Account.recover_message(encode_defunct(text=text), signature=ex["ecdsa"]) == DEV_ADDRESS
    signed = Account.sign_message(encode_defunct(text=text), "0x" + DEV_KEY)
    assert "0x" + signed.signature.hex().removeprefix("0x") == ex["ecdsa"]
    nacl.signing.VerifyKey(bytes.fromhex(ex["ed25519-key"])).verify(
        text.encode(), bytes.fromhex(ex["ed25519"])
    )
    assert verify_receipt(receipt, request, response, expected_address=DEV_ADDRESS).ok

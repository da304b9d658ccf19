"""PaymentToken: ERC-20 basics, faucet-only minting, EIP-2612 permit, EIP-3009."""

from __future__ import annotations

import os
from typing import Any

import boa
import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector

from mercato.protocol import eip712

from .conftest import USD, account, chain_id, logs, now, sign_typed

pytestmark = pytest.mark.chain


@pytest.fixture
def alice() -> LocalAccount:
    return account(0xA1)


@pytest.fixture
def token_domain(token: Any) -> dict[str, Any]:
    return eip712.token_domain(chain_id(), str(token.address))


def test_metadata_and_domain(token: Any, token_domain: dict[str, Any]) -> None:
    assert token.name() == "Mercato USD"
    assert token.symbol() == "mUSD"
    assert token.decimals() == 6
    assert token.version() == "1"
    assert token.totalSupply() == 0
    assert token.DOMAIN_SEPARATOR() == eip712.domain_separator(token_domain)
    fields, name, version, cid, contract, _salt, _ext = token.eip712Domain()
    assert (fields, name, version, cid) == (b"\x0f", "Mercato USD", "1", chain_id())
    assert contract == token.address


def test_selectors_match_usdc_and_x402(token: Any) -> None:
    """x402's "exact" EVM scheme calls the (v, r, s) overload for EOA signatures."""
    sigs = {
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)",
        "receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)",
        "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)",
        "authorizationState(address,bytes32)",
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
    }
    abi_selectors = {
        function_signature_to_4byte_selector(
            f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
        )
        for item in token.abi
        if item["type"] == "function"
    }
    for sig in sigs:
        assert function_signature_to_4byte_selector(sig) in abi_selectors, sig
    assert (
        function_signature_to_4byte_selector(
            "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
        ).hex()
        == "e3ee160e"
    )


def test_faucet_is_the_sole_minter(token: Any, deployer: Any, faucet: Any) -> None:
    assert token.is_minter(faucet)
    assert not token.is_minter(deployer)
    assert token.owner() == deployer
    other = boa.env.generate_address()
    with boa.env.prank(deployer), boa.reverts("erc20: access is denied"):
        token.mint(other, 1)
    with boa.env.prank(other), boa.reverts("erc20: access is denied"):
        token.mint(other, 1)
    with boa.env.prank(faucet):
        token.mint(other, 5 * USD)
    assert token.balanceOf(other) == 5 * USD
    assert token.totalSupply() == 5 * USD
    with boa.env.prank(faucet), boa.reverts("erc20: mint to the zero address"):
        token.mint("0x" + "00" * 20, 1)


def test_set_minter_owner_only(token: Any, deployer: Any, faucet: Any) -> None:
    minter = boa.env.generate_address()
    with boa.env.prank(minter), boa.reverts("ownable: caller is not the owner"):
        token.set_minter(minter, True)
    with boa.env.prank(deployer):
        token.set_minter(minter, True)
        assert logs(token, "RoleMinterChanged")[0].status is True
        token.set_minter(faucet, False)
    with boa.env.prank(minter):
        token.mint(minter, 1)
    with boa.env.prank(faucet), boa.reverts("erc20: access is denied"):
        token.mint(faucet, 1)
    with boa.env.prank(deployer), boa.reverts("erc20: minter is the zero address"):
        token.set_minter("0x" + "00" * 20, True)


def test_ownership(token: Any, deployer: Any) -> None:
    new_owner = boa.env.generate_address()
    with boa.env.prank(new_owner), boa.reverts("ownable: caller is not the owner"):
        token.transfer_ownership(new_owner)
    with boa.env.prank(deployer):
        token.transfer_ownership(new_owner)
    assert token.owner() == new_owner
    assert not token.is_minter(new_owner)  # ownership does not confer minting
    with boa.env.prank(new_owner):
        token.renounce_ownership()
    assert token.owner() == "0x" + "00" * 20


def test_erc20_transfer_approve_burn(token: Any, mint: Any) -> None:
    a, b = boa.env.generate_address(), boa.env.generate_address()
    mint(a, 10 * USD)
    with boa.env.prank(a):
        assert token.transfer(b, 3 * USD)
        with boa.reverts("erc20: transfer amount exceeds balance"):
            token.transfer(b, 8 * USD)
        assert token.approve(b, 2 * USD)
        token.burn(1 * USD)
    assert token.allowance(a, b) == 2 * USD
    with boa.env.prank(b):
        token.transferFrom(a, b, 1 * USD)
        with boa.reverts("erc20: insufficient allowance"):
            token.transferFrom(a, b, 2 * USD)
        token.burn_from(a, 1 * USD)
    assert token.balanceOf(a) == 4 * USD
    assert token.balanceOf(b) == 4 * USD
    assert token.totalSupply() == 8 * USD


def test_permit(token: Any, token_domain: dict[str, Any], alice: LocalAccount) -> None:
    spender = boa.env.generate_address()
    deadline = now() + 600
    msg = eip712.permit_typed_data(token_domain, alice.address, str(spender), 7 * USD, 0, deadline)
    signed = alice.sign_typed_data(full_message=msg)
    token.permit(alice.address, spender, 7 * USD, deadline, *_vrs(signed))
    assert token.allowance(alice.address, spender) == 7 * USD
    assert token.nonces(alice.address) == 1
    with boa.reverts("erc20: invalid signature"):  # replay: nonce moved on
        token.permit(alice.address, spender, 7 * USD, deadline, *_vrs(signed))
    late = eip712.permit_typed_data(token_domain, alice.address, str(spender), 1, 1, now() - 1)
    s2 = alice.sign_typed_data(full_message=late)
    with boa.reverts("erc20: expired deadline"):
        token.permit(alice.address, spender, 1, now() - 1, *_vrs(s2))


def _vrs(signed: Any) -> tuple[int, bytes, bytes]:
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def _auth(
    kind: str,
    acct: LocalAccount,
    domain: dict[str, Any],
    to: Any,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> tuple[Any, ...]:
    build = {
        "transfer": eip712.transfer_with_authorization_typed_data,
        "receive": eip712.receive_with_authorization_typed_data,
    }[kind]
    msg = build(domain, acct.address, str(to), value, valid_after, valid_before, nonce)
    s = acct.sign_typed_data(full_message=msg)
    return (
        acct.address,
        to,
        value,
        valid_after,
        valid_before,
        nonce,
        s.v,
        s.r.to_bytes(32, "big"),
        s.s.to_bytes(32, "big"),
    )


def test_transfer_with_authorization(
    token: Any, token_domain: dict[str, Any], mint: Any, alice: LocalAccount
) -> None:
    bob = boa.env.generate_address()
    relayer = boa.env.generate_address()
    mint(alice.address, 10 * USD)
    nonce = os.urandom(32)
    args = _auth("transfer", alice, token_domain, bob, 4 * USD, 0, now() + 60, nonce)
    assert not token.authorizationState(alice.address, nonce)
    with boa.env.prank(relayer):
        token.transferWithAuthorization(*args)
    used = logs(token, "AuthorizationUsed")
    assert token.balanceOf(bob) == 4 * USD
    assert token.authorizationState(alice.address, nonce)
    assert used[0].authorizer == alice.address and used[0].nonce == nonce
    with boa.reverts("token: authorization is used or canceled"):
        token.transferWithAuthorization(*args)
    # the digest helper agrees with eth_account's encoder
    digest = eip712.transfer_with_authorization_digest(
        token.DOMAIN_SEPARATOR(), alice.address, str(bob), 4 * USD, 0, args[4], nonce
    )
    assert eip712.recover_signer(digest, args[7] + args[8] + bytes([args[6]])) == alice.address


def test_transfer_with_authorization_rejections(
    token: Any, token_domain: dict[str, Any], mint: Any, alice: LocalAccount
) -> None:
    bob = boa.env.generate_address()
    mint(alice.address, 10 * USD)
    t = now()
    early = _auth("transfer", alice, token_domain, bob, 1, t + 10, t + 60, os.urandom(32))
    with boa.reverts("token: authorization is not yet valid"):
        token.transferWithAuthorization(*early)
    expired = _auth("transfer", alice, token_domain, bob, 1, 0, t, os.urandom(32))
    with boa.reverts("token: authorization is expired"):
        token.transferWithAuthorization(*expired)
    good = list(_auth("transfer", alice, token_domain, bob, 1, 0, t + 60, os.urandom(32)))
    tampered = [*good[:2], 2, *good[3:]]  # different value than signed
    with boa.reverts("token: invalid signature"):
        token.transferWithAuthorization(*tampered)
    too_much = _auth("transfer", alice, token_domain, bob, 11 * USD, 0, t + 60, os.urandom(32))
    with boa.reverts("erc20: transfer amount exceeds balance"):
        token.transferWithAuthorization(*too_much)
    # a ReceiveWithAuthorization signature is not a TransferWithAuthorization one
    recv = _auth("receive", alice, token_domain, bob, 1, 0, t + 60, os.urandom(32))
    with boa.reverts("token: invalid signature"):
        token.transferWithAuthorization(*recv)


def test_receive_with_authorization(
    token: Any, token_domain: dict[str, Any], mint: Any, alice: LocalAccount
) -> None:
    bob = boa.env.generate_address()
    mint(alice.address, 10 * USD)
    args = _auth("receive", alice, token_domain, bob, 2 * USD, 0, now() + 60, os.urandom(32))
    with boa.reverts("token: caller must be the payee"):
        token.receiveWithAuthorization(*args)
    with boa.env.prank(bob):
        token.receiveWithAuthorization(*args)
        with boa.reverts("token: authorization is used or canceled"):
            token.receiveWithAuthorization(*args)
    assert token.balanceOf(bob) == 2 * USD


def test_cancel_authorization(
    token: Any, token_domain: dict[str, Any], mint: Any, alice: LocalAccount
) -> None:
    bob = boa.env.generate_address()
    mint(alice.address, 10 * USD)
    nonce = os.urandom(32)
    args = _auth("transfer", alice, token_domain, bob, 1, 0, now() + 60, nonce)
    cancel = eip712.cancel_authorization_typed_data(token_domain, alice.address, nonce)
    s = alice.sign_typed_data(full_message=cancel)
    r, ss = s.r.to_bytes(32, "big"), s.s.to_bytes(32, "big")
    with boa.reverts("token: invalid signature"):
        token.cancelAuthorization(alice.address, os.urandom(32), s.v, r, ss)
    token.cancelAuthorization(alice.address, nonce, s.v, r, ss)
    assert logs(token, "AuthorizationCanceled")[0].nonce == nonce
    assert token.authorizationState(alice.address, nonce)
    with boa.reverts("token: authorization is used or canceled"):
        token.cancelAuthorization(alice.address, nonce, s.v, r, ss)
    with boa.reverts("token: authorization is used or canceled"):
        token.transferWithAuthorization(*args)


def test_signatures_from_another_key_fail(
    token: Any, token_domain: dict[str, Any], mint: Any, alice: LocalAccount
) -> None:
    mallory = account(0x666)
    bob = boa.env.generate_address()
    mint(alice.address, 10 * USD)
    msg = eip712.transfer_with_authorization_typed_data(
        token_domain, alice.address, str(bob), 1, 0, now() + 60, b"\x01" * 32
    )
    sig = sign_typed(mallory, msg)
    v, r, s = eip712.split_signature(sig)
    with boa.reverts("token: invalid signature"):
        token.transferWithAuthorization(
            alice.address,
            bob,
            1,
            0,
            now() + 60,
            b"\x01" * 32,
            v,
            r.to_bytes(32, "big"),
            s.to_bytes(32, "big"),
        )

#pragma version ~=0.4.3
"""
@title Mercato USD (mUSD) — devnet payment token
@notice ERC-20 with 6 decimals, EIP-2612 `permit` and EIP-3009
        `transferWithAuthorization` / `receiveWithAuthorization` / `cancelAuthorization`
        (the (v, r, s) variants USDC exposes, which x402's "exact" EVM scheme calls for
        EOA signatures). Only minters mint; the constructor makes `faucet` the sole
        minter and the owner (deployer) manages minters with `set_minter`.
        EIP-712 domain: name "Mercato USD", version "1", chainId, verifyingContract.
        Compile: see contracts/README.md (snekmate is resolved from sys.path).
@dev ERC-20 + permit come from snekmate's audited `erc20` module.
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable
from snekmate.tokens import erc20
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator

initializes: ownable
initializes: erc20[ownable := ownable]
uses: eip712_domain_separator

exports: (
    erc20.transfer,
    erc20.approve,
    erc20.transferFrom,
    erc20.balanceOf,
    erc20.allowance,
    erc20.totalSupply,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    erc20.burn,
    erc20.burn_from,
    erc20.mint,
    erc20.is_minter,
    erc20.set_minter,
    erc20.permit,
    erc20.nonces,
    erc20.DOMAIN_SEPARATOR,
    erc20.eip712Domain,
    ownable.owner,
    ownable.transfer_ownership,
    ownable.renounce_ownership,
)

TRANSFER_WITH_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
RECEIVE_WITH_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
CANCEL_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "CancelAuthorization(address authorizer,bytes32 nonce)"
)

# EIP-3009: authorizer => nonce => used or canceled
authorizationState: public(HashMap[address, HashMap[bytes32, bool]])

event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)

event AuthorizationCanceled:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


@deploy
def __init__(faucet: address):
    assert faucet != empty(address), "token: zero faucet"
    ownable.__init__()
    erc20.__init__("Mercato USD", "mUSD", 6, "Mercato USD", "1")
    # snekmate makes the deployer a minter; Mercato's devnet faucet is the sole minter.
    erc20.is_minter[msg.sender] = False
    log erc20.RoleMinterChanged(minter=msg.sender, status=False)
    erc20.is_minter[faucet] = True
    log erc20.RoleMinterChanged(minter=faucet, status=True)


@internal
def _use_authorization(
    typehash: bytes32,
    sender: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    assert block.timestamp > valid_after, "token: authorization is not yet valid"
    assert block.timestamp < valid_before, "token: authorization is expired"
    assert not self.authorizationState[sender][nonce], "token: authorization is used or canceled"
    struct_hash: bytes32 = keccak256(abi_encode(typehash, sender, to, amount, valid_after, valid_before, nonce))
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(struct_hash)
    signer: address = ecdsa._recover_vrs(digest, convert(v, uint256), convert(r, uint256), convert(s, uint256))
    assert signer == sender, "token: invalid signature"
    self.authorizationState[sender][nonce] = True
    log AuthorizationUsed(authorizer=sender, nonce=nonce)
    erc20._transfer(sender, to, amount)


@external
def transferWithAuthorization(
    _from: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice EIP-3009: execute a transfer signed by `_from`. Selector
            transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)
            = 0xe3ee160e, the one USDC and x402 use.
    """
    self._use_authorization(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, valid_after, valid_before, nonce, v, r, s
    )


@external
def receiveWithAuthorization(
    _from: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice EIP-3009: like transferWithAuthorization, but only the payee may submit it
            (prevents front-running of a deposit-style call).
    """
    assert to == msg.sender, "token: caller must be the payee"
    self._use_authorization(
        RECEIVE_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, valid_after, valid_before, nonce, v, r, s
    )


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    assert not self.authorizationState[authorizer][nonce], "token: authorization is used or canceled"
    struct_hash: bytes32 = keccak256(abi_encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce))
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(struct_hash)
    signer: address = ecdsa._recover_vrs(digest, convert(v, uint256), convert(r, uint256), convert(s, uint256))
    assert signer == authorizer, "token: invalid signature"
    self.authorizationState[authorizer][nonce] = True
    log AuthorizationCanceled(authorizer=authorizer, nonce=nonce)


@external
@view
def version() -> String[1]:
    """
    @notice The EIP-712 domain version (some EIP-3009 clients read it).
    """
    return "1"

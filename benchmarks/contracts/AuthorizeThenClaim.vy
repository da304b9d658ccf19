#pragma version ~=0.4.3
"""
@title Authorize-then-claim baseline (a model of Tangle ShieldedCredits' SpendAuth flow)
@notice For the gas benchmark only, never deployed for real. Per request:
        1. `authorize_spend`: an awaited transaction that verifies the payer's EIP-712
           signature, checks a strictly sequential nonce, reserves the amount from the
           payer's credits and stores the authorization;
        2. `claim`: the operator settles the full pre-authorized amount (not what was
           used) with a token transfer.
        Written lean (one storage slot per authorization) so that the baseline is not
        inflated: a richer authorization record would only make it more expensive.
"""

from ethereum.ercs import IERC20

SPEND_TYPEHASH: constant(bytes32) = keccak256(
    "SpendAuthorization(address payer,address operator,uint256 amount,uint256 nonce,uint256 expiry)"
)
DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)

event Deposited:
    payer: indexed(address)
    amount: uint256

event SpendAuthorized:
    payer: indexed(address)
    operator: indexed(address)
    nonce: uint256
    amount: uint256

event SpendClaimed:
    payer: indexed(address)
    operator: indexed(address)
    nonce: uint256
    amount: uint256

token: public(immutable(address))
DOMAIN_SEPARATOR: public(immutable(bytes32))

credits: public(HashMap[address, uint256])
nonces: public(HashMap[address, uint256])
# keccak256(payer, operator, nonce) => authorized amount (0: none or claimed)
authorizations: public(HashMap[bytes32, uint256])


@deploy
def __init__(token_: address):
    token = token_
    DOMAIN_SEPARATOR = keccak256(
        abi_encode(
            DOMAIN_TYPEHASH,
            keccak256("AuthorizeThenClaim"),
            keccak256("1"),
            chain.id,
            self,
        )
    )


@external
def deposit(amount: uint256):
    self.credits[msg.sender] += amount
    log Deposited(payer=msg.sender, amount=amount)
    assert extcall IERC20(token).transferFrom(msg.sender, self, amount, default_return_value=True)


@external
@view
def spend_digest(payer: address, operator: address, amount: uint256, nonce: uint256, expiry: uint256) -> bytes32:
    return self._digest(payer, operator, amount, nonce, expiry)


@internal
@view
def _digest(payer: address, operator: address, amount: uint256, nonce: uint256, expiry: uint256) -> bytes32:
    struct_hash: bytes32 = keccak256(abi_encode(SPEND_TYPEHASH, payer, operator, amount, nonce, expiry))
    return keccak256(concat(x"1901", DOMAIN_SEPARATOR, struct_hash))


@external
def authorize_spend(
    payer: address,
    operator: address,
    amount: uint256,
    nonce: uint256,
    expiry: uint256,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    assert block.timestamp <= expiry, "baseline: expired"
    assert nonce == self.nonces[payer], "baseline: nonce out of order"
    signer: address = ecrecover(self._digest(payer, operator, amount, nonce, expiry), v, r, s)
    assert signer == payer and signer != empty(address), "baseline: bad signature"
    assert self.credits[payer] >= amount, "baseline: insufficient credits"
    self.nonces[payer] = nonce + 1
    self.credits[payer] -= amount
    self.authorizations[keccak256(abi_encode(payer, operator, nonce))] = amount
    log SpendAuthorized(payer=payer, operator=operator, nonce=nonce, amount=amount)


@external
def claim(payer: address, nonce: uint256):
    key: bytes32 = keccak256(abi_encode(payer, msg.sender, nonce))
    amount: uint256 = self.authorizations[key]
    assert amount > 0, "baseline: nothing authorized"
    self.authorizations[key] = 0
    log SpendClaimed(payer=payer, operator=msg.sender, nonce=nonce, amount=amount)
    assert extcall IERC20(token).transfer(msg.sender, amount, default_return_value=True)

#pragma version ~=0.4.3
"""
@title Mercato PaymentEscrow
@notice Payers deposit the payment token; operators collect what they served through
        (a) EIP-712 spend authorizations settled in batches and (b) unidirectional
        payment channels with cumulative EIP-712 vouchers.
        Wire formats: docs/protocols/spendauth.md and docs/protocols/channels.md.
        Compile: see contracts/README.md (snekmate is resolved from sys.path, i.e.
        `vyper contracts/PaymentEscrow.vy` inside the project's virtualenv).
@dev Invariant: token.balanceOf(self) == sum(balance_of) + sum(deposit - claimed) over
     channels that are open or closing.
"""

from ethereum.ercs import IERC20

from snekmate.utils import eip712_domain_separator

initializes: eip712_domain_separator

exports: eip712_domain_separator.eip712Domain


# --- constants -----------------------------------------------------------------------

MAX_BATCH: constant(uint256) = 128
MAX_SETTLEMENTS: constant(uint256) = 64
MAX_CHANNEL_BATCH: constant(uint256) = 32

SPEND_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "SpendAuthorization(address payer,address operator,uint256 maxAmount,uint256 nonce,uint256 deadline)"
)
SPEND_SETTLEMENT_TYPEHASH: constant(bytes32) = keccak256(
    "SpendSettlement(address payer,address operator,uint256 word,uint256 mask,uint256 total,uint256 deadline)"
)
VOUCHER_TYPEHASH: constant(bytes32) = keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)")
EIP191_PREFIX: constant(bytes2) = 0x1901  # EIP-712 digest = keccak256(0x1901 ‖ domain ‖ struct hash)

# secp256k1 n / 2: signatures with a larger s are malleable copies and are refused.
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
LOW_255_BITS: constant(uint256) = max_value(uint256) >> 1
AMOUNT_MASK: constant(uint256) = (1 << 96) - 1
ADDRESS_MASK: constant(uint256) = (1 << 160) - 1
WORD_MASK: constant(uint256) = (1 << 200) - 1

# ClaimRejected.reason and SettlementRejected.reason (a settlement is never OVER_MAX)
REJECT_EXPIRED: constant(uint8) = 1
REJECT_OVER_MAX: constant(uint8) = 2
REJECT_NONCE_USED: constant(uint8) = 3
REJECT_INSUFFICIENT_BALANCE: constant(uint8) = 4
REJECT_BAD_SIGNATURE: constant(uint8) = 5
REJECT_ZERO_AMOUNT: constant(uint8) = 6

# Channel.status
CHANNEL_NONE: constant(uint8) = 0
CHANNEL_OPEN: constant(uint8) = 1
CHANNEL_CLOSING: constant(uint8) = 2
CHANNEL_CLOSED: constant(uint8) = 3

# ChannelClaimRejected.reason (claim_channels only; claim_channel reverts instead)
CREJECT_NOT_OPERATOR: constant(uint8) = 1
CREJECT_NOT_CLAIMABLE: constant(uint8) = 2
CREJECT_NOTHING_TO_CLAIM: constant(uint8) = 3
CREJECT_BAD_SIGNATURE: constant(uint8) = 4


# --- types ---------------------------------------------------------------------------

struct Group:
    # the next `word_count & 255` (>= 1) claims of the batch: this payer's (0: the
    # previous group's; < 2**160), nonce word `word_count >> 8`
    payer: uint256
    word_count: uint256


struct Claim:
    # (deadline << 200) | (max_amount << 104) | (amount << 8) | bit: uint56, uint96,
    # uint96, uint8; the nonce is word * 256 + bit
    packed: uint256
    # EIP-2098 compact signature: r, and vs = (yParity << 255) | s
    r: bytes32
    vs: bytes32


struct Settlement:
    # a payer's SpendSettlement: nonces word * 256 + i for every bit i of mask, `total` in
    # all. (total << 160) | payer: uint96, address
    payer_total: uint256
    # (deadline << 200) | word: uint56, uint200
    word_deadline: uint256
    mask: uint256
    # EIP-2098 compact signature: r, and vs = (yParity << 255) | s
    r: bytes32
    vs: bytes32


struct ChannelClaim:
    channel_id: bytes32
    cumulative_amount: uint256
    signature: Bytes[65]


struct Channel:
    payer: address
    operator: address
    deposit: uint256
    claimed: uint256
    closes_at: uint256
    status: uint8


struct PendingWithdrawal:
    amount: uint256
    available_at: uint256


# --- events --------------------------------------------------------------------------

event Deposited:
    payer: indexed(address)
    amount: uint256
    balance: uint256

event WithdrawRequested:
    payer: indexed(address)
    amount: uint256
    available_at: uint256

event Withdrawn:
    payer: indexed(address)
    amount: uint256

# One event per claim_batch group with accepted claims (one payer, one nonce word): the
# nonces claimed are word * 256 + i for every bit i set in mask; amount is their sum.
event SpendsClaimed:
    payer: indexed(address)
    operator: indexed(address)
    word: uint256
    mask: uint256
    amount: uint256

event ClaimRejected:
    payer: indexed(address)
    nonce: uint256
    reason: uint8

event BatchSettled:
    operator: indexed(address)
    count: uint256
    total: uint256

# One event per accepted claim_settlements entry: the payer's nonces word * 256 + i for
# every bit i set in mask are paid, `amount` (the signed total) in all.
event SpendsSettled:
    payer: indexed(address)
    operator: indexed(address)
    word: uint256
    mask: uint256
    amount: uint256

event SettlementRejected:
    payer: indexed(address)
    word: uint256
    mask: uint256
    reason: uint8

event NoncesInvalidated:
    payer: indexed(address)
    word: uint256
    mask: uint256

event ChannelOpened:
    channel_id: indexed(bytes32)
    payer: indexed(address)
    operator: indexed(address)
    amount: uint256

event ChannelToppedUp:
    channel_id: indexed(bytes32)
    amount: uint256
    deposit: uint256

event ChannelClaimed:
    channel_id: indexed(bytes32)
    amount: uint256
    total_claimed: uint256

event ChannelClaimRejected:
    channel_id: indexed(bytes32)
    reason: uint8

event ChannelCloseStarted:
    channel_id: indexed(bytes32)
    closes_at: uint256

event ChannelClosed:
    channel_id: indexed(bytes32)
    paid_to_operator: uint256
    refunded: uint256


# --- storage -------------------------------------------------------------------------

token: public(immutable(address))
withdraw_delay: public(immutable(uint256))
challenge_period: public(immutable(uint256))

balance_of: public(HashMap[address, uint256])
_pending: HashMap[address, PendingWithdrawal]
# payer => word (nonce >> 8) => bitmap of used nonces (bit = nonce & 255)
nonce_bitmap: public(HashMap[address, HashMap[uint256, uint256]])
channels: public(HashMap[bytes32, Channel])


@deploy
def __init__(token_: address, withdraw_delay_: uint256, challenge_period_: uint256):
    assert token_ != empty(address), "escrow: zero token"
    token = token_
    withdraw_delay = withdraw_delay_
    challenge_period = challenge_period_
    eip712_domain_separator.__init__("Mercato PaymentEscrow", "1")


@external
@view
def DOMAIN_SEPARATOR() -> bytes32:
    return eip712_domain_separator._domain_separator_v4()


# --- deposits ------------------------------------------------------------------------

@internal
def _credit(payer: address, amount: uint256):
    assert payer != empty(address), "escrow: zero payer"
    assert amount > 0, "escrow: zero amount"
    new_balance: uint256 = self.balance_of[payer] + amount
    self.balance_of[payer] = new_balance
    log Deposited(payer=payer, amount=amount, balance=new_balance)
    assert extcall IERC20(token).transferFrom(msg.sender, self, amount, default_return_value=True)


@external
def deposit(amount: uint256):
    self._credit(msg.sender, amount)


@external
def deposit_for(payer: address, amount: uint256):
    self._credit(payer, amount)


@external
def request_withdraw(amount: uint256):
    """
    @notice Start (or replace) a withdrawal of `amount`, payable after `withdraw_delay`.
            `amount == 0` cancels a pending request. The funds stay claimable by
            operators until `withdraw()` runs.
    """
    assert amount <= self.balance_of[msg.sender], "escrow: amount exceeds balance"
    available_at: uint256 = 0
    if amount > 0:
        available_at = block.timestamp + withdraw_delay
    self._pending[msg.sender] = PendingWithdrawal(amount=amount, available_at=available_at)
    log WithdrawRequested(payer=msg.sender, amount=amount, available_at=available_at)


@external
def withdraw():
    """
    @notice Pay out min(requested, balance) once the thawing delay has passed.
    """
    pending: PendingWithdrawal = self._pending[msg.sender]
    assert pending.amount > 0, "escrow: no pending withdrawal"
    assert block.timestamp >= pending.available_at, "escrow: still thawing"
    balance: uint256 = self.balance_of[msg.sender]
    amount: uint256 = min(pending.amount, balance)
    self.balance_of[msg.sender] = balance - amount
    self._pending[msg.sender] = empty(PendingWithdrawal)
    log Withdrawn(payer=msg.sender, amount=amount)
    if amount > 0:
        assert extcall IERC20(token).transfer(msg.sender, amount, default_return_value=True)


@external
@view
def pending_withdrawal(payer: address) -> (uint256, uint256):
    pending: PendingWithdrawal = self._pending[payer]
    return pending.amount, pending.available_at


# --- spend authorizations ------------------------------------------------------------

@external
@view
def is_nonce_used(payer: address, nonce: uint256) -> bool:
    return (self.nonce_bitmap[payer][nonce >> 8] >> (nonce & 255)) & 1 == 1


@internal
def _invalidate(word: uint256, mask: uint256):
    self.nonce_bitmap[msg.sender][word] = self.nonce_bitmap[msg.sender][word] | mask
    log NoncesInvalidated(payer=msg.sender, word=word, mask=mask)


@external
def cancel_nonce(nonce: uint256):
    self._invalidate(nonce >> 8, 1 << (nonce & 255))


@external
def invalidate_nonces(word: uint256, mask: uint256):
    self._invalidate(word, mask)


@external
@view
def spend_authorization_digest(
    payer: address, operator: address, max_amount: uint256, nonce: uint256, deadline: uint256
) -> bytes32:
    """
    @notice The EIP-712 digest a payer signs (for clients and tests to cross-check).
    """
    struct_hash: bytes32 = keccak256(
        abi_encode(SPEND_AUTHORIZATION_TYPEHASH, payer, operator, max_amount, nonce, deadline)
    )
    return keccak256(concat(EIP191_PREFIX, eip712_domain_separator._domain_separator_v4(), struct_hash))


@external
def claim_batch(groups: DynArray[Group, MAX_BATCH], claims: DynArray[Claim, MAX_BATCH]):
    """
    @notice Settle spend authorizations; msg.sender is the operator they name. Claims
            come in groups of one payer and one nonce word (docs/protocols/spendauth.md).
            A bad claim is skipped with ClaimRejected (the rest of the batch settles); a
            malformed batch (empty group, group counts not matching the claims, payer
            >= 2**160) reverts. The operator is paid the accepted total with one transfer.
    @dev Gas: no field needs ABI validation (both arrays are copied in one go); a group
         reads and writes its nonce word once and logs one SpendsClaimed; a payer's
         balance is read and written once per run of consecutive groups. Address 0
         never passes: its balance is always 0 and zero amounts are rejected, so
         ecrecover's 0-on-failure is harmless.
    """
    domain: bytes32 = eip712_domain_separator._domain_separator_v4()
    operator: address = msg.sender
    total: uint256 = 0
    rejected: uint256 = 0
    g: uint256 = 0  # next group
    left: uint256 = 0  # claims left in the current group
    # current group: payer, word, base = word << 8, nonce word as read (bits0) and now;
    # payer's balance as read (balance0), at the group's start (start) and now
    payer: address = empty(address)
    word: uint256 = 0
    base: uint256 = 0
    balance: uint256 = 0
    balance0: uint256 = 0
    start: uint256 = 0
    bits: uint256 = 0
    bits0: uint256 = 0
    for c: Claim in claims:
        if left == 0:  # the next group: write the previous one back, read this one
            if bits != bits0:
                self.nonce_bitmap[payer][word] = bits
                log SpendsClaimed(payer=payer, operator=operator, word=word, mask=bits ^ bits0, amount=unsafe_sub(start, balance))
            group: Group = groups[g]
            if group.payer != 0 and group.payer != convert(payer, uint256):  # 0: same payer
                if balance != balance0:
                    self.balance_of[payer] = balance
                    total = unsafe_add(total, unsafe_sub(balance0, balance))
                payer = convert(group.payer, address)
                balance = self.balance_of[payer]
                balance0 = balance
            start = balance
            base = group.word_count
            g = unsafe_add(g, 1)
            left = base & 255
            assert left != 0, "escrow: empty group"
            base = base ^ left
            word = base >> 8
            bits = self.nonce_bitmap[payer][word]
            bits0 = bits
        left = unsafe_sub(left, 1)
        p: uint256 = c.packed  # deadline = p >> 200, max_amount = (p >> 104) & AMOUNT_MASK
        bit: uint256 = 1 << (p & 255)
        amount: uint256 = (p >> 8) & AMOUNT_MASK
        # one branch for all cheap checks; `unsafe_sub(amount, 1) >= balance` <=>
        # amount == 0 or amount > balance
        if (
            convert(block.timestamp > p >> 200, uint256)
            | convert(amount > (p >> 104) & AMOUNT_MASK, uint256)
            | (bits & bit)
            | convert(unsafe_sub(amount, 1) >= balance, uint256)
        ) != 0:
            reason: uint8 = REJECT_INSUFFICIENT_BALANCE
            if block.timestamp > p >> 200:
                reason = REJECT_EXPIRED
            elif amount > (p >> 104) & AMOUNT_MASK:
                reason = REJECT_OVER_MAX
            elif bits & bit != 0:
                reason = REJECT_NONCE_USED
            elif amount == 0:
                reason = REJECT_ZERO_AMOUNT
            log ClaimRejected(payer=payer, nonce=base | (p & 255), reason=reason)
            rejected = unsafe_add(rejected, 1)
            continue
        vs: uint256 = convert(c.vs, uint256)
        s: uint256 = vs & LOW_255_BITS
        if s > HALF_N or payer != ecrecover(
            keccak256(concat(EIP191_PREFIX, domain, keccak256(abi_encode(
                SPEND_AUTHORIZATION_TYPEHASH, payer, operator, (p >> 104) & AMOUNT_MASK, base | (p & 255), p >> 200
            )))),
            unsafe_add(vs >> 255, 27),
            c.r,
            s,
        ):
            log ClaimRejected(payer=payer, nonce=base | (p & 255), reason=REJECT_BAD_SIGNATURE)
            rejected = unsafe_add(rejected, 1)
            continue
        bits = bits | bit
        balance = unsafe_sub(balance, amount)
    if bits != bits0:
        self.nonce_bitmap[payer][word] = bits
        log SpendsClaimed(payer=payer, operator=operator, word=word, mask=bits ^ bits0, amount=unsafe_sub(start, balance))
    if balance != balance0:
        self.balance_of[payer] = balance
        total = unsafe_add(total, unsafe_sub(balance0, balance))
    assert left == 0 and g == len(groups), "escrow: group counts do not match the claims"
    log BatchSettled(operator=operator, count=unsafe_sub(len(claims), rejected), total=total)
    if total > 0:
        assert extcall IERC20(token).transfer(operator, total, default_return_value=True)


# --- spend settlements ---------------------------------------------------------------

@external
@view
def spend_settlement_digest(
    payer: address, operator: address, word: uint256, mask: uint256, total: uint256, deadline: uint256
) -> bytes32:
    """
    @notice The EIP-712 digest of a SpendSettlement (for clients and tests to cross-check).
    """
    struct_hash: bytes32 = keccak256(
        abi_encode(SPEND_SETTLEMENT_TYPEHASH, payer, operator, word, mask, total, deadline)
    )
    return keccak256(concat(EIP191_PREFIX, eip712_domain_separator._domain_separator_v4(), struct_hash))


@external
def claim_settlements(settlements: DynArray[Settlement, MAX_SETTLEMENTS]):
    """
    @notice Settle spend settlements; msg.sender is the operator they name. A settlement
            is a payer's one signature over already-authorized nonces of one word and
            their total (docs/protocols/spendauth.md, "Spend settlements"). A bad one is
            skipped with SettlementRejected (checks in order: expired, any nonce of the
            mask used, zero total or empty mask, balance too low, bad signature); a good
            one marks every nonce of its mask used, debits the payer `total` and logs
            SpendsSettled. The operator is paid the accepted sum with one transfer.
    @dev The nonce bitmap is the one claim_batch, cancel_nonce and invalidate_nonces use,
         so a nonce is paid at most once whichever way it is settled. Address 0 never
         passes: its balance is always 0 and a zero total is rejected.
    """
    domain: bytes32 = eip712_domain_separator._domain_separator_v4()
    operator: address = msg.sender
    paid: uint256 = 0
    for st: Settlement in settlements:
        payer: address = convert(st.payer_total & ADDRESS_MASK, address)
        total: uint256 = st.payer_total >> 160
        word: uint256 = st.word_deadline & WORD_MASK
        deadline: uint256 = st.word_deadline >> 200
        mask: uint256 = st.mask
        bits: uint256 = self.nonce_bitmap[payer][word]
        balance: uint256 = self.balance_of[payer]
        reason: uint8 = 0
        if block.timestamp > deadline:
            reason = REJECT_EXPIRED
        elif bits & mask != 0:
            reason = REJECT_NONCE_USED
        elif total == 0 or mask == 0:
            reason = REJECT_ZERO_AMOUNT
        elif total > balance:
            reason = REJECT_INSUFFICIENT_BALANCE
        else:
            vs: uint256 = convert(st.vs, uint256)
            s: uint256 = vs & LOW_255_BITS
            if s > HALF_N or payer != ecrecover(
                keccak256(concat(EIP191_PREFIX, domain, keccak256(abi_encode(
                    SPEND_SETTLEMENT_TYPEHASH, payer, operator, word, mask, total, deadline
                )))),
                unsafe_add(vs >> 255, 27),
                st.r,
                s,
            ):
                reason = REJECT_BAD_SIGNATURE
        if reason != 0:
            log SettlementRejected(payer=payer, word=word, mask=mask, reason=reason)
            continue
        self.nonce_bitmap[payer][word] = bits | mask
        self.balance_of[payer] = unsafe_sub(balance, total)
        paid = unsafe_add(paid, total)
        log SpendsSettled(payer=payer, operator=operator, word=word, mask=mask, amount=total)
    if paid > 0:
        assert extcall IERC20(token).transfer(operator, paid, default_return_value=True)


# --- payment channels ----------------------------------------------------------------

@external
@view
def channel_id_of(payer: address, operator: address, salt: bytes32) -> bytes32:
    return keccak256(abi_encode(self, chain.id, payer, operator, salt))


@external
@view
def voucher_digest(channel_id: bytes32, cumulative_amount: uint256) -> bytes32:
    return self._voucher_digest(channel_id, cumulative_amount)


@internal
@view
def _voucher_digest(channel_id: bytes32, cumulative_amount: uint256) -> bytes32:
    struct_hash: bytes32 = keccak256(abi_encode(VOUCHER_TYPEHASH, channel_id, cumulative_amount))
    return keccak256(concat(EIP191_PREFIX, eip712_domain_separator._domain_separator_v4(), struct_hash))


@internal
@pure
def _recover(digest: bytes32, signature: Bytes[65]) -> address:
    """
    @dev Accepts a 65-byte (r, s, v) or 64-byte EIP-2098 (r, vs) signature; returns the
         zero address (instead of reverting) for a malformed or high-s signature.
    """
    n: uint256 = len(signature)
    r: uint256 = 0
    s: uint256 = 0
    v: uint256 = 0
    if n == 65:
        r = extract32(signature, 0, output_type=uint256)
        s = extract32(signature, 32, output_type=uint256)
        v = convert(slice(signature, 64, 1), uint256)
        if v < 27:
            v = unsafe_add(v, 27)
    elif n == 64:
        r = extract32(signature, 0, output_type=uint256)
        vs: uint256 = extract32(signature, 32, output_type=uint256)
        s = vs & LOW_255_BITS
        v = unsafe_add(vs >> 255, 27)
    else:
        return empty(address)
    if s > HALF_N or (v != 27 and v != 28):
        return empty(address)
    return ecrecover(digest, v, r, s)


@external
def open_channel(operator: address, amount: uint256, salt: bytes32) -> bytes32:
    assert operator != empty(address), "escrow: zero operator"
    assert amount > 0, "escrow: zero amount"
    channel_id: bytes32 = keccak256(abi_encode(self, chain.id, msg.sender, operator, salt))
    assert self.channels[channel_id].status == CHANNEL_NONE, "escrow: channel exists"
    self.channels[channel_id] = Channel(
        payer=msg.sender, operator=operator, deposit=amount, claimed=0, closes_at=0, status=CHANNEL_OPEN
    )
    log ChannelOpened(channel_id=channel_id, payer=msg.sender, operator=operator, amount=amount)
    assert extcall IERC20(token).transferFrom(msg.sender, self, amount, default_return_value=True)
    return channel_id


@external
def top_up(channel_id: bytes32, amount: uint256):
    """
    @notice Add `amount` (pulled from msg.sender) to an open channel; a refund always
            goes to the channel's payer.
    """
    assert amount > 0, "escrow: zero amount"
    assert self.channels[channel_id].status == CHANNEL_OPEN, "escrow: channel not open"
    new_deposit: uint256 = self.channels[channel_id].deposit + amount
    self.channels[channel_id].deposit = new_deposit
    log ChannelToppedUp(channel_id=channel_id, amount=amount, deposit=new_deposit)
    assert extcall IERC20(token).transferFrom(msg.sender, self, amount, default_return_value=True)


@internal
def _channel_claim(channel_id: bytes32, cumulative_amount: uint256, signature: Bytes[65], limit: uint256) -> (uint256, uint8):
    """
    @dev Returns (amount paid, 0) or (0, reason). The claimable total is
         min(cumulative_amount, deposit, limit); the payment is that minus what was
         claimed. Does not transfer tokens.
    """
    ch: Channel = self.channels[channel_id]
    if ch.operator != msg.sender:
        return 0, CREJECT_NOT_OPERATOR
    if not (ch.status == CHANNEL_OPEN or (ch.status == CHANNEL_CLOSING and block.timestamp < ch.closes_at)):
        return 0, CREJECT_NOT_CLAIMABLE
    claimable: uint256 = min(min(cumulative_amount, ch.deposit), limit)
    if claimable <= ch.claimed:
        return 0, CREJECT_NOTHING_TO_CLAIM
    signer: address = self._recover(self._voucher_digest(channel_id, cumulative_amount), signature)
    if signer != ch.payer or signer == empty(address):
        return 0, CREJECT_BAD_SIGNATURE
    amount: uint256 = claimable - ch.claimed
    self.channels[channel_id].claimed = claimable
    log ChannelClaimed(channel_id=channel_id, amount=amount, total_claimed=claimable)
    return amount, 0


@internal
def _raise_channel_reason(reason: uint8):
    if reason == CREJECT_NOT_OPERATOR:
        raise "escrow: not the channel operator"
    if reason == CREJECT_NOT_CLAIMABLE:
        raise "escrow: channel not claimable"
    if reason == CREJECT_NOTHING_TO_CLAIM:
        raise "escrow: nothing to claim"
    if reason == CREJECT_BAD_SIGNATURE:
        raise "escrow: bad voucher signature"


@external
def claim_channel(channel_id: bytes32, cumulative_amount: uint256, signature: Bytes[65]):
    amount: uint256 = 0
    reason: uint8 = 0
    amount, reason = self._channel_claim(channel_id, cumulative_amount, signature, max_value(uint256))
    self._raise_channel_reason(reason)
    assert extcall IERC20(token).transfer(msg.sender, amount, default_return_value=True)


@external
def claim_channel_upto(channel_id: bytes32, cumulative_amount: uint256, signature: Bytes[65], total: uint256):
    """
    @notice Metered claim: the voucher is a ceiling; bring the channel's claimed total
            up to min(total, cumulative_amount, deposit), the operator's metered usage.
    """
    amount: uint256 = 0
    reason: uint8 = 0
    amount, reason = self._channel_claim(channel_id, cumulative_amount, signature, total)
    self._raise_channel_reason(reason)
    assert extcall IERC20(token).transfer(msg.sender, amount, default_return_value=True)


@external
def claim_channels(claims: DynArray[ChannelClaim, MAX_CHANNEL_BATCH]):
    """
    @notice Batch of channel claims by one operator; a bad one is skipped with
            ChannelClaimRejected; one token transfer for the total.
    """
    total: uint256 = 0
    for c: ChannelClaim in claims:
        amount: uint256 = 0
        reason: uint8 = 0
        amount, reason = self._channel_claim(c.channel_id, c.cumulative_amount, c.signature, max_value(uint256))
        if reason != 0:
            log ChannelClaimRejected(channel_id=c.channel_id, reason=reason)
            continue
        total += amount
    if total > 0:
        assert extcall IERC20(token).transfer(msg.sender, total, default_return_value=True)


@internal
def _close(channel_id: bytes32):
    ch: Channel = self.channels[channel_id]
    refund: uint256 = ch.deposit - ch.claimed
    self.channels[channel_id].status = CHANNEL_CLOSED
    log ChannelClosed(channel_id=channel_id, paid_to_operator=ch.claimed, refunded=refund)
    if refund > 0:
        assert extcall IERC20(token).transfer(ch.payer, refund, default_return_value=True)


@external
def close_cooperative(channel_id: bytes32, cumulative_amount: uint256, signature: Bytes[65]):
    """
    @notice By the operator: claim up to the voucher (if it is above what was already
            claimed), then refund the rest to the payer and close.
    """
    ch: Channel = self.channels[channel_id]
    assert ch.operator == msg.sender, "escrow: not the channel operator"
    assert ch.status == CHANNEL_OPEN or ch.status == CHANNEL_CLOSING, "escrow: channel not open"
    amount: uint256 = 0
    if min(cumulative_amount, ch.deposit) > ch.claimed:
        reason: uint8 = 0
        amount, reason = self._channel_claim(channel_id, cumulative_amount, signature, max_value(uint256))
        self._raise_channel_reason(reason)
    self._close(channel_id)
    if amount > 0:
        assert extcall IERC20(token).transfer(msg.sender, amount, default_return_value=True)


@external
def start_close(channel_id: bytes32):
    assert self.channels[channel_id].payer == msg.sender, "escrow: not the channel payer"
    assert self.channels[channel_id].status == CHANNEL_OPEN, "escrow: channel not open"
    closes_at: uint256 = block.timestamp + challenge_period
    self.channels[channel_id].status = CHANNEL_CLOSING
    self.channels[channel_id].closes_at = closes_at
    log ChannelCloseStarted(channel_id=channel_id, closes_at=closes_at)


@external
def finalize_close(channel_id: bytes32):
    assert self.channels[channel_id].status == CHANNEL_CLOSING, "escrow: channel not closing"
    assert block.timestamp >= self.channels[channel_id].closes_at, "escrow: challenge period running"
    self._close(channel_id)

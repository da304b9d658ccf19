"""Hypothesis state machine over PaymentEscrow: deposits, thawing withdrawals, batched
spend authorizations (with replays, forgeries, wrong operators, expired and over-max
claims; batches in drawn order or sorted by (payer, nonce), so that claim_batch groups
hold one claim or many, a payer and word recur in later groups, and a bit repeats
inside a group), spend settlements (one signature over a word's nonces and their total;
forged, expired, for the wrong operator, overlapping claimed, cancelled or settled nonces,
empty, zero or over the balance, replayed) and channels (vouchers old and new,
cooperative and payer-initiated closes).

After every step: token.balanceOf(escrow) == Σ balance_of + Σ (deposit - claimed) over
open/closing channels, every payer's nonce words equal the model's used nonces, and the
contract agrees with a plain-Python model. Throughout: no (payer, nonce) is ever paid
twice, whether by claim_batch or claim_settlements, and no channel pays more than its
best voucher.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import boa
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from mercato.chain.batch import pack_batch, pack_settlement
from mercato.protocol import eip712

from .conftest import CONTRACTS

pytestmark = pytest.mark.chain

USD = 10**6
WITHDRAW_DELAY = 100
CHALLENGE = 50
PAYERS = [Account.from_key((0x1000 + i).to_bytes(32, "big")) for i in range(3)]
MALLORY = Account.from_key((0x666).to_bytes(32, "big"))
EXPIRED, OVER_MAX, NONCE_USED, INSUFFICIENT, BAD_SIGNATURE, ZERO_AMOUNT = 1, 2, 3, 4, 5, 6


@functools.cache
def factories() -> tuple[Any, Any]:
    return (
        boa.load_partial(str(CONTRACTS / "PaymentToken.vy")),
        boa.load_partial(str(CONTRACTS / "PaymentEscrow.vy")),
    )


def sign(acct: LocalAccount, digest: bytes) -> bytes:
    return bytes(Account.unsafe_sign_hash(digest, acct.key).signature)


@dataclass(frozen=True)
class Auth:
    payer: int  # index into PAYERS
    operator: int  # index into operators
    max_amount: int
    nonce: int
    deadline: int
    forged: bool


@dataclass(frozen=True)
class Settle:
    payer: int
    operator: int
    word: int
    mask: int
    total: int
    deadline: int
    forged: bool


@dataclass
class Channel:
    cid: bytes
    payer: int
    operator: int
    deposit: int
    claimed: int = 0
    status: int = 1  # 1 open, 2 closing, 3 closed
    closes_at: int = 0
    best_voucher: int = 0


class EscrowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._anchor = boa.env.anchor()
        self._anchor.__enter__()
        token_f, escrow_f = factories()
        self.faucet = boa.env.generate_address()
        self.token = token_f.deploy(self.faucet)
        self.escrow = escrow_f.deploy(self.token.address, WITHDRAW_DELAY, CHALLENGE)
        self.operators = [boa.env.generate_address() for _ in range(2)]
        self.separator = bytes(self.escrow.DOMAIN_SEPARATOR())
        self.balance = [0] * len(PAYERS)
        self.pending = [(0, 0)] * len(PAYERS)
        self.used: set[tuple[int, int]] = set()
        self.paid: set[tuple[int, int]] = set()
        self.channels: list[Channel] = []
        self.auths: list[tuple[Auth, bytes]] = []
        self.settled: list[tuple[Auth, bytes]] = []
        self.settlements: list[tuple[Settle, bytes]] = []
        self.vouchers: list[tuple[Channel, int, bytes, bool]] = []
        self.salt = 0

    def teardown(self) -> None:
        self._anchor.__exit__(None, None, None)

    @initialize(
        seeds=st.lists(
            st.tuples(st.integers(0, 2), st.integers(1, 5 * USD), st.integers(0, 300)),
            min_size=2,
            max_size=6,
        ),
        channel_payer=st.integers(0, 2),
        channel_amount=st.integers(1, 30 * USD),
    )
    def setup(
        self, seeds: list[tuple[int, int, int]], channel_payer: int, channel_amount: int
    ) -> None:
        """Fund the payers (100 mUSD deposited each), sign a few authorizations for
        operator 0 and open one channel, so the interesting rules are reachable."""
        with boa.env.prank(self.faucet):
            for p in PAYERS:
                self.token.mint(p.address, 10_000 * USD)
        for i, p in enumerate(PAYERS):
            with boa.env.prank(p.address):
                self.token.approve(self.escrow.address, 2**256 - 1)
                self.escrow.deposit(100 * USD)
            self.balance[i] = 100 * USD
        for payer, max_amount, nonce in seeds:
            self.authorize(payer, 0, max_amount, nonce, 1_000, False)
        self.open_channel(channel_payer, 0, channel_amount)

    def now(self) -> int:
        return int(boa.env.evm.patch.timestamp)

    # --- deposits --------------------------------------------------------------------

    @rule(payer=st.integers(0, 2), amount=st.integers(1, 50 * USD))
    def deposit(self, payer: int, amount: int) -> None:
        with boa.env.prank(PAYERS[payer].address):
            self.escrow.deposit(amount)
        self.balance[payer] += amount

    @rule(payer=st.integers(0, 2), share=st.integers(0, 4))
    def request_withdraw(self, payer: int, share: int) -> None:
        amount = self.balance[payer] * share // 4
        with boa.env.prank(PAYERS[payer].address):
            self.escrow.request_withdraw(amount)
        self.pending[payer] = (amount, self.now() + WITHDRAW_DELAY if amount else 0)

    @rule(payer=st.integers(0, 2))
    def withdraw(self, payer: int) -> None:
        amount, available_at = self.pending[payer]
        with boa.env.prank(PAYERS[payer].address):
            if amount == 0 or self.now() < available_at:
                with boa.reverts():
                    self.escrow.withdraw()
                return
            self.escrow.withdraw()
        self.balance[payer] -= min(amount, self.balance[payer])
        self.pending[payer] = (0, 0)

    @rule(seconds=st.sampled_from([1, 10, CHALLENGE, WITHDRAW_DELAY]))
    def time_passes(self, seconds: int) -> None:
        boa.env.time_travel(seconds=seconds)

    # --- spend authorizations --------------------------------------------------------

    @rule(
        payer=st.integers(0, 2),
        operator=st.sampled_from([0] * 7 + [1]),
        max_amount=st.integers(1, 20 * USD),
        nonce=st.integers(0, 600),
        ttl=st.integers(-5, 300),
        forged=st.sampled_from([False] * 7 + [True]),
    )
    def authorize(
        self, payer: int, operator: int, max_amount: int, nonce: int, ttl: int, forged: bool
    ) -> None:
        auth = Auth(payer, operator, max_amount, nonce, max(self.now() + ttl, 0), forged)
        digest = eip712.spend_authorization_digest(
            self.separator,
            PAYERS[payer].address,
            str(self.operators[operator]),
            max_amount,
            nonce,
            auth.deadline,
        )
        self.auths.append((auth, sign(MALLORY if forged else PAYERS[payer], digest)))

    @rule(payer=st.integers(0, 2), nonce=st.integers(0, 600))
    def cancel_nonce(self, payer: int, nonce: int) -> None:
        with boa.env.prank(PAYERS[payer].address):
            self.escrow.cancel_nonce(nonce)
        self.used.add((payer, nonce))

    @precondition(lambda self: self.auths)
    @rule(operator=st.sampled_from([0] * 7 + [1]), data=st.data())
    def claim_batch(self, operator: int, data: st.DataObject) -> None:
        picks = data.draw(
            st.lists(
                st.tuples(st.sampled_from(self.auths), st.sampled_from([0, 0, 0, 1, 1, 2, 3])),
                min_size=1,
                max_size=12,
            )
        )
        if data.draw(st.booleans(), label="sorted by (payer, nonce)"):
            picks.sort(key=lambda pick: (pick[0][0].payer, pick[0][0].nonce))
        now = self.now()
        items, expected = [], []
        for (auth, sig), how in picks:
            # how: 0 = full max, 1 = half, 2 = max + 1 (over), 3 = zero
            amount = [auth.max_amount, auth.max_amount // 2, auth.max_amount + 1, 0][how]
            items.append((self._auth(auth), amount, sig))
            key = (auth.payer, auth.nonce)
            if now > auth.deadline:
                reason = EXPIRED
            elif amount > auth.max_amount:
                reason = OVER_MAX
            elif key in self.used:
                reason = NONCE_USED
            elif amount == 0:
                reason = ZERO_AMOUNT
            elif amount > self.balance[auth.payer]:
                reason = INSUFFICIENT
            elif auth.forged or auth.operator != operator:
                reason = BAD_SIGNATURE
            else:
                reason = 0
                assert key not in self.paid, "an authorization would pay twice"
                self.used.add(key)
                self.paid.add(key)
                self.settled.append((auth, sig))
                self.balance[auth.payer] -= amount
            expected.append((auth.nonce, reason, amount))
        before = self.token.balanceOf(self.operators[operator])
        with boa.env.prank(self.operators[operator]):
            groups, claims = pack_batch(items)
            self.escrow.claim_batch(groups, claims)
            events = self.escrow.get_logs()
        rejected = [(e.nonce, e.reason) for e in events if type(e).__name__ == "ClaimRejected"]
        assert rejected == [(n, r) for n, r, _ in expected if r]
        total = sum(a for _, r, a in expected if r == 0)
        (batch,) = [e for e in events if type(e).__name__ == "BatchSettled"]
        assert (batch.count, batch.total) == (sum(1 for _, r, _ in expected if r == 0), total)
        runs = [e for e in events if type(e).__name__ == "SpendsClaimed"]
        assert sum(e.amount for e in runs) == total
        assert sum(bin(e.mask).count("1") for e in runs) == batch.count
        assert len(runs) <= len(groups)  # at most one SpendsClaimed per group
        paid_nonces = sorted(e.word * 256 + b for e in runs for b in range(256) if e.mask >> b & 1)
        assert paid_nonces == sorted(items[i][0].nonce for i, x in enumerate(expected) if not x[1])
        event(f"groups in batch: {min(len(groups), 4)}")
        event(f"largest group: {min(max(g[1] & 255 for g in groups), 4)} claims")
        assert self.token.balanceOf(self.operators[operator]) == before + total
        for _, r, _ in expected:
            event(f"claim outcome {r}")

    @precondition(lambda self: self.settled)
    @rule(data=st.data())
    def replay_settled(self, data: st.DataObject) -> None:
        """Settled authorizations presented again never pay."""
        picks = data.draw(st.lists(st.sampled_from(self.settled), min_size=1, max_size=4))
        auth0 = picks[0][0]
        items = [(self._auth(a), max(a.max_amount // 2, 1), sig) for a, sig in picks]
        before = self.token.balanceOf(self.operators[auth0.operator])
        with boa.env.prank(self.operators[auth0.operator]):
            self.escrow.claim_batch(*pack_batch(items))
            events = self.escrow.get_logs()
        rejected = [(e.nonce, e.reason) for e in events if type(e).__name__ == "ClaimRejected"]
        now = self.now()
        mine = [(a.nonce, EXPIRED if now > a.deadline else NONCE_USED) for a, _ in picks]
        assert sorted(rejected) == sorted(mine)
        assert self.token.balanceOf(self.operators[auth0.operator]) == before

    # --- spend settlements -------------------------------------------------------------

    @rule(
        payer=st.integers(0, 2),
        operator=st.sampled_from([0] * 7 + [1]),
        word=st.integers(0, 2),
        bits=st.lists(st.integers(0, 255), max_size=8)
        | st.lists(st.integers(0, 600).map(lambda n: n & 255), max_size=8),
        total=st.sampled_from([0, 1, USD, 7 * USD, 40 * USD, 150 * USD]),
        ttl=st.integers(-5, 300),
        forged=st.sampled_from([False] * 7 + [True]),
    )
    def sign_settlement(
        self,
        payer: int,
        operator: int,
        word: int,
        bits: list[int],
        total: int,
        ttl: int,
        forged: bool,
    ) -> None:
        mask = sum(1 << b for b in set(bits))
        st_ = Settle(payer, operator, word, mask, total, max(self.now() + ttl, 0), forged)
        digest = self._settlement(st_).digest(self.separator)
        self.settlements.append((st_, sign(MALLORY if forged else PAYERS[payer], digest)))

    @precondition(lambda self: self.settlements)
    @rule(operator=st.sampled_from([0] * 7 + [1]), data=st.data())
    def claim_settlements(self, operator: int, data: st.DataObject) -> None:
        """Settlements in one call; a settled one replayed is refused (nonce used)."""
        picks = data.draw(st.lists(st.sampled_from(self.settlements), min_size=1, max_size=5))
        now = self.now()
        expected, total = [], 0
        for st_, _sig in picks:
            keys = {(st_.payer, st_.word * 256 + b) for b in range(256) if st_.mask >> b & 1}
            if now > st_.deadline:
                reason = EXPIRED
            elif keys & self.used:
                reason = NONCE_USED
            elif st_.total == 0 or st_.mask == 0:
                reason = ZERO_AMOUNT
            elif st_.total > self.balance[st_.payer]:
                reason = INSUFFICIENT
            elif st_.forged or st_.operator != operator:
                reason = BAD_SIGNATURE
            else:
                reason = 0
                assert not keys & self.paid, "a nonce would pay twice"
                self.used |= keys
                self.paid |= keys
                self.balance[st_.payer] -= st_.total
                total += st_.total
            expected.append((st_, reason))
            event(f"settlement outcome {reason}")
        before = self.token.balanceOf(self.operators[operator])
        packed = [pack_settlement(self._settlement(s), sig) for s, sig in picks]
        with boa.env.prank(self.operators[operator]):
            self.escrow.claim_settlements(packed)
            events = self.escrow.get_logs()
        rejected = [
            (e.word, e.mask, e.reason) for e in events if type(e).__name__ == "SettlementRejected"
        ]
        assert rejected == [(s.word, s.mask, r) for s, r in expected if r]
        accepted = [
            (e.word, e.mask, e.amount) for e in events if type(e).__name__ == "SpendsSettled"
        ]
        assert accepted == [(s.word, s.mask, s.total) for s, r in expected if not r]
        assert self.token.balanceOf(self.operators[operator]) == before + total

    def _settlement(self, st_: Settle) -> eip712.SpendSettlement:
        return eip712.SpendSettlement(
            PAYERS[st_.payer].address,
            str(self.operators[st_.operator]),
            st_.word,
            st_.mask,
            st_.total,
            st_.deadline,
        )

    def _auth(self, auth: Auth) -> eip712.SpendAuthorization:
        return eip712.SpendAuthorization(
            PAYERS[auth.payer].address,
            str(self.operators[auth.operator]),
            auth.max_amount,
            auth.nonce,
            auth.deadline,
        )

    # --- channels --------------------------------------------------------------------

    @rule(payer=st.integers(0, 2), operator=st.integers(0, 1), amount=st.integers(1, 30 * USD))
    def open_channel(self, payer: int, operator: int, amount: int) -> None:
        self.salt += 1
        salt = self.salt.to_bytes(32, "big")
        with boa.env.prank(PAYERS[payer].address):
            cid = bytes(self.escrow.open_channel(self.operators[operator], amount, salt))
        assert cid == eip712.channel_id(
            str(self.escrow.address),
            int(boa.env.evm.patch.chain_id),
            PAYERS[payer].address,
            str(self.operators[operator]),
            salt,
        )
        self.channels.append(Channel(cid, payer, operator, amount))

    @precondition(lambda self: self.channels)
    @rule(data=st.data(), amount=st.integers(1, 10 * USD))
    def top_up(self, data: st.DataObject, amount: int) -> None:
        ch = data.draw(st.sampled_from(self.channels))
        with boa.env.prank(PAYERS[ch.payer].address):
            if ch.status != 1:
                with boa.reverts("escrow: channel not open"):
                    self.escrow.top_up(ch.cid, amount)
                return
            self.escrow.top_up(ch.cid, amount)
        ch.deposit += amount

    @precondition(lambda self: self.channels)
    @rule(
        data=st.data(),
        extra=st.integers(0, 8 * USD),
        forged=st.sampled_from([False] * 4 + [True]),
    )
    def sign_voucher(self, data: st.DataObject, extra: int, forged: bool) -> None:
        ch = data.draw(st.sampled_from(self.channels))
        cumulative = ch.best_voucher + extra
        if not forged:
            ch.best_voucher = cumulative
        digest = eip712.voucher_digest(self.separator, ch.cid, cumulative)
        signature = sign(MALLORY if forged else PAYERS[ch.payer], digest)
        self.vouchers.append((ch, cumulative, signature, forged))

    def _claimable(self, ch: Channel) -> bool:
        return ch.status == 1 or (ch.status == 2 and self.now() < ch.closes_at)

    @precondition(lambda self: self.vouchers)
    @rule(data=st.data(), wrong_operator=st.sampled_from([False] * 4 + [True]))
    def claim_channel(self, data: st.DataObject, wrong_operator: bool) -> None:
        ch, cumulative, sig, forged = data.draw(st.sampled_from(self.vouchers))
        sender = self.operators[1 - ch.operator if wrong_operator else ch.operator]
        pay_to = min(cumulative, ch.deposit)
        ok = not wrong_operator and self._claimable(ch) and pay_to > ch.claimed and not forged
        with boa.env.prank(sender):
            if not ok:
                with boa.reverts():
                    self.escrow.claim_channel(ch.cid, cumulative, sig)
                return
            self.escrow.claim_channel(ch.cid, cumulative, sig)
            (ev,) = [e for e in self.escrow.get_logs() if type(e).__name__ == "ChannelClaimed"]
        assert ev.amount == pay_to - ch.claimed and ev.total_claimed == pay_to
        assert pay_to <= ch.best_voucher, "a channel paid more than its payer signed"
        ch.claimed = pay_to
        event("claim_channel paid")

    @precondition(lambda self: self.vouchers)
    @rule(data=st.data())
    def close_cooperative(self, data: st.DataObject) -> None:
        ch, cumulative, sig, forged = data.draw(st.sampled_from(self.vouchers))
        pay_to = min(cumulative, ch.deposit)
        needs_claim = pay_to > ch.claimed
        ok = ch.status in (1, 2) and (not needs_claim or (self._claimable(ch) and not forged))
        with boa.env.prank(self.operators[ch.operator]):
            if not ok:
                with boa.reverts():
                    self.escrow.close_cooperative(ch.cid, cumulative, sig)
                return
            self.escrow.close_cooperative(ch.cid, cumulative, sig)
        if needs_claim:
            ch.claimed = pay_to
        ch.status = 3

    @precondition(lambda self: self.channels)
    @rule(data=st.data())
    def start_close(self, data: st.DataObject) -> None:
        ch = data.draw(st.sampled_from(self.channels))
        with boa.env.prank(PAYERS[ch.payer].address):
            if ch.status != 1:
                with boa.reverts("escrow: channel not open"):
                    self.escrow.start_close(ch.cid)
                return
            self.escrow.start_close(ch.cid)
        ch.status, ch.closes_at = 2, self.now() + CHALLENGE

    @precondition(lambda self: self.channels)
    @rule(data=st.data())
    def finalize_close(self, data: st.DataObject) -> None:
        ch = data.draw(st.sampled_from(self.channels))
        if ch.status != 2 or self.now() < ch.closes_at:
            with boa.reverts():
                self.escrow.finalize_close(ch.cid)
            return
        self.escrow.finalize_close(ch.cid)
        ch.status = 3
        event("finalize_close")

    # --- invariants ------------------------------------------------------------------

    @invariant()
    def escrow_holds_exactly_what_it_owes(self) -> None:
        deposits = sum(self.escrow.balance_of(p.address) for p in PAYERS)
        locked = 0
        for ch in self.channels:
            onchain = tuple(self.escrow.channels(ch.cid))
            model = (
                PAYERS[ch.payer].address,
                self.operators[ch.operator],
                ch.deposit,
                ch.claimed,
                ch.closes_at,
                ch.status,
            )
            assert onchain == model
            deposit, claimed, status = onchain[2], onchain[3], onchain[5]
            assert claimed <= deposit
            if status in (1, 2):
                locked += deposit - claimed
        assert self.token.balanceOf(self.escrow.address) == deposits + locked

    @invariant()
    def nonce_words_match_the_model(self) -> None:
        for i, p in enumerate(PAYERS):
            for word in range(3):
                model = sum(1 << (n & 255) for q, n in self.used if q == i and n >> 8 == word)
                assert self.escrow.nonce_bitmap(p.address, word) == model

    @invariant()
    def balances_match_the_model(self) -> None:
        for i, p in enumerate(PAYERS):
            assert self.escrow.balance_of(p.address) == self.balance[i]
            assert self.escrow.pending_withdrawal(p.address)[0] == self.pending[i][0]


EscrowMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestEscrowStateful = EscrowMachine.TestCase

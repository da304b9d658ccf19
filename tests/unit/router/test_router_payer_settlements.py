"""The router's SpendAuthPayer settles what it paid: which answered authorizations go
into which spend settlement and when (every ``settle_every`` answers of a word, when
its nonce word moves on, after ``settle_after_s``, on close), checked against an
in-memory operator endpoint that verifies each settlement's signature; unanswered,
unverified and zero-charge requests pay nothing; failures never reach the router."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from eth_account import Account

from mercato.client.payments import EscrowRef
from mercato.client.settling import SETTLEMENTS_PATH
from mercato.network.router_payer import SpendAuthPayer
from mercato.payments.wire import SPEND_AUTH_HEADER, SignedSpendAuthorization, SignedSpendSettlement
from mercato.protocol.eip712 import domain_separator, escrow_domain, recover_signer
from mercato.protocol.receipts import Receipt
from mercato.router.pricing import Estimate
from mercato.router.selection import Offer

ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
REF = EscrowRef(31337, ESCROW)
OPERATOR = Account.from_key(b"\x22" * 32).address
OTHER = Account.from_key(b"\x23" * 32).address
ESTIMATE = Estimate(prompt_tokens=100, completion_tokens=16)


def offer(address: str = OPERATOR, host: str = "op.test") -> Offer:
    # 1 unit per token: the router authorizes 2 * 100 + 512 + 16 = 728 per request
    return Offer("operator", address, host, "m", f"http://{host}/v1", 1_000_000, 1_000_000)


def receipt(charged: int | None, method: str = "spendauth") -> Receipt:
    payment = {"method": method, "charged": str(charged)} if charged is not None else None
    return Receipt("id", "a", "b", OPERATOR, "", "", "", 0, payment)


class Operators:
    """The operators' settlements endpoints, in memory: each body's signature checked."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[str, SignedSpendSettlement]] = []
        self.separator = domain_separator(escrow_domain(REF.chain_id, ESCROW))
        self.status = status

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == SETTLEMENTS_PATH
        signed = SignedSpendSettlement.from_json(request.content)
        st = signed.settlement
        assert recover_signer(st.digest(self.separator), signed.signature).lower() == st.payer
        self.received.append((request.url.host, signed))
        return httpx.Response(self.status, content=orjson.dumps({"status": "claimable"}))

    def settled(self) -> list[tuple[str, str, int, int, int]]:
        return [
            (host, s.settlement.operator.lower(), s.settlement.word, s.settlement.mask,
             s.settlement.total)
            for host, s in self.received
        ]  # fmt: skip


def make(ops: Operators, **kw: object) -> tuple[SpendAuthPayer, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(ops.handle))
    return SpendAuthPayer(Account.create(), REF, http=http, **kw), http  # type: ignore[arg-type]


async def attempt(
    payer: SpendAuthPayer,
    charged: int | None,
    *,
    to: Offer | None = None,
    status: int = 200,
    verified: bool = True,
) -> int:
    """One attempt paid by the router: the nonce it was paid with."""
    to = to or offer()
    sent = await payer.payment_headers(to, ESTIMATE)
    auth = SignedSpendAuthorization.decode(sent[SPEND_AUTH_HEADER]).auth
    assert auth.operator == to.upstream.lower()
    got = receipt(charged) if verified and charged is not None else None
    await payer.on_response(to, status, {}, got, sent)
    return auth.nonce


async def test_every_n_answers_per_operator_and_the_rest_on_close() -> None:
    ops = Operators()
    payer, http = make(ops, settle_every=3, settle_after_s=None)
    other = offer(OTHER, "other.test")
    nonces = [await attempt(payer, c) for c in (10, 20)]
    o = await attempt(payer, 7, to=other)  # the same word, another operator
    assert ops.received == []
    nonces.append(await attempt(payer, 0))  # charged nothing: in the mask, adds nothing
    await payer.settler.wait()
    word = nonces[0] >> 8
    assert [n >> 8 for n in nonces] == [word] * 3 and o >> 8 == word
    bits = sum(1 << (n & 255) for n in nonces)
    assert ops.settled() == [("op.test", OPERATOR.lower(), word, bits, 30)]
    # not in any settlement: not served, a 402, an unverified receipt, another method
    await attempt(payer, None)
    await attempt(payer, 5, status=402)
    await attempt(payer, 5, verified=False)
    await attempt(payer, 729)  # more than the authorization allowed: never signed for
    await attempt(payer, -1)
    sent = await payer.payment_headers(offer(), ESTIMATE)
    await payer.on_response(offer(), 200, {}, receipt(5, method="channel"), sent)
    assert payer.settler.unsettled == 1  # the other operator's answer only
    await payer.close()
    assert ops.settled()[1:] == [("other.test", OTHER.lower(), word, 1 << (o & 255), 7)]
    assert payer.settlement_counts == {"accepted": 2, "refused": 0, "failed": 0, "overcharged": 2}
    await http.aclose()


async def test_a_new_word_settles_the_previous_one() -> None:
    ops = Operators()
    payer, http = make(ops, settle_after_s=None)
    first = [await attempt(payer, 1) for _ in range(230)]
    await payer.settler.wait()
    assert [bin(m).count("1") for *_, m, _ in ops.settled()] == [64, 64, 64]
    assert payer.settler.unsettled == 230 - 192
    for _ in range(26):  # the word's last nonces, never answered
        await payer.payment_headers(offer(), ESTIMATE)
    assert len(ops.received) == 3
    nonce = await attempt(payer, 4)  # the next word begins: the old one settles
    await payer.settler.wait()
    assert nonce >> 8 != first[0] >> 8
    assert ops.settled()[-1][2:] == (first[0] >> 8, sum(1 << (n & 255) for n in first[192:]), 38)
    assert payer.settler.unsettled == 1
    await payer.close()
    assert ops.settled()[-1][2:] == (nonce >> 8, 1 << (nonce & 255), 4)
    await http.aclose()


async def test_zero_charges_only_post_nothing() -> None:
    ops = Operators()
    payer, http = make(ops, settle_every=2, settle_after_s=None)
    await attempt(payer, 0)
    await attempt(payer, 0)
    await payer.close()
    assert ops.received == [] and payer.settler.unsettled == 0
    await http.aclose()


async def test_a_word_waits_at_most_settle_after_s() -> None:
    ops = Operators()
    payer, http = make(ops, settle_after_s=0.05)
    nonce = await attempt(payer, 9)
    await asyncio.sleep(0.2)
    await payer.settler.wait()
    assert ops.settled() == [("op.test", OPERATOR.lower(), nonce >> 8, 1 << (nonce & 255), 9)]
    await payer.close()
    assert len(ops.received) == 1
    await http.aclose()


async def test_refused_or_undelivered_settlements_are_counted_only() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    refusing = Operators(status=422)
    for handler, counts in (
        (refusing.handle, {"accepted": 0, "refused": 1, "failed": 0, "overcharged": 0}),
        (down, {"accepted": 0, "refused": 0, "failed": 1, "overcharged": 0}),
    ):
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        payer = SpendAuthPayer(Account.create(), REF, http=http)
        await attempt(payer, 9)
        await payer.close()  # never raises
        assert payer.settlement_counts == counts
        await http.aclose()


async def test_settle_false_sends_nothing() -> None:
    ops = Operators()
    payer, http = make(ops, settle=False)
    await attempt(payer, 9)
    await payer.close()
    assert ops.received == [] and payer.settler.unsettled == 0
    await http.aclose()

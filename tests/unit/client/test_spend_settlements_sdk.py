"""SpendAuthPayment's settlements: which answered nonces go into which settlement and
when (every ``settle_every`` answers of a word, when the word moves on, on close),
checked against an in-memory operator endpoint that verifies each settlement."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from eth_account import Account

from mercato.client.paying import SETTLEMENTS_PATH, SpendAuthPayment, Terms
from mercato.payments.wire import SPEND_AUTH_HEADER, SignedSpendAuthorization, SignedSpendSettlement
from mercato.protocol.eip712 import domain_separator, escrow_domain, recover_signer
from mercato.protocol.receipts import Receipt

ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
OPERATOR = Account.from_key(b"\x22" * 32).address
TARGET = "http://operator.test"
# 1 unit per token: each request is authorized for its bound, 532 here
TERMS = Terms(OPERATOR, 31337, ESCROW, "0x" + "00" * 20, 100, 1_000_000, 1_000_000, 16)


def receipt(charged: int | None, method: str = "spendauth") -> Receipt:
    payment = {"method": method, "charged": str(charged)} if charged is not None else None
    return Receipt("id", "a", "b", OPERATOR, "", "", "", 0, payment)


class Operator:
    """The settlements endpoint, in memory: checks each body's signature."""

    def __init__(self) -> None:
        self.received: list[SignedSpendSettlement] = []
        self.separator = domain_separator(escrow_domain(31337, ESCROW))

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == SETTLEMENTS_PATH
        signed = SignedSpendSettlement.from_json(request.content)
        st = signed.settlement
        assert recover_signer(st.digest(self.separator), signed.signature).lower() == st.payer
        self.received.append(signed)
        return httpx.Response(200, content=orjson.dumps({"status": "claimable"}))


async def answer(payer: SpendAuthPayment, charged: int | None, *, ok: bool = True) -> int:
    sent = await payer.prepay(TARGET, b"{}")
    nonce = SignedSpendAuthorization.decode(sent[SPEND_AUTH_HEADER]).auth.nonce
    await payer.on_receipt(TARGET, receipt(charged) if ok else None, ok, sent)
    return nonce


def settled(op: Operator) -> list[tuple[int, int, int]]:
    return [(s.settlement.word, s.settlement.mask, s.settlement.total) for s in op.received]


async def test_settlements_every_n_answers_and_on_close() -> None:
    op = Operator()
    http = httpx.AsyncClient(transport=httpx.MockTransport(op.handle))
    payer = SpendAuthPayment(Account.create(), settle_every=3, http=http)
    payer.terms[TARGET] = TERMS
    nonces = [await answer(payer, c) for c in (10, 20, 0)]  # a failed request: charged 0
    await payer.flush()
    word = nonces[0] >> 8
    assert word < 2**64 and [n >> 8 for n in nonces] == [word] * 3
    assert settled(op) == [(word, 0b111, 30)]
    await answer(payer, 5)
    await answer(payer, None, ok=False)  # not served: left out
    assert len(op.received) == 1  # fewer than settle_every answers: they wait ...
    await payer.aclose()  # ... until close
    assert settled(op) == [(word, 0b111, 30), (word, 0b1000, 5)]
    assert payer.settlements[-1]["status_code"] == 200
    await http.aclose()


async def test_a_new_word_settles_the_previous_one() -> None:
    op = Operator()
    http = httpx.AsyncClient(transport=httpx.MockTransport(op.handle))
    payer = SpendAuthPayment(Account.create(), http=http)
    payer.terms[TARGET] = TERMS
    first = [await answer(payer, 7) for _ in range(256)]  # 256 < settle_every * 4: ...
    assert len({n >> 8 for n in first}) == 1
    await payer.flush()
    assert [mask.bit_count() for _, mask, _ in settled(op)] == [64, 64, 64, 64]
    await answer(payer, 3)  # the next word: its first nonce
    nonce = await answer(payer, 4)
    await payer.flush()
    assert settled(op)[-1] == (nonce >> 8, 0b11, 7)


async def test_refused_or_unreachable_settlements_never_fail_the_caller() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": {"code": "settlement_total_mismatch"}})

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    for handler, expected in ((refuse, [422]), (down, [])):
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        payer = SpendAuthPayment(Account.create(), http=http)
        payer.terms[TARGET] = TERMS
        await answer(payer, 9)
        await payer.aclose()
        assert [s["status_code"] for s in payer.settlements] == expected
        await http.aclose()


async def test_settle_false_sends_nothing() -> None:
    calls: list[Any] = []
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: calls.append(r)))  # type: ignore[arg-type,func-returns-value]
    payer = SpendAuthPayment(Account.create(), settle=False, http=http)
    payer.terms[TARGET] = TERMS
    await answer(payer, 9)
    await payer.aclose()
    assert calls == [] and payer.settlements == []
    await http.aclose()


async def test_a_charge_above_the_authorization_is_never_signed_for() -> None:
    """The charge comes from the operator's own receipt; a settlement's total is not
    checked against the authorizations on chain, so the SDK checks it."""
    op = Operator()
    http = httpx.AsyncClient(transport=httpx.MockTransport(op.handle))
    payer = SpendAuthPayment(Account.create(), http=http)
    payer.terms[TARGET] = TERMS
    fair = await answer(payer, 532)  # the whole bound: fine
    await answer(payer, 533)
    await answer(payer, -1)
    await payer.aclose()
    assert settled(op) == [(fair >> 8, 1 << (fair & 255), 532)]
    await http.aclose()


async def test_answers_of_a_quiet_client_are_settled_after_settle_after_s() -> None:
    op = Operator()
    http = httpx.AsyncClient(transport=httpx.MockTransport(op.handle))
    payer = SpendAuthPayment(Account.create(), settle_after_s=0.1, http=http)
    payer.terms[TARGET] = TERMS
    nonce = await answer(payer, 7)
    assert op.received == []
    await asyncio.sleep(0.3)
    await payer.settler.wait()
    assert settled(op) == [(nonce >> 8, 1 << (nonce & 255), 7)]
    await payer.aclose()
    assert len(op.received) == 1  # nothing left for close
    await http.aclose()

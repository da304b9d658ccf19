"""What checking a payment costs the operator, per request.

1. Verifications per second on one core: decode the spend-authorization header and run
   every stateless check (chain, operator, expiry, maximum, EIP-712 signature recovery
   with coincurve) over distinct pre-signed authorizations.
2. Latency the payment adds to a request: ``PaymentService.authorize`` (stateless
   checks + cached escrow balance + the nonce insert into SQLite, inline on the event
   loop) and ``capture`` (the charge update), against a warm balance cache, exactly as
   the operator runs them on SQLite; the n requests split into ``--runs`` runs. Receipt
   payment signing is included separately.

    .venv/bin/python -m benchmarks.payments [--n 5000] [--runs 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from eth_account import Account

from benchmarks import plots
from mercato.client.payments import EscrowRef, NonceAllocator, sign_spend_authorization
from mercato.crypto.keystore import SigningKeys
from mercato.crypto.signers import EcdsaSigner, Ed25519Signer
from mercato.operator.receipts import ReceiptSigner
from mercato.payments.chainview import ChainView
from mercato.payments.pricing import Price, estimate
from mercato.payments.rules import PaymentContext, check_spend_authorization
from mercato.payments.service import PaymentService
from mercato.payments.store import PaymentStore
from mercato.payments.wire import SPEND_AUTH_HEADER, SignedSpendAuthorization
from mercato.protocol.eip712 import domain_separator, escrow_domain
from mercato.storage.db import make_engine, migrate

ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
PRICE = Price(2_000_000, 8_000_000)


class _Pending:
    amount = 0


class FundedEscrow:
    """The two escrow reads ChainView makes; every payer has 1,000 mUSD deposited."""

    async def balance_of(self, payer: str) -> int:
        return 10**9

    async def pending_withdrawal(self, payer: str) -> _Pending:
        return _Pending()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5, help="latency runs (the n requests split)")
    ap.add_argument("--out", type=Path, default=plots.RESULTS / "payments.md")
    args = ap.parse_args()
    load = plots.Load()
    payer, operator = Account.create(), Account.create().address
    ref = EscrowRef(31337, ESCROW)
    ctx = PaymentContext(
        operator, 31337, ESCROW, domain_separator(escrow_domain(31337, ESCROW)), 120
    )
    nonces = NonceAllocator()
    headers = [
        sign_spend_authorization(payer, ref, operator, 50_000, nonces.next()).encode()
        for _ in range(args.n)
    ]
    est = estimate(PRICE, 31, 64)

    # 1. stateless verification throughput, one core (this loop is single-threaded)
    rates = []
    for _ in range(5):
        started = time.perf_counter()
        for h in headers:
            signed = SignedSpendAuthorization.decode(h)
            assert check_spend_authorization(signed, ctx, est.amount, int(time.time())) is None
        rates.append(len(headers) / (time.perf_counter() - started))

    # 2. the whole check as the operator runs it, with SQLite
    tmp = Path(tempfile.mkdtemp(prefix="mercato-paybench-"))
    engine = make_engine(f"sqlite:///{tmp / 'op.db'}")
    migrate(engine)
    service = PaymentService(
        PaymentStore(engine),
        ChainView(FundedEscrow()),  # type: ignore[arg-type]
        ctx,
        inline_db=True,  # as the operator runs it on SQLite
    )
    await service.start()
    fresh = [
        sign_spend_authorization(payer, ref, operator, 50_000, nonces.next()).encode()
        for _ in range(args.n)
    ]
    auth_ms: list[list[float]] = []  # per run
    total_ms: list[list[float]] = []
    per_run = len(fresh) // args.runs
    for r in range(args.runs):
        auth_ms.append([])
        total_ms.append([])
        for i in range(r * per_run, (r + 1) * per_run):
            t0 = time.perf_counter()
            payment = await service.authorize(
                {SPEND_AUTH_HEADER.lower(): fresh[i]}, PRICE, est, "/v1/x"
            )
            t1 = time.perf_counter()
            assert payment is not None
            await service.capture(payment, 31, 20, f"chatcmpl-{i}")
            t2 = time.perf_counter()
            auth_ms[-1].append((t1 - t0) * 1000)
            total_ms[-1].append((t2 - t0) * 1000)
    await service.close()

    signer = ReceiptSigner(
        SigningKeys(EcdsaSigner.from_bytes(os.urandom(32)), Ed25519Signer.from_seed(os.urandom(32)))
    )
    payment_doc = {
        "method": "spendauth",
        "reference": "spendauth:0x:1",
        "payer": "0x",
        "charged": "94",
        "prompt_tokens": 31,
        "completion_tokens": 4,
    }
    sign_us = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(1000):
            signer.sign("x", "a" * 64, "b" * 64, payment_doc)
        sign_us.append((time.perf_counter() - t0) / 1000 * 1e6)
    base_us = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(1000):
            signer.sign("x", "a" * 64, "b" * 64)
        base_us.append((time.perf_counter() - t0) / 1000 * 1e6)

    med = statistics.median
    auth_p50 = [med(run) for run in auth_ms]
    auth_p99 = [pct(run, 0.99) for run in auth_ms]
    total_p50 = [med(run) for run in total_ms]
    total_p99 = [pct(run, 0.99) for run in total_ms]
    command = f".venv/bin/python -m benchmarks.payments --n {args.n} --runs {args.runs}"
    png = plots.bars(
        args.out.parent / "payments_latency.png",
        ["p50", "p99"],
        {
            "authorize": [auth_p50, auth_p99],
            "authorize + capture": [total_p50, total_p99],
        },
        title=f"Latency a payment adds per request (median of {args.runs} runs, min-max bars)",
        ylabel="ms",
        caption=f"{command} | {plots.machine()} | {plots.today()}",
    )
    plots.write_json(
        args.out.with_suffix(".json"),
        {
            "command": command,
            "machine": plots.machine(),
            "date": plots.today(),
            "load": str(load),
            "verifications_per_s": rates,
            "authorize_ms": auth_ms,
            "authorize_capture_ms": total_ms,
            "receipt_sign_with_payment_us": sign_us,
            "receipt_sign_us": base_us,
        },
    )
    lines = [
        "### Payment checks at the operator",
        "",
        f"Command: `{command}`. Machine: {plots.machine()}, shared with other work while "
        f"measuring ({load}); {plots.today()}. One process, one event loop; SQLite (WAL, "
        "synchronous=NORMAL) on local disk. Median (min-max) over runs: verifications "
        f"over {len(rates)} runs of {args.n:,} authorizations; latencies over "
        f"{args.runs} runs of {per_run:,} requests each (the run's p50 and p99); signing "
        f"over {len(sign_us)} runs of 1,000 signatures.",
        "",
        "| measure | median (min-max) over runs | goal |",
        "|---|---|---|",
        f"| spend-authorization verifications/s, one core (decode + checks + ecrecover) | "
        f"{plots.span(rates, 0, '/s')} | >= 5,000/s: "
        f"{'met' if med(rates) >= 5000 else 'NOT met'} |",
        f"| added latency p50: authorize (checks + cached balance + nonce insert) | "
        f"{plots.span(auth_p50, 3, ' ms')} | < 0.5 ms: "
        f"{'met' if med(auth_p50) < 0.5 else 'NOT met'} |",
        f"| added latency p99: authorize | {plots.span(auth_p99, 3, ' ms')} | |",
        f"| added latency p50: authorize + capture (charge persisted) | "
        f"{plots.span(total_p50, 3, ' ms')} | |",
        f"| added latency p99: authorize + capture | {plots.span(total_p99, 3, ' ms')} | |",
        f"| receipt signing with the payment statement (3 signatures) | "
        f"{plots.span(sign_us, 0, ' µs')} | |",
        f"| receipt signing without payment (2 signatures) | {plots.span(base_us, 0, ' µs')} | |",
        "",
        f"![payment latency]({plots.rel(png)})",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())

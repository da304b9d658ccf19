"""Gas per settled request: Mercato's batched spend authorizations, spend settlements and
payment channels against an authorize-then-claim baseline (a model of Tangle
ShieldedCredits' flow).

Run on a fresh anvil (started and stopped here):

    .venv/bin/python -m benchmarks.gas            # or: .venv/bin/python benchmarks/gas.py
    .venv/bin/python -m benchmarks.gas --out benchmarks/results/gas.md

Every number in the report is a receipt's ``gasUsed`` from this run, which includes the
21,000 intrinsic gas of each transaction and its calldata. Per-request gas is the sum
of the ``gasUsed`` of the transactions a flow needs divided by the requests they settle.
Deposits, approvals and funding are set-up shared by all flows and not counted.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    # Run as `python benchmarks/gas.py`: sys.path[0] is benchmarks/, where operator.py
    # would shadow the standard library's `operator`. Import from the repository root.
    import os.path as _osp  # already loaded by the interpreter; pathlib would import re

    _here = _osp.dirname(_osp.realpath(__file__))
    sys.path[:] = [p for p in sys.path if _osp.realpath(p or ".") != _here]
    sys.path.insert(0, _osp.dirname(_here))

import argparse
import asyncio
import os
import platform
import secrets
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from mercato.chain.anvil import Anvil, AnvilConfig, dev_account, find_anvil
from mercato.chain.batch import pack_settlement
from mercato.chain.compile import compile_contract, load_artifacts
from mercato.chain.contract import ContractBinding, make_web3
from mercato.chain.errors import AnvilNotFound
from mercato.chain.escrow import PaymentEscrow, SignedSettlement, SpendClaim, encode_claims
from mercato.chain.events import BatchSettled, SpendsSettled
from mercato.chain.token import PaymentToken
from mercato.chain.tx import TxSender
from mercato.protocol import eip712

ROOT = Path(__file__).resolve().parents[1]
BASELINE_SOURCE = ROOT / "benchmarks" / "contracts" / "AuthorizeThenClaim.vy"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gas.md"
BATCH_SIZES = (1, 10, 100)
SETTLEMENT_SHAPES = ((1, 10), (1, 100), (10, 100))  # (settlements per call, requests each)
CHANNEL_REQUESTS = 1_000
PRICE = 1_500  # base units (0.0015 mUSD) metered per request
MAX_AMOUNT = 2_000  # authorized maximum per request
GOAL_RATIO = 1 / 20
CITED_AUTHORIZE_GAS = 50_000  # DESIGN.md: Tangle's awaited authorizeSpend, "~50k gas"
DEADLINE_S = 3_600  # authorizations expire an hour after signing, as the SDK's do
# per accepted claim, fixed by the signed EIP-712 type: ecrecover precompile 3,000 +
# STATICCALL 100 + keccak of the struct (192 bytes) 66 + keccak of the digest (66 bytes) 48
SIGNATURE_FLOOR = 3_000 + 100 + 66 + 48


@dataclass
class Row:
    flow: str
    requests: int
    transactions: int
    gas: int
    note: str = ""
    authorize_per_request: float = 0.0  # baseline rows only
    claim_per_request: float = 0.0
    calldata_gas: int = 0  # spend rows: what the transactions' input bytes cost

    @property
    def per_request(self) -> float:
        return self.gas / self.requests


@dataclass
class Report:
    spend: dict[str, list[Row]] = field(default_factory=dict)  # scenario -> rows by batch size
    baseline: list[Row] = field(default_factory=list)
    settlements: list[Row] = field(default_factory=list)
    channel: list[Row] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


class Baseline(ContractBinding):
    EVENTS = ()


# --- signing -------------------------------------------------------------------------


def deadline() -> int:
    """A realistic deadline (anvil's block time follows the clock): its four non-zero
    bytes are paid for in calldata like a real client's."""
    return int(time.time()) + DEADLINE_S


def sign_spend(
    payer: LocalAccount, domain: dict[str, Any], operator: str, nonce: int
) -> SpendClaim:
    auth = eip712.SpendAuthorization(payer.address, operator, MAX_AMOUNT, nonce, deadline())
    typed = auth.typed_data(domain)
    signature = bytes(Account.sign_typed_data(payer.key, full_message=typed).signature)
    return SpendClaim(auth, PRICE, signature)


def sign_baseline(
    payer: LocalAccount, chain_id: int, contract: str, operator: str, nonce: int, expiry: int
) -> tuple[int, bytes, bytes]:
    signed = Account.sign_typed_data(
        payer.key,
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "SpendAuthorization": [
                    {"name": "payer", "type": "address"},
                    {"name": "operator", "type": "address"},
                    {"name": "amount", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "expiry", "type": "uint256"},
                ],
            },
            "primaryType": "SpendAuthorization",
            "domain": {
                "name": "AuthorizeThenClaim",
                "version": "1",
                "chainId": chain_id,
                "verifyingContract": contract,
            },
            "message": {
                "payer": payer.address,
                "operator": operator,
                "amount": MAX_AMOUNT,
                "nonce": nonce,
                "expiry": expiry,
            },
        },
    )
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


# --- the run -------------------------------------------------------------------------


class Bench:
    def __init__(self, w3: AsyncWeb3[Any], chain_id: int) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.funder = dev_account(0)
        self.operator = dev_account(1)
        self.payer = dev_account(2)
        self.next_nonce = 0

    async def deploy(self) -> None:
        artifacts = load_artifacts(("PaymentToken", "PaymentEscrow"))
        baseline = compile_contract(BASELINE_SOURCE)
        fund = TxSender(self.w3, self.funder)
        token_address = await _deploy(
            self.w3,
            fund,
            artifacts["PaymentToken"].abi,
            artifacts["PaymentToken"].bytecode,
            self.funder.address,
        )
        escrow_address = await _deploy(
            self.w3,
            fund,
            artifacts["PaymentEscrow"].abi,
            artifacts["PaymentEscrow"].bytecode,
            token_address,
            3600,
            3600,
        )
        baseline_address = await _deploy(self.w3, fund, baseline.abi, baseline.bytecode,
                                         token_address)  # fmt: skip
        abi_t, abi_e = artifacts["PaymentToken"].abi, artifacts["PaymentEscrow"].abi
        self.token = PaymentToken(self.w3, token_address, abi_t, sender=fund)
        self.escrow = PaymentEscrow(self.w3, escrow_address, abi_e, sender=fund)
        self.baseline = Baseline(self.w3, baseline_address, baseline.abi, sender=fund)
        self.domain = eip712.escrow_domain(self.chain_id, escrow_address)

    def as_(self, binding: Any, account: LocalAccount) -> Any:
        return binding.with_sender(TxSender(self.w3, account))

    async def fund(self, payers: Sequence[LocalAccount]) -> None:
        """Mint to the funder, deposit for every payer in both systems (set-up)."""
        total = 10**15
        await self.token.mint(self.funder.address, total)
        await self.token.approve(self.escrow.address, total)
        await self.token.approve(self.baseline.address, total)
        await self.token.mint(self.payer.address, 10**12)
        payer_token = self.as_(self.token, self.payer)
        await payer_token.approve(self.baseline.address, 10**12)
        await self.as_(self.baseline, self.payer).send("deposit", 10**11)
        everyone = [self.payer, *payers]
        await asyncio.gather(*(self.escrow.deposit_for(p.address, 10**10) for p in everyone))

    async def warm_up(self, payers: Sequence[LocalAccount]) -> None:
        """One settled claim per payer and one baseline request, so that measured
        transactions run on steady-state storage (operator balance and each payer's
        first nonce word already non-zero), as they would after the first hour."""
        operator_escrow = self.as_(self.escrow, self.operator)
        everyone = [self.payer, *payers]
        claims = [sign_spend(p, self.domain, self.operator.address, 0) for p in everyone]
        for i in range(0, len(claims), 100):
            result = await operator_escrow.claim_batch(claims[i : i + 100])
            assert result.event(BatchSettled).count == len(claims[i : i + 100])
        self.next_nonce = 1
        await self._baseline_request(0)

    async def spend_batches(
        self, scenario: str, payers: Sequence[LocalAccount], size: int, repeats: int
    ) -> Row:
        operator_escrow = self.as_(self.escrow, self.operator)
        gas = txs = calldata = 0
        for _ in range(repeats):
            if scenario == "one payer, sequential nonces":
                nonces = range(self.next_nonce, self.next_nonce + size)
                self.next_nonce += size
                claims = [sign_spend(self.payer, self.domain, self.operator.address, n)
                          for n in nonces]  # fmt: skip
            elif scenario == "one payer, random 256-bit nonces":
                claims = [sign_spend(self.payer, self.domain, self.operator.address,
                                     secrets.randbits(256)) for _ in range(size)]  # fmt: skip
            else:  # distinct payers, the next nonce in each one's (warm) nonce word
                chosen = payers[:size]
                claims = [sign_spend(p, self.domain, self.operator.address, self.payer_nonce)
                          for p in chosen]  # fmt: skip
                self.payer_nonce += 1
            result = await operator_escrow.claim_batch(claims)
            settled = result.event(BatchSettled)
            assert settled.count == size, f"only {settled.count} of {size} claims settled"
            gas += result.gas_used
            txs += 1
            data = bytes.fromhex(self.escrow.encode("claim_batch", *encode_claims(claims))[2:])
            calldata += 4 * data.count(0) + 16 * (len(data) - data.count(0))
        return Row(f"spend authorizations, batch of {size}", size * repeats, txs, gas,
                   f"{repeats} batches", calldata_gas=calldata)  # fmt: skip

    payer_nonce = 1
    settlement_word = 1 << 32  # fresh nonce words, far from the claim_batch rows' ones

    async def spend_settlements(self, settlements: int, requests: int) -> Row:
        """One claim_settlements of ``settlements`` SpendSettlements, each covering
        ``requests`` already-authorized nonces of a fresh word (bits 0 .. requests-1)
        charged PRICE each. The authorizations themselves never touch the chain."""
        signed = []
        for _ in range(settlements):
            settlement = eip712.SpendSettlement(
                self.payer.address, self.operator.address, self.settlement_word,
                (1 << requests) - 1, PRICE * requests, deadline(),
            )  # fmt: skip
            self.settlement_word += 1
            typed = settlement.typed_data(self.domain)
            sig = bytes(Account.sign_typed_data(self.payer.key, full_message=typed).signature)
            signed.append(SignedSettlement(settlement, sig))
        result = await self.as_(self.escrow, self.operator).claim_settlements(signed)
        accepted = result.events_of(SpendsSettled)
        assert len(accepted) == settlements, f"only {len(accepted)} of {settlements} settled"
        packed = [pack_settlement(s.settlement, s.signature) for s in signed]
        data = bytes.fromhex(self.escrow.encode("claim_settlements", packed)[2:])
        calldata = 4 * data.count(0) + 16 * (len(data) - data.count(0))
        return Row(f"{settlements} x {requests}", settlements * requests, 1, result.gas_used,
                   f"{settlements} settlement(s) of {requests} requests in one transaction",
                   calldata_gas=calldata)  # fmt: skip

    async def _baseline_request(self, nonce: int) -> tuple[int, int]:
        expiry = deadline()
        v, r, s = sign_baseline(self.payer, self.chain_id, self.baseline.address,
                                self.operator.address, nonce, expiry)  # fmt: skip
        payer_side = self.as_(self.baseline, self.payer)
        authorized = await payer_side.send(
            "authorize_spend", self.payer.address, self.operator.address, MAX_AMOUNT, nonce,
            expiry, v, r, s,
        )  # fmt: skip
        claimed = await self.as_(self.baseline, self.operator).send("claim", self.payer.address,
                                                                      nonce)  # fmt: skip
        return int(authorized.gas_used), int(claimed.gas_used)

    async def baseline_requests(self, count: int, start_nonce: int) -> Row:
        authorize = claim = 0
        for i in range(count):
            a, c = await self._baseline_request(start_nonce + i)
            authorize, claim = authorize + a, claim + c
        return Row(f"authorize-then-claim, {count} requests", count, 2 * count,
                   authorize + claim, f"authorize_spend {authorize / count:,.0f} + "
                   f"claim {claim / count:,.0f} per request",
                   authorize / count, claim / count)  # fmt: skip

    async def channel(self, requests: int) -> list[Row]:
        payer_escrow = self.as_(self.escrow, self.payer)
        await self.as_(self.token, self.payer).approve(self.escrow.address, 10**12)
        salt = secrets.token_bytes(32)
        deposit = requests * MAX_AMOUNT
        channel_id, opened = await payer_escrow.open_channel(self.operator.address, deposit, salt)
        signature = b""
        started = time.perf_counter()
        for i in range(1, requests + 1):  # one cumulative voucher per request, all off-chain
            typed = eip712.Voucher(channel_id, i * PRICE).typed_data(self.domain)
            signature = bytes(Account.sign_typed_data(self.payer.key, full_message=typed).signature)
        signing = time.perf_counter() - started
        closed = await self.as_(self.escrow, self.operator).close_cooperative(
            channel_id, requests * PRICE, signature
        )
        on_chain = opened.gas_used + closed.gas_used
        return [
            Row(f"payment channel, {requests} requests", requests, 2, on_chain,
                f"open_channel {opened.gas_used:,} + close_cooperative {closed.gas_used:,}; "
                f"{requests:,} vouchers signed off-chain in {signing:.1f} s"),
            Row(f"payment channel, {requests} requests (close only)", requests, 1,
                closed.gas_used, "if the open is counted as the payer's deposit"),
        ]  # fmt: skip


async def _deploy(
    w3: AsyncWeb3[Any], sender: TxSender, abi: list[dict[str, Any]], bytecode: str, *args: Any
) -> str:
    factory = w3.eth.contract(abi=abi, bytecode=bytecode)
    receipt = await sender.send(None, factory.constructor(*args).data_in_transaction)
    return str(receipt["contractAddress"])


async def run(*, payers_count: int = 100) -> Report:
    report = Report()
    async with Anvil(AnvilConfig(accounts=10)) as node:
        w3 = make_web3(node.rpc_url)
        try:
            info = await w3.provider.make_request(RPCEndpoint("anvil_nodeInfo"), [])
            chain_id = int(await w3.eth.chain_id)
            bench = Bench(w3, chain_id)
            await bench.deploy()
            payers = [Account.create() for _ in range(payers_count)]
            await bench.fund(payers)
            await bench.warm_up(payers)
            report.env["hardfork"] = str(info.get("result", {}).get("hardFork", "?"))
            for scenario, repeats in (
                ("one payer, sequential nonces", {1: 5, 10: 3, 100: 2}),
                ("distinct payers, one claim each", {1: 5, 10: 3, 100: 2}),
                ("one payer, random 256-bit nonces", {1: 5, 10: 3, 100: 1}),
            ):
                rows = []
                for size in BATCH_SIZES:
                    rows.append(await bench.spend_batches(scenario, payers, size, repeats[size]))
                report.spend[scenario] = rows
            for settlements, requests in SETTLEMENT_SHAPES:
                report.settlements.append(await bench.spend_settlements(settlements, requests))
            next_nonce = 1
            for size in BATCH_SIZES:
                report.baseline.append(await bench.baseline_requests(size, next_nonce))
                next_nonce += size
            report.channel = await bench.channel(CHANNEL_REQUESTS)
        finally:
            await w3.provider.disconnect()
    return report


# --- the report ----------------------------------------------------------------------


def machine() -> dict[str, str]:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib import metadata

    try:
        out = subprocess.run([str(find_anvil()), "--version"], capture_output=True, text=True)
        anvil = out.stdout.splitlines()[0].removeprefix("anvil Version: ").strip()
    except (OSError, IndexError, AnvilNotFound):
        anvil = "?"

    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "cpu": cpu,
        "python": platform.python_version(),
        "vyper": metadata.version("vyper"),
        "web3": metadata.version("web3"),
        "anvil": anvil,
    }


def render(report: Report, command: str, elapsed: float) -> str:
    env = machine() | report.env
    base_at = {row.requests: row.per_request for row in report.baseline}
    lines = [
        "# Gas per settled request",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, run time {elapsed:.0f} s",
        f"- machine: {env['nproc']} CPUs ({env['cpu']}), {env['memory']} memory; "
        f"Python {env['python']}, vyper {env['vyper']}, web3 {env['web3']}, "
        f"anvil {env['anvil']} (hardfork {env['hardfork']})",
        "",
        "Each number is the `gasUsed` of real transactions on a fresh anvil, so it includes",
        "the 21,000 intrinsic gas every transaction pays and its calldata. The baseline pays",
        "that twice per request (an awaited `authorize_spend`, then `claim`); a batch pays it",
        "once for all its claims, and a channel once to open and once to close for all its",
        "requests. Deposits, approvals and funding are the same set-up for every flow and",
        "are not counted. Storage is warm (the operator and each payer have settled before),",
        "as it is in steady operation. `claim_batch` takes the claims grouped by payer and",
        "nonce word, each claim one 32-byte word plus a 64-byte compact signature",
        "(docs/protocols/spendauth.md); deadlines are an hour ahead, as a client's are.",
        "",
        "## Spend authorizations (claim_batch) against the baseline",
        "",
        "| scenario | batch | gas per request | baseline gas per request | ratio | "
        "transactions measured |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for scenario, rows in report.spend.items():
        for size, row in zip(BATCH_SIZES, rows, strict=True):
            base = base_at[size]
            lines.append(
                f"| {scenario} | {size} | {row.per_request:,.0f} | {base:,.0f} | "
                f"1/{base / row.per_request:.1f} | {row.note} |"
            )
    lines += [
        "",
        "Marginal gas of one more claim in a batch (from the batch-of-1 and batch-of-100",
        "averages: `(gas(100) - gas(1)) / 99`), the floor that larger batches approach:",
        "",
    ]
    for scenario, rows in report.spend.items():
        one, hundred = rows[0].gas / rows[0].transactions, rows[-1].gas / rows[-1].transactions
        lines.append(f"- {scenario}: {(hundred - one) / 99:,.0f} gas per extra claim")
    lines += [
        "",
        "Where the gas of a batch of 100 goes, per request: the intrinsic 21,000 shared by",
        "the batch, the calldata (of which the 64-byte signature alone is ~1,020), and",
        f"execution, of which {SIGNATURE_FLOOR:,} per claim is fixed by verifying one EIP-712",
        "signature (ecrecover 3,000, its call 100, the two keccaks 114); the rest is the",
        "contract's own work per claim plus, shared by the batch, storage of each payer's",
        "balance and nonce word, events and the one token transfer.",
        "",
        "| scenario | intrinsic | calldata | execution | of which signature check | rest |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for scenario, rows in report.spend.items():
        row = rows[-1]
        intrinsic = 21_000 * row.transactions / row.requests
        calldata = row.calldata_gas / row.requests
        execution = row.per_request - intrinsic - calldata
        lines.append(
            f"| {scenario} | {intrinsic:,.0f} | {calldata:,.0f} | {execution:,.0f} | "
            f"{SIGNATURE_FLOOR:,} | {execution - SIGNATURE_FLOOR:,.0f} |"
        )
    lines += [
        "",
        "## Spend settlements (claim_settlements) against the baseline",
        "",
        "A spend settlement is one payer signature, made after the answers came back, over",
        "already-authorized nonces of one nonce word and their total charge",
        '(docs/protocols/spendauth.md, "Spend settlements"); the per-request spend',
        "authorizations never go on chain. Each settlement here opens a fresh nonce word",
        "(the first write of its storage slot, the costly case) and pays the operator with",
        "the one token transfer of the call, like the rows above.",
        "",
        "| settlements x requests each | requests | gas | gas per request | calldata per request "
        "| baseline gas per request | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report.settlements:
        base = base_at[100] if row.requests >= 100 else base_at[10]
        lines.append(
            f"| {row.flow} | {row.requests:,} | {row.gas:,} | {row.per_request:,.0f} | "
            f"{row.calldata_gas / row.requests:,.0f} | {base:,.0f} | "
            f"1/{base / row.per_request:.0f} |"
        )
    lines += [
        "",
        "## Payment channel",
        "",
        "| flow | requests | on-chain transactions | gas | gas per request | ratio to baseline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base_single = base_at[1]
    for row in report.channel:
        lines.append(
            f"| {row.flow} | {row.requests:,} | {row.transactions} | {row.gas:,} | "
            f"{row.per_request:,.1f} | 1/{base_single / row.per_request:,.0f} |"
        )
    lines += ["", *(f"- {row.flow}: {row.note}" for row in report.channel)]
    lines += [
        "",
        "## Baseline: authorize-then-claim",
        "",
        "`benchmarks/contracts/AuthorizeThenClaim.vy` models Tangle ShieldedCredits' flow: per",
        "request an awaited `authorize_spend` transaction (EIP-712 signature check, strictly",
        "sequential nonce, reservation and a stored authorization), then a `claim` of the",
        "full pre-authorized amount.",
        "",
        "| requests | transactions | total gas | gas per request | split |",
        "|---:|---:|---:|---:|---|",
    ]
    for row in report.baseline:
        lines.append(
            f"| {row.requests} | {row.transactions} | {row.gas:,} | {row.per_request:,.0f} | "
            f"{row.note} |"
        )
    lines += [
        "",
        "## Goal",
        "",
        f"≤ 1/20 of the baseline at batch 100, i.e. at most {base_at[100] * GOAL_RATIO:,.0f} gas "
        "per settled request.",
        "",
    ]
    claim_part = report.baseline[-1].claim_per_request
    cited = (CITED_AUTHORIZE_GAS + claim_part) * GOAL_RATIO
    lines += [
        f"DESIGN.md cites ~{CITED_AUTHORIZE_GAS:,} gas for Tangle's `authorizeSpend`; this model's",
        f"`authorize_spend` measures {report.baseline[-1].authorize_per_request:,.0f}, so if the",
        "cited figure is right the model flatters Mercato: with it the threshold would be",
        f"({CITED_AUTHORIZE_GAS:,} + {claim_part:,.0f}) / 20 = {cited:,.0f} gas per request.",
        "",
    ]
    for row in report.settlements:
        if row.requests < 100:
            continue
        at_100 = row.per_request / base_at[100]
        verdict = "met" if at_100 <= GOAL_RATIO else "NOT met"
        lines.append(
            f"- spend settlements, {row.flow} requests: {row.per_request:,.0f} gas per request = "
            f"{at_100:.4f} of the baseline (goal ≤ {GOAL_RATIO:.3f}): **{verdict}**"
        )
    for scenario, rows in report.spend.items():
        at_100 = rows[-1].per_request / base_at[100]
        verdict = "met" if at_100 <= GOAL_RATIO else "NOT met"
        lines.append(
            f"- {scenario}, batch of 100: {rows[-1].per_request:,.0f} gas per request = "
            f"{at_100:.3f} of the baseline (goal ≤ {GOAL_RATIO:.3f}): **{verdict}**"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = asyncio.run(run())
    python = Path(sys.executable)
    if python.is_relative_to(ROOT):
        python = python.relative_to(ROOT)
    how = ["-m", "benchmarks.gas"] if __package__ else ["benchmarks/gas.py"]
    command = " ".join(shlex.quote(str(a)) for a in [python, *how, *sys.argv[1:]])
    text = render(report, command, time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

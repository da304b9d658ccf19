"""Scale of the market: routing decisions over many candidates, discovery over many
registered operators.

1. Routing decision time (pure, no I/O): ``mercato.router.selection.rank`` over 10,
   1,000 and 10,000 candidate operators for one model, per strategy. Several runs of
   repeated decisions; the table gives the median of the runs' medians with their
   min-max, and the p99 of every decision.
2. Discovery sync time: the router's own ``Discovery.sync_once`` against a fresh anvil
   with 100, 1,000 and 10,000 registered operators, each with one service offer.
   *Full*: from an empty SQLite database, every registry event since the deployment
   block. *Incremental*: a router already in sync picks up one new block in which 10
   operators changed their prices (10 ``ServiceUpdated`` events).

Set-up (not measured, but timed and reported): every operator is its own account,
impersonated on anvil (``anvil_autoImpersonateAccount`` + ``anvil_setBalance``), and
sends the real ``register`` and ``add_service`` transactions to the real
OperatorRegistry, so every event discovery consumes is emitted by the contract.
Transactions go in windows of ``--window`` operators as JSON-RPC batches with automine
off; each window is mined with ``evm_mine`` until the mempool is empty, then every
transaction must have emitted its registry event (``eth_getLogs`` by transaction hash):
one that was not mined is sent again, one that was mined without its event reverted and
stops the run. Blocks hold up to 1e9 gas, so a window is one block (anvil's cost per
block grows with its state: one transaction per block took ~13 minutes for 10,000
operators, 75 per block still ~90 s; one block per window takes ~15 s). The deployment sets the
minimum stake to 0 (operators stake nothing, so no token approvals); the token's own
events are not registry events and discovery never reads them.

    .venv/bin/python -m benchmarks.market [--max 10000] [--runs 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import create_engine

from benchmarks import plots
from mercato.chain.anvil import Anvil, AnvilConfig, find_anvil
from mercato.chain.client import ChainClient
from mercato.chain.deploy import DeployConfig, deploy_devnet
from mercato.router.discovery import Discovery
from mercato.router.selection import Candidate, Health, Offer, Route, Strategy, rank
from mercato.router.settings import DiscoverySettings
from mercato.router.stats import StatsBoard
from mercato.storage.db import migrate

MODEL = "m"
STRATEGIES: tuple[Strategy, ...] = ("weighted", "cheapest", "lowest-latency", "highest-reputation")
SIZES = (100, 1_000, 10_000)
CANDIDATES = (10, 1_000, 10_000)
GAS = 400_000  # per transaction: register and add_service each use well under this
GAS_PRICE = 10**9  # anvil starts with base fee 0 (see BenchAnvil), so this always suffices
BLOCK_GAS = 1_000_000_000
UPDATES = 10  # price changes per incremental sync
ROUTING_RUNS = 5


# --- 1. routing ------------------------------------------------------------------------


def candidates(n: int, rng: random.Random) -> list[Candidate]:
    out = []
    for i in range(n):
        offer = Offer(
            kind="operator",
            upstream=f"0x{i:040x}",
            name=f"op-{i}",
            model=MODEL,
            base_url=f"http://127.0.0.1:{10000 + i % 50000}/v1",
            price_in_per_m=rng.randint(100_000, 5_000_000),
            price_out_per_m=rng.randint(400_000, 20_000_000),
            service_id=i + 1,
            blueprint_id=1,
        )
        health = Health(
            latency_s=rng.uniform(0.05, 2.0),
            ttft_s=rng.uniform(0.01, 0.5),
            success_rate=rng.uniform(0.8, 1.0),
            uptime=rng.uniform(0.9, 1.0),
            inflight=rng.randint(0, 4),
        )
        out.append(Candidate(offer, health))
    return out


def routing(sizes: tuple[int, ...], runs: int) -> dict[str, dict[str, list[float]]]:
    """``{"<n>/<strategy>": {"run_medians": [...], "all": [...]}}`` in milliseconds."""
    rng = random.Random(7)
    out: dict[str, dict[str, list[float]]] = {}
    for n in sizes:
        pool = candidates(n, rng)
        per_run = max(10, min(400, 40_000 // n))
        for strategy in STRATEGIES:
            route = Route(model=MODEL, strategy=strategy, prompt_tokens=200, completion_tokens=256)
            rank(pool, route, rng)  # warm-up
            medians: list[float] = []
            every: list[float] = []
            for _ in range(runs):
                times = []
                for _ in range(per_run):
                    t0 = time.perf_counter()
                    plan = rank(pool, route, rng)
                    times.append((time.perf_counter() - t0) * 1000)
                assert plan, "no candidate chosen"
                medians.append(statistics.median(times))
                every += times
            out[f"{n}/{strategy}"] = {"run_medians": medians, "all": every}
            print(f"routing {n:>6,} {strategy:18} {plots.span(medians, 3)} ms", flush=True)
    return out


# --- 2. discovery: set-up ----------------------------------------------------------------


class BenchAnvil(Anvil):
    """anvil with base fee 0: thousands of full blocks in a row would otherwise raise
    the EIP-1559 base fee by 12.5 % each, past any fixed gas price."""

    def command(self, binary: Path, port: int) -> list[str]:
        return [*super().command(binary, port), "--base-fee", "0", "--gas-limit", str(BLOCK_GAS)]


class Rpc:
    """Raw JSON-RPC with batches: one HTTP request for hundreds of calls."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url, self.session = url, session

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """One response document (``result`` or ``error``) per call, in order."""
        out: list[dict[str, Any]] = []
        if not calls:
            return out
        for i in range(0, len(calls), 500):
            part = calls[i : i + 500]
            body = [
                {"jsonrpc": "2.0", "id": k, "method": m, "params": p}
                for k, (m, p) in enumerate(part)
            ]
            async with self.session.post(
                self.url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
            ) as resp:
                docs = orjson.loads(await resp.read())
            by_id = {d["id"]: d for d in docs}
            out += [by_id[k] for k in range(len(part))]
        return out

    async def call(self, method: str, params: list[Any]) -> Any:
        (doc,) = await self.batch([(method, params)])
        if "error" in doc:
            raise RuntimeError(f"{method}: {doc['error']}")
        return doc["result"]


class Calldata:
    """Calldata for a contract's functions straight from its ABI with eth_abi (web3's
    own encoder costs ~2 ms a call, a large part of the set-up)."""

    def __init__(self, address: str, abi: list[dict[str, Any]]) -> None:
        self.address = address
        self._fns: dict[str, tuple[bytes, list[str]]] = {}
        for entry in abi:
            if entry.get("type") == "function":
                types = [i["type"] for i in entry["inputs"]]
                signature = f"{entry['name']}({','.join(types)})"
                self._fns[entry["name"]] = (keccak(text=signature)[:4], types)

    def encode(self, name: str, *args: Any) -> str:
        selector, types = self._fns[name]
        return "0x" + (selector + encode(types, args)).hex()


@dataclass
class Market:
    """The registry as this benchmark has filled it."""

    rpc: Rpc
    abi: Calldata
    operators: list[str] = field(default_factory=list)
    service_of: dict[str, int] = field(default_factory=dict)
    nonce: dict[str, int] = field(default_factory=dict)
    resent: int = 0

    async def register(self, count: int, window: int) -> None:
        while count > 0:
            batch = [to_checksum_address(os.urandom(20)) for _ in range(min(window, count))]
            await self.rpc.batch([("anvil_setBalance", [op, hex(10**20)]) for op in batch])
            txs = []
            for op in batch:
                i = len(self.operators)
                self.operators.append(op)
                register = self.abi.encode(
                    "register", f"op-{i}", f"http://127.0.0.1:{9000 + i % 1000}", [op], "none", 0
                )
                service = self.abi.encode(
                    "add_service", 1, MODEL, 1_000_000 + i, 4_000_000, 2048, 0
                )
                txs += [self._tx(op, register), self._tx(op, service)]
            events = await self.transact(txs)
            for tx, log in zip(txs, events, strict=True):
                if tx["nonce"] == "0x1":  # add_service: ServiceAdded(service_id, operator, ...)
                    self.service_of[tx["from"]] = int(log["topics"][1], 16)
            count -= len(batch)

    async def update_prices(self, n: int, rng: random.Random) -> None:
        """``n`` operators change their price, all in one new block."""
        txs = []
        for op in rng.sample(self.operators, n):
            price = rng.randint(100_000, 5_000_000)
            call = self.abi.encode("update_service", self.service_of[op], price, 4_000_000, 2048, 0)
            txs.append(self._tx(op, call))
        await self.transact(txs)

    def _tx(self, op: str, data: str) -> dict[str, str]:
        nonce = self.nonce.get(op, 0)
        self.nonce[op] = nonce + 1
        return {
            "from": op,
            "to": self.abi.address,
            "data": data,
            "gas": hex(GAS),
            "gasPrice": hex(GAS_PRICE),
            "nonce": hex(nonce),
        }

    async def transact(self, txs: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Send, mine until the mempool is empty, and return each transaction's registry
        event (every call here emits exactly one; a reverted one emits none). A
        transaction that was not mined is sent again (up to 3 times); one that was mined
        without its event reverted, and stops the benchmark."""
        events: list[dict[str, Any] | None] = [None] * len(txs)
        hashes: list[str] = [""] * len(txs)
        for attempt in range(4):
            todo = [i for i, e in enumerate(events) if e is None]
            if not todo:
                break
            if attempt:
                self.resent += len(todo)
                print(f"  re-sending {len(todo)} unmined transactions", file=sys.stderr)
            sent = await self.rpc.batch([("eth_sendTransaction", [txs[i]]) for i in todo])
            for i, doc in zip(todo, sent, strict=True):
                if "result" in doc:
                    hashes[i] = doc["result"]
                elif not hashes[i]:  # a re-send may be refused as already known
                    raise RuntimeError(f"eth_sendTransaction {txs[i]}: {doc['error']}")
            first = int(await self.rpc.call("eth_blockNumber", []), 16) + 1
            while True:
                await self.rpc.call("evm_mine", [])
                pool = await self.rpc.call("txpool_status", [])
                if int(pool["pending"], 16) == 0:
                    break
            logs = await self.rpc.call(
                "eth_getLogs", [{"address": self.abi.address, "fromBlock": hex(first)}]
            )
            by_tx = {log["transactionHash"]: log for log in logs}
            for i in todo:
                events[i] = by_tx.get(hashes[i])
            lost = [i for i in todo if events[i] is None]
            found = await self.rpc.batch([("eth_getTransactionByHash", [hashes[i]]) for i in lost])
            for i, doc in zip(lost, found, strict=True):
                if (doc.get("result") or {}).get("blockNumber") is not None:
                    receipt = await self.rpc.call("eth_getTransactionReceipt", [hashes[i]])
                    raise RuntimeError(f"transaction reverted: {txs[i]} {receipt}")
        missing = sum(e is None for e in events)
        if missing:
            raise RuntimeError(f"{missing} of {len(txs)} transactions never mined")
        return [e for e in events if e is not None]


# --- 2. discovery: measurement -------------------------------------------------------------


class Router:
    """A router's discovery on its own SQLite database; keeps the offers it loads."""

    def __init__(self, chain: ChainClient, manifest: Path, db: Path) -> None:
        self.offers: list[Offer] = []
        self.engine = create_engine(f"sqlite:///{db}")
        migrate(self.engine)
        settings = DiscoverySettings(manifest=manifest)
        self.discovery = Discovery(settings, self.engine, StatsBoard(), self._set, chain)

    def _set(self, offers: list[Offer]) -> None:
        self.offers = offers


@dataclass
class Bench:
    """What the discovery measurements share."""

    chain: ChainClient
    market: Market
    manifest: Path
    tmp: Path
    chunk: int
    runs: int
    incremental_runs: int
    rng: random.Random = field(default_factory=lambda: random.Random(11))

    async def measure(self, n: int) -> dict[str, Any]:
        """Full syncs, then the parts of one (fetching alone, ``eth_getLogs`` alone),
        then incremental syncs, against the ``n`` operators registered now."""
        deployed = self.chain.manifest.deployment_block
        head = int(await self.market.rpc.call("eth_blockNumber", []), 16)
        full: list[float] = []
        events = 0
        router: Router | None = None
        for r in range(self.runs):
            if router is not None:
                router.engine.dispose()
            router = Router(self.chain, self.manifest, self.tmp / f"sync-{n}-{r}.db")
            t0 = time.perf_counter()
            events = await router.discovery.sync_once()
            full.append(time.perf_counter() - t0)
            assert len(router.offers) == n, (len(router.offers), n)
            print(f"  full sync {full[-1]:.2f} s, {events:,} events", flush=True)
        assert router is not None
        fetch: list[float] = []
        raw: list[float] = []
        for _ in range(self.runs):
            t0 = time.perf_counter()
            fetched = await self.chain.fetch_registry_events(deployed, head, chunk_size=self.chunk)
            fetch.append(time.perf_counter() - t0)
            assert len(fetched) == events, (len(fetched), events)
            t0 = time.perf_counter()
            logs = 0
            for start in range(deployed, head + 1, self.chunk):
                end = min(start + self.chunk - 1, head)
                logs += len(
                    await self.market.rpc.call(
                        "eth_getLogs",
                        [{"address": self.market.abi.address, "fromBlock": hex(start),
                          "toBlock": hex(end)}],
                    )
                )  # fmt: skip
            raw.append(time.perf_counter() - t0)
            assert logs == events, (logs, events)
        print(f"  fetch + decode {plots.span(fetch)} s, eth_getLogs {plots.span(raw)} s")
        incremental: list[float] = []
        for _ in range(self.incremental_runs):
            await self.market.update_prices(UPDATES, self.rng)
            t0 = time.perf_counter()
            applied = await router.discovery.sync_once()
            incremental.append(time.perf_counter() - t0)
            assert applied == UPDATES, applied
            assert len(router.offers) == n
        print(f"  incremental {plots.span(incremental, 3)} s", flush=True)
        router.engine.dispose()
        blocks = head - deployed + 1
        return {
            "operators": n,
            "events": events,
            "blocks": blocks,
            "get_logs_calls": -(-blocks // self.chunk),
            "full_s": full,
            "fetch_decode_s": fetch,
            "get_logs_s": raw,
            "incremental_s": incremental,
        }


async def discovery(
    sizes: list[int], runs: int, incremental_runs: int, window: int, tmp: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}}
    started = time.perf_counter()
    async with BenchAnvil(AnvilConfig(binary=str(find_anvil()))) as node:
        manifest_path = tmp / "manifest.json"
        manifest = await deploy_devnet(
            node.rpc_url, config=DeployConfig(min_stake=0), manifest_path=manifest_path
        )
        chain = ChainClient(manifest)
        registry = Calldata(manifest.addresses.registry, manifest.abis["registry"])
        chunk = DiscoverySettings(manifest=manifest_path).log_chunk
        async with aiohttp.ClientSession() as session:
            market = Market(Rpc(node.rpc_url, session), registry)
            await market.rpc.call("anvil_autoImpersonateAccount", [True])
            await market.rpc.call("evm_setAutomine", [False])
            bench = Bench(chain, market, manifest_path, tmp, chunk, runs, incremental_runs)
            for n in sorted(sizes):
                t0 = time.perf_counter()
                await market.register(n - len(market.operators), window)
                setup_s = time.perf_counter() - t0
                print(f"discovery {n:,} operators registered in {setup_s:.1f} s", flush=True)
                out["sizes"][str(n)] = {**await bench.measure(n), "setup_s": setup_s}
            out["resent"] = market.resent
        await chain.close()
    out["log_chunk"] = chunk
    out["total_s"] = time.perf_counter() - started
    return out


# --- report ----------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    route: dict[str, dict[str, list[float]]],
    disc: dict[str, Any],
    load: plots.Load,
) -> list[str]:
    command = f".venv/bin/python -m benchmarks.market --max {args.max} --runs {args.runs}"
    where = f"Command: `{command}`. Machine: {plots.machine()}; {plots.today()}."
    caption = f"{command} | {plots.machine()} | {plots.today()}"
    shared = f"shared with other work while measuring ({load}), so expect noise"
    route_png = plots.lines(
        args.out.parent / "market_routing.png",
        {
            s: {n: route[f"{n}/{s}"]["run_medians"] for n in CANDIDATES if f"{n}/{s}" in route}
            for s in STRATEGIES
        },
        title="Routing decision time (median of runs, min-max bars)",
        xlabel="candidate operators",
        ylabel="ms per decision",
        logx=True,
        logy=True,
        caption=caption,
    )
    lines = [
        "### Routing decision time",
        "",
        f"{where} `rank()` over N candidate operators of one model (random prices, "
        "latencies, reputations; nothing pinned), one core, "
        f"{shared}. {ROUTING_RUNS} runs of repeated decisions per row: median (min-max) of "
        "the runs' medians; p99 over every decision of every run.",
        "",
        "| candidates | strategy | median ms (min-max over runs) | p99 ms | decisions |",
        "|---:|---|---|---:|---:|",
    ]
    for key, v in route.items():
        n, strategy = key.split("/")
        every = sorted(v["all"])
        p99 = every[min(len(every) - 1, int(len(every) * 0.99))]
        lines.append(
            f"| {int(n):,} | {strategy} | {plots.span(v['run_medians'], 3)} | {p99:.3f} | "
            f"{len(every):,} |"
        )
    lines += ["", f"![routing decision time]({plots.rel(route_png)})", ""]

    sizes = disc["sizes"]
    disc_png = plots.lines(
        args.out.parent / "market_discovery.png",
        {
            "full sync (from deployment)": {int(n): s["full_s"] for n, s in sizes.items()},
            f"incremental ({UPDATES} price changes)": {
                int(n): s["incremental_s"] for n, s in sizes.items()
            },
        },
        title="Discovery sync time (median of runs, min-max bars)",
        xlabel="registered operators",
        ylabel="seconds",
        logx=True,
        logy=True,
        caption=caption,
    )
    total_setup = sum(s["setup_s"] for s in sizes.values())
    lines += [
        "### Discovery sync time",
        "",
        f"{where} The router's `Discovery.sync_once` against anvil {shared}. *Full*: from "
        "an empty SQLite database, fetch every registry event since the deployment block "
        f"(`eth_getLogs`, {disc['log_chunk']:,} blocks per call), apply them, load the "
        f"offers; {args.runs} runs, each on a fresh database. *Fetch + decode alone*: "
        "`ChainClient.fetch_registry_events` over the same blocks (web3 decodes each log), "
        "*eth_getLogs alone*: the same JSON-RPC calls without decoding; both "
        f"{args.runs} runs, timed apart from the syncs, so the rest of a full sync is "
        "applying the events to SQLite and loading the offers. *Incremental*: the synced "
        f"router picks up one new block with {UPDATES} `ServiceUpdated` events (10 "
        "operators change prices) and reloads its offers; "
        f"{args.incremental_runs} runs. Median (min-max) over runs.",
        "",
        "| operators | events | blocks | full sync s | fetch + decode alone s | "
        "eth_getLogs alone s | incremental sync s | set-up s |",
        "|---:|---:|---:|---|---|---|---|---:|",
    ]
    for n, s in sizes.items():
        lines.append(
            f"| {int(n):,} | {s['events']:,} | {s['blocks']:,} | {plots.span(s['full_s'])} | "
            f"{plots.span(s['fetch_decode_s'])} | {plots.span(s['get_logs_s'], 3)} | "
            f"{plots.span(s['incremental_s'], 3)} | {s['setup_s']:.0f} |"
        )
    lines += [
        "",
        f"![discovery sync time]({plots.rel(disc_png)})",
        "",
        "Set-up is not part of any measurement: each operator is its own impersonated "
        "account that sends the real `register` and `add_service` transactions (stake 0: "
        "this deployment's minimum), "
        f"{args.window} operators per window as JSON-RPC batches with automine off, each "
        "window mined with `evm_mine` into one block (block gas limit 1e9) and every "
        "transaction's registry event checked. Set-up column: registering the "
        f"operators added since the row above; {total_setup:.0f} s in all, "
        f"{disc['resent']} transactions re-sent; the whole discovery part took "
        f"{disc['total_s']:.0f} s. Events: one `OperatorRegistered` and one "
        "`ServiceAdded` per operator, the deployment's 3, and the `ServiceUpdated` events "
        "of the smaller registries' incremental runs; blocks: the chain from the "
        "deployment block to the head at the full sync (a window of registrations per "
        "block), so a full sync here makes "
        f"{max(s['get_logs_calls'] for s in sizes.values())} `eth_getLogs` call(s) at most.",
        "",
    ]
    return lines


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=10_000, help="largest registry (100/1000/10000)")
    ap.add_argument("--runs", type=int, default=3, help="full syncs per registry size")
    ap.add_argument("--incremental-runs", type=int, default=5)
    ap.add_argument("--window", type=int, default=500, help="operators per set-up window")
    ap.add_argument("--out", type=Path, default=plots.RESULTS / "market.md")
    args = ap.parse_args()
    load = plots.Load()
    route = routing(CANDIDATES, ROUTING_RUNS)
    sizes = [s for s in SIZES if s <= args.max]
    tmp = Path(tempfile.mkdtemp(prefix="mercato-market-"))
    disc = await discovery(sizes, args.runs, args.incremental_runs, args.window, tmp)
    plots.write_json(
        args.out.with_suffix(".json"),
        {"command": sys.argv, "machine": plots.machine(), "date": plots.today(),
         "load": str(load), "routing_ms": route, "discovery": disc},
    )  # fmt: skip
    lines = report(args, route, disc, load)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())

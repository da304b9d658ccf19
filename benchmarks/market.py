"""Scale of the market: routing decisions over many candidates, discovery over many
registered operators.

1. Routing decision time (pure, no I/O): ``mercato.router.selection.rank`` over 10,
   1,000 and 10,000 candidate operators for one model, per strategy; median and p99 of
   repeated decisions.
2. Discovery sync time: the router's own ``Discovery.sync_once`` from an empty SQLite
   database against a fresh anvil with 100, 1,000 (and, with ``--max 10000``, 10,000)
   registered operators, each with one service offer. Operators are registered through
   anvil's auto-impersonation (unsigned transactions from each operator address) so
   that setting up thousands of them takes seconds; this benchmark's own deployment
   sets the minimum stake to 0 for the same reason. Registration time is not measured.

    .venv/bin/python -m benchmarks.market [--max 1000] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from eth_account import Account
from sqlalchemy import create_engine

from mercato.chain.anvil import Anvil, AnvilConfig, find_anvil
from mercato.chain.client import ChainClient
from mercato.chain.deploy import DeployConfig, deploy_devnet
from mercato.router.discovery import Discovery
from mercato.router.selection import Candidate, Health, Offer, Route, rank
from mercato.router.settings import DiscoverySettings
from mercato.router.stats import StatsBoard
from mercato.storage.db import migrate

MODEL = "m"
STRATEGIES = ("weighted", "cheapest", "lowest-latency", "highest-reputation")


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


def routing(sizes: list[int]) -> list[str]:
    rng = random.Random(7)
    rows = []
    for n in sizes:
        pool = candidates(n, rng)
        for strategy in STRATEGIES:
            route = Route(model=MODEL, strategy=strategy, prompt_tokens=200, completion_tokens=256)  # type: ignore[arg-type]
            repeats = max(20, min(2000, 200_000 // n))
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                plan = rank(pool, route, rng)
                times.append((time.perf_counter() - t0) * 1000)
            assert plan, "no candidate chosen"
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            rows.append(
                f"| {n:,} | {strategy} | {statistics.median(times):.3f} | {p99:.3f} | {repeats} |"
            )
    return rows


async def discovery(sizes: list[int], tmp: Path) -> list[str]:
    rows = []
    async with Anvil(AnvilConfig(binary=str(find_anvil()))) as node:
        manifest = await deploy_devnet(
            node.rpc_url, config=DeployConfig(min_stake=0), manifest_path=tmp / "manifest.json"
        )
        chain = ChainClient(manifest)
        w3 = chain.w3
        await w3.provider.make_request("anvil_autoImpersonateAccount", [True])  # type: ignore[arg-type]
        registry = w3.eth.contract(
            address=manifest.addresses.registry, abi=manifest.abis["registry"]
        )
        registered = 0
        for n in sorted(sizes):
            t0 = time.perf_counter()
            while registered < n:
                op = Account.create().address
                await w3.provider.make_request("anvil_setBalance", [op, hex(10**18)])  # type: ignore[arg-type]
                calls = [
                    registry.functions.register(
                        f"op-{registered}",
                        f"http://127.0.0.1:{9000 + registered % 1000}",
                        [op],
                        "none",
                        0,
                    ),
                    registry.functions.add_service(
                        1, MODEL, 1_000_000 + registered, 4_000_000, 2048, 0
                    ),
                ]
                for call in calls:
                    tx = {
                        "from": op,
                        "to": registry.address,
                        "data": call._encode_transaction_data(),
                        "gas": 600_000,
                    }
                    tx_hash = await w3.eth.send_transaction(tx)  # type: ignore[arg-type]
                    # wait: anvil accepts but silently never mines some fire-and-forget
                    # impersonated transactions after ~1,700 in a row (seen with 1.7.1)
                    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
                    assert receipt["status"] == 1, receipt
                registered += 1
            setup_s = time.perf_counter() - t0
            runs = []
            for _ in range(3 if n <= 1000 else 1):
                engine = create_engine(f"sqlite:///{tmp}/sync-{n}-{len(runs)}.db")
                migrate(engine)
                found: list[Offer] = []
                disc = Discovery(
                    DiscoverySettings(manifest=tmp / "manifest.json"),
                    engine,
                    StatsBoard(),
                    found.extend,
                    chain,
                )
                t0 = time.perf_counter()
                events = await disc.sync_once()
                runs.append(time.perf_counter() - t0)
                assert len({o.upstream for o in found}) >= n, (len(found), n)
                engine.dispose()
            rows.append(
                f"| {n:,} | {events:,} | {statistics.median(runs):.2f} | "
                f"{min(runs):.2f}-{max(runs):.2f} | {len(runs)} | {setup_s:.0f} s |"
            )
            print(rows[-1], flush=True)
        await chain.close()
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--max", type=int, default=1000, help="largest registry (10000 for the full run)"
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/market.md"))
    args = ap.parse_args()
    route_rows = routing([10, 1_000, 10_000])
    for row in route_rows:
        print(row)
    sizes = [s for s in (100, 1_000, 10_000) if s <= args.max]
    disc_rows = await discovery(sizes, Path(tempfile.mkdtemp(prefix="mercato-market-")))
    lines = [
        "### Routing decision time",
        "",
        f"Command: `.venv/bin/python -m benchmarks.market --max {args.max}`. {os.cpu_count()} "
        f"cores, {dt.date.today().isoformat()}. `rank()` over N candidate operators of one "
        "model (random prices, latencies, reputations; nothing pinned), one core.",
        "",
        "| candidates | strategy | median ms | p99 ms | decisions |",
        "|---|---|---|---|---|",
        *route_rows,
        "",
        "### Discovery sync time",
        "",
        "The router's `Discovery.sync_once` from an empty SQLite database against anvil: "
        "fetch every registry event since deployment, apply them, load the offers.",
        "",
        "| operators | events | median s | min-max s | runs | (set-up, not measured) |",
        "|---|---|---|---|---|---|",
        *disc_rows,
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())

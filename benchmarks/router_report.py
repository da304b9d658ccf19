"""benchmarks.router's report: results/router.md (tables, goals), results/router_*.png
(matplotlib, Agg) and the raw rows they are computed from (results/router.json).

Rows are dicts with a ``kind``: ``meta`` (one: command, machine, date, settings),
``load`` (one wrk run: mode json|stream, target, concurrency, round, rps, p50_ms,
p99_ms, errors), ``ttft`` (one benchmarks.loadgen run of streamed requests: as ``load``
plus ttft_p50_ms, ttft_p99_ms), ``rss`` (one sample: process, phase idle|before|soak|
after, soak target, t_s, rss_kib) and ``soak`` (the soak's own wrk run, per target).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.router_setup import CONTENDERS, PATHS

Row = dict[str, Any]
IMAGES = ("router_throughput.png", "router_latency.png", "router_cpu.png", "router_memory.png")


def _values(
    rows: Iterable[Row], kind: str, mode: str, target: str, conc: int, key: str
) -> list[float]:
    return [
        float(r[key])
        for r in rows
        if r["kind"] == kind and r["mode"] == mode and r["target"] == target
        and r["concurrency"] == conc
    ]  # fmt: skip


class Results:
    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.meta: Row = next(r for r in rows if r["kind"] == "meta")
        self.concs: list[int] = list(self.meta["concurrency"])
        present = {r["target"] for r in rows if r["kind"] in ("load", "ttft")}
        self.targets = [t for t in CONTENDERS if t in present]

    def vals(self, kind: str, mode: str, target: str, conc: int, key: str) -> list[float]:
        return _values(self.rows, kind, mode, target, conc, key)

    def med(self, kind: str, mode: str, target: str, conc: int, key: str) -> float | None:
        v = [x for x in self.vals(kind, mode, target, conc, key) if not math.isnan(x)]
        return statistics.median(v) if v else None

    def added(self, kind: str, mode: str, target: str, conc: int, key: str) -> float | None:
        a, d = self.med(kind, mode, target, conc, key), self.med(kind, mode, "direct", conc, key)
        return None if a is None or d is None else a - d

    def caption(self, what: str) -> str:
        m = self.meta
        rounds = f"{m['rounds']} round{'s' if m['rounds'] != 1 else ''}"
        return (
            f"{what} Command: `{m['command']}`. Machine: {machine(m)}; {m['date']}. "
            f"Median (min-max) over {rounds} of {m['seconds']:g} s runs, contenders "
            "alternating within a round."
        )


def machine(m: Row) -> str:
    cpu = f" ({m['cpu']})" if m.get("cpu") else ""
    return f"{m['cores']} cores{cpu}, {m['memory_gib']} GiB"


def fmt(values: list[float], digits: int = 2) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def label(target: str) -> str:
    return CONTENDERS[target][0]


def load_table(res: Results, mode: str) -> list[str]:
    out = [
        "| target | concurrency | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for conc in res.concs:
        for t in res.targets:
            v = {k: res.vals("load", mode, t, conc, k) for k in ("rps", "p50", "p99", "errors")}
            if not v["rps"]:
                continue
            add = ["", ""]
            if t != "direct":
                add = [num(res.added("load", mode, t, conc, k)) for k in ("p50", "p99")]
            out.append(
                f"| {label(t)} | {conc} | {fmt(v['rps'], 0)} | {fmt(v['p50'])} | "
                f"{fmt(v['p99'])} | {add[0]} | {add[1]} | {sum(v['errors']):.0f} |"
            )
    return out


def ttft_table(res: Results) -> list[str]:
    out = [
        "| target | concurrency | TTFT p50 ms | TTFT p99 ms | added TTFT p50 ms | "
        "added TTFT p99 ms | loadgen req/s | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = ("rps", "ttft_p50", "ttft_p99", "errors")
    for conc in res.concs:
        for t in res.targets:
            v = {k: res.vals("ttft", "stream", t, conc, k) for k in keys}
            if not v["rps"]:
                continue
            add = ["", ""]
            if t != "direct":
                add = [num(res.added("ttft", "stream", t, conc, k)) for k in keys[1:3]]
            out.append(
                f"| {label(t)} | {conc} | {fmt(v['ttft_p50'])} | {fmt(v['ttft_p99'])} | "
                f"{add[0]} | {add[1]} | {fmt(v['rps'], 0)} | {sum(v['errors']):.0f} |"
            )
    return out


def cpu_table(res: Results) -> list[str]:
    """CPU time per request of each process a request passes through, from /proc."""
    head = " | ".join(f"{m} c={c}" for m in ("non-streaming", "streaming") for c in res.concs)
    out = [f"| target | process | {head} |", "|---|---|" + "---|" * (2 * len(res.concs))]
    for t in res.targets:
        for process in PATHS[t] or ("upstream",):
            cells = []
            for mode in ("json", "stream"):
                for conc in res.concs:
                    v = [
                        float(r["cpu_ms"][process])
                        for r in res.rows
                        if r["kind"] == "load"
                        and r["mode"] == mode
                        and r["target"] == t
                        and r["concurrency"] == conc
                        and process in r.get("cpu_ms", {})
                        and r["requests"]
                    ]
                    cells.append(num(statistics.median(v)) if v else "-")
            out.append(f"| {label(t)} | {process} | {' | '.join(cells)} |")
    return out


def truncated(res: Results) -> list[str]:
    """Cells whose p99 reaches half the run length: the run is too short for them."""
    limit = res.meta["seconds"] * 1000 / 2
    out = []
    for kind, mode, key in (("load", "json", "p99"), ("load", "stream", "p99"),
                            ("ttft", "stream", "ttft_p99")):  # fmt: skip
        for t in res.targets:
            for conc in res.concs:
                v = res.med(kind, mode, t, conc, key)
                ran = bool(res.vals(kind, mode, t, conc, key))
                if (v is not None and v >= limit) or (ran and v is None):
                    tool = "wrk" if kind == "load" else "loadgen"
                    what = "streaming" if mode == "stream" else "non-streaming"
                    out.append(f"{label(t)} c={conc} {what} ({tool})")
    return out


def split_table(res: Results) -> list[str]:
    """Router cost vs operator cost at the lowest concurrency, where latency adds up
    without queueing: added p50 (wrk) and CPU per request."""
    if "mercato-op" not in res.targets or "operator" not in res.targets:
        return []
    conc = res.concs[0]

    def cpu(mode: str, target: str, process: str) -> str:
        v = [
            float(r["cpu_ms"][process])
            for r in res.rows
            if r["kind"] == "load"
            and r["mode"] == mode
            and r["target"] == target
            and r["concurrency"] == conc
            and process in r.get("cpu_ms", {})
            and r["requests"]
        ]
        return num(statistics.median(v) if v else None)

    out = [
        "| mode | part | added p50 ms | CPU ms per request |",
        "|---|---|---|---|",
    ]
    for mode in ("json", "stream"):
        name = "streaming" if mode == "stream" else "non-streaming"
        op = res.med("load", mode, "operator", conc, "p50")
        via = res.med("load", mode, "mercato-op", conc, "p50")
        router_over_op = None if op is None or via is None else via - op
        out += [
            f"| {name} | operator node (operator alone - direct) | "
            f"{num(res.added('load', mode, 'operator', conc, 'p50'))} | "
            f"{cpu(mode, 'operator', 'operator')} |",
            f"| {name} | router in front of it (mercato -> operator - operator alone) | "
            f"{num(router_over_op)} | {cpu(mode, 'mercato-op', 'mercato-op')} |",
            f"| {name} | router in front of a provider (mercato -> provider - direct) | "
            f"{num(res.added('load', mode, 'mercato', conc, 'p50'))} | "
            f"{cpu(mode, 'mercato', 'mercato')} |",
        ]
    return out


def memory_table(res: Results) -> list[str]:
    rss = [r for r in res.rows if r["kind"] == "rss"]
    soaks = {r["target"]: r for r in res.rows if r["kind"] == "soak"}
    out = [
        "| process | idle MiB | before soak MiB | after soak MiB | growth over soak MiB | "
        "soaked through | soak req/s | soak errors |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def mib(process: str, phase: str, target: str | None = None) -> float | None:
        v = [
            r["rss_kib"] / 1024
            for r in rss
            if r["process"] == process
            and r["phase"] == phase
            and (target is None or r["soak_target"] == target)
        ]
        return v[-1] if v else None

    for target, soak in soaks.items():
        for process in PATHS[target]:
            before, after = mib(process, "before", target), mib(process, "after", target)
            growth = (
                "-"
                if before is None or after is None
                else f"{after - before:+.1f} ({(after - before) / before * 100:+.1f} %)"
            )
            out.append(
                f"| {process} | {num(mib(process, 'idle'), 1)} | {num(before, 1)} | "
                f"{num(after, 1)} | {growth} | {label(target)} | {soak['rps']:.0f} | "
                f"{soak['errors']:.0f} |"
            )
    soaked = {p for t in soaks for p in PATHS[t]}
    for process in sorted({r["process"] for r in rss if r["phase"] == "idle"} - soaked):
        out.append(f"| {process} | {num(mib(process, 'idle'), 1)} | | | | not soaked | | |")
    return out


def goals(res: Results) -> list[str]:
    out: list[str] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if "litellm" not in res.targets:
        out.append("- LiteLLM was not measured: the concurrency-64 goals are not checked.")
    for route in ("mercato", "mercato-op"):
        if route not in res.targets:
            continue
        for mode in ("json", "stream"):
            kind_txt = "non-streaming" if mode == "json" else "streaming"
            name = f"{label(route)}, {kind_txt}"
            primary = route == "mercato" and mode == "json"
            tag = "**Goal**" if primary else "Same bar"
            a1 = res.added("load", mode, route, 1, "p50")
            if a1 is not None:
                out.append(
                    f"- {tag} ({name}): added p50 at concurrency 1 = {a1:.2f} ms "
                    f"(goal <= 1 ms): {verdict(a1 <= 1)}."
                )
            mr = res.med("load", mode, route, 64, "rps")
            lr = res.med("load", mode, "litellm", 64, "rps")
            mp = res.added("load", mode, route, 64, "p99")
            lp = res.added("load", mode, "litellm", 64, "p99")
            if mr is not None and not lr and res.vals("load", mode, "litellm", 64, "rps"):
                out.append(
                    f"- {tag} ({name}): concurrency 64, {mr:.0f} req/s while LiteLLM finished "
                    "no request within a run (goal >= 10x: met); its p99 is unknown, so the "
                    "p99 ratio cannot be computed."
                )
            if mr is not None and lr and mp is not None and lp:
                out.append(
                    f"- {tag} ({name}): concurrency 64, {mr:.0f} req/s = {mr / lr:.1f}x "
                    f"LiteLLM's {lr:.0f} (goal >= 10x): {verdict(mr >= 10 * lr)}; added p99 "
                    f"{mp:.1f} ms vs LiteLLM's {lp:.1f} ms = {mp / lp:.2f} (goal <= 0.10): "
                    f"{verdict(mp <= 0.1 * lp)}."
                )
    return out


def render(res: Results, images: list[str]) -> str:
    m = res.meta
    soak_s = m.get("soak_seconds", 0)
    lines = [
        "### Gateway overhead against an instant upstream",
        "",
        "One upstream (aiohttp, its own process) answers at once: a JSON chat completion, or "
        "an SSE stream of 7 chunks (role, 4 content chunks, finish, usage) and "
        "`data: [DONE]`. Contenders, each one worker process on the same cores as the "
        "upstream and the load generator: "
        + "; ".join(f"**{label(t)}**: {CONTENDERS[t][1]}" for t in res.targets)
        + ". Mercato's routers run with auth off (LiteLLM runs with only its master key); "
        "the operator node runs in free mode and signs every response, and the router in "
        "front of it verifies each receipt against the operator's configured signing "
        "address. \"Added\" = the contender's median minus the direct upstream's median.",
        "",
        "Tools: **wrk** (`-t1 --latency --timeout 30s`, Debian's package) measures req/s and "
        "whole-response p50/p99 for non-streaming and for streamed requests (it reads each "
        "stream to its end); **benchmarks/loadgen.py** (an asyncio protocol on uvloop, its "
        "own process, one keep-alive connection per client, the same for every contender) "
        "measures time to first token (TTFT: from sending the request to the first `data:` "
        "event with non-empty content) in separate runs at the same concurrency; CPU time "
        "per request is utime + stime from /proc/<pid>/stat around each wrk run; memory is "
        "VmRSS from /proc/<pid>/status. Both /proc figures are summed over each process and "
        "its children.",
        "",
        "#### Non-streaming (wrk)",
        "",
        res.caption("Non-streaming chat."),
        "",
        *load_table(res, "json"),
        "",
        "#### Streaming: throughput and whole-response latency (wrk)",
        "",
        res.caption("Streamed chat (`stream: true`, usage included)."),
        "",
        *load_table(res, "stream"),
        "",
        "#### Streaming: time to first token (benchmarks/loadgen.py)",
        "",
        res.caption("Streamed chat, TTFT from sending the request."),
        "",
        *ttft_table(res),
        "",
    ]
    direct_ttft = {c: res.med("ttft", "stream", "direct", c, "rps") for c in res.concs}
    lines += [
        "Notes: the upstream writes all its chunks at once, so here TTFT is close to the "
        "whole-stream latency; the point of this table is that it is measured where the "
        "first content chunk arrives, by a client that sees chunks. The load generator is "
        "Python on one core: against the direct upstream it reached "
        + ", ".join(f"{num(v, 0)} req/s at c={c}" for c, v in direct_ttft.items())
        + ", a ceiling of its own; where the direct row runs near it, direct TTFT includes "
        "client-side queueing and the added TTFT of the fast contenders is understated "
        "(compare the contenders with each other there).",
        "",
    ]
    cut = truncated(res)
    if cut:
        lines += [
            f"Too slow for {res.meta['seconds']:g}-second runs (p99 >= half the run; requests "
            "still running when a run ends are not counted, so their latency is cut short "
            "and their req/s is a lower bound): " + "; ".join(cut) + ".",
            "",
        ]
    lines += [
        "#### CPU time per request, ms",
        "",
        res.caption(
            "User + system CPU time of each process a request passes through (from "
            "/proc/<pid>/stat, during the wrk runs above) divided by the requests served; "
            "independent of how busy the shared cores were."
        ),
        "",
        *cpu_table(res),
        "",
    ]
    split = split_table(res)
    if split:
        lines += [
            f"#### Router cost vs operator cost, concurrency {res.concs[0]}",
            "",
            res.caption(
                "Differences of the medians above (latency adds up only without queueing, "
                "so only the lowest concurrency) and the CPU table's medians."
            ),
            "",
            *split,
            "",
        ]
    lines += [
        "#### Memory after a soak",
        "",
        f"Command: `{m['command']}`. Machine: {machine(m)}; "
        f"{m['date']}. One soak per soaked contender (one run, not rounds): wrk, "
        f"non-streaming, concurrency 16, {soak_s:g} s, after all the rounds above; RSS idle "
        "(after start-up, before any load), just before and just after its soak. Soaked: "
        f"{', '.join(m.get('soak', [])) or 'none'}.",
        "",
        *memory_table(res),
        "",
        "#### Goals",
        "",
        *goals(res),
        "",
    ]
    crashed = m.get("crashed") or []
    if crashed:
        lines += [f"- Processes that exited during the run: {', '.join(crashed)}.", ""]
    for image in images:
        lines.append(f"![{image}](benchmarks/results/{image})")
    return "\n".join(lines).rstrip() + "\n"


def plots(res: Results, outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    xs = list(range(len(res.concs)))

    def lines(ax: Any, fn: Callable[[str, int], list[float] | float | None], title: str) -> None:
        for t in res.targets:
            ys, lo, hi, xx = [], [], [], []
            for i, conc in enumerate(res.concs):
                v = fn(t, conc)
                if v is None or v == []:
                    continue
                vs = v if isinstance(v, list) else [v]
                med = statistics.median(vs)
                xx.append(i)
                ys.append(med)
                lo.append(med - min(vs))
                hi.append(max(vs) - med)
            if ys:
                ax.errorbar(xx, ys, yerr=[lo, hi], marker="o", capsize=3, label=label(t))
        ax.set_xticks(xs, [str(c) for c in res.concs])
        ax.set_xlabel("concurrency")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, mode, title in zip(
        axes, ("json", "stream"), ("non-streaming", "streaming"), strict=True
    ):

        def rps(t: str, c: int, m: str = mode) -> list[float]:
            return res.vals("load", m, t, c, "rps")

        lines(ax, rps, f"req/s, {title} (wrk)")
        ax.set_yscale("log")
        ax.set_ylabel("requests/s (log)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{res.meta['date']}, {res.meta['cores']} cores; median, bars = min-max")
    fig.tight_layout()
    fig.savefig(outdir / IMAGES[0], dpi=110)
    plt.close(fig)
    made.append(IMAGES[0])

    panels = [
        ("load", "json", "p50", "added p50 ms, non-streaming (wrk)"),
        ("load", "json", "p99", "added p99 ms, non-streaming (wrk)"),
        ("ttft", "stream", "ttft_p50", "added TTFT p50 ms, streaming (loadgen)"),
        ("load", "stream", "p99", "added p99 ms, streaming (wrk)"),
    ]
    fig, grid = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (kind, mode, key, title) in zip(grid.flat, panels, strict=True):
        targets = [t for t in res.targets if t != "direct"]
        width = 0.8 / max(1, len(targets))
        for j, t in enumerate(targets):
            ys = [res.added(kind, mode, t, c, key) for c in res.concs]
            offsets = [i + (j - (len(targets) - 1) / 2) * width for i in xs]
            drawn = [(x, y) for x, y in zip(offsets, ys, strict=True) if y is not None]
            ax.bar([x for x, _ in drawn], [y for _, y in drawn], width, label=label(t))
        ax.set_yscale("symlog", linthresh=0.1)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks(xs, [str(c) for c in res.concs])
        ax.set_xlabel("concurrency")
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    grid.flat[0].legend(fontsize=8)
    fig.suptitle("Latency added over the direct upstream (symlog scale; medians)")
    fig.tight_layout()
    fig.savefig(outdir / IMAGES[1], dpi=110)
    plt.close(fig)
    made.append(IMAGES[1])

    fig, ax = plt.subplots(figsize=(11, 4.2))
    parts = [(t, p) for t in res.targets for p in PATHS[t] or ("upstream",)]
    series = [(m, c) for m in ("json", "stream") for c in res.concs]
    width = 0.8 / len(series)
    for j, (mode, conc) in enumerate(series):
        drawn = []
        for i, (t, p) in enumerate(parts):
            v = [
                float(r["cpu_ms"][p])
                for r in res.rows
                if r["kind"] == "load"
                and r["mode"] == mode
                and r["target"] == t
                and r["concurrency"] == conc
                and p in r.get("cpu_ms", {})
                and r["requests"]
            ]
            if v:
                drawn.append((i + (j - (len(series) - 1) / 2) * width, statistics.median(v)))
        what = "streaming" if mode == "stream" else "non-streaming"
        ax.bar([x for x, _ in drawn], [y for _, y in drawn], width, label=f"{what}, c={conc}")
    ax.set_xticks(range(len(parts)), [f"{p}\n({label(t)})" for t, p in parts], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("CPU ms per request (log)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(
        "CPU time per request of each process on the path (/proc, during the wrk runs; medians)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(outdir / IMAGES[2], dpi=110)
    plt.close(fig)
    made.append(IMAGES[2])

    samples = [
        r for r in res.rows if r["kind"] == "rss" and r["phase"] in ("before", "soak", "after")
    ]
    if samples:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        for target, process in sorted({(r["soak_target"], r["process"]) for r in samples}):
            pts = sorted(
                (r["t_s"], r["rss_kib"] / 1024)
                for r in samples
                if r["soak_target"] == target and r["process"] == process
            )
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker=".",
                label=f"{process} (soak: {label(target)})",
            )
        ax.set_xlabel("seconds into the soak (wrk, non-streaming, concurrency 16)")
        ax.set_ylabel("RSS MiB")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"Memory during the soak, {res.meta['date']}", fontsize=10)
        fig.tight_layout()
        fig.savefig(outdir / IMAGES[3], dpi=110)
        plt.close(fig)
        made.append(IMAGES[3])
    return made

"""Shared helpers for the benchmark parts: the machine line, raw-number JSON, PNG plots.

Every plot shows the median of repeated runs as a point and their min-max as an error
bar. Files go to ``benchmarks/results/<part>_<name>.png`` and are referenced from the
part's Markdown by their path relative to the repository root (where BENCHMARKS.md is).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# x -> the values of the repeated runs at that x
Series = Mapping[float, Sequence[float]]


def machine() -> str:
    """``2 cores (CPU model), 23.5 GiB, x86_64``: what every figure names."""
    with open("/proc/meminfo") as fh:
        mem_gib = int(fh.readline().split()[1]) / 1024 / 1024
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model
            )
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), {mem_gib:.1f} GiB, {platform.machine()}"


class Load:
    """The 1-minute load average when a part started and when it ended: on a shared
    machine, how busy it was while the numbers were taken."""

    def __init__(self) -> None:
        self.start = os.getloadavg()[0]

    def __str__(self) -> str:
        return (
            f"load average {self.start:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
            f"end, on {os.cpu_count()} cores"
        )


def today() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"


def span(values: Sequence[float], digits: int = 2, unit: str = "") -> str:
    """``median (min-max)`` of repeated runs."""
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{med:,.{digits}f}{unit} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def rel(path: Path) -> str:
    """``path`` relative to the repository root, as BENCHMARKS.md links it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


def lines(
    path: Path,
    series: Mapping[str, Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    logy: bool = False,
    caption: str = "",
) -> Path:
    """One line per series through the medians, min-max error bars."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, points in series.items():
        xs = sorted(points)
        meds = [statistics.median(points[x]) for x in xs]
        lo = [m - min(points[x]) for m, x in zip(meds, xs, strict=True)]
        hi = [max(points[x]) - m for m, x in zip(meds, xs, strict=True)]
        ax.errorbar(xs, meds, yerr=[lo, hi], marker="o", capsize=3, label=name)
    _finish(fig, ax, title, xlabel, ylabel, caption, logx=logx, logy=logy)
    if logx:
        xs_all = sorted({x for s in series.values() for x in s})
        ax.set_xticks(xs_all, [f"{x:,.0f}" for x in xs_all])
    return _save(fig, path)


def bars(
    path: Path,
    groups: Sequence[str],
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    title: str,
    ylabel: str,
    caption: str = "",
) -> Path:
    """Grouped bars: ``series[name][i]`` holds the runs of ``name`` in ``groups[i]``."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    width = 0.8 / max(1, len(series))
    for k, (name, per_group) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        meds = [statistics.median(v) for v in per_group]
        lo = [m - min(v) for m, v in zip(meds, per_group, strict=True)]
        hi = [max(v) - m for m, v in zip(meds, per_group, strict=True)]
        ax.bar(xs, meds, width, yerr=[lo, hi], capsize=4, label=name)
    ax.set_xticks(range(len(groups)), list(groups))
    _finish(fig, ax, title, "", ylabel, caption)
    return _save(fig, path)


def _finish(
    fig: Any,
    ax: Any,
    title: str,
    xlabel: str,
    ylabel: str,
    caption: str,
    *,
    logx: bool = False,
    logy: bool = False,
) -> None:
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if caption:
        wrapped = textwrap.wrap(caption, 120)
        fig.text(0.01, 0.01, "\n".join(wrapped), fontsize=7, color="0.35", va="bottom")
        fig.subplots_adjust(bottom=0.14 + 0.035 * len(wrapped))


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

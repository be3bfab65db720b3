"""The soak's PNG: one panel per resource over time, a line per process, and p95 per minute."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: write the file only
import matplotlib.pyplot as plt

from benchmarks.soak.sampler import Sample

PANELS: tuple[tuple[str, Callable[[Sample], float | None]], ...] = (
    ("RSS, MB (PostgreSQL: PSS, all processes)", lambda s: s.rss_mb),
    ("open descriptors (log scale)", lambda s: s.fds),
    ("threads (PostgreSQL: processes)", lambda s: s.threads),
    ("asyncio tasks", lambda s: s.tasks),
    ("DB pool checkouts", lambda s: sum(s.checkouts.values()) if s.checkouts else None),
)

LOG_SCALE = {"open descriptors (log scale)"}


def plot(samples: list[Sample], p95: dict[int, float], warmup_s: float, path: Path, title: str) -> None:
    figure, axes = plt.subplots(3, 2, figsize=(13, 11), sharex=True)
    processes = list(dict.fromkeys(s.process for s in samples))
    # One colour per process in every panel (a panel skips processes without that figure).
    colours = {process: f"C{i}" for i, process in enumerate(processes)}
    for axis, (label, read) in zip(axes.flat, PANELS, strict=False):
        for process in processes:
            points = [(s.t / 60, read(s)) for s in samples if s.process == process and read(s) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, label=process, linewidth=1, color=colours[process])
        if label in LOG_SCALE:
            axis.set_yscale("log")  # PostgreSQL's hundreds beside the services' tens
        axis.set_title(label, fontsize=10)
        axis.axvline(warmup_s / 60, color="grey", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8, loc="best")
    latency = axes.flat[5]
    latency.plot([m + 0.5 for m in p95], list(p95.values()), marker=".", color="black")
    latency.set_title("p95 latency per minute, ms (CreateOrder, replies as asked)", fontsize=10)
    latency.axvline(warmup_s / 60, color="grey", linestyle=":", linewidth=1)
    latency.grid(alpha=0.3)
    for axis in axes[-1]:
        axis.set_xlabel("minutes since the steady load started (dotted: end of warm-up)")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)

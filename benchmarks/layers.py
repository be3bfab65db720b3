"""Where a loaded process's CPU goes, by layer: py-spy in situ, each sample given to a layer.

Used by `make bench` (its profiled saga phase) and `make bench-floor`. py-spy attaches to the
running services without pausing them (``--nonblocking``) and samples every thread that is on a
CPU; a sample belongs to the innermost frame whose package is known:

- **telemetry SDK**: ``opentelemetry`` (API, SDK, the contrib instrumentations) and ``prometheus_client``;
- **our telemetry code**: ``sagascope/common/telemetry`` (RED metrics, access log, OTLP log handler,
  redaction, OTLP-JSON encoding);
- **JSON log lines**: the stdlib ``logging`` machinery, python-json-logger and our formatter — work
  done with telemetry off too;
- **SQL**: SQLAlchemy and asyncpg; **MongoDB**: pymongo and bson (and nx-27017's own code, in its process);
- **gRPC (Python)**: grpcio's Python layer and protobuf;
- **our code**: the rest of ``sagascope`` (services, saga engine, auth, resilience);
- **event loop + gRPC core (native)**: samples whose innermost frame is the event loop itself — uvloop,
  and grpcio's Cython/C core and protobuf's C serialisation, which py-spy cannot see into, run under
  it — and grpcio's poller thread (gRPC core's completion queue, in C);
- **other**: everything else (stdlib, cryptography, ...).

Each thread's CPU as the kernel charged it (``/proc/<pid>/task/*/stat``) is split over the layers of
that thread's samples (:func:`cpu_weighted`): py-spy's on-CPU test is approximate, and counted
grpcio's blocked poller thread busy. Threads with no Python frames (gRPC core's own) are not sampled;
their CPU goes to the native layer. The shares, multiplied by the process's CPU per request
(psutil), become milliseconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path

NATIVE = "event loop + gRPC core (native)"
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("our telemetry code", ("sagascope/common/telemetry/",)),
    ("telemetry SDK", ("opentelemetry/", "prometheus_client/")),
    ("SQL", ("sqlalchemy/", "asyncpg/")),
    ("MongoDB", ("pymongo/", "bson/", "nx_27017/", "nx27017/")),
    ("gRPC (Python)", ("grpc/", "grpc_", "google/protobuf/")),
    ("JSON log lines", ("logging/", "pythonjsonlogger/")),
    ("our code", ("sagascope/",)),
    (NATIVE, ("asyncio/", "uvloop/")),
)
LAYER_NAMES = (*(name for name, _ in LAYERS), "other")
# Our frames that make the JSON line (written with telemetry off too).
JSON_LOG_FRAMES = ("JsonLineFormatter", "ContractFields", "ContextFieldsFilter")
# Innermost frames of a thread that waits rather than works (py-spy's on-CPU test is approximate),
# and threads that only wait (prometheus_client's HTTP server between scrapes).
IDLE_LEAVES = ("Event.wait", "Condition.wait", "/selectors.py:", "concurrent/futures/thread.py")
IDLE_THREADS = ("(serve_forever)",)
# grpcio's poller thread runs gRPC core's completion queue in C under one Python frame.
GRPC_CORE_THREADS = ("(_poll_wrapper)",)


def layer_of(frames: Sequence[str]) -> str:
    """The layer of one sample (``frames`` outermost first): its innermost frame with a known
    package; our formatter's frames under ``logging`` count as JSON log lines."""
    for frame in reversed(frames):
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                if name == "our telemetry code" and any(m in f for f in frames for m in JSON_LOG_FRAMES):
                    return "JSON log lines"  # e.g. the timestamp or redaction under our formatter
                return name
    return "other"


_THREAD_ID = re.compile(r"^thread \((\d+)\)")


def thread_layer_counts(lines: Iterable[str]) -> dict[int | None, collections.Counter[str]]:
    """py-spy ``--format raw`` lines -> busy samples per layer (idle waits left out), for each OS thread
    id (None when py-spy did not print one)."""
    counts: dict[int | None, collections.Counter[str]] = {}
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        if not frames or any(leaf in frames[-1] for leaf in IDLE_LEAVES) or any(t in thread for t in IDLE_THREADS):
            continue
        match = _THREAD_ID.match(thread)
        tid = int(match.group(1)) if match else None
        layer = NATIVE if any(t in thread for t in GRPC_CORE_THREADS) else layer_of(frames)
        counts.setdefault(tid, collections.Counter())[layer] += int(count)
    return counts


def cpu_weighted(
    per_thread: Mapping[int | None, Mapping[str, int]], thread_cpu: Mapping[int, float]
) -> dict[str, float]:
    """Each thread's real CPU (seconds, from /proc) split over the layers of its samples.

    py-spy's ``--nonblocking`` on-CPU test is approximate: grpcio's poller thread, blocked in gRPC
    core's completion queue, was counted busy in ~16 % of the order process's samples while the
    kernel charged it ~1 % of the CPU. Weighting by the kernel's count removes that, and gives the
    CPU of threads py-spy cannot see (gRPC core's own, no Python frames) to the native layer.
    """
    weighted: dict[str, float] = collections.defaultdict(float)
    for tid, seconds in thread_cpu.items():
        samples = per_thread.get(tid) or {}
        total = sum(samples.values())
        if not total:
            weighted[NATIVE] += seconds
            continue
        for layer, n in samples.items():
            weighted[layer] += seconds * n / total
    return dict(weighted)


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) each thread of ``pid`` has used so far; {} once it is gone."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def shares(counts: Mapping[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {name: n / total for name, n in counts.items()} if total else {}


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed (it is in the dev extras: pip install py-spy)")
    return found


@contextlib.asynccontextmanager
async def recording(
    pids: Mapping[str, int], out_dir: Path, rate: int = 200, gil: bool = False
) -> AsyncIterator[dict[str, Path]]:
    """py-spy on each of ``pids`` (name -> pid) while the block runs; yields name -> raw output file
    in ``out_dir`` (which must exist), written when the block exits, beside ``threads-<name>.json``
    (each thread's CPU seconds in the block, by OS thread id). ``gil``: sample only the thread
    holding the GIL (Python work only) instead of every thread on a CPU."""
    command = py_spy()
    files = {name: out_dir / f"py-spy-{name}.txt" for name in pids}
    spies = [
        await asyncio.create_subprocess_exec(
            command, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "--full-filenames",
            "--threads", "--nonblocking",  # never pause the process: it would change the load measured
            *(("--gil",) if gil else ()), "--output", str(files[name]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    await asyncio.sleep(1.5)  # py-spy attaches
    before = {name: thread_cpu_seconds(pid) for name, pid in pids.items()}
    try:
        yield files
    finally:
        # What the kernel charged each thread while sampled (cpu_weighted reads it back).
        for name, pid in pids.items():
            after = thread_cpu_seconds(pid)
            spent = {tid: t - before[name].get(tid, 0.0) for tid, t in after.items()}
            (out_dir / f"threads-{name}.json").write_text(json.dumps({str(k): v for k, v in spent.items()}))
        for spy in spies:
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        for spy in spies:
            await asyncio.wait_for(spy.wait(), 60)

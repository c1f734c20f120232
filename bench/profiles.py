"""Profiles of postback's two hot paths with py-spy, reduced to hotspot tables.

* track(): ``workload.py`` tracks N events with delivery off (``workers = false``), so the
  samples are track()'s own cost, not GIL contention with the delivery threads.
* delivery: a process queues N events without delivering, then a second process (profiled)
  reopens the file and delivers it to the sink; only the ``postback-*`` threads count.

py-spy samples the process from outside (no instrumentation inside it), in one of two views:

* on-CPU (default): samples of threads py-spy judges idle (waiting on a socket, a lock or the
  GIL) are left out. The judgement is a heuristic: a thread blocked in ``recv()`` is still
  counted active in a few percent of samples, which adds up with dozens of mostly idle request
  threads. So this view is used where few threads wait: track() with delivery off, and the
  batched delivery at 0 ms. It includes time in C code that releases the GIL (SQLite).
* GIL (``--gil``): only the thread holding the GIL is sampled. Exact about who keeps the
  caller's thread waiting for the GIL, blind to C code that runs without it.
* wall (``--idle``): every thread in every sample, busy or waiting: where a thread's time goes,
  e.g. whether the lane thread waits for a free request slot or for the queue's lock.

py-spy runs with ``--nonblocking``: pausing the process for every sample (its default)
interrupts system calls and inflates the share of syscall-heavy code such as SQLite's commit.
Sampling profilers report mean time: a rare 20 ms stall inside a function weighs as much as
thousands of fast calls, which is what the median hides.

The raw collapsed stacks are kept gzipped in ``bench/results/profiles/`` (a quick run writes
``profiles-quick/``); ``zcat`` one into ``flamegraph.pl``, or load it in speedscope, for a flame
graph.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import BENCH_DIR, run_worker

if TYPE_CHECKING:
    from run import Bench

__all__ = ["hotspots", "profile_delivery", "profile_track", "py_spy"]

SAMPLE_RATE = 1000


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter or on PATH, if it runs here."""
    candidates = [Path(sys.executable).parent / "py-spy", shutil.which("py-spy")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            try:
                subprocess.run([str(candidate), "--version"], check=True, capture_output=True)
            except (OSError, subprocess.CalledProcessError):
                continue
            return str(candidate)
    return None


MODE_FLAGS = {"cpu": [], "gil": ["--gil"], "wall": ["--idle"]}


def _record(spy: str, spec: dict[str, Any], raw_path: Path, *, mode: str) -> dict[str, Any]:
    """Run one workload under ``py-spy record`` in ``mode`` (cpu, gil, wall); its JSON result.

    The collapsed stacks end up gzipped in ``raw_path`` (a ``.txt.gz`` name).
    """
    plain = raw_path.with_suffix("")  # py-spy writes text; compressed once it is done
    proc = subprocess.run(
        [
            spy,
            "record",
            *MODE_FLAGS[mode],
            "--nonblocking",  # read the process without pausing it: no syscalls cut short
            "--format",
            "raw",
            "--rate",
            str(SAMPLE_RATE),
            "--threads",
            "--output",
            str(plain),
            "--",
            sys.executable,
            str(BENCH_DIR / "workload.py"),
            json.dumps(spec),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    with plain.open("rb") as src, gzip.open(raw_path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain.unlink()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return result


def _frame_key(frame: str) -> str:
    """``Tracker.track (postback/tracker.py:175)`` -> ``postback/tracker.py:Tracker.track``."""
    name, _, where = frame.rpartition(" (")
    if not name:
        return frame
    path = where.rstrip(")").rpartition(":")[0]
    return f"{_short(path)}:{name}"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[1]
            break
    return path


def hotspots(
    raw_path: Path, *, thread_prefix: str, within: str | None = None, top: int = 15
) -> dict[str, Any]:
    """Reduce py-spy's collapsed stacks to shares of time per function and per file.

    Only threads whose name starts with ``thread_prefix`` count; with ``within``, only samples
    whose stack passes through that function (e.g. ``Tracker.track``), and frames above it are
    dropped, so the shares are of that call's time.
    """
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    total = 0
    with gzip.open(raw_path, "rt") as f:
        text = f.read()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = frames[0].partition("): ")[2]
        if not thread.startswith(thread_prefix):
            continue
        frames = frames[1:]
        if within is not None:
            cut = next((i for i, f in enumerate(frames) if f.startswith(within + " (")), None)
            if cut is None:
                continue
            frames = frames[cut:]
        if not frames:
            continue
        count = int(count_text)
        total += count
        keys = [_frame_key(f) for f in frames]
        self_time[keys[-1]] += count
        by_file[keys[-1].rpartition(":")[0]] += count
        for key in set(keys):
            inclusive[key] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"where": k, "share_pct": round(100 * v / total, 1), "samples": v}
            for k, v in counter.most_common(top)
        ]

    return {
        "samples": total,
        "self": table(self_time),
        "inclusive": table(inclusive),
        "self_by_file": table(by_file),
    }


def profile_track(spy: str, bench: Bench, n: int, out_dir: Path) -> dict[str, Any]:
    raw = out_dir / "track.txt.gz"
    spec = {
        "scenario": "throughput",
        "lib": "postback",
        "n": n,
        "vendor": "bench_batch",
        "workers": False,
        "sink_url": bench.sink.url,
        "tag": bench.tag("pt"),
    }
    result = _record(spy, spec, raw, mode="cpu")
    spots = hotspots(raw, thread_prefix="MainThread", within="Tracker.track")
    spots["mode"] = "cpu"
    spots["events"] = n
    spots["track_p50_us"] = result.get("latency", {}).get("p50_us")
    spots["raw"] = str(raw.relative_to(BENCH_DIR.parent))
    return spots


def profile_delivery(
    spy: str,
    bench: Bench,
    n: int,
    latency: float,
    out_dir: Path,
    *,
    mode: str = "cpu",
    vendor: str = "bench_batch",
    concurrency: int = 8,
) -> dict[str, Any]:
    tag = bench.tag("pd")
    queue_path = bench.tmp / f"{tag}.db"
    base = {
        "lib": "postback",
        "vendor": vendor,
        "concurrency": concurrency,
        "sink_url": bench.sink.url,
        "tag": tag,
        "queue_path": str(queue_path),
        "n": n,
        # Delivered on this process's threads, where py-spy sees them: the default
        # (workers = "auto") would deliver in a child process that py-spy does not follow.
        "workers": True,
    }
    run_worker({**base, "scenario": "fill"})
    bench.sink.client.reset()
    bench.sink.client.configure(latency=latency, status=None)
    raw = out_dir / f"delivery-{vendor}-c{concurrency}-{latency * 1000:.0f}ms-{mode}.txt.gz"
    result = _record(spy, {**base, "scenario": "drain", "timeout": 300}, raw, mode=mode)
    spots = hotspots(raw, thread_prefix="postback-")
    if mode == "wall":
        spots["lane_thread"] = hotspots(raw, thread_prefix="postback-lane-", top=8)
        spots["request_threads"] = hotspots(raw, thread_prefix=f"postback-{vendor}", top=8)
    # The caller's thread in flush() polls the queue depth meanwhile: its own cost.
    spots["flush_wait"] = hotspots(raw, thread_prefix="MainThread", within="Tracker.flush", top=5)
    spots["events"] = n
    spots["mode"] = mode
    spots["vendor"] = vendor
    spots["concurrency"] = concurrency
    spots["drain_s"] = result.get("seconds")
    spots["delivered"] = bench.sink.client.stats()["unique"]
    spots["raw"] = str(raw.relative_to(BENCH_DIR.parent))
    return spots

"""Delivery CPU per event, batched (100 per request), sink at 0 ms: versions compared in
interleaved rounds.

    python bench/child_cpu.py [--n 100000] [--rounds 3] [--mode process|threads] \\
        [--src NAME=PATH ...]

Each round, for each version (``PATH`` is a checkout's ``src`` directory, put first on
``PYTHONPATH``; without ``--src``, the installed one), a fresh process fills a fresh SQLite
queue with ``n`` events for ``bench_batch`` with delivery off (``workload.py fill``: the events
wait in the spool, as ``track()`` leaves them), then a fresh process delivers them to
``sink.py`` answering at once and reports the CPU time per event the delivery took:

- ``--mode process`` (the default, ``workers = "process"``): the delivery child's own CPU
  (``/proc/<pid>/stat``) from the moment it reported ready until the sink had every event;
  the tracking process only waits;
- ``--mode threads``: delivery on threads of the measuring process (``workers = true``), with
  the child's garbage-collector settings (``tune_gc_for_delivery``), its whole CPU time.

The order of the versions alternates between rounds: the machine's noise is what repeated
rounds are for. Prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, CLK_TCK, Sink


def _run(args: list[str], src: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    result: dict[str, Any] = json.loads(
        [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
    )
    return result


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def drain(spec: dict[str, Any]) -> dict[str, Any]:
    """In the measuring process: deliver the filled queue, return CPU per event."""
    import workload

    from postback.delivery.worker import tune_gc_for_delivery

    n = spec["n"]
    client = workload.PostbackClient(spec)
    tracker = client.tracker
    if spec["workers"] == "process":
        tracker.deliverer.start()
        if not tracker.deliverer.ready(60):
            raise RuntimeError("the delivery process did not start")
        pid = tracker.deliverer.process.pid  # type: ignore[attr-defined]
        cpu0 = _proc_cpu(pid)
        waited = workload.sink_wait(spec["sink_url"], n, 300)
        cpu = _proc_cpu(pid) - cpu0
    else:
        tune_gc_for_delivery()
        t0 = os.times()
        tracker.deliverer.start()
        waited = workload.sink_wait(spec["sink_url"], n, 300)
        t1 = os.times()
        cpu = (t1.user - t0.user) + (t1.system - t0.system)
    if not waited["reached"]:
        raise RuntimeError("the sink did not get every event")
    requests = tracker.stats()[client.vendor]["requests"] if spec["workers"] != "process" else None
    client.finish(timeout=10)
    return {"cpu_us_per_event": round(1e6 * cpu / n, 2), "requests": requests}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mode", choices=("process", "threads"), default="process")
    ap.add_argument("--src", action="append", default=[], help="NAME=PATH of a src directory")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--drain", help=argparse.SUPPRESS)  # internal: one measured drain
    args = ap.parse_args()
    if args.drain:
        print(json.dumps(drain(json.loads(args.drain))), flush=True)
        return
    versions = [tuple(s.split("=", 1)) for s in args.src] or [("this", "")]
    results: dict[str, list[float]] = {name: [] for name, _ in versions}
    with Sink() as sink, tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, src in versions if r % 2 == 0 else versions[::-1]:
                tag = f"r{r}-{name}-{time.monotonic_ns() % 10**9}"
                base = {
                    "lib": "postback",
                    "vendor": "bench_batch",
                    "concurrency": args.concurrency,
                    "sink_url": sink.url,
                    "tag": tag,
                    "queue_path": str(Path(tmp) / f"{tag}.db"),
                    "n": args.n,
                }
                _run(
                    [str(BENCH_DIR / "workload.py"), json.dumps({**base, "scenario": "fill"})], src
                )
                sink.client.reset()
                sink.client.configure(latency=0.0, status=None)
                spec = {**base, "workers": "process" if args.mode == "process" else True}
                out = _run([__file__, "--drain", json.dumps(spec)], src)
                results[name].append(out["cpu_us_per_event"])
                print(f"round {r} {name:>8}: {out['cpu_us_per_event']} µs CPU/event", flush=True)
    for name, xs in results.items():
        print(f"{name:>8}: median {statistics.median(xs):.2f} (range {min(xs)}-{max(xs)}) {xs}")


if __name__ == "__main__":
    main()

"""Soak: the same large run again and again, counting every event at the sink.

A loss that happens once in a few hundred thousand events (a reader that took a record split
across two reads for the end of a file, say) passes every unit test and most single benchmark
runs. This repeats the end-to-end run (``workload.py``'s ``throughput`` scenario: track N
events in a tight loop while delivering, wait for the sink) in each delivery mode and checks,
per run, that the sink received every event id once at least, and how many it received twice.

    python bench/soak.py                                 # 10 runs x 100,000 events, both modes
    python bench/soak.py --runs 30 --modes process --latency 0.02
    python bench/soak.py --kill --runs 10 --latency 0.02  # SIGKILL mid-delivery, restart

With ``--kill`` each run tracks in a tight loop while delivering, is killed (SIGKILL) at about
``--n`` tracked, and a new process drains the queue; it reports, per run, the events lost
(must be 0) and re-sent (delivered before the kill and again after it), against the bound
docs/explanation/guarantees.md states: what the killed deliverer had in flight (requests
in flight x batch size) plus what it settled in its last moments.

Exits with status 1 if any run lost an event. Not part of the test suite (minutes, and its
timing depends on the machine); run it after changing the queue, the spool or the engine.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, SCRATCH_ENV, Sink, run_worker, throughput_spec

MODES = {"threads": True, "process": "process"}


def soak(
    sink: Sink, *, runs: int, n: int, modes: list[str], latency: float
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for run in range(runs):
        for mode in modes:
            sink.client.reset()
            sink.client.configure(latency=latency, status=None)
            spec = throughput_spec(
                n,
                workers=MODES[mode],
                sink_url=sink.url,
                tag=f"soak{run}{mode[0]}",
                wait_timeout=120,
            )
            result = run_worker(spec, timeout=300)
            stats = sink.client.stats()
            row = {
                "run": run,
                "mode": mode,
                "events": n,
                "unique": stats["unique"],
                "lost": n - stats["unique"],
                "duplicates": stats["received"] - stats["unique"],
                "events_per_s": result.get("events_per_s"),
            }
            out.append(row)
            print(
                f"  run {run:>3} {mode:8} lost {row['lost']:>6}  duplicates "
                f"{row['duplicates']:>5}  {row['events_per_s'] or 0:>9,.0f} events/s",
                flush=True,
            )
    return out


CONCURRENCY = 8  # requests in flight per vendor in the kill runs
BATCH = 100  # the bench_batch vendor's batch size


def kill_soak(sink: Sink, *, runs: int, n: int, latency: float, tmp: Path) -> list[dict[str, Any]]:
    """SIGKILL a tracker that delivers while it tracks, at about ``n`` tracked; drain in a new
    process; count lost and re-sent ids at the sink."""
    out: list[dict[str, Any]] = []
    for run in range(runs):
        sink.client.reset()
        sink.client.configure(latency=latency, status=None)
        tag = f"kill{run}"
        progress_path = tmp / f"{tag}.progress"
        progress_path.write_bytes(bytes(8))
        queue_path = tmp / f"{tag}.db"
        common = {
            "lib": "postback",
            "tag": tag,
            "sink_url": sink.url,
            "queue_path": str(queue_path),
            "vendor": "bench_batch",
            "concurrency": CONCURRENCY,
            "workers": True,  # the killed process is the deliverer (not a child of it)
        }
        spec = {**common, "scenario": "kill", "n_max": n * 50, "progress_path": str(progress_path)}
        proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "workload.py"), json.dumps(spec)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with progress_path.open("r+b") as f, mmap.mmap(f.fileno(), 8) as progress:
            deadline = time.monotonic() + 120
            while int.from_bytes(progress[:8], "little") < n:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError("the kill workload ended early")
                time.sleep(0.0005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            returned = int.from_bytes(progress[:8], "little")
        time.sleep(0.3)
        before = {i for i in sink.client.ids() if i.startswith(f"{tag}-")}
        sink.client.reset()  # from here on, what the sink receives is the restart's
        run_worker({**common, "scenario": "drain", "timeout": 60}, timeout=120)
        after = {i for i in sink.client.ids() if i.startswith(f"{tag}-")}
        seen = before | after  # once: built per id, the count took minutes at 100,000
        lost = sum(1 for i in range(returned) if f"{tag}-{i}" not in seen)
        row = {
            "run": run,
            "returned": returned,
            "delivered_before_kill": len(before),
            "lost": lost,
            "re_sent": len(before & after),
            "bound": CONCURRENCY * BATCH,
        }
        out.append(row)
        print(
            f"  run {run:>3} kill at {returned:>6}: delivered before {len(before):>6}, lost "
            f"{lost}, re-sent {row['re_sent']:>5} (in-flight bound {row['bound']})",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--n", type=int, default=100_000, help="events per run")
    parser.add_argument("--modes", default="threads,process", help="threads, process or both")
    parser.add_argument("--latency", type=float, default=0.0, help="the sink's, in seconds")
    parser.add_argument("--kill", action="store_true", help="SIGKILL mid-delivery, restart")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if bad := set(modes) - set(MODES):
        parser.error(f"unknown mode(s) {', '.join(sorted(bad))}; choose from {', '.join(MODES)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="postback-soak-") as tmp:
        os.environ[SCRATCH_ENV] = tmp  # every workload's queue files go here, removed after
        sink = Sink()
        try:
            if args.kill:
                rows = kill_soak(
                    sink, runs=args.runs, n=args.n, latency=args.latency, tmp=Path(tmp)
                )
                worst = max(r["re_sent"] for r in rows)
                lost = sum(r["lost"] for r in rows)
                print(f"{len(rows)} kills: {lost} lost, at most {worst} re-sent in one run")
                return 1 if lost else 0
            rows = soak(sink, runs=args.runs, n=args.n, modes=modes, latency=args.latency)
        finally:
            sink.stop()
    lost = sum(r["lost"] for r in rows)
    dups = sum(r["duplicates"] for r in rows)
    total = sum(r["events"] for r in rows)
    print(
        f"{len(rows)} runs, {total:,} events in {time.monotonic() - started:.0f} s: "
        f"{lost} lost, {dups} delivered twice"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak: the same large run again and again, counting every event at the sink.

A loss that happens once in a few hundred thousand events (a reader that took a record split
across two reads for the end of a file, say) passes every unit test and most single benchmark
runs. This repeats the end-to-end run (``workload.py``'s ``throughput`` scenario: track N
events in a tight loop while delivering, wait for the sink) in each delivery mode and checks,
per run, that the sink received every event id once at least, and how many it received twice.

    python bench/soak.py                                 # 10 runs x 100,000 events, both modes
    python bench/soak.py --runs 30 --modes process --latency 0.02

Exits with status 1 if any run lost an event. Not part of the test suite (minutes, and its
timing depends on the machine); run it after changing the queue, the spool or the engine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SCRATCH_ENV, Sink, run_worker, throughput_spec

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--n", type=int, default=100_000, help="events per run")
    parser.add_argument("--modes", default="threads,process", help="threads, process or both")
    parser.add_argument("--latency", type=float, default=0.0, help="the sink's, in seconds")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if bad := set(modes) - set(MODES):
        parser.error(f"unknown mode(s) {', '.join(sorted(bad))}; choose from {', '.join(MODES)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="postback-soak-") as tmp:
        os.environ[SCRATCH_ENV] = tmp  # every workload's queue files go here, removed after
        sink = Sink()
        try:
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

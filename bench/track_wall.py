"""Wall clock per ``track()`` of two versions of postback, interleaved (docs/performance.md).

    python bench/track_wall.py BASE_SRC_PATHS [--processes 3] [--loops 7] [--calls 4000]

``BASE_SRC_PATHS``: the ``PYTHONPATH`` that puts the other version first (its ``src`` and its
plugins' ``src`` directories, joined by ``:``); the second version is this interpreter's own.
Each process tracks the benchmark's realistic web purchase with the five quick-start vendors
(``bench/workload.py``, ``workers = false``, the keyword arguments built inside the loop) in
``--loops`` loops of ``--calls`` calls, after a warm-up; the processes alternate base, new,
base, new. Prints each process's best and median loop, in µs per call: wall clock, and the
calling thread's CPU time (``time.thread_time()``, steadier on a loaded host).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import gc, logging, sys, tempfile, time
sys.path.insert(0, {here!r})
from workload import PostbackClient, realistic_purchase
from postback import Tracker
logging.disable(logging.WARNING)
loops, calls = {loops}, {calls}
vendors = PostbackClient._five_vendors({{"base_url": "http://127.0.0.1:9", "rate_limit": False}})
tmp = tempfile.mkdtemp()
tracker = Tracker.from_config(
    {{"postback": {{"queue": f"sqlite:///{{tmp}}/q.db", "workers": False}}, "vendors": vendors}}
)
track = tracker.track
for i in range(2000):
    track("purchase", **realistic_purchase(i, "w"))
out = []
n = 2000
for _ in range(loops):
    t0, c0 = time.perf_counter(), time.thread_time()
    for i in range(n, n + calls):
        track("purchase", **realistic_purchase(i, "w"))
    out.append(((time.perf_counter() - t0) / calls * 1e6, (time.thread_time() - c0) / calls * 1e6))
    n += calls
print(" ".join(f"{{w:.3f}},{{c:.3f}}" for w, c in out))
tracker.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_path")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--loops", type=int, default=7)
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()
    code = CHILD.format(here=str(HERE), loops=args.loops, calls=args.calls)
    results: dict[str, list[list[float]]] = {}
    for _ in range(args.processes):
        for which in ("base", "new"):
            env = dict(os.environ)
            env.pop("PYTHONPATH", None)
            if which == "base":
                env["PYTHONPATH"] = args.base_path
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
            ).stdout
            pairs = [tuple(map(float, x.split(","))) for x in out.split()]
            for kind, loops in (("wall", [p[0] for p in pairs]), ("cpu", [p[1] for p in pairs])):
                results.setdefault(f"{which} {kind}", []).append(loops)
                med = statistics.median(loops)
                print(f"{which} {kind}: best {min(loops):.2f}, median {med:.2f}")
    for which, runs in sorted(results.items()):
        best = ", ".join(f"{min(r):.2f}" for r in runs)
        med = ", ".join(f"{statistics.median(r):.2f}" for r in runs)
        print(f"{which}: best loops {best}; median loops {med} (µs per track())")


if __name__ == "__main__":
    main()

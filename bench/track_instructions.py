"""Instructions per ``track()``, counted by valgrind: a figure that a busy or uneven host does
not move (docs/performance.md, issue 15).

    python bench/track_instructions.py [--small 2000] [--large 6000]

Timings on a shared or virtual 2-core machine swing by tens of percent between runs of the same
code; instruction counts do not. This runs the headline workload (the five quick-start vendor
plugins, a realistic web purchase, ``bench/workload.py``) under ``valgrind --tool=callgrind``
twice, tracking ``--small`` then ``--large`` events after 200 to warm up, and prints the
difference per event: on the thread that calls ``track()``, and on the tracking process's other
threads (the delivery ledger's writer, the skip counts' writer), whose work shares the
interpreter lock with ``track()``. Delivery is off (``workers = false``) and the spool is
mapped as in a process that delivers; the segment's page faults (kernel time) are not
instructions and are not counted. The tracker is closed before each count, so the whole
process's figure includes every skip row written to the ledger, whichever thread wrote it.

Read the whole-process figure with care: under valgrind the program runs about 50 times
slower, so the ledger's rows of events skipped in the same millisecond (which share one row)
hold one event each, where at full speed they hold tens: the writer's cost per event is
overstated there (``bench/run.py``'s timings, or a direct timing of ``SQLiteLedger.write``,
are the check). The calling thread's figure includes what the writers had left for
``close()`` to write, so it moves with their timing too (123,000-144,000 in runs of the same
code); the lower bound of what ``track()`` itself costs is the steadier reading.
Needs valgrind (``apt install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The child: builds the tracker and the arguments, then tracks ``n`` events.
CHILD = """
import logging, os, sys, tempfile
sys.path.insert(0, {here!r})
from workload import PostbackClient, realistic_purchase
from postback import Tracker
from postback.delivery import spool

init = spool.SpoolWriter.__init__
def mapped(self, *args, **kwargs):  # as in a process that delivers (threads or a child)
    kwargs["mapped"] = True
    init(self, *args, **kwargs)
spool.SpoolWriter.__init__ = mapped
logging.disable(logging.WARNING)
n, most = int(sys.argv[1]), int(sys.argv[2])
# The benchmark's five vendors with their sandbox settings (nothing listens on port 9).
vendors = PostbackClient._five_vendors({{"base_url": "http://127.0.0.1:9", "rate_limit": False}})
tmp = tempfile.mkdtemp()
tracker = Tracker.from_config(
    {{"postback": {{"queue": f"sqlite:///{{tmp}}/q.db", "workers": False}}, "vendors": vendors}}
)
calls = [realistic_purchase(i, "in") for i in range(most + 200)]  # the same for every n
track = tracker.track
for i in range(200 + n):
    track("purchase", **calls[i])
tracker.close()  # writes what the ledger and skip writers still hold: all of n's work counted
os._exit(0)
"""


def _totals(out: Path) -> list[int]:
    """Instructions of each thread's file that callgrind wrote for ``out`` (the first is the
    main thread's)."""
    counts = []
    for part in sorted(out.parent.glob(out.name + "-*")):
        text = subprocess.run(
            ["callgrind_annotate", str(part)], capture_output=True, text=True, check=True
        ).stdout
        m = re.search(r"([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", text)
        counts.append(int(m.group(1).replace(",", "")) if m else 0)
    return counts


def _run(n: int, most: int, tmp: Path) -> list[int]:
    script = tmp / "child.py"
    script.write_text(CHILD.format(here=str(HERE)))
    out = tmp / f"callgrind.{n}"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(script),
            str(n),
            str(most),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return _totals(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=6000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        sys.exit("needs valgrind (apt install valgrind)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        small = _run(args.small, args.large, tmp)
        large = _run(args.large, args.large, tmp)
    n = args.large - args.small
    main_thread = (large[0] - small[0]) / n
    whole = (sum(large) - sum(small)) / n
    print(f"threads' instructions, {args.small} / {args.large} events: {small} / {large}")
    print(f"instructions per track(), {n} events: the calling thread {main_thread:,.0f}")
    print(f"  the whole tracking process, its writer threads included: {whole:,.0f}")


if __name__ == "__main__":
    main()

"""Instructions per ``track()`` on the calling thread, in the quiet setup of docs/performance.md
("track() instructions, another pass"): steadier than ``bench/track_instructions.py``, for
cuts of a few hundred instructions.

    python bench/track_quiet.py [--n 1000] [--piece track,make_event,admit,report,...]

Runs itself under ``valgrind --tool=callgrind`` with collection off, and turns it on (callgrind's
client requests, through a tiny C helper compiled here with the system's ``callgrind.h``) only
around ``--n`` calls of the piece, twice in one process after a warm-up; prints the calling
thread's instructions per call for each of the two. The setup: the benchmark's five vendors
and realistic web purchase (``bench/workload.py``), ``workers = false``, the spool mapped, the
ledger's and the skip counts' writers waiting an hour (so ``track()`` never wakes them), the
garbage collector off. ``--piece`` measures one step alone on prebuilt events.
Needs valgrind and a C compiler.
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

HELPER = r"""
#include <valgrind/callgrind.h>
void cg_on(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_off(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS; }
"""


def child(lib: str, n: int, pieces: str) -> None:
    import ctypes
    import gc
    import logging

    sys.path.insert(0, str(HERE))
    from workload import PostbackClient, realistic_purchase

    from postback import Tracker, ledger, skips
    from postback.delivery import spool
    from postback.events import make_event
    from postback.storable import stored_form

    cg = ctypes.CDLL(lib)
    init = spool.SpoolWriter.__init__

    def mapped(self, *args, **kwargs):  # as in a process that delivers
        kwargs["mapped"] = True
        init(self, *args, **kwargs)

    spool.SpoolWriter.__init__ = mapped
    skips.WRITE_EVERY = 3600.0
    ledger.FLUSH_EVERY = ledger.FLUSH_BUSY = 3600.0
    logging.disable(logging.WARNING)
    vendors = PostbackClient._five_vendors({"base_url": "http://127.0.0.1:9", "rate_limit": False})
    tmp = tempfile.mkdtemp()
    tracker = Tracker.from_config(
        {"postback": {"queue": f"sqlite:///{tmp}/q.db", "workers": False}, "vendors": vendors}
    )
    total = 300 + 2 * n
    calls = [realistic_purchase(i, "in") for i in range(total)]
    track = tracker.track
    for i in range(300):
        track("purchase", **calls[i])
    gc.collect()
    gc.disable()
    fields = tracker.host.fields

    def events(lo: int, hi: int) -> list:
        return [make_event("purchase", fields=fields, **calls[i]) for i in range(lo, hi)]

    for piece, r in [(piece, r) for piece in pieces.split(",") for r in range(2)]:
        lo, hi = 300 + r * n, 300 + (r + 1) * n
        if piece == "track":
            batch = calls[lo:hi]
            cg.cg_on()
            for kw in batch:
                track("purchase", **kw)
            cg.cg_off()
        elif piece == "make_event":
            batch = calls[lo:hi]
            cg.cg_on()
            for kw in batch:
                make_event("purchase", fields=fields, **kw)
            cg.cg_off()
        else:
            evs = events(lo, hi)
            if piece == "stored_form":
                cg.cg_on()
                for e in evs:
                    stored_form(e)
                cg.cg_off()
            elif piece == "admit":
                admit = tracker.router.admit
                cg.cg_on()
                for e in evs:
                    admit(e)
                cg.cg_off()
            elif piece == "report":  # the skip bookkeeping of a web purchase (two skips)
                router = tracker.router
                first = [q[1] for q in router._quick_by_name["purchase"] or () if q]
                cg.cg_on()
                for e in evs:
                    router._report(e, first)
                cg.cg_off()
            elif piece == "applovin":
                dest = tracker.destinations["applovin"]
                cg.cg_on()
                for e in evs:
                    dest.validate(e)
                cg.cg_off()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--piece", default="track")
    parser.add_argument("--keep", default=None, help="copy callgrind's files to this directory")
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.piece)
        return
    if shutil.which("valgrind") is None or shutil.which("cc") is None:
        sys.exit("needs valgrind and a C compiler")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "cg.c").write_text(HELPER)
        lib = tmp / "cg.so"
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", lib, tmp / "cg.c"], check=True)
        out = tmp / "cg.out"
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                "--separate-threads=yes",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                str(lib),
                "--n",
                str(args.n),
                "--piece",
                args.piece,
            ],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if run.returncode:
            sys.exit(run.stderr[-3000:])
        if args.keep:
            shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
        figures = []
        parts = sorted(tmp.glob("cg.out.*-01"), key=lambda p: int(p.name.split(".")[2][:-3]))
        for part in parts:  # the main thread's dumps, in order
            text = subprocess.run(
                ["callgrind_annotate", str(part)], capture_output=True, text=True, check=True
            ).stdout
            m = re.search(r"([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", text)
            if m and int(m.group(1).replace(",", "")) > args.n * 100:
                figures.append(int(m.group(1).replace(",", "")) / args.n)
        for i, piece in enumerate(args.piece.split(",")):
            print(f"{piece:12} " + " ".join(f"{f:,.0f}" for f in figures[2 * i : 2 * i + 2]))


if __name__ == "__main__":
    main()

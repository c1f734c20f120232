"""The delivery process's side of ``workers = "process"``: ``python -m postback.delivery.child FD``.

It reads the tracker's spec from the socket (a :class:`~postback.delivery.spec.TrackerSpec`),
builds the same tracker from it (``Tracker.from_raw``: configuration, plugins), reports ready,
and runs the worker loop that ``postback worker`` runs (:mod:`postback.delivery.worker`), which
also answers the tracking process's ``flush``, ``stats``, ``nudge`` and ``stop`` requests and
ends when that process goes away. The tracking process's side (start, supervise, replace,
stop) is :mod:`postback.delivery.process`, which never imports the tracker: only this module
does.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
from multiprocessing.connection import Connection

from postback.delivery.spec import TrackerSpec, load_message
from postback.delivery.worker import run_worker_loop, stop_on_signals, tune_gc_for_delivery
from postback.tracker import Tracker

__all__ = ["main"]


def main() -> None:
    """Entry point of the delivery process: ``python -m postback.delivery.child FD``."""
    conn = Connection(int(sys.argv[1]))
    try:
        spec: TrackerSpec = load_message(conn.recv_bytes())
    except (EOFError, OSError):
        return  # the tracking process went away before it sent the spec: nothing to deliver
    sys.path[:0] = [p for p in spec.sys_path if p not in sys.path]
    logging.basicConfig(
        level=spec.log_level,
        format="%(asctime)s postback delivery[%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    # Ctrl-C reaches the whole process group: the tracking process decides when we stop.
    with stop_on_signals(stop, (signal.SIGTERM,), ignore=(signal.SIGINT,)):
        try:
            tracker = Tracker.from_raw(spec.raw, **spec.build_args())
        except Exception as exc:
            conn.send_bytes(pickle.dumps(("error", f"{type(exc).__name__}: {exc}")))
            return
        try:
            conn.send_bytes(pickle.dumps(("ready", os.getpid())))
        except OSError:  # (BrokenPipeError) it went away while this process started
            tracker.close(timeout=0)
            return
        if tracker.config.core.process_nice:
            # Below the app: when both want a core, its requests come first; delivery catches up.
            os.nice(tracker.config.core.process_nice)
        tune_gc_for_delivery()
        run_worker_loop(tracker, stop, requests=conn)


if __name__ == "__main__":
    main()

"""The delivery process's side of ``workers = "process"``: ``python -m postback.delivery.child FD``.

It reads the tracker's spec from the socket (a :class:`~postback.delivery.spec.TrackerSpec`),
builds the same tracker from it (``Tracker.from_raw``: configuration, plugins), reports ready,
delivers until the tracking process asks it to stop or goes away, and answers ``flush``,
``stats`` and ``nudge`` requests. The tracking process's side (start, supervise, replace, stop)
is :mod:`postback.delivery.process`, which never imports the tracker: only this module does.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
from multiprocessing.connection import Connection

from postback.delivery.engine import tune_gc_for_delivery
from postback.delivery.spec import TrackerSpec, load_message
from postback.tracker import Tracker

__all__ = ["main"]


def main() -> None:
    """Entry point of the delivery process: ``python -m postback.delivery.child FD``."""
    conn = Connection(int(sys.argv[1]))
    spec: TrackerSpec = load_message(conn.recv_bytes())
    sys.path[:0] = [p for p in spec.sys_path if p not in sys.path]
    logging.basicConfig(
        level=spec.log_level,
        format="%(asctime)s postback delivery[%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    # Ctrl-C reaches the whole process group: the tracking process decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    try:
        tracker = _build(spec)
    except Exception as exc:
        conn.send_bytes(pickle.dumps(("error", f"{type(exc).__name__}: {exc}")))
        return
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))
    if tracker.config.core.process_nice:
        # Below the app: when both want a core, its requests come first; delivery catches up.
        os.nice(tracker.config.core.process_nice)
    tune_gc_for_delivery()
    tracker.deliverer.start()
    try:
        while not stop.is_set():
            if not conn.poll(0.5):
                continue
            try:
                message = load_message(conn.recv_bytes())
            except (EOFError, OSError):
                # The tracking process is gone: deliver what we can in the time an exit
                # flush gets, leave the rest queued for the next start.
                tracker.close(timeout=tracker.config.core.exit_timeout)
                return
            op = message[0]
            if op == "nudge":
                tracker.engine.nudge()
            elif op == "flush":
                conn.send_bytes(pickle.dumps(("report", tracker.flush(message[1]))))
            elif op == "stats":
                conn.send_bytes(pickle.dumps(("stats", tracker.stats())))
            elif op == "stop":
                report = tracker.close(timeout=message[1])
                conn.send_bytes(pickle.dumps(("stopped", report)))
                return
    finally:
        tracker.close(timeout=0)


def _build(spec: TrackerSpec) -> Tracker:
    """The tracker the tracking process described (its config, plugins, host options)."""
    return Tracker.from_raw(spec.raw, **spec.build_args())


if __name__ == "__main__":
    main()

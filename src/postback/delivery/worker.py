"""The worker loop: a process that only delivers, until it is told to stop.

One loop for both kinds of delivery process: ``postback worker`` (and ``flask postback
worker``, ``manage.py postback_worker``, through :func:`postback.integrations.run_worker`),
which runs until SIGTERM or SIGINT, and the ``workers = "process"`` child
(:mod:`postback.delivery.child`), which also answers its tracking process's requests on a
connection and ends when that process asks or goes away. Both start the tracker's deliverer,
wait, and on a stop let requests in flight finish (:data:`FINISH_IN_FLIGHT` seconds at most;
to a vendor that would count a repeat twice, up to its request timeout more, see
:meth:`postback.delivery.lanes.Lane.stop`) before closing the tracker without a flush: what is
left stays queued for the next deliverer.

The requests, and their replies (pickled tuples, :func:`postback.delivery.spec.load_message`):
``("nudge",)`` (events are coming: look at the queue now; no reply), ``("flush", timeout)`` ->
``("report", FlushReport)`` (sent sooner when ``("abort",)`` arrives meanwhile: the flush
watches the connection; an abort that comes after the report is ignored, no reply),
``("stats",)`` -> ``("stats", dict)``, ``("stop", timeout)`` ->
``("stopped", FlushReport | None)`` after a flush of at most ``timeout``. End of file (the
tracking process died) closes the tracker with its ``exit_timeout``, as the exit hook would.

Also here: :func:`stop_on_signals`, the signal handling of both, and
:func:`tune_gc_for_delivery`, the garbage-collector settings of both.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from postback.delivery.spec import load_message

if TYPE_CHECKING:
    from postback.tracker import Tracker

__all__ = ["FINISH_IN_FLIGHT", "run_worker_loop", "stop_on_signals", "tune_gc_for_delivery"]

log = logging.getLogger("postback.delivery")

#: Seconds a stopping worker gives the requests in flight.
FINISH_IN_FLIGHT = 10.0


def tune_gc_for_delivery() -> None:
    """Garbage-collector settings for a process that only delivers (``postback worker``, the
    ``workers = "process"`` child); never called in an application's own process.

    Delivery allocates many short-lived containers (decoded events, vendor payloads, outcomes)
    and frees nearly all of them by reference counting, yet with the default thresholds the
    cyclic collector runs every 700 allocations and now and then walks every object the
    imports left behind. Freezing what start-up built and collecting young objects less often
    took a tenth off the CPU per delivered event in the benchmarks (docs/performance.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


@contextlib.contextmanager
def stop_on_signals(
    stop: threading.Event,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    *,
    ignore: tuple[signal.Signals, ...] = (),
) -> Iterator[None]:
    """Within the block, ``signals`` set ``stop`` (logged) and ``ignore`` are ignored; the
    previous handlers come back after it. Only the main thread can set handlers: elsewhere
    this changes nothing (the caller's ``stop`` is then its only way out)."""
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: object) -> None:
            log.warning("received %s: finishing in-flight requests", signal.Signals(signum).name)
            stop.set()

        for sig in signals:
            previous[sig] = signal.signal(sig, on_signal)
        for sig in ignore:
            previous[sig] = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_worker_loop(
    tracker: Tracker,
    stop: threading.Event,
    *,
    requests: Connection | None = None,
    every: float = 0.0,
    tick: Callable[[], None] | None = None,
) -> None:
    """Deliver from ``tracker`` until ``stop`` is set (or, with ``requests``, its other end
    asks or goes away), calling ``tick()`` every ``every`` seconds; then close the tracker."""
    tracker.deliverer.start()
    next_tick = time.monotonic() + every
    try:
        while not stop.is_set():
            if requests is None:
                if stop.wait(0.5):
                    break
            elif requests.poll(0.5) and not _answer(tracker, requests):
                return
            if tick is not None and every and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + every
                tick()
    finally:
        if not tracker.closed:
            tracker.deliverer.stop(wait=FINISH_IN_FLIGHT)
            tracker.close(timeout=0)


def _answer(tracker: Tracker, conn: Connection) -> bool:
    """Answer one request from the tracking process; False when the loop should end (the
    tracker is closed then)."""
    try:
        message = load_message(conn.recv_bytes())
        op = message[0]
        if op == "nudge":
            tracker.engine.nudge()
        elif op == "flush":
            # Only an ("abort",) can arrive while the tracking process waits for this reply
            # (or end of file, if it died meanwhile: the send below fails then).
            report = tracker.deliverer.flush(message[1], abort=conn.poll)
            conn.send_bytes(pickle.dumps(("report", report)))
        elif op == "stats":
            conn.send_bytes(pickle.dumps(("stats", tracker.stats())))
        elif op == "stop":
            closing = tracker.close(timeout=message[1])
            with contextlib.suppress(OSError):  # it may not wait for the answer
                conn.send_bytes(pickle.dumps(("stopped", closing)))
            return False
        # ("abort",) for a flush that had already answered: nothing to do.
        return True
    except (EOFError, OSError):
        # The tracking process is gone: deliver what we can in the time an exit flush gets,
        # leave the rest queued for the next start.
        tracker.close(timeout=tracker.config.core.exit_timeout)
        return False

"""The trackers alive in this process, and the process hooks that act on them.

A :class:`~postback.tracker.Tracker` is kept here (a strong reference) from its creation until
:meth:`~postback.tracker.Tracker.close`. The first one installs three hooks, once per process:

- the threading exit hook (it runs when the main thread finishes, before
  ``concurrent.futures`` shuts down its threads): each open tracker flushes for at most
  ``[postback] exit_timeout``; a process that does not deliver waits only for its own events
  to be taken (``Deliverer.flush_own``);
- ``atexit``: each tracker is closed (without a second flush when the first one ran);
- ``os.register_at_fork`` (child side): each tracker re-initialises its queue, deliverer,
  skip and ledger writers (``Tracker._after_fork``), so a gunicorn ``--preload`` worker starts
  its own delivery lazily.

Events tracked after the exit flush stay queued for the next start. The hooks reach delivery
only through the tracker's deliverer.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postback.tracker import Tracker

__all__ = ["keep", "release"]

log = logging.getLogger("postback")

# Strong references: a tracker must stay reachable until it is closed, even if the app dropped
# it, or its exit flush and its threads' owner would vanish with the garbage collector.
_live: set[Tracker] = set()
_live_lock = threading.Lock()
_hooks_installed = False


def keep(tracker: Tracker) -> None:
    """Hold ``tracker`` until :func:`release`, and install the process hooks (once)."""
    with _live_lock:
        _live.add(tracker)
    _install_process_hooks()


def release(tracker: Tracker) -> None:
    """Forget a closed tracker."""
    with _live_lock:
        _live.discard(tracker)


def _install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    # Flush when the main thread finishes, before concurrent.futures shuts down the lanes'
    # request threads (its own hook is registered earlier, and these run newest first);
    # release everything at interpreter exit. Events tracked in between stay queued.
    register_threading_atexit = getattr(threading, "_register_atexit", None)
    if register_threading_atexit is not None:
        register_threading_atexit(_flush_all_at_exit)
    atexit.register(_close_all_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


_flushed_at_exit = False


def _flush_all_at_exit() -> None:
    global _flushed_at_exit
    _flushed_at_exit = True
    with _live_lock:
        trackers = list(_live)
    for t in trackers:
        try:
            # A process that does not deliver (a forked worker, say) waits only for its own
            # events to be taken, not for the whole queue's backlog.
            if (
                t.engine.lanes
                and not t.closed
                and t.deliverer.flushes_on_close
                and not t.deliverer.flush_own(t.config.core.exit_timeout)
            ):
                t.deliverer.flush(t.config.core.exit_timeout)
        except Exception:
            log.exception("error while flushing a tracker at exit")


def _close_all_at_exit() -> None:
    with _live_lock:
        trackers = list(_live)
    for t in trackers:
        try:
            timeout = t.config.core.exit_timeout
            if not _flushed_at_exit and not t.closed and t.deliverer.flush_own(timeout):
                timeout = 0
            t.close(timeout=0 if _flushed_at_exit else timeout)
        except Exception:
            log.exception("error while closing a tracker at exit")


def _after_fork_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()
    for t in list(_live):
        try:
            t._after_fork()
        except Exception:
            log.exception("error re-initialising a tracker after fork")

"""``workers = "process"``: delivery in a child process that the tracker starts and stops.

Python runs one thread at a time per process. With delivery on threads of the app's own process
(``workers = true``), every batch the lanes encode and every response they read is time the
app's request threads wait for the interpreter lock; on a busy process that shows as slow
``track()`` calls now and then, and the rate at which the app can track and deliver at once is
what one core does for both. With ``workers = "process"`` the tracking process only validates
and appends to the queue's spool; a child process (``python -m postback.delivery.child``,
the same engine and worker loop as ``postback worker``) delivers on another core. The tracker
reaches it through :class:`~postback.delivery.deliverer.ProcessDeliverer`.

The child is started on the first ``track()``, gets the tracker's spec over a socket pair (a
:class:`~postback.delivery.spec.TrackerSpec`: the configuration mapping it was built from,
``${ENV}`` references resolved by the child from the inherited environment, and in-process
plugins by reference), and exits when the tracker closes it, or by itself when the tracking
process dies (end of file on the socket), after a last bounded flush. ``flush()`` and
``stats()`` are forwarded to it. Hooks that run per delivery (``postback_on_attribution``,
``postback_on_delivery``, transform and deliver wrappers) run in the child, as in a separate
``postback worker``. If the child dies, the tracker starts another after a pause; nothing is
lost, since the events wait in the queue.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from postback.delivery import timing
from postback.delivery.spec import TrackerSpec, load_message
from postback.delivery.stats import FlushReport

__all__ = ["DeliveryProcess"]

log = logging.getLogger("postback.delivery")

_NUDGE = pickle.dumps(("nudge",))
_ABORT = pickle.dumps(("abort",))


class DeliveryProcess:
    """The tracking process's handle on its delivery child.

    ``start()`` returns at once (``track()`` calls it): a supervisor thread spawns the child,
    waits for it to be ready, and waits (blocked, no CPU) for it to exit, replacing it after a
    pause if it died while the tracker was open. Requests (``flush``, ``stats``, ``stop``) wait
    for the child to be ready, one at a time.
    """

    def __init__(self, spec: TrackerSpec, queue_poll: Callable[[], object]) -> None:
        self._spec = pickle.dumps(spec)
        self._queue_poll = queue_poll  # e.g. the spool's next segment, made ready here
        self._lock = threading.Lock()  # one request and its reply at a time
        #: Replies the child still owes to requests that stopped waiting (their timeout passed
        #: or they were aborted): it answers in order, so the next request reads these first.
        self._owed = 0
        #: The counts of late flush reports, for the next report (see :meth:`_reply`).
        self._late: FlushReport | None = None
        self._ready = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._stopping = False
        self._supervisor: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def _stopped(self) -> bool:
        return self._stopping  # a method: set by another thread while the supervisor loops

    def start(self) -> None:
        """Start the supervisor (and so the child) unless it runs already; never blocks."""
        running = self._supervisor
        if running is not None or self._stopped():
            return  # the common case, without the lock a request may hold for seconds
        with self._lock:
            if self._stopping or self._supervisor is not None:
                return
            self._supervisor = threading.Thread(
                target=self._supervise, name="postback-delivery-process", daemon=True
            )
            self._supervisor.start()

    def wait_ready(self, timeout: float | None) -> bool:
        """Wait until the child is ready to deliver (False if it was not within timeout)."""
        return self._ready.wait(timeout)

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Connection]:
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "postback.delivery.child", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        conn.send_bytes(self._spec)
        return proc, conn

    def _supervise(self) -> None:
        pause = timing.RESTART_PAUSE
        while not self._stopping:
            try:
                proc, conn = self._spawn()
            except Exception:
                log.exception("could not start the delivery process; trying again in %.0f s", pause)
                time.sleep(pause)
                continue
            reply = _receive(proc, conn, timing.START_TIMEOUT, cancelled=self._stopped)
            if self._stopped():  # closed while the child was starting: it delivered nothing yet
                _end(proc, conn)
                return
            if reply is None or reply[0] != "ready":
                why = reply[1] if reply is not None else "it exited or did not answer"
                log.error(
                    "the delivery process could not start (%s); trying again in %.0f s (events "
                    "wait in the queue)",
                    why,
                    pause,
                )
                _end(proc, conn)
                time.sleep(pause)
                pause = min(pause * 2, 60.0)
                continue
            pause = timing.RESTART_PAUSE
            with self._lock:
                if self._stopped():  # stop() came between the reply and now
                    _end(proc, conn)
                    return
                self._proc, self._conn = proc, conn
                self._owed = 0  # a new connection: nothing is owed on it
            self._ready.set()
            log.debug("delivery process %d started", proc.pid)
            code = self._wait(proc)
            self._ready.clear()
            with self._lock:
                self._proc = self._conn = None
            conn.close()
            if not self._stopping:  # it died on its own
                log.error(
                    "the delivery process %d exited (%s); starting another in %.0f s (events "
                    "wait in the queue)",
                    proc.pid,
                    f"exit code {code}" if code >= 0 else f"signal {-code}",
                    timing.RESTART_PAUSE,
                )
                time.sleep(timing.RESTART_PAUSE)

    def _wait(self, proc: subprocess.Popen[bytes]) -> int:
        """Wait for the child to exit, doing the queue's housekeeping for this process
        meanwhile (the SQLite spool prepares its next segment here, not in ``track()``).

        It waits on a pidfd where Linux has them: one wake-up per ``timing.POLL_EVERY``, where
        ``Popen.wait(timeout)`` polls with sleeps from 0.5 ms up, seven wake-ups each time.
        Every wake-up takes the interpreter lock from the app's threads, and on a busy machine
        a thread descheduled while holding it is what makes a ``track()`` call slow.
        """
        pidfd = _pidfd(proc.pid)
        try:
            while True:
                if pidfd is None:
                    try:
                        return proc.wait(timeout=timing.POLL_EVERY)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    select.select([pidfd], [], [], timing.POLL_EVERY)
                    code = proc.poll()
                    if code is not None:
                        return code
                try:
                    self._queue_poll()
                except Exception:
                    log.debug("queue housekeeping failed (track() will do it)", exc_info=True)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def nudge(self) -> None:
        """Tell the child that events are coming, so that it looks at the spool now rather
        than at its next poll (up to 50 ms when it was idle). No reply; skipped while a
        request holds the connection."""
        conn = self._conn
        if conn is None or not self._lock.acquire(blocking=False):
            return
        try:
            conn.send_bytes(_NUDGE)
        except OSError:
            pass
        finally:
            self._lock.release()

    def request(
        self,
        message: tuple[Any, ...],
        timeout: float | None,
        abort: Callable[[], bool] | None = None,
    ) -> Any:
        """Send a request to the child (starting it if needed) and wait for its reply; None if
        the child is not running, or did not answer in ``timeout`` plus ``timing.REPLY_GRACE``
        (1 s): the call returns by then whatever the child is doing (stopped, swapping).

        Once ``abort()`` is true (asked every 100 ms at most), the child is sent ``("abort",)``
        and its reply comes soon: the child's flush watches its connection, and nothing else
        is sent on it while a request waits (nudges are skipped then). A reply that does not
        come in time is owed: the next request reads and drops it before its own. Waiting for
        the child to start, or for another request to finish, ends on ``abort()`` too, or
        once ``timeout`` has passed."""
        self.start()
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout + timing.REPLY_GRACE
        started_by = now + (timing.START_TIMEOUT if timeout is None else timeout)
        if not _wait(self._ready.wait, started_by, abort):
            return None
        # One request at a time: another may hold the connection for its whole timeout.
        take = self._lock.acquire
        before = None if timeout is None else now + timeout
        if not _wait(lambda wait: take(timeout=-1 if wait is None else wait), before, abort):
            return None
        try:
            proc, conn = self._proc, self._conn
            if proc is None or conn is None or (abort is not None and abort()):
                return None
            try:
                conn.send_bytes(pickle.dumps(message))
                reply = self._reply(proc, conn, deadline, abort)
                if reply is None and abort is not None and abort() and proc.poll() is None:
                    conn.send_bytes(_ABORT)
                    # The same grace, from the abort, and never past the request's deadline.
                    by = time.monotonic() + timing.REPLY_GRACE
                    reply = self._reply(proc, conn, by if deadline is None else min(by, deadline))
            except OSError:
                return None
            if reply is None and proc.poll() is None:
                self._owed += 1  # it comes later, in this request's place
            return reply
        finally:
            self._lock.release()

    def _reply(
        self,
        proc: subprocess.Popen[bytes],
        conn: Connection,
        deadline: float | None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Any:
        """The reply to the request just sent, after the replies still owed to earlier ones
        (dropped); None if it did not come by ``deadline`` or ``cancelled()`` became true.
        Called with the lock held."""
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            reply = _receive(proc, conn, left, cancelled or _never)
            if reply is None:
                return None
            if not self._owed:
                late = self._late
                if late is not None and isinstance(reply[1], FlushReport):
                    self._late = None  # (kept through a stats reply, for the next report)
                    return (reply[0], late.then(reply[1]))
                return reply
            self._owed -= 1
            if reply[0] == "report" and isinstance(reply[1], FlushReport):
                # The child counted these outcomes into that report, and not again: they
                # go into the next report instead of being lost.
                self._late = reply[1] if self._late is None else self._late.then(reply[1])
            log.debug("a late reply from the delivery process: %s", reply[0])

    def flush(
        self, timeout: float | None, abort: Callable[[], bool] | None = None
    ) -> FlushReport | None:
        reply = self.request(("flush", timeout), timeout, abort)
        return reply[1] if reply is not None and reply[0] == "report" else None

    def stats(self) -> dict[str, dict[str, Any]] | None:
        reply = self.request(("stats",), 10.0)
        return reply[1] if reply is not None and reply[0] == "stats" else None

    def stop(self, timeout: float, settle: float = 0.0) -> FlushReport | None:
        """Ask the child to stop (finishing requests in flight), then make sure it did; the
        report its ``close()`` returned, if any. ``settle``: how much longer than ``timeout``
        the child may take to let requests in flight end (a vendor that would count a repeat
        twice)."""
        # The child closes its tracker: a flush of ``timeout``, then its lanes stop (1 s, and
        # ``settle``). One deadline for its reply and its exit, then it is killed.
        by = time.monotonic() + timeout + settle + timing.STOP_REPLY_GRACE
        closing = None
        with self._lock:
            self._stopping = True
            proc, conn = self._proc, self._conn
            if proc is not None and conn is not None:
                try:
                    conn.send_bytes(pickle.dumps(("stop", timeout)))
                    reply = self._reply(proc, conn, by)
                except OSError:
                    reply = None
                if reply is not None and reply[0] == "stopped":
                    closing = reply[1]
        supervisor = self._supervisor
        if supervisor is not None:
            supervisor.join(max(by - time.monotonic(), 0.1))
        proc = self._proc
        if proc is not None and proc.poll() is None:  # still starting, or stuck
            log.warning("the delivery process %d did not stop; killing it", proc.pid)
            proc.kill()
            proc.wait()
        return closing if isinstance(closing, FlushReport) else None

    def after_fork(self) -> None:
        """In a forked child: the delivery process is the parent's; start our own lazily."""
        self._lock = threading.Lock()
        self._ready = threading.Event()
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self._owed = 0
        self._late = None
        self._supervisor = None
        self._stopping = False


def _pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when process ``pid`` exits (Linux 5.3+)."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(pid)
    except OSError:
        return None
    return fd


def _never() -> bool:
    return False


def _wait(
    step: Callable[[float | None], bool],
    deadline: float | None,
    abort: Callable[[], bool] | None,
) -> bool:
    """Call ``step(seconds)`` (a wait, None for no limit, that returns True once done) until
    it is done (True), or ``deadline`` (None: none) has passed or ``abort()`` is true (False):
    with ``abort``, in waits of at most 0.1 s."""
    while True:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if step(left if abort is None else 0.1 if left is None else min(left, 0.1)):
            return True
        if left == 0.0 or (abort is not None and abort()):
            return False


def _receive(
    proc: subprocess.Popen[bytes],
    conn: Connection,
    timeout: float | None,
    cancelled: Callable[[], bool] = _never,
) -> Any:
    """The child's next message, or None if it went away, took longer than ``timeout``, or
    ``cancelled()`` became true."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not conn.poll(0.1):
            if proc.poll() is not None or cancelled():
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
        return load_message(conn.recv_bytes())
    except (EOFError, OSError):
        return None


def _end(proc: subprocess.Popen[bytes], conn: Connection) -> None:
    conn.close()
    if proc.poll() is None:
        proc.kill()
    proc.wait()

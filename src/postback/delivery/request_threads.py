"""A lane's request threads: daemon threads, started as work comes, that send its batches.

:class:`RequestThreads` is the lane's small thread pool: at most ``count`` threads named
``postback-<vendor>-<n>``, each taking batches from one queue and handing them to the lane's
``work`` function (which logs its own errors). :meth:`RequestThreads.shutdown` gives back the
batches no thread had started, for the lane to release to the queue.

:class:`Slots` is the lane's count of free request slots: a semaphore whose release (once per
request, from a request thread) is one call into C, where ``threading.Semaphore``'s takes a
Python-level condition and its lock while dozens of request threads contend for the
interpreter lock.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
from collections import deque
from collections.abc import Callable

from postback.delivery.queue import Claimed

__all__ = ["RequestThreads", "Slots"]

log = logging.getLogger("postback.delivery")


class Slots:
    """A semaphore of ``count`` slots, with the part of ``threading.Semaphore``'s interface a
    lane uses: ``acquire(blocking, timeout)`` and ``release()``. Each free slot is a token in
    a ``queue.SimpleQueue`` (implemented in C; a blocked ``acquire`` waits without the
    interpreter lock)."""

    def __init__(self, count: int) -> None:
        self._free: queue_module.SimpleQueue[None] = queue_module.SimpleQueue()
        for _ in range(count):
            self._free.put(None)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        try:
            self._free.get(blocking, timeout)
        except queue_module.Empty:
            return False
        return True

    def release(self) -> None:
        self._free.put(None)


class RequestThreads:
    """A lane's request threads: up to ``count`` daemon threads, started as work comes.

    Not a ``ThreadPoolExecutor``: the interpreter joins an executor's threads at exit, so one
    request stuck on a vendor would hold the process past its ``exit_timeout``. These threads
    are daemons; what they had in flight at exit stays queued for the next start.
    """

    def __init__(self, name: str, count: int, work: Callable[[list[Claimed]], None]) -> None:
        self.name = name
        self.count = count
        self.work = work
        self._queue: queue_module.SimpleQueue[list[Claimed] | None] = queue_module.SimpleQueue()
        #: One token per thread waiting for work (appended and popped whole: atomic).
        self._idle: deque[None] = deque()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, batch: list[Claimed]) -> bool:
        """Queue ``batch`` for a thread; False once :meth:`shutdown` was called."""
        with self._lock:  # not after shutdown() has put its end markers
            if self._closed:
                return False
            self._queue.put(batch)
        try:
            self._idle.pop()  # a thread is free to take it
            return True
        except IndexError:
            pass
        if len(self._threads) < self.count:
            with self._lock:
                if len(self._threads) < self.count and not self._closed:
                    thread = threading.Thread(
                        target=self._serve,
                        name=f"postback-{self.name}-{len(self._threads)}",
                        daemon=True,
                    )
                    self._threads.append(thread)
                    thread.start()
        return True

    def _serve(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                self.work(batch)
            except BaseException:  # work() logs its own errors; never lose the thread silently
                log.exception("%s: request thread error", self.name)
            self._idle.append(None)

    def shutdown(self) -> list[list[Claimed]]:
        """No more work: each thread ends after what it is doing (not waited for). Returns
        the batches that no thread had started, for the caller to give back."""
        pending: list[list[Claimed]] = []
        with self._lock:
            self._closed = True
            while True:
                try:
                    batch = self._queue.get_nowait()
                except queue_module.Empty:
                    break
                if batch is not None:
                    pending.append(batch)
            for _ in self._threads:
                self._queue.put(None)
        return pending

"""The deliverer seam: how a tracker gets its events delivered, as one small protocol.

A tracker has exactly one :class:`Deliverer`, chosen once by :func:`choose_deliverer` from its
:class:`~postback.delivery.mode.DeliveryMode` (the resolved ``[postback] workers`` setting).
Nothing else asks which mode is in use: the tracker's ``track()``, ``start()``, ``flush()``,
``close()`` and ``stats()``, its exit hooks and its ``fork()`` hook call the deliverer, and
each implementation does what its mode means (the pattern of OpenTelemetry's span processors):

- threads (``workers = true``): the :class:`~postback.delivery.engine.DeliveryEngine` itself,
  whose lanes deliver on threads of this process once it is elected the queue's deliverer;
- :class:`ProcessDeliverer` (``workers = "process"``): a child process delivers, through
  :class:`~postback.delivery.process.DeliveryProcess`; requests are forwarded to it;
- :class:`EnqueueOnlyDeliverer` (``workers = false``): nothing delivers here; another process
  (``postback worker``) delivers from the shared queue.

Every tracker has an engine even when it does not deliver through it: its lanes count what
this process tracked and what each flush reports, and it answers depths from the queue. The
two other deliverers use it for that and never start it.

Every deliverer's duties (pinned, for each implementation, by tests/test_deliverer.py):

- ``start()`` begins delivering, never blocks, and is idempotent; ``track()`` starts it on
  first use through ``notify()``. ``ready(timeout)`` waits until delivery can happen.
- ``notify(vendors)`` is called by every ``track()`` after the event is stored: cheap, and
  what it wakes is the implementation's business.
- ``flush(timeout, abort)`` waits at most ``timeout`` seconds for what is queued to be
  delivered and returns a :class:`~postback.delivery.stats.FlushReport` (what is left, per
  vendor). It asks ``abort()`` (if given) every 100 ms at most and stops waiting once it is
  true: ``AsyncTracker.flush()`` sets it when its caller is cancelled.
- ``flush_own(timeout)`` is the exit hook's shorter wait: only until this process's own events
  were taken by whoever delivers; False if the implementation cannot tell (then ``flush`` is
  the wait). ``flushes_on_close`` says whether ``close()`` and the exit hook wait at all.
- ``stop(wait)`` stops delivering here, giving requests in flight ``wait`` seconds.
  ``report_after_stop()`` then says what settled since the last flush's report (a request in
  flight that ``stop`` waited for) and what is left: ``close()`` adds it to its flush's report.
- ``stats()`` returns the per-vendor counters and queue depths, the same keys everywhere.
- ``after_fork()`` runs in a forked child: nothing of the parent's delivery survived (threads,
  the delivery process, connections), so the child starts its own lazily.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from postback.delivery import timing
from postback.delivery.engine import DeliveryEngine, start_unless_exiting
from postback.delivery.mode import DeliveryMode
from postback.delivery.stats import FlushReport
from postback.errors import ConfigError

if TYPE_CHECKING:
    from postback.delivery.process import DeliveryProcess
    from postback.delivery.spec import TrackerSpec

__all__ = ["Deliverer", "EnqueueOnlyDeliverer", "ProcessDeliverer", "choose_deliverer"]

log = logging.getLogger("postback.delivery")


@runtime_checkable
class Deliverer(Protocol):
    """Where this process's events are delivered from (see the module docstring)."""

    @property
    def flushes_on_close(self) -> bool:
        """Whether ``close()`` and the exit hook wait for the queue (False where another
        process delivers what this one queues: its events are stored, nothing to wait for)."""

    def start(self) -> None: ...

    def ready(self, timeout: float | None) -> bool: ...

    def notify(self, vendors: Sequence[str]) -> None: ...

    def flush(
        self, timeout: float | None, abort: Callable[[], bool] | None = None
    ) -> FlushReport: ...

    def flush_own(self, timeout: float) -> bool: ...

    def stop(self, wait: float) -> None: ...

    def report_after_stop(self) -> FlushReport: ...

    def stats(self) -> dict[str, dict[str, Any]]: ...

    def after_fork(self) -> None: ...


def choose_deliverer(
    mode: DeliveryMode, engine: DeliveryEngine, spec: Callable[[], TrackerSpec]
) -> Deliverer:
    """The one place a delivery mode becomes behaviour: ``engine`` itself (lanes on threads of
    this process), a :class:`ProcessDeliverer` (its child builds from ``spec()``, called now so
    that a plugin the child cannot have fails here, not in ``track()``) or an
    :class:`EnqueueOnlyDeliverer`."""
    if mode is DeliveryMode.THREADS:
        return engine
    if mode is DeliveryMode.ENQUEUE_ONLY:
        return EnqueueOnlyDeliverer(engine)
    if engine.transport is not None:
        raise ConfigError(
            [
                "workers = 'process' delivers from a child process, which cannot use a "
                "transport passed to from_config(): use workers = true with it"
            ]
        )
    from postback.delivery.process import DeliveryProcess  # subprocess, sockets: only here

    return ProcessDeliverer(engine, DeliveryProcess(spec(), engine.queue.poll))


class ProcessDeliverer:
    """``workers = "process"``: a child process delivers (:mod:`postback.delivery.process`).

    ``flush()`` and ``stats()`` are the child's answers; ``track()`` nudges it now and then.
    With no vendor enabled there is nothing to deliver: no child is started, ``ready()`` is
    true at once (as the threads deliverer's), and flushes and stats are the engine's.
    ``engine`` is never started here: its lanes count what this process tracked, and answer
    for the child while it does not (being replaced, or busy past a flush's timeout), with
    the halts the child last reported (:meth:`_learn_halts`): not ``halted=None`` for a
    vendor the child holds, its events pending.
    """

    flushes_on_close = True

    def __init__(self, engine: DeliveryEngine, process: DeliveryProcess) -> None:
        self.engine = engine
        #: The tracking process's handle on its delivery child.
        self.process = process
        self._started = False
        self._closing: FlushReport | None = None  # the child's report on stopping
        self._nudged_at = 0.0

    def start(self) -> None:
        self._started = True
        if self.engine.lanes:
            self.process.start()

    def ready(self, timeout: float | None) -> bool:
        if not self.engine.lanes:
            return True  # no vendor to deliver to: no child is started, nothing to wait for
        return self.process.wait_ready(timeout)

    def notify(self, vendors: Sequence[str]) -> None:
        if not self._started:
            start_unless_exiting(self.start)
        now = time.monotonic()
        if now - self._nudged_at > timing.NUDGE_EVERY:
            self._nudged_at = now
            self.process.nudge()

    def flush(self, timeout: float | None, abort: Callable[[], bool] | None = None) -> FlushReport:
        engine = self.engine
        if not engine.lanes:
            engine.ledger.flush()
            return engine.report({})
        report = self.process.flush(timeout, abort)
        if report is not None:
            self._learn_halts({v: r.halted for v, r in report.vendors.items()})
            return report
        # None: the delivery process did not answer (being replaced, or busy past the
        # timeout): what is left, and the halts it last reported.
        return engine.report(engine.pending())

    def _learn_halts(self, halts: Mapping[str, str | None]) -> None:
        """Keep what the child said of each vendor's halt on this process's lanes, which
        answer when the child does not (their ``halted`` is otherwise never set here)."""
        for name, lane in self.engine.lanes.items():
            if name in halts:
                lane.stats.halted = halts[name]

    def flush_own(self, timeout: float) -> bool:
        return False  # the child's lanes are not ours to watch: flush() is the wait

    def stop(self, wait: float) -> None:
        # The child lets requests in flight to a vendor that would count a repeat twice end
        # within that vendor's timeout (Lane.stop): give it that long before ending it.
        self._closing = self.process.stop(wait, settle=self.engine.settle_time())
        self._started = False
        self.engine.stop(wait)

    def report_after_stop(self) -> FlushReport:
        # The child closed its tracker on stopping: its report counts from the last flush's.
        closing, self._closing = self._closing, None
        return closing if closing is not None else self.engine.report(self.engine.pending())

    def stats(self) -> dict[str, dict[str, Any]]:
        lanes = self.engine.lanes
        if lanes and self.process.running:
            remote = self.process.stats()
            if remote is not None:  # its counters, with what this process tracked
                self._learn_halts({v: s.get("halted") for v, s in remote.items()})
                for name, lane in lanes.items():
                    remote[name]["tracked"] = lane.stats.tracked
                return remote
        return self.engine.stats()

    def after_fork(self) -> None:
        self.engine.after_fork()
        self.process.after_fork()
        self._started = False
        self._nudged_at = 0.0


class EnqueueOnlyDeliverer:
    """``workers = false``: nothing delivers here; another process delivers from the queue.

    ``flush()`` waits for that process when the queue is shared between processes
    (``cross_process``), and reports at once when it is not (``memory://``: nothing can
    deliver these events, and the report says what is left). ``close()`` and the exit hook
    wait only in the second case, where the wait is free and the report says what is lost.
    """

    def __init__(self, engine: DeliveryEngine) -> None:
        self.engine = engine
        self._shared = engine.queue.capabilities.cross_process
        if not self._shared and engine.lanes:
            log.warning(
                "workers = false with a %s queue: nothing in this process delivers, and no "
                "other process can read this queue, so tracked events are never sent (close() "
                "reports them as pending). Use workers = true, or a queue other processes "
                "share (sqlite://, redis://) with a `postback worker` process.",
                engine.queue.url.split("://", 1)[0] + "://",
            )

    @property
    def flushes_on_close(self) -> bool:
        return not self._shared

    def start(self) -> None:
        pass

    def ready(self, timeout: float | None) -> bool:
        return True

    def notify(self, vendors: Sequence[str]) -> None:
        pass  # the deliverer finds them at its next poll of the queue

    def flush(self, timeout: float | None, abort: Callable[[], bool] | None = None) -> FlushReport:
        engine = self.engine
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = engine.pending()
        while self._shared and any(pending.values()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if abort is not None and abort():
                break
            time.sleep(0.02)
            pending = engine.pending()
        engine.ledger.flush()
        return engine.report(pending)

    def flush_own(self, timeout: float) -> bool:
        return False  # the queue's waiting_here() is the deliverer's to watch, not ours

    def stop(self, wait: float) -> None:
        self.engine.stop(wait)

    def report_after_stop(self) -> FlushReport:
        return self.engine.report(self.engine.pending())

    def stats(self) -> dict[str, dict[str, Any]]:
        return self.engine.stats()

    def after_fork(self) -> None:
        self.engine.after_fork()

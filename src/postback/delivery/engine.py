"""The delivery engine: lanes that drain the queue into the vendors' APIs, and their upkeep.

One *lane* per vendor (``postback.delivery.lanes``: a thread that claims batches, plus request
threads), so a slow or failing vendor never delays another. The engine elects this process as
the deliverer (or not), starts the lanes, runs the queue's housekeeping, waits for ``flush()``
and stops everything on ``close()``.

The engine is the ``workers = true`` implementation of the
:class:`~postback.delivery.deliverer.Deliverer` protocol. Every tracker has one, whatever its
mode, because its lanes also hold the per-vendor counters (``tracked``, what a flush reports)
and it answers ``pending()`` and ``stats()`` from the queue; with ``workers = "process"`` or
``false`` the tracker's deliverer (:mod:`postback.delivery.deliverer`) uses it for that and
never starts it.

Threads start lazily on the first ``track()``; in a queue shared by several processes only one
process (the elected deliverer) runs lanes, the others wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from limits.storage import MemoryStorage, Storage

from postback.delivery import timing
from postback.delivery.erase import ErasureFilter, phone_regions
from postback.delivery.http import DeliveryClients
from postback.delivery.lanes import Lane
from postback.delivery.queue import Claimed, Queue
from postback.delivery.stats import FlushReport, VendorReport, VendorStats
from postback.destination import Destination
from postback.ledger import LedgerWriter, MemoryLedger

if TYPE_CHECKING:
    from postback.config import VendorConfig
    from postback.plugins import PluginHost

__all__ = [
    "DeliveryEngine",
    "FlushReport",
    "Lane",
    "VendorReport",
    "VendorStats",
    "start_unless_exiting",
]

log = logging.getLogger("postback.delivery")


def _never() -> bool:
    return False


def start_unless_exiting(start: Callable[[], None]) -> bool:
    """``start()``, or False when the interpreter is shutting down (Python 3.12+ starts no
    thread then, and a deliverer starts one): the events stay queued for the next deliverer,
    nothing is lost."""
    try:
        start()
    except RuntimeError as exc:
        log.info("not delivering at exit (%s): queued events wait for the next deliverer", exc)
        return False
    return True


class DeliveryEngine:
    """Owns the lanes, the HTTP connection pool and the deliverer election."""

    def __init__(
        self,
        queue: Queue,
        host: PluginHost,
        vendors: Sequence[tuple[Destination, VendorConfig]],
        *,
        transport: httpx.BaseTransport | None = None,
        ca_bundle: str | None = None,
        ledger: LedgerWriter | None = None,
        dead_letter_retention: float | None = None,
    ) -> None:
        self.queue = queue
        #: Seconds a dead letter is kept (``dead_letter_retention``; None: for ever).
        self.dead_letter_retention = dead_letter_retention
        #: Erase tombstones every lane checks before each batch (:mod:`postback.delivery.erase`).
        self.erasures = ErasureFilter(queue.erasure_log(), phone_regions([d for d, _ in vendors]))
        self._expired_at = float("-inf")
        #: Where the lanes record each outcome batch (:mod:`postback.ledger`).
        self.ledger = ledger or LedgerWriter(MemoryLedger(queue))
        self.host = host
        self.transport = transport
        self.stopping = threading.Event()
        self.progress = threading.Event()
        self._nudged = threading.Event()
        self.notify_delivery = host.has_delivery_listeners()
        self.lanes = self._make_lanes([(d, vc) for d, vc in vendors])
        queue.wake_on_new(self._wake)
        self._lock = threading.Lock()
        self._started = False
        self._delivering = False
        self._coordinator: threading.Thread | None = None
        #: The HTTP clients requests go through (``postback.delivery.http``): over the app's
        #: transport if it passed one (tests pass ``httpx.MockTransport``), else the network.
        self.clients = DeliveryClients(transport=transport, ca_bundle=ca_bundle)

    @property
    def delivering(self) -> bool:
        return self._delivering

    #: Deliverer: close() and the exit hook wait for the lanes.
    flushes_on_close = True

    def ready(self, timeout: float | None) -> bool:
        """Deliverer: lanes are ready as soon as they start."""
        return True

    def start(self) -> None:
        if not self.lanes:
            self._started = True  # nothing to start here: track() need not ask again
            return
        with self._lock:
            if self._started:
                return
            self.stopping.clear()
            coordinator = threading.Thread(
                target=self._coordinate, name="postback-coordinator", daemon=True
            )
            # Python 3.12+ refuses new threads once the interpreter is shutting down (an exit
            # hook): then nothing starts, and what is queued waits for the next deliverer.
            coordinator.start()
            self._coordinator = coordinator
            self._started = True

    def _start_unless_exiting(self) -> bool:
        return start_unless_exiting(self.start)

    def _coordinate(self) -> None:
        """Become the deliverer when possible, start lanes, run housekeeping."""
        while not self.stopping.is_set():
            try:
                if not self._delivering:
                    if self.queue.acquire_delivery():
                        self.queue.serve(list(self.lanes))
                        recovered = self.queue.recover()
                        if recovered:
                            log.info("recovered %d events a previous deliverer left", recovered)
                        self._delivering = True
                        for lane in self.lanes.values():
                            lane.start()
                    else:
                        self.stopping.wait(1.0)
                        continue
                self.queue.maintenance()
                self._expire_dead_letters()
                self._poll_until(time.monotonic() + timing.MAINTENANCE_EVERY)
            except Exception:
                log.exception("delivery coordinator error (continuing)")
                self.stopping.wait(timing.MAINTENANCE_EVERY)

    def sending_here(self) -> list[Claimed] | None:
        """The events this process's lanes are sending right now; None when another process
        delivers (then this one cannot see its requests)."""
        if not self._delivering:
            return None
        return [c for lane in self.lanes.values() for b in list(lane.sending.values()) for c in b]

    def _expire_dead_letters(self) -> None:
        """Delete dead letters past ``dead_letter_retention`` (once a minute at most)."""
        if (
            self.dead_letter_retention is None
            or time.monotonic() - self._expired_at < timing.EXPIRE_EVERY
        ):
            return
        self._expired_at = time.monotonic()
        cutoff = int(time.time() * 1000 - self.dead_letter_retention * 1000)
        expired = self.queue.expire_dead(cutoff)
        if expired:
            log.info("deleted %d dead letters older than dead_letter_retention", expired)

    def _poll_until(self, deadline: float) -> None:
        """Between maintenance rounds, look for other processes' events every so often."""
        interval = self.queue.capabilities.polls_every
        if interval is None:
            self.stopping.wait(max(deadline - time.monotonic(), 0.0))
            return
        wait = interval
        while not self.stopping.is_set() and time.monotonic() < deadline:
            # Sooner while other processes are queueing (a lane that is idle sleeps until a
            # poll wakes it), or when nudged; back to the interval when they stop.
            if self._nudged.wait(wait):
                self._nudged.clear()
            if self.stopping.is_set():
                break
            wait = timing.POLL_BUSY if self.queue.poll() else min(wait * 2, interval)

    def _wake(self, vendors: Iterable[str]) -> None:
        for v in vendors:
            lane = self.lanes.get(v)
            if lane is not None and not lane.wake.is_set():  # set() takes a lock: skip it
                lane.wake.set()

    def notify(self, vendors: Sequence[str]) -> None:
        """Called by track(): start delivery on first use; wake the lanes if they run here
        (else the elected deliverer, another process, finds the events at its next poll)."""
        if not self._started:
            self._start_unless_exiting()
        if self._delivering:
            self._wake(vendors)

    def nudge(self) -> None:
        """Events are coming from another process: look at the queue now."""
        self._nudged.set()

    def pending(self) -> dict[str, int]:
        now_ms = int(time.time() * 1000)
        depth = self.queue.depth(list(self.lanes), now_ms)
        return {v: depth[v].pending for v in self.lanes}

    def _count_pending(self) -> tuple[dict[str, int], float]:
        """:meth:`pending`, and when ``flush()`` may count again: no sooner than
        ``timing.FLUSH_RECOUNT_MIN`` from now, nor than ten times what this count took (it
        waits on the deliverer's locks), so counting costs at most a tenth; and no later than
        ``timing.FLUSH_RECOUNT_MAX``, so that the end of a flush is seen soon."""
        started = time.monotonic()
        pending = self.pending()
        now = time.monotonic()
        pause = min(max(timing.FLUSH_RECOUNT_MIN, 9 * (now - started)), timing.FLUSH_RECOUNT_MAX)
        return pending, now + pause

    def report(self, pending: dict[str, int]) -> FlushReport:
        """What the lanes counted since the previous report, with ``pending`` left per vendor."""
        return FlushReport(
            complete=not any(pending.values()),
            vendors={v: lane.report(pending[v]) for v, lane in self.lanes.items()},
        )

    def flush(
        self, timeout: float | None = None, abort: Callable[[], bool] | None = None
    ) -> FlushReport:
        """Deliverer: wait for the lanes to empty the queue (see the protocol). ``abort()`` is
        asked between looks at the queue (at least every 0.1 s): once true, the wait ends."""
        if not self._start_unless_exiting():
            return self.report(self.pending())
        deadline = None if timeout is None else time.monotonic() + timeout
        aborted = abort or _never
        for lane in self.lanes.values():
            lane.wake.set()
        pending, recount = self._count_pending()
        while any(pending.values()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if self.stopping.is_set():
                break  # stopped meanwhile (close() on another thread): nothing here delivers
            if aborted():
                break
            if (
                all(
                    (time.time() < lane.paused_until or lane.scoped_halts) and lane.stats.halted
                    for v, lane in self.lanes.items()
                    if pending[v]
                )
                and deadline is None
            ):
                break  # every vendor with work is halted (bad credentials, a locked app)
            # While a lane has requests in flight there is work left: wait for progress rather
            # than count the queue (a query) every time something settles.
            checked = time.monotonic()
            while any(lane.busy for lane in self.lanes.values()) and (
                time.monotonic() - checked < 0.5
            ):
                if (deadline is not None and time.monotonic() >= deadline) or aborted():
                    break
                self.progress.wait(0.05)
                self.progress.clear()
            self.progress.wait(0.02)
            self.progress.clear()
            now = time.monotonic()
            if recount > now:  # not at each settle (each sets progress): see _count_pending
                self.stopping.wait(min(recount, deadline or recount) - now)
            pending, recount = self._count_pending()
        # A lane counts an outcome (and hands it to the ledger) just after the queue recorded
        # it: wait for requests to finish so that the report and status() include it.
        end = time.monotonic() + 0.5
        while any(lane.busy for lane in self.lanes.values()) and time.monotonic() < end:
            if (deadline is not None and time.monotonic() >= deadline) or aborted():
                break
            self.progress.wait(0.005)
        self.ledger.flush()
        return self.report(pending)

    def flush_own(self, timeout: float) -> bool:
        """At exit in a process that does not deliver: wait (at most ``timeout``) only until
        the deliverer has taken this process's own events, not for the whole queue's
        backlog. False if the queue cannot tell (then :meth:`flush` is the wait)."""
        if not self.lanes:
            return False
        mine = None if self._delivering else self.queue.waiting_here()
        if mine == 0:
            return True  # nothing of this process's waits (a master that forked, say)
        if not self._start_unless_exiting():
            return True
        deadline = time.monotonic() + timeout
        mine = None if self._delivering else self.queue.waiting_here()
        if mine is None:
            return False
        while mine and time.monotonic() < deadline:
            self.progress.wait(0.02)
            self.progress.clear()
            mine = None if self._delivering else self.queue.waiting_here()
            if mine is None:  # this process became the deliverer meanwhile
                self.flush(max(deadline - time.monotonic(), 0.0))
                break
        return True

    def stop(self, wait: float = 1.0) -> None:
        if self.stopping.is_set() and not self._started:
            # Stopped already, not started since (``postback worker`` stops its deliverer,
            # then closes the tracker): another stop would wait for abandoned requests again.
            return
        self.stopping.set()
        self._nudged.set()  # the coordinator may be waiting for a nudge
        for lane in self.lanes.values():
            lane.wake.set()
        if self._coordinator is not None:
            self._coordinator.join(wait)
        end = time.monotonic() + wait
        # One deadline for every lane's requests to a vendor that would count a repeat twice
        # (Lane.stop): the lanes are stopped in turn, their requests end meanwhile.
        settle_by = end + self.settle_time()
        for lane in self.lanes.values():
            lane.stop(max(end - time.monotonic(), 0.05), settle_by)
        self.clients.close()  # an app's transport stays open: it is the app's
        self.ledger.flush()
        if self._delivering:
            self.queue.release_delivery()
            self._delivering = False
        self._started = False

    def report_after_stop(self) -> FlushReport:
        """Deliverer: what settled since the last report (requests in flight that ``stop``
        waited for), and what is left."""
        return self.report(self.pending())

    def settle_time(self) -> float:
        """How long ``stop`` may wait beyond its ``wait`` for requests in flight to end: the
        longest request timeout of a vendor that would count a repeat twice (and a second),
        0 when there is none."""
        return max(
            (
                lane.config.timeout + timing.STOP_GRACE
                for lane in self.lanes.values()
                if lane.repeats_count_twice()
            ),
            default=0.0,
        )

    def after_fork(self) -> None:
        """In a forked child: no threads survived, so start over lazily."""
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.progress = threading.Event()
        self._nudged = threading.Event()
        self._started = False
        self._delivering = False
        self._coordinator = None
        # The parent's connections are the parent's: new clients, on first use.
        self.clients = DeliveryClients(transport=self.transport, ca_bundle=self.clients.ca_bundle)
        self.lanes = self._make_lanes([(lane.dest, lane.config) for lane in self.lanes.values()])

    def _make_lanes(self, vendors: Sequence[tuple[Destination, VendorConfig]]) -> dict[str, Lane]:
        """One lane per vendor, their rate limits kept where the queue says: shared by every
        deliverer (Redis) or in this process."""
        shared = self.queue.rate_limit_storage()
        storage = shared if isinstance(shared, Storage) else MemoryStorage()
        return {d.name: Lane(self, d, vc, storage) for d, vc in vendors}

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per vendor: the lanes' counters and the queue's depths."""
        now_ms = int(time.time() * 1000)
        depth = self.queue.depth(list(self.lanes), now_ms)
        out = {}
        for name, lane in self.lanes.items():
            snap = lane.stats.snapshot()
            d = depth[name]
            snap.update(
                queue_depth=d.pending,
                ready=d.ready,
                retrying=d.retrying,
                inflight=d.inflight,
                dead_letters=d.dead,
            )
            out[name] = snap
        return out

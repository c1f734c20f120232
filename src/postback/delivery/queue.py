"""The queue interface that every backend implements, and what it declares it can do.

A queue stores each accepted event once (the canonical event as bytes) with the vendors it is
routed to, and keeps per-vendor delivery state: new, claimed (in flight), waiting for a retry,
delivered, dead. Only one *deliverer* claims from a queue at a time on one host (SQLite: a file
lock elects it); any number of processes may ``put``.

Backends are not named here: each registers itself through the ``postback_register_queues``
hook (:mod:`postback.delivery.registry`), the built-in ones exactly as a third party's would,
and :func:`~postback.delivery.registry.open_queue` picks one by the URL's scheme. What a
backend can do is declared in its :class:`QueueCapabilities`, never probed.
:class:`postback.testing.QueueContract` checks every duty below against a backend.
"""

from __future__ import annotations

import abc
import heapq
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import attrs

from postback.destination import KeyStore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from postback.delivery.erase import ErasureLog

__all__ = [
    "Claimed",
    "DeadLetter",
    "Queue",
    "QueueBackend",
    "QueueCapabilities",
    "QueueDepth",
    "QueueOptions",
    "Settlement",
    "sqlite_path",
]


class Claimed(NamedTuple):
    """An event a lane has claimed for one vendor (``created_ms``: when it was queued).

    A named tuple rather than an attrs class: the lanes make one per event delivered, and a
    tuple is the cheapest immutable record Python has.
    """

    seq: int
    event_id: str
    payload: bytes
    attempts: int
    created_ms: int


class Settlement(NamedTuple):
    """What happened to a claimed event.

    ``done``: delivered or skipped (forget it); ``retry``: try again at ``due_ms`` (attempts
    counted); ``dead``: move to dead letters with ``error``; ``release``: give it back untouched
    (the lane halted, e.g. on a refused key).
    """

    claimed: Claimed
    kind: Literal["done", "retry", "dead", "release"]
    due_ms: int = 0
    error: str | None = None
    attempts: int = 0


@attrs.frozen
class DeadLetter:
    """An event a vendor refused for good, or that ran out of retries, with the reason."""

    id: int
    vendor: str
    event_id: str
    name: str
    created_ms: int
    failed_ms: int
    attempts: int
    reason: str
    payload: bytes


@attrs.frozen
class QueueDepth:
    """Per-vendor counts: ``ready`` new or due, ``retrying`` waiting for backoff,
    ``inflight`` claimed now, ``dead`` in the dead-letter store; ``oldest_ms``: when the
    oldest pending event was queued (epoch ms), None when nothing is pending or the backend
    cannot tell."""

    ready: int = 0
    retrying: int = 0
    inflight: int = 0
    dead: int = 0
    oldest_ms: int | None = None

    @property
    def pending(self) -> int:
        return self.ready + self.retrying + self.inflight


@attrs.frozen
class QueueCapabilities:
    """What a queue backend declares it can do; the engine and the config read these, and
    :class:`~postback.testing.QueueContract` holds the backend to them."""

    #: Other processes on this host may put events in and see its state (then idle lanes
    #: look for their events, and a process that only enqueues leaves delivery to others).
    cross_process: bool = False
    #: Processes on other hosts share it too; every one of them may deliver at once
    #: (each claims its own share), so none has to be elected.
    shared_across_hosts: bool = False
    #: ``put()`` is safe to call on an event loop: no network round trip, no fsync
    #: (``AsyncTracker`` then calls ``track()`` inline instead of on its writer thread).
    loop_safe_put: bool = False
    #: :meth:`Queue.rate_limit_storage` returns a ``limits`` storage every deliverer shares.
    shared_rate_limits: bool = False
    #: How often the deliverer should call :meth:`Queue.poll` in seconds (None: never).
    polls_every: float | None = None


@attrs.frozen
class QueueOptions:
    """The ``[postback]`` settings a backend may use when it opens a queue."""

    #: Where relative paths in the URL start (the config file's directory).
    base_dir: Path | None = None
    #: ``max_queue_size``: the bound of a queue held in memory.
    max_size: int = 100_000
    #: ``sqlite_synchronous``: ``"normal"`` or ``"full"``.
    synchronous: str = "normal"
    #: Whether this process also delivers (``workers = true`` or ``"process"``).
    delivers_on_threads: bool = True
    #: False: refuse (:class:`~postback.errors.QueueError`) a queue that does not exist yet
    #: instead of creating it (a ``sqlite://`` file), for the commands that read or act on
    #: stored events. A backend whose queue is not made by opening it ignores it.
    create: bool = True


@attrs.frozen
class QueueBackend:
    """One queue backend, as a plugin registers it."""

    #: A short name for listings (``"sqlite"``).
    name: str
    #: The URL schemes it opens, without ``:`` (``("redis", "rediss")``).
    schemes: tuple[str, ...]
    #: Opens a queue: ``open(url, options) -> Queue``.
    open: Callable[[str, QueueOptions], Queue]
    #: What every queue it opens can do (a queue may narrow it for its options).
    capabilities: QueueCapabilities
    #: An example URL, shown when a config names no installed scheme.
    example: str
    #: One line on when to use it.
    summary: str = ""


class Queue(abc.ABC):
    """Storage for queued events and their per-vendor delivery state."""

    url: str
    #: What this backend can do (an instance may narrow it for its options).
    capabilities: QueueCapabilities = QueueCapabilities()
    #: Called with the vendors that :meth:`poll` found new events for (see :meth:`wake_on_new`).
    on_new: Callable[[set[str]], None] | None = None

    @abc.abstractmethod
    def put(
        self, event_id: str, name: str, created_ms: int, vendors: Sequence[str], payload: bytes
    ) -> None:
        """Store one event durably (as durable as the backend is) for ``vendors``."""

    @abc.abstractmethod
    def claim(self, vendor: str, limit: int, now_ms: int) -> list[Claimed]:
        """Claim up to ``limit`` events that are due for ``vendor`` (new first in order)."""

    @abc.abstractmethod
    def settle(self, vendor: str, settlements: Sequence[Settlement], now_ms: int) -> None:
        """Record what happened to claimed events, atomically."""

    @abc.abstractmethod
    def next_due_ms(self, vendor: str) -> int | None:
        """When the earliest waiting retry for ``vendor`` is due, or ``None``."""

    @abc.abstractmethod
    def depth(self, vendors: Sequence[str], now_ms: int) -> dict[str, QueueDepth]:
        """Counts per vendor."""

    @abc.abstractmethod
    def dead_letters(
        self, vendor: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters, newest first."""

    @abc.abstractmethod
    def dead_letter(self, id: int) -> DeadLetter | None:
        """One dead letter by id."""

    @abc.abstractmethod
    def requeue_dead(
        self, vendor: str | None = None, since_ms: int | None = None, ids: Sequence[int] = ()
    ) -> list[DeadLetter]:
        """Move dead letters back into the queue (fresh attempts) and return them.

        The low-level primitive: it requeues exactly the dead letters selected, with no rule
        of its own (a vendor's ``events`` filter, ``enabled``). ``postback replay`` and the
        dashboard first ask :func:`postback.delivery.replayable.split` which to leave."""

    def discard_dead(self, ids: Sequence[int]) -> list[DeadLetter]:
        """Delete these dead letters for good and return those that existed (the dashboard's
        "discard"). Backends that cannot delete raise :class:`NotImplementedError`."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot discard dead letters; replay them instead"
        )

    def expire_dead(self, before_ms: int) -> int:
        """Delete the dead letters that failed before ``before_ms`` (epoch ms); how many.

        The deliverer calls it for ``dead_letter_retention``. This default reads every dead
        letter; a backend that can select by failure time overrides it.
        """
        old = [d.id for d in self.dead_letters(None, None, 1 << 62) if d.failed_ms < before_ms]
        return len(self.discard_dead(old)) if old else 0

    def erasure_log(self) -> ErasureLog | None:
        """Where this queue keeps erase tombstones (:mod:`postback.delivery.erase`), shared by
        every process that uses it; None: the backend cannot erase."""
        return None

    def stored_events(self) -> Iterable[tuple[str, bytes] | tuple[str, bytes, int]]:
        """``(event_id, payload, created_ms)`` of the events still held for some vendor (for
        an erase's report; a backend that cannot list them yields nothing). A pair without
        ``created_ms`` is taken too, but then the report cannot tell the events an earlier
        erase already dropped (``already_erased``) from those this one does (``pending``)."""
        return ()

    @abc.abstractmethod
    def remember(self, vendor: str, key: str) -> bool:
        """Remember ``key`` for ``vendor`` for good; False if it was already remembered."""

    @abc.abstractmethod
    def forget(self, vendor: str, key: str) -> None:
        """Undo :meth:`remember` (e.g. when the delivery it guarded failed for good)."""

    def forget_prefix(self, vendor: str, prefix: str) -> None:
        """Undo :meth:`remember` for every key of ``vendor`` that starts with ``prefix`` (taken
        literally), e.g. the marks of a person being erased."""
        raise NotImplementedError(f"{type(self).__name__} cannot forget keys by prefix")

    def remember_for(self, vendors: Sequence[str], key: str, window_ms: int) -> list[str]:
        """Remember ``key`` for each of ``vendors`` for ``window_ms`` milliseconds; return the
        vendors for which it was *not* remembered already (new, or its window ran out): those
        are the ones the caller may send to. Atomic per vendor: of processes (and, on a shared
        backend, hosts) remembering one key at once, exactly one gets each vendor back.

        Local dedupe (:mod:`postback.dedupe`) calls it on the ``track()`` path, once per event
        with a given ``event_id`` routed to a vendor without a dedupe key: keep it one round
        trip. This default keeps the keys in this process (what ``memory://`` needs);
        backends that other processes share override it to keep them in their storage."""
        recent: dict[tuple[str, str], int] = self.__dict__.setdefault("_recent", {})
        expiries: list[tuple[int, str, str]] = self.__dict__.setdefault("_recent_expiries", [])
        lock: threading.Lock = self.__dict__.setdefault("_recent_lock", threading.Lock())
        now = time.time_ns() // 1_000_000
        fresh = []
        with lock:
            while expiries and expiries[0][0] <= now:  # drop what ran out, oldest first
                due, v, k = heapq.heappop(expiries)
                if recent.get((v, k)) == due:
                    del recent[(v, k)]
            for vendor in vendors:
                if recent.get((vendor, key), 0) <= now:
                    recent[(vendor, key)] = due = now + window_ms
                    heapq.heappush(expiries, (due, vendor, key))
                    fresh.append(vendor)
        return fresh

    def forget_for(self, vendors: Sequence[str], key: str) -> None:
        """Undo :meth:`remember_for` (the event it guarded could not be queued after all)."""
        recent: dict[tuple[str, str], int] = self.__dict__.get("_recent", {})
        for vendor in vendors:
            recent.pop((vendor, key), None)

    def put_unique(
        self,
        event_id: str,
        name: str,
        created_ms: int,
        vendors: Sequence[str],
        payload: bytes,
        windows: Mapping[str, int],
    ) -> list[str]:
        """:meth:`put` with local dedupe: the event is stored for ``vendors`` except those
        with a window in ``windows`` (ms) that already had ``event_id`` within it (see
        :meth:`remember_for`); returns those left out. Nothing stays remembered when the put
        fails. This default makes one :meth:`remember_for` call per distinct window, then
        the put; a backend may do it all in one write (Redis: one script call)."""
        groups: dict[int, list[str]] = {}
        for vendor in vendors:
            window = windows.get(vendor)
            if window:
                groups.setdefault(window, []).append(vendor)
        fresh: list[str] = []
        try:
            for window, group in groups.items():
                fresh += self.remember_for(group, event_id, window)
            dups = [v for group in groups.values() for v in group if v not in fresh]
            kept = [v for v in vendors if v not in dups] if dups else vendors
            if kept:
                self.put(event_id, name, created_ms, kept, payload)
        except BaseException:
            if fresh:
                self.forget_for(fresh, event_id)  # so that the app's retry is not a dup
            raise
        return dups

    def wake_on_new(self, callback: Callable[[set[str]], None]) -> None:
        """Have :meth:`poll` call ``callback`` with the vendors it found new events for (the
        engine wakes their lanes)."""
        self.on_new = callback

    def serve(self, vendors: Sequence[str]) -> None:
        """Tell the queue which vendors this deliverer serves (called after
        :meth:`acquire_delivery`, before :meth:`recover`)."""

    def acquire_delivery(self) -> bool:
        """Try to become this queue's deliverer (non-blocking). Memory queues always are."""
        return True

    def release_delivery(self) -> None:
        """Stop being the deliverer."""

    def recover(self) -> int:
        """On becoming deliverer: give back events claimed by a deliverer that died."""
        return 0

    def poll(self) -> bool:
        """Look for events other processes queued (the deliverer calls it often: cheap);
        whether it found any (the deliverer then looks again sooner)."""
        return False

    def maintenance(self) -> None:
        """Periodic housekeeping by the deliverer (garbage collection, checkpoints)."""

    def rate_limit_storage(self) -> object | None:
        """A ``limits`` storage shared by every deliverer of this queue (declared by
        ``capabilities.shared_rate_limits``), or None for a process-local one."""
        return None

    def vendors_seen(self) -> list[str]:
        """Every vendor with state in this queue (for ``postback queue stats``)."""
        return []

    # --- skip counts (written by the tracker's SkipLedger, about once a second) -----------------

    def add_skips(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add ``counts`` (``(vendor, reason) -> events``) to the skip counters this queue keeps
        for ``postback queue stats``. Called in batches, never once per ``track()``.

        Backends that other processes can read override it to store the counts there; this
        default keeps them in this process only."""
        mine: dict[tuple[str, str], int] = self.__dict__.setdefault("_skip_counts", {})
        for key, n in counts.items():
            mine[key] = mine.get(key, 0) + n

    def skip_counts(self) -> dict[str, dict[str, int]]:
        """Every vendor's skip counters: ``{vendor: {reason: events}}``, since the queue was
        created, from every process that wrote to it."""
        out: dict[str, dict[str, int]] = {}
        for (vendor, reason), n in self.__dict__.get("_skip_counts", {}).items():
            out.setdefault(vendor, {})[reason] = n
        return out

    def health(self) -> dict[str, object]:
        """Backend-specific health figures for ``postback queue stats`` (lag, consumers...)."""
        return {}

    def after_fork(self) -> None:
        """Called in a child process after fork: reopen connections and locks."""

    def waiting_here(self) -> int | None:
        """How many events this process put that still wait for the deliverer to take them
        (deliver them or store them durably), or ``None`` if the queue cannot tell them
        from other processes' events (or this process is the deliverer). A process that
        does not deliver waits at exit only for these."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release files and connections."""


class QueueKeyStore(KeyStore):
    """A vendor's :class:`~postback.destination.KeyStore` kept in the queue's storage."""

    def __init__(self, queue: Queue, vendor: str) -> None:
        self.queue = queue
        self.vendor = vendor

    def remember(self, key: str) -> bool:
        return self.queue.remember(self.vendor, key)

    def forget(self, key: str) -> None:
        self.queue.forget(self.vendor, key)

    def forget_prefix(self, prefix: str) -> None:
        self.queue.forget_prefix(self.vendor, prefix)


def sqlite_path(url: str, base_dir: Path | None = None) -> Path:
    """``sqlite:///abs/file.db`` is absolute; ``sqlite://rel/file.db`` is relative to base_dir."""
    rest = url[len("sqlite:") :]
    if rest.startswith("///"):
        return Path("/" + rest[3:].lstrip("/"))
    rest = rest.lstrip("/") if rest.startswith("//") else rest
    if not rest:
        rest = "postback.db"
    path = Path(rest).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path

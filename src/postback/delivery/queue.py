"""The queue interface that every backend implements, and :func:`open_queue` to pick one by URL.

A queue stores each accepted event once (the canonical event as bytes) with the vendors it is
routed to, and keeps per-vendor delivery state: new, claimed (in flight), waiting for a retry,
delivered, dead. Only one *deliverer* claims from a queue at a time on one host (SQLite: a file
lock elects it); any number of processes may ``put``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import attrs

from postback.destination import KeyStore

__all__ = [
    "Claimed",
    "DeadLetter",
    "Queue",
    "QueueDepth",
    "Settlement",
    "open_queue",
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
    ``inflight`` claimed now, ``dead`` in the dead-letter store."""

    ready: int = 0
    retrying: int = 0
    inflight: int = 0
    dead: int = 0

    @property
    def pending(self) -> int:
        return self.ready + self.retrying + self.inflight


class Queue(abc.ABC):
    """Storage for queued events and their per-vendor delivery state."""

    url: str
    #: Whether other processes may enqueue into it (then idle lanes poll it).
    shared: bool = False
    #: Whether ``put()`` is safe to call on an event loop: no network round trip, no fsync
    #: (``AsyncTracker`` then calls ``track()`` inline instead of on its writer thread).
    loop_safe_put: bool = False
    #: How often the deliverer should call :meth:`poll` (None: never).
    poll_interval: float | None = None
    #: Set by the engine: called with the vendors that :meth:`poll` found new events for.
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
        """Move dead letters back into the queue (fresh attempts) and return them."""

    @abc.abstractmethod
    def remember(self, vendor: str, key: str) -> bool:
        """Remember ``key`` for ``vendor`` for good; False if it was already remembered."""

    @abc.abstractmethod
    def forget(self, vendor: str, key: str) -> None:
        """Undo :meth:`remember` (e.g. when the delivery it guarded failed for good)."""

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
        """A ``limits`` storage shared by every deliverer of this queue (Redis), or None
        for a process-local one."""
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


def open_queue(
    url: str,
    base_dir: Path | None = None,
    *,
    max_size: int = 100_000,
    synchronous: str = "normal",
    delivers_on_threads: bool = True,
) -> Queue:
    """Open the queue backend a ``queue`` URL names.

    ``delivers_on_threads``: whether this process will also deliver (``workers = true`` or
    ``"process"``); the SQLite queue then writes its spool through a memory mapping, which
    never releases the interpreter lock to a delivery thread (see
    :mod:`postback.delivery.spool`).
    """
    if url.startswith("memory:"):
        from postback.delivery.memory import MemoryQueue

        return MemoryQueue(max_size=max_size)
    if url.startswith("sqlite:"):
        from postback.delivery.sqlite import SQLiteQueue

        return SQLiteQueue(
            sqlite_path(url, base_dir),
            synchronous=synchronous,
            mapped_spool=delivers_on_threads,
        )
    if url.startswith(("redis:", "rediss:", "redis+sentinel:", "redis+cluster:")):
        from postback.delivery.redis import RedisQueue

        return RedisQueue(url)
    raise ValueError(f"unknown queue URL {url!r}: use sqlite://, memory:// or redis://")


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

"""``sqlite://``: the default durable queue, one file per host, shared by the app's processes.

Layout (WAL mode)::

    events(seq, event_id, name, created_ms, vendors, payload)   append-only log, one row per event
    cursors(vendor, seq)                                        how far each vendor's lane has got
    pending(vendor, seq, attempts, due_ms, lease, last_error)   only events that need a retry
    dead_letters(id, vendor, event_id, ..., reason, payload)    refused or out of retries
    remembered(vendor, key)                                     e.g. Ton AI's once-per-user marks
    (in <queue>.recent) recent(vendor, key, expires_ms)         dedupe windows (remember_for)
    skips(vendor, reason, count)                                events a vendor was left out of

    spool(segment, offset)                                      how far each spool file is ingested
    spool_sent(segment, vendor, offset)                         how far past it a vendor has settled

``track()`` appends the event to this process's spool file next to the queue file (a memory
copy or one ``write()``, see :mod:`postback.delivery.spool`; no fsync with
``synchronous=normal``: the event survives a crash of the process, not a power cut; ``full``
survives both). The deliverer (one process per file, elected with ``flock``) reads every
process's spool and hands fresh events for the vendors it serves to their lanes from memory
(the held fast path): an event delivered from there is never written to the log, and a
segment's saved offset moves past it once every event before it is settled. Events for
vendors another process serves go into the ``events`` log at once; held events that wait too
long (a vendor down or slow), or that are still held when the deliverer lets go, are written
back to the log (as leased retries when a request is in flight). Lanes read the log past their
cursor without taking the write lock, and the cursor is saved as a low watermark below what is
in flight. Each vendor's settled point in a segment is saved in ``spool_sent``, so a deliverer
that dies costs each vendor only what it had in flight: delivery is at-least-once, and the
vendors' dedupe keys absorb the repeats.

:class:`SQLiteQueue` is a façade composing these parts, each with its duties (and locks) at
its top:

- :mod:`postback.delivery.sqlite_schema`: the file, its DDL, connections, error messages, and
  :class:`~postback.delivery.sqlite_schema.SQLiteFile`, the small state every part shares
  (connection, locks, deliverer fd, served vendors);
- :mod:`postback.delivery.sqltx`: the one transaction helper every SQLite write of postback
  goes through (this file, the ledger, the erasure log);
- :mod:`postback.delivery.election`: the deliverer lock;
- :mod:`postback.delivery.sqlite_ingest`: reading the spool, offsets and ``spool_sent``,
  write-back of held events, saving progress;
- :mod:`postback.delivery.sqlite_held`: the held lanes, over the pure
  :mod:`postback.delivery.held`;
- :mod:`postback.delivery.sqlite_log`: the SQL log (claim, settle, maintenance, depth, dead
  letters, remembered keys, skip counts).

The façade itself handles ``fork()`` (all or nothing, see :meth:`SQLiteQueue.after_fork`).

Lock order, whole queue: the ingester's ``lock`` -> the progress saver's lock (only ever
tried, never waited for) -> the file's ``work_lock`` -> ``write_lock``; at ``fork()``,
``work_lock`` then the spool writer's lock (both with a timeout: a child forked while they
are busy fails closed). ``work_lock`` is re-entrant; ``write_lock`` is taken by every write
transaction of this process, never while waiting for another of these locks.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from postback.delivery import election, erase, spool, timing
from postback.delivery.faultlog import FaultLog
from postback.delivery.held import HeldClaim
from postback.delivery.queue import (
    Claimed,
    DeadLetter,
    Queue,
    QueueCapabilities,
    QueueDepth,
    Settlement,
)
from postback.delivery.recent import RecentFile
from postback.delivery.sqlite_held import HeldLanes
from postback.delivery.sqlite_ingest import SpoolIngest
from postback.delivery.sqlite_log import SQLiteLog
from postback.delivery.sqlite_schema import SQLiteFile, translated
from postback.errors import QueueError

__all__ = ["SQLiteQueue"]

log = logging.getLogger("postback.queue")

_abandoned: list[sqlite3.Connection] = []  # connections inherited across fork: never touched
_queues: weakref.WeakSet[SQLiteQueue] = weakref.WeakSet()


def _before_fork() -> None:
    """Hold every queue's work lock (and its spool writer's lock) across ``fork()``: no
    transaction is open on its connection and no descriptor is half closed when the child
    is made, so the child's :meth:`SQLiteQueue.after_fork` sees a consistent state."""
    for q in list(_queues):
        q._hold_for_fork()


def _after_fork_in_parent() -> None:
    for q in list(_queues):
        q._release_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)


def _same_file(fd: int | None, ident: tuple[int, int]) -> bool:
    """Whether ``fd`` is still the file ``ident`` (st_dev, st_ino) names: an inherited number
    is closed in a child only then, never a number reused for something else."""
    if fd is None:
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident


class SQLiteQueue(Queue):
    capabilities = QueueCapabilities(
        cross_process=True, loop_safe_put=True, polls_every=timing.INGEST_POLL
    )

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "normal",
        busy_timeout: float = timing.BUSY_TIMEOUT,
        mapped_spool: bool = True,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.url = f"sqlite:///{self.path}"
        self.synchronous = synchronous.upper()
        # One write() into the page cache; with "full" each record is also fdatasync-ed.
        if self.synchronous == "FULL":
            self.capabilities = attrs.evolve(self.capabilities, loop_safe_put=False)
        self._file = SQLiteFile(self.path, synchronous=self.synchronous, busy_timeout=busy_timeout)
        self.spool_dir = self._file.spool_dir
        self._fork_held = (False, False)
        self._spool = spool.SpoolWriter(
            self.spool_dir, sync=self.synchronous == "FULL", mapped=mapped_spool
        )
        self._log = SQLiteLog(self._file)
        self._held = HeldLanes(self._file, self._log)
        self._intake = SpoolIngest(self._file, self._log, self._held, self._spool, self._wake)
        self._file.open()
        _queues.add(self)

    @property
    def faults(self) -> FaultLog:
        """Faults of background work (ingesting, saving progress, maintenance), logged once."""
        return self._file.faults

    def _wake(self, vendors: set[str]) -> None:
        if self.on_new is not None:
            self.on_new(vendors)

    def _reset_held(self) -> None:
        """Forget the events held in memory (they are still in the spool: the saved offsets
        never pass an event that is neither delivered nor in the log)."""
        self._log.reset_hints()
        self._held.reset()
        self._intake.reset()

    # --- fork ------------------------------------------------------------------------------------

    def _hold_for_fork(self) -> None:
        work = self._file.work_lock.acquire(timeout=timing.FORK_LOCK_WAIT)
        writer = self._spool.lock.acquire(timeout=timing.FORK_LOCK_WAIT)
        self._fork_held = (work, writer)

    def _release_after_fork(self) -> None:
        work, writer = self._fork_held
        self._fork_held = (False, False)
        if writer:
            self._spool.lock.release()
        if work:
            self._file.work_lock.release()

    def after_fork(self) -> None:
        """In a forked child: all or nothing. The new state (locks, a connection of its own)
        is made first and swapped in at once; only then are the descriptors inherited from
        the parent (spool readers, the deliverer lock) closed, each only if it is still the
        file it was. If the fork came while the queue was busy (see :func:`_before_fork`) or
        the connection cannot be made, the child fails closed: it can still enqueue (the
        spool needs no connection) but reads nothing and never becomes the deliverer."""
        work_held, writer_held = self._fork_held
        unreadable = None if work_held else "it was forked while the queue was busy"
        work: sqlite3.Connection | None = None
        if unreadable is None:
            try:
                work = self._file.connect(0)
            except QueueError as exc:
                unreadable = f"its connection could not be made after fork ({exc})"
        if work is None:
            work = sqlite3.connect(":memory:", check_same_thread=False)
            work.close()  # every use raises, and SQLiteFile.explain says why
        readers = list(self._intake.readers.values())
        f = self._file
        lock_fd, lock_ident = f.lock_fd, f.lock_ident
        _abandoned.append(f.work)
        # The swap: plain assignments, nothing in between that can fail.
        self._fork_held = (False, False)
        f.write_lock = threading.Lock()
        f.work_lock = threading.RLock()
        f.work = work
        f.unreadable = unreadable
        f.lock_fd = None
        f.faults = FaultLog(log)
        self._log.forget_reading()
        self._intake.after_fork()
        self._reset_held()
        self._spool.after_fork(close=writer_held)
        for reader in readers:
            if _same_file(reader.fd, reader.ident):
                reader.close()
        if _same_file(lock_fd, lock_ident):  # the parent's lock stays the parent's
            assert lock_fd is not None
            os.close(lock_fd)

    def waiting_here(self) -> int | None:
        """Events this process spooled that the deliverer has neither delivered nor written
        to the log yet (``None`` in the deliverer: it answers for the whole queue). What a
        process that does not deliver waits for at exit."""
        return self._intake.waiting_here()

    def close(self) -> None:
        self._spool.close()
        if self._file.lock_fd is not None:
            try:  # what this process spooled last goes into the log before it lets go
                try:
                    self._intake.write_back()
                except sqlite3.Error as exc:
                    raise self._file.explain(exc) from None
                self._intake.ingest(hold=False)
            except QueueError as exc:
                log.warning("could not ingest the spool on close (it stays for later): %s", exc)
        self.release_delivery()
        with self._intake.lock:
            self._intake.drop_readers()
        with self._file.work_lock:
            self._file.work.close()
        recent = self.__dict__.pop("_recent", None)
        if recent is not None:
            recent.close()

    # --- enqueue (the track() path) --------------------------------------------------------------

    def put(
        self, event_id: str, name: str, created_ms: int, vendors: Sequence[str], payload: bytes
    ) -> None:
        record = spool.encode(event_id, name, created_ms, "," + ",".join(vendors) + ",", payload)
        try:
            self._spool.append(record)
        except OSError as exc:
            raise self._file.explain_spool(exc) from None
        self._intake.dirty = True

    # --- the deliverer ---------------------------------------------------------------------------

    def poll(self) -> bool:
        """Prepare the spool's next segment; as the deliverer, ingest what other processes
        spooled. A failure (a full disk) goes to the fault log as maintenance's does, once per
        outage: the coordinator polls every few milliseconds and would log each one."""
        try:
            self._spool.prepare()
            found = 0
            if self._file.lock_fd is not None:
                found = self._intake.ingest()
                if self._held.offsets_dirty or self._log.cursor_dirty:
                    self._intake.persist_cursors()
        except (QueueError, OSError) as exc:
            self.faults.failed("ingesting the spool", exc)
            return False
        self.faults.ok("ingesting the spool")
        return found > 0

    def acquire_delivery(self) -> bool:
        return election.acquire(self._file)

    def release_delivery(self) -> None:
        if self._file.lock_fd is not None:
            try:  # events held in memory go into the log: the next deliverer finds them there
                self._intake.persist_cursors()
                if self._held.live or self._held.offsets_dirty:
                    self._intake.write_back()
            except (sqlite3.Error, QueueError) as exc:
                log.warning(
                    "could not save the events held for delivery (the spool still "
                    "has them; the next deliverer sends them again): %s",
                    exc,
                )
            with self._file.work_lock:
                self._reset_held()
                self._intake.offsets = None
                election.release(self._file)

    def serve(self, vendors: Sequence[str]) -> None:
        """Tell the queue which vendors this deliverer serves: fresh events for them are
        handed to their lanes from the spool, and the log keeps only what is not served
        here, retries and what waited too long (garbage collection counts on it, too)."""
        with self._file.work_lock:
            self._file.served = frozenset(vendors)
            self._intake.routes_changed()

    @translated
    def recover(self) -> int:
        with self._file.work_lock, self._file.write_lock:
            cur = self._file.work.execute("UPDATE pending SET lease=0 WHERE lease=1")
            self._log.read_pos.clear()
            self._log.inflight.clear()
            self._intake.offsets = None
            self._reset_held()
            return cur.rowcount

    def claim(self, vendor: str, limit: int, now_ms: int) -> list[Claimed]:
        if self._spool.wants_preparing:  # whichever delivery thread runs first does it
            self._spool.prepare()
        self._intake.ingest_if_due(vendor)
        return self._log.claim(vendor, limit, now_ms, self._held)

    def settle(self, vendor: str, settlements: Sequence[Settlement], now_ms: int) -> None:
        if any(type(s.claimed) is HeldClaim for s in settlements):
            settlements = self._held.settle(vendor, settlements, now_ms)
            if not settlements:
                self._intake.persist_soon()
                return
        if self._log.settle(vendor, settlements, now_ms):
            self._intake.persist_soon()

    def next_due_ms(self, vendor: str) -> int | None:
        return self._log.next_due_ms(vendor)

    def maintenance(self) -> None:
        """Ingest the spool, persist cursors, drop events every served vendor is done with (in
        chunks), checkpoint the WAL (without the write lock)."""
        try:
            self._intake.ingest()
            self._intake.clean_spool_dir()
            self.faults.ok("ingesting the spool")
        except (QueueError, OSError) as exc:
            self.faults.failed("ingesting the spool", exc)
        self._log.maintenance()

    # --- inspection ------------------------------------------------------------------------------

    @translated
    def depth(self, vendors: Sequence[str], now_ms: int) -> dict[str, QueueDepth]:
        if self._file.lock_fd is None:
            return self._log.depth(vendors, now_ms, self._intake.spool_backlog(vendors), self._held)
        # The deliverer: no reading of the spool meanwhile, or records read between counting
        # the spool and counting what is held would count twice (or not at all).
        with self._intake.lock:
            self._intake.ingest_now()
            return self._log.depth(vendors, now_ms, self._intake.spool_backlog(vendors), self._held)

    def vendors_seen(self) -> list[str]:
        """Every vendor that has a cursor, pending work or dead letters in this file."""
        return self._log.vendors_seen()

    def dead_letters(
        self, vendor: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        return self._log.dead_letters(vendor, since_ms, limit)

    def dead_letter(self, id: int) -> DeadLetter | None:
        return self._log.dead_letter(id)

    def requeue_dead(
        self, vendor: str | None = None, since_ms: int | None = None, ids: Sequence[int] = ()
    ) -> list[DeadLetter]:
        return self._log.requeue_dead(vendor, since_ms, ids)

    def discard_dead(self, ids: Sequence[int]) -> list[DeadLetter]:
        return self._log.discard_dead(ids)

    def expire_dead(self, before_ms: int) -> int:
        return self._log.expire_dead(before_ms)

    def erasure_log(self) -> erase.ErasureLog:
        return erase.SQLiteErasureLog(Path(f"{self.path}.erased"))

    def stored_events(self) -> Iterable[tuple[str, bytes, int]]:
        return erase.sqlite_stored_events(self.path, self.spool_dir)

    def remember(self, vendor: str, key: str) -> bool:
        return self._log.remember(vendor, key)

    def forget(self, vendor: str, key: str) -> None:
        self._log.forget(vendor, key)

    def forget_prefix(self, vendor: str, prefix: str) -> None:
        self._log.forget_prefix(vendor, prefix)

    # --- recent keys (local dedupe, on the track() path) ----------------------------------

    def remember_for(self, vendors: Sequence[str], key: str, window_ms: int) -> list[str]:
        return self._recent_file().remember_for(vendors, key, window_ms)

    def forget_for(self, vendors: Sequence[str], key: str) -> None:
        self._recent_file().forget_for(vendors, key)

    def _recent_file(self) -> RecentFile:
        recent: RecentFile | None = self.__dict__.get("_recent")
        if recent is None or not recent.usable():  # first use, or in a forked child
            recent = self.__dict__["_recent"] = RecentFile(self.path, self.busy_timeout)
        return recent

    # --- skip counts -----------------------------------------------------------------------

    def add_skips(self, counts: Mapping[tuple[str, str], int]) -> None:
        self._log.add_skips(counts)

    def skip_counts(self) -> dict[str, dict[str, int]]:
        return self._log.skip_counts()

    def __repr__(self) -> str:
        return f"<SQLiteQueue {self.path}>"

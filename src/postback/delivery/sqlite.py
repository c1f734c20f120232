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
survives both). The deliverer (one process per file,
elected with ``flock``) ingests every process's spool into the ``events`` log in bulk, reads new
events past its lane's cursor without taking the write lock, and persists the cursor as a low
watermark when it settles a batch. Events it had read but not settled when it died lie past the
persisted cursor, so the next deliverer reads them again: delivery is at-least-once, and the
vendors' dedupe keys absorb the repeats.

The events the deliverer holds in memory for its lanes (read from the spool, not in the log)
are kept by :mod:`postback.delivery.held` (pure bookkeeping, its theory of operation at the
top); each vendor's settled point in a segment is saved in ``spool_sent``, so a deliverer that
dies costs each vendor only what it had in flight.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs

from postback.delivery import erase, spool
from postback.delivery.faultlog import FaultLog
from postback.delivery.held import ROW_BITS, ROW_MASK, HeldChunk, skip_settled, vendor_key
from postback.delivery.queue import (
    Claimed,
    DeadLetter,
    Queue,
    QueueCapabilities,
    QueueDepth,
    Settlement,
)
from postback.delivery.recent import RecentFile
from postback.errors import QueueCorrupt, QueueDiskFull, QueueError, QueueReadOnly

__all__ = ["SQLiteQueue"]

log = logging.getLogger("postback.queue")

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    vendors TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors(vendor TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending(
    vendor TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY(vendor, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_due ON pending(vendor, lease, due_ms);
CREATE TABLE IF NOT EXISTS dead_letters(
    id INTEGER PRIMARY KEY,
    vendor TEXT NOT NULL,
    event_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    failed_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_by_vendor ON dead_letters(vendor, failed_ms);
CREATE TABLE IF NOT EXISTS remembered(
    vendor TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY(vendor, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spool(segment TEXT PRIMARY KEY, offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS spool_sent(
    segment TEXT NOT NULL, vendor TEXT NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY(segment, vendor)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skips(
    vendor TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY(vendor, reason)
) WITHOUT ROWID;
"""
BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's transaction
GC_CHUNK = 1000  # rows per delete: the deliverer's own lanes may wait for one chunk
INGEST_CHUNK = 1 << 20  # bytes of spool read (and rows inserted) per transaction
# Bytes of spool read at a time to hold for the lanes: parsing is pure Python, and a smaller
# bite gives a thread that tracks events in this process the interpreter lock back sooner.
HOLD_CHUNK = 1 << 18
INGEST_POLL = 0.05  # seconds between looks at other processes' spool files
STALE_NEW_SEGMENT = 60.0  # a ".new" spool file unlocked this long was left by a crash
HOT_LIMIT = 10_000  # events read from the spool and held for the lanes, not yet in the log
HOT_STALE = 2.0  # seconds an unsettled held event may wait before it is written to the log
STARVING_AFTER = 1.0  # a vendor that took held events this recently and has none is starving
HOT_LOOK = 0.002  # a lane with nothing held for it looks at the spool again after this
PERSIST_EVERY = 0.01  # seconds between saves of delivery progress (offsets, cursors)
_NEVER = 1 << 62  # no retry waiting
_INSERT = "INSERT INTO events(event_id, name, created_ms, vendors, payload) VALUES (?,?,?,?,?)"
_INSERT_NUMBERED = (
    "INSERT INTO events(seq, event_id, name, created_ms, vendors, payload) VALUES (?,?,?,?,?,?)"
)
_SAVE_OFFSET = (
    "INSERT INTO spool(segment, offset) VALUES (?, ?) "
    "ON CONFLICT(segment) DO UPDATE SET offset=excluded.offset"
)
_SAVE_SENT = (
    "INSERT INTO spool_sent(segment, vendor, offset) VALUES (?, ?, ?) "
    "ON CONFLICT(segment, vendor) DO UPDATE SET offset=excluded.offset"
)
_ADD_SKIPS = (
    "INSERT INTO skips(vendor, reason, count) VALUES (?, ?, ?) "
    "ON CONFLICT(vendor, reason) DO UPDATE SET count = count + excluded.count"
)
_abandoned: list[sqlite3.Connection] = []  # connections inherited across fork: never touched
FORK_LOCK_WAIT = 5.0  # seconds a fork waits for a queue's work to pause (else the child can't read)
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


def _disk_nearly_full(path: Path) -> bool:
    """Whether the filesystem of ``path`` has (almost) no space left: SQLite reports a write
    that failed for want of space as a plain "disk I/O error" as often as "disk is full"."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


_F = TypeVar("_F", bound=Callable[..., Any])


def _translated(method: _F) -> _F:
    """A public method that reads or writes the file: SQLite's errors come out as the
    :class:`QueueError` subclass that says what is wrong and what to do."""

    @functools.wraps(method)
    def wrapper(self: SQLiteQueue, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise self._explain(exc) from None

    return wrapper  # type: ignore[return-value]


class SQLiteQueue(Queue):
    capabilities = QueueCapabilities(
        cross_process=True, loop_safe_put=True, polls_every=INGEST_POLL
    )

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "normal",
        busy_timeout: float = BUSY_TIMEOUT,
        mapped_spool: bool = True,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.url = f"sqlite:///{self.path}"
        self.synchronous = synchronous.upper()
        # One write() into the page cache; with "full" each record is also fdatasync-ed.
        if self.synchronous == "FULL":
            self.capabilities = attrs.evolve(self.capabilities, loop_safe_put=False)
        # Every write transaction of this process, on either connection, takes _write_lock
        # first: our own writers then queue in Python instead of colliding inside SQLite,
        # whose busy handler sleeps 1, 2, 5, 10 ms... (a track() behind a settle would wait
        # milliseconds instead of microseconds). Other processes still meet SQLite's locks.
        self._write_lock = threading.Lock()
        self._work_lock = threading.RLock()
        self._ingest_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._lock_ident = (0, 0)
        self._fork_held = (False, False)
        self._unreadable: str | None = None  # why this forked child has no connection
        self.faults = FaultLog(log)
        self._read_pos: dict[str, int] = {}
        self._inflight: dict[str, set[int]] = {}
        self._cursor_dirty: set[str] = set()
        self._persist_lock = threading.Lock()
        self._persisted_at = 0.0
        self._served: frozenset[str] = frozenset()
        self.spool_dir = Path(f"{self.path}.spool")
        self._spool = spool.SpoolWriter(
            self.spool_dir, sync=self.synchronous == "FULL", mapped=mapped_spool
        )
        self._readers: dict[str, spool.SegmentReader] = {}
        self._offsets: dict[str, int] | None = None  # as saved in the spool table
        self._dirty = False
        self._ingested_at = 0.0
        self._backlog: dict[str, tuple[int, int, Counter[str]]] = {}
        self._routes: dict[str, tuple[list[str], str]] = {}
        self._log_version = 0
        self._reset_held()
        self._open()
        _queues.add(self)

    def _reset_held(self) -> None:
        """Forget the events held in memory (they are still in the spool: the saved offsets
        never pass an event that is neither delivered nor in the log)."""
        # Claims skip queries that cannot find anything: when the next retry is due (only the
        # deliverer writes retries), and whether the log grew since a lane caught up with it.
        self._due_hint: dict[str, int] = {}
        self._log_checked: dict[str, tuple[int, float]] = {}
        self._live: dict[int, HeldChunk] = {}  # by number: chunks with work open
        self._chunk_number = 0
        self._held_count = 0  # rows of the live chunks not written back
        self._ready: dict[str, deque[HeldChunk]] = {}  # per vendor: chunks with rows to claim
        self._waiting: Counter[str] = Counter()  # per vendor: held rows not claimed
        self._holding: Counter[str] = Counter()  # per vendor: held rows in flight
        self._claimed_at: dict[str, float] = {}  # per vendor: when it last took held rows
        self._chunks: dict[str, deque[HeldChunk]] = {}  # per segment, in order, until settled
        self._read_to: dict[str, int] = {}  # how far each segment has been read
        # Per segment and vendor, the offset before which that vendor has settled everything
        # (saved in spool_sent): read again after a crash, those rows skip that vendor, so a
        # dead deliverer's successor re-sends a vendor only what it had in flight.
        self._sent: dict[str, dict[str, int]] = {}
        self._sent_saved: dict[tuple[str, str], int] = {}
        self._sent_dirty = False
        self._offsets_dirty: dict[str, int] = {}  # offsets to save with the next cursors
        self._base: dict[str, int] = {}  # where this deliverer started reading each segment
        self._taken: dict[str, Counter[str]] = {}  # vendor keys read since the base

    # --- connections ---------------------------------------------------------------------------

    def _connect(self, autocheckpoint: int) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
            return conn
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: sqlite3.Error) -> QueueError:
        msg = str(exc)
        if self._unreadable is not None:
            return QueueError(
                f"this process cannot read the queue file {self.path}: {self._unreadable}. "
                "Events it tracks are still stored (in the spool) and another process delivers "
                "them; fork before the tracker is busy, or create the tracker in the child"
            )
        if "not a database" in msg or "malformed" in msg:
            return QueueCorrupt(
                f"the queue file {self.path} is damaged or is not a SQLite database ({msg}). "
                "Move it aside (its events may be recoverable with the sqlite3 tool) and "
                "start again to create a new queue"
            )
        if "readonly" in msg or "read-only" in msg:
            return QueueReadOnly(
                f"cannot write the queue file {self.path} ({msg}): make it and its directory "
                "writable by this process or set [postback] queue to another path"
            )
        if "unable to open" in msg:
            return QueueError(
                f"cannot write the queue file {self.path} ({msg}): make its directory writable "
                "by this process or set [postback] queue to another path"
            )
        if "locked" in msg or "busy" in msg:
            return QueueError(
                f"another process kept the queue file {self.path} locked for more than "
                f"{self.busy_timeout:g} s ({msg}). Look for a process stuck inside a "
                "transaction on this file (or a file on a network filesystem, where SQLite's "
                "locks are unreliable)"
            )
        if "disk is full" in msg or ("disk I/O" in msg and _disk_nearly_full(self.path)):
            return QueueDiskFull(
                f"the queue file {self.path} cannot grow ({msg}): free disk space; "
                "nothing already queued is lost"
            )
        return QueueError(f"queue file {self.path}: {msg}")

    def _explain_spool(self, exc: OSError) -> QueueError:
        kind: type[QueueError] = QueueError
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            kind = QueueDiskFull
            why = "free disk space (or raise the quota or file-size limit)"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            kind = QueueReadOnly
            why = "make it writable by this process or set [postback] queue to another path"
        else:
            why = "check the disk and the directory"
        return kind(
            f"cannot write to the queue's spool directory {self.spool_dir} "
            f"({exc.strerror or exc}): {why}; the event was not accepted, and nothing already "
            "queued is lost"
        )

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise QueueError(
                f"cannot create the directory for the queue file {self.path}: {exc}"
            ) from None
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise QueueError(
                f"the queue file {self.path} is not writable by this process: fix its "
                "permissions or set [postback] queue to another path"
            )
        # Processes that open the same new file at once (gunicorn workers starting) would race
        # on switching it to WAL and creating the schema, and SQLite answers that race with an
        # immediate "database is locked": initialise one process at a time.
        try:
            init_fd = os.open(f"{self.path}.init.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise QueueError(
                f"cannot write next to the queue file {self.path} ({exc}): make its directory "
                "writable by this process or set [postback] queue to another path"
            ) from None
        try:
            fcntl.flock(init_fd, fcntl.LOCK_EX)
            self._initialise()
        finally:
            fcntl.flock(init_fd, fcntl.LOCK_UN)
            os.close(init_fd)

    def _initialise(self) -> None:
        # Created owner-only before SQLite opens it (SQLite would create it 0644, and its -wal
        # and -shm files take the database file's mode): events hold users' data.
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise QueueError(
                f"cannot create the queue file {self.path} ({exc}): make its directory "
                "writable by this process or set [postback] queue to another path"
            ) from None
        self._work = self._connect(0)
        try:
            self._work.execute("PRAGMA journal_mode=WAL")
            tables = {
                r[0]
                for r in self._work.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if tables and "meta" not in tables:
                raise QueueCorrupt(
                    f"{self.path} is a SQLite database but not a postback queue (it has tables "
                    f"{', '.join(sorted(tables))}); point [postback] queue at another file"
                )
            self._work.executescript(_SCHEMA)
            self._work.execute(
                "INSERT OR IGNORE INTO meta VALUES ('format', 'postback-queue'), ('version', ?)",
                (SCHEMA_VERSION,),
            )
            version = self._work.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if version and version[0] != SCHEMA_VERSION:
                raise QueueCorrupt(
                    f"{self.path} is a postback queue of format {version[0]}, this postback "
                    f"reads format {SCHEMA_VERSION}: deliver it with the version that wrote it"
                )
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None
        try:
            self.spool_dir.mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise self._explain_spool(exc) from None
        if not os.access(self.spool_dir, os.W_OK | os.X_OK):
            raise self._explain_spool(PermissionError(errno.EACCES, "Permission denied"))

    def _hold_for_fork(self) -> None:
        work = self._work_lock.acquire(timeout=FORK_LOCK_WAIT)
        writer = self._spool.lock.acquire(timeout=FORK_LOCK_WAIT)
        self._fork_held = (work, writer)

    def _release_after_fork(self) -> None:
        work, writer = self._fork_held
        self._fork_held = (False, False)
        if writer:
            self._spool.lock.release()
        if work:
            self._work_lock.release()

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
                work = self._connect(0)
            except QueueError as exc:
                unreadable = f"its connection could not be made after fork ({exc})"
        if work is None:
            work = sqlite3.connect(":memory:", check_same_thread=False)
            work.close()  # every use raises, and _explain says why
        readers = list(self._readers.values())
        lock_fd, lock_ident = self._lock_fd, self._lock_ident
        _abandoned.append(self._work)
        # The swap: plain assignments, nothing in between that can fail.
        self._fork_held = (False, False)
        self._write_lock = threading.Lock()
        self._work_lock = threading.RLock()
        self._ingest_lock = threading.Lock()
        self._persist_lock = threading.Lock()
        self._work = work
        self._unreadable = unreadable
        self._readers = {}
        self._lock_fd = None
        self._read_pos = {}
        self._inflight = {}
        self._cursor_dirty = set()
        self._offsets = None
        self._backlog = {}
        self._dirty = False
        self._reset_held()
        self.faults = FaultLog(log)
        self._spool.after_fork(close=writer_held)
        for reader in readers:
            if _same_file(reader.fd, reader.ident):
                reader.close()
        if _same_file(lock_fd, lock_ident):  # the parent's lock stays the parent's
            assert lock_fd is not None
            os.close(lock_fd)

    @_translated
    def waiting_here(self) -> int | None:
        """Events this process spooled that the deliverer has neither delivered nor written
        to the log yet (``None`` in the deliverer: it answers for the whole queue). What a
        process that does not deliver waits for at exit."""
        if self._lock_fd is not None:
            return None
        names = list(self._spool.made)
        if not names or self._unreadable is not None:
            return 0  # stored in the spool: another process delivers it
        try:
            with self._work_lock:
                offsets = dict(
                    self._work.execute(
                        "SELECT segment, offset FROM spool WHERE segment IN ({})".format(
                            ",".join("?" * len(names))
                        ),
                        names,
                    )
                )
        except sqlite3.Error as exc:
            raise self._explain(exc) from None
        count = 0
        for name in names:
            try:
                reader = spool.SegmentReader(self.spool_dir / name)
            except FileNotFoundError:
                continue  # ingested to its end and deleted
            try:
                for chunk in reader.chunks(offsets.get(name, 0), INGEST_CHUNK):
                    count += len(chunk.rows)
            finally:
                reader.close()
        return count

    def _drop_readers(self) -> None:
        with self._work_lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()

    def close(self) -> None:
        self._spool.close()
        if self._lock_fd is not None:
            try:  # what this process spooled last goes into the log before it lets go
                try:
                    self._write_back()
                except sqlite3.Error as exc:
                    raise self._explain(exc) from None
                self._ingest(hold=False)
            except QueueError as exc:
                log.warning("could not ingest the spool on close (it stays for later): %s", exc)
        self.release_delivery()
        with self._ingest_lock:
            self._drop_readers()
        with self._work_lock:
            self._work.close()
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
            raise self._explain_spool(exc) from None
        self._dirty = True

    # --- ingesting the spool (the deliverer) -----------------------------------------------------

    def poll(self) -> bool:
        self._spool.prepare()
        found = 0
        if self._lock_fd is not None:
            found = self._ingest()
            if self._offsets_dirty or self._cursor_dirty:
                self._persist_cursors()
        return found > 0

    def _ingest_if_due(self, vendor: str) -> None:
        """Read the spool when this process spooled something, when ``vendor``'s lane has
        nothing held for it, or now and then for other processes."""
        if self._lock_fd is None:
            return
        elapsed = time.monotonic() - self._ingested_at
        if (
            not self._dirty
            and elapsed < INGEST_POLL
            and (self._waiting[vendor] or elapsed < HOT_LOOK)
        ):
            return
        self._ingest()

    def _ingest(self, *, hold: bool = True) -> int:
        """Read every process's spool: hand fresh events to the lanes in memory (``hold``),
        or write them into the ``events`` log. Returns how many records were read."""
        with self._ingest_lock:
            return self._ingest_now(hold)

    def _ingest_now(self, hold: bool = True) -> int:
        self._dirty = False  # before reading: a put() from now on asks again
        self._ingested_at = time.monotonic()
        try:
            return self._ingest_locked(hold)
        except sqlite3.Error as exc:
            self._dirty = True  # what is left stays spooled: the next claim tries again
            raise self._explain(exc) from None

    def _ingest_locked(self, hold: bool) -> int:
        """The spool is read into memory up to :data:`HOT_LIMIT` held events; past that it
        waits in its files (a backlog costs disk, not memory). Held events that wait longer
        than :data:`HOT_STALE` (a vendor down, paused or slow) are written to the log, and
        so are events for vendors this deliverer does not serve."""
        with self._work_lock:
            if self._offsets is None:
                self._offsets = dict(self._work.execute("SELECT segment, offset FROM spool"))
                self._read_to = dict(self._offsets)
                self._sent = {}
                for segment, vendor, offset in self._work.execute(
                    "SELECT segment, vendor, offset FROM spool_sent"
                ):
                    self._sent.setdefault(segment, {})[vendor] = offset
                    self._sent_saved[(segment, vendor)] = offset
            hold = hold and bool(self._served)
            if self._held_count and (
                not hold or self._stale() or (self._held_count >= HOT_LIMIT and self._starving())
            ):
                self._write_back()
        total = 0
        woken: set[str] = set()
        present: set[str] = set()
        for path in spool.segments(self.spool_dir):
            name = path.name
            present.add(name)
            reader = self._readers.get(name)
            if reader is None:
                try:
                    with self._work_lock:
                        reader = self._readers[name] = spool.SegmentReader(path)
                except FileNotFoundError:
                    continue
            gone = reader.writer_gone()  # before reading: then what we read is all there is
            offset = self._read_to.setdefault(name, self._offsets.get(name, 0))
            self._base.setdefault(name, offset)
            finished = False
            # Up to what is written now: a record still being copied, and what a live writer
            # adds meanwhile, wait for the next look (fewer, larger transactions).
            if hold and self._held_count >= HOT_LIMIT:
                continue  # the lanes have enough: the rest waits in the spool
            for chunk in reader.chunks(offset, HOLD_CHUNK if hold else INGEST_CHUNK):
                if chunk.end != offset:
                    start, offset = offset, chunk.end
                    self._take(name, offset, chunk.rows, hold, woken, start, chunk.ends)
                    total += len(chunk.rows)
                if chunk.state == "end":
                    finished = gone  # the end of what its writer wrote
                elif chunk.state != "more" and gone:
                    log.warning(
                        "spool file %s: a damaged record at offset %d and what follows it were "
                        "skipped (cut short by a crash or a full disk: its track() had not "
                        "returned)",
                        path,
                        offset,
                    )
                    offset = reader.size()
                    self._take(name, offset, [], hold, woken)
                    finished = True
                if hold and self._held_count >= HOT_LIMIT:
                    break  # before the next chunk is read
            if finished and not self._chunks.get(name):
                self._forget_segment(name, reader)
        with self._work_lock:
            for name in set(self._readers) - present:
                self._readers.pop(name).close()
        if self._offsets_dirty:
            self._persist_cursors()
        if woken and self.on_new is not None:
            self.on_new(woken)
        return total

    def _route(self, key: str) -> tuple[list[str], str]:
        """A record's vendors key -> (the vendors served here, a key of the others)."""
        route = self._routes.get(key)
        if route is None:
            vendors = [v for v in key.split(",") if v]
            mine = [v for v in vendors if v in self._served]
            others = [v for v in vendors if v not in self._served]
            route = self._routes[key] = (mine, "," + ",".join(others) + "," if others else "")
        return route

    def _take(
        self,
        segment: str,
        end: int,
        rows: list[spool.Row],
        hold: bool,
        woken: set[str],
        start: int = 0,
        ends: Sequence[int] = (),
    ) -> None:
        """Records read from ``segment`` up to ``end``: held for the lanes, or into the log."""
        spooled = [r[3] for r in rows]  # the keys as spooled: what the spool's backlog counts
        sent = self._sent.get(segment)
        if sent and rows and len(ends) == len(rows) and start < max(sent.values()):
            rows = skip_settled(rows, ends, sent)
        with self._work_lock:
            if not hold and not self._chunks.get(segment):
                # Nothing of this segment held: the records and the offset in one transaction.
                self._store(segment, end, rows)
                for r in rows:
                    woken.update(v for v in r[3].split(",") if v)
            else:
                keys = {r[3] for r in rows}
                routes = {k: self._route(k) for k in keys}
                if any(rest for _, rest in routes.values()):
                    # For vendors another process serves: into the log now (a crash before the
                    # offset is saved writes them again: at least once).
                    self._insert(
                        [(r[0], r[1], r[2], routes[r[3]][1], r[4]) for r in rows if routes[r[3]][1]]
                    )
                self._chunk_number += 1
                chunk = HeldChunk(self._chunk_number, segment, end, rows, start, ends)
                lists = chunk.lists
                if len(keys) == 1:
                    for v in routes[next(iter(keys))][0]:
                        lists[v] = range(len(rows))
                else:
                    for i, r in enumerate(rows):
                        for v in routes[r[3]][0]:
                            lists.setdefault(v, []).append(i)  # type: ignore[attr-defined]
                for v, rows_for_v in lists.items():
                    chunk.claimed[v] = 0
                    chunk.inflight[v] = set()
                    queue = self._ready.get(v)
                    if queue is None:
                        queue = self._ready[v] = deque()
                    queue.append(chunk)
                    self._waiting[v] += len(rows_for_v)
                    chunk.open += len(rows_for_v)
                    woken.add(v)
                self._chunks.setdefault(segment, deque()).append(chunk)
                if chunk.open:
                    self._live[chunk.number] = chunk
                    self._held_count += len(rows)
                else:
                    self._advance(segment)
            self._read_to[segment] = end
            taken = self._taken.get(segment)
            if taken is None:
                taken = self._taken[segment] = Counter()
            taken.update(spooled)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the work connection, rolled back if anything fails in it
        (the caller holds ``_write_lock``)."""
        conn = self._work
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _insert(self, rows: list[spool.Row], offset: tuple[str, int] | None = None) -> None:
        """Insert records into the log, with a segment's new offset if given."""
        with self._work_lock, self._write_lock:
            self._log_version += 1
            with self._transaction() as conn:
                conn.executemany(_INSERT, rows)
                if offset is not None:
                    conn.execute(_SAVE_OFFSET, offset)

    def _advance(self, segment: str) -> None:
        """Move the segment's offset (saved with the next cursors) past its settled chunks."""
        chunks = self._chunks[segment]
        end = None
        while chunks and not chunks[0].open:
            end = chunks.popleft().end
        if end is not None:
            self._offsets_dirty[segment] = end

    def _starving(self) -> bool:
        """Whether a vendor that has been taking held events has none left while the held
        set is full (of events another vendor is slow to take): it must not wait for them."""
        now = time.monotonic()
        return any(
            not self._waiting[v] and now - at < STARVING_AFTER for v, at in self._claimed_at.items()
        )

    def _stale(self) -> bool:
        horizon = time.monotonic() - HOT_STALE
        return any(c and c[0].born < horizon for c in self._chunks.values())

    def _write_back(self) -> None:
        """Write every held event that is not settled into the log, in one transaction with
        the offsets read so far: for the vendors that have not claimed it, as a new event;
        for those with a request in flight, as a leased retry that their settle completes
        (or that ``recover()`` frees after a crash)."""
        with self._work_lock, self._write_lock:
            if self._offsets is None:
                return
            self._log_version += 1
            offsets = {k: v for k, v in self._read_to.items() if self._offsets.get(k) != v}
            plan: list[tuple[HeldChunk, dict[int, list[str]], list[tuple[str, int]]]] = []
            for chunk in self._live.values():
                if chunk.written is not None:
                    continue
                waiting: dict[int, list[str]] = {}
                leases: list[tuple[str, int]] = []
                for v, rows_for_v in chunk.lists.items():
                    for i in rows_for_v[chunk.claimed[v] :]:
                        waiting.setdefault(i, []).append(v)
                    for i in chunk.returned.get(v, ()):
                        waiting.setdefault(i, []).append(v)
                    for i in chunk.inflight[v]:
                        waiting.setdefault(i, [])
                        leases.append((v, i))
                plan.append((chunk, waiting, leases))
            with self._transaction() as conn:
                seq = conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
                numbers: list[dict[int, int]] = []
                events: list[tuple[object, ...]] = []
                pending: list[tuple[str, int]] = []
                for chunk, waiting, leases in plan:
                    numbered: dict[int, int] = {}
                    for i in sorted(waiting):
                        seq += 1
                        numbered[i] = seq
                        e = chunk.rows[i]
                        key = ",".join(["", *waiting[i], ""])
                        events.append((seq, e[0], e[1], e[2], key, e[4]))
                    pending.extend((v, numbered[i]) for v, i in leases)
                    numbers.append(numbered)
                conn.executemany(_INSERT_NUMBERED, events)
                conn.executemany(
                    "INSERT INTO pending(vendor, seq, attempts, due_ms, lease) VALUES (?,?,0,0,1)"
                    " ON CONFLICT(vendor, seq) DO UPDATE SET lease=1",
                    pending,
                )
                conn.executemany(_SAVE_OFFSET, list(offsets.items()))
            woken = {v for _, waiting, _ in plan for vs in waiting.values() for v in vs}
            for (chunk, _, _), numbered in zip(plan, numbers, strict=True):
                chunk.written = numbered
                if not any(chunk.inflight.values()):
                    del self._live[chunk.number]
            self._offsets.update(offsets)
            self._offsets_dirty.clear()
            self._chunks.clear()
            self._ready.clear()
            self._waiting.clear()
            self._holding.clear()  # leased retries in the log now: counted there
            self._held_count = 0
        if events:
            log.debug("wrote %d held events to the log", len(events))
        if woken and self.on_new is not None:
            self.on_new(woken)

    def _store(self, segment: str, offset: int, records: list[spool.Row]) -> None:
        """Insert records and the segment's new offset in one transaction."""
        assert self._offsets is not None
        self._insert(records, (segment, offset))
        self._offsets[segment] = offset

    def _forget_segment(self, name: str, reader: spool.SegmentReader) -> None:
        """A segment read to its end whose writer is gone: delete it, then its offset."""
        assert self._offsets is not None
        try:
            os.unlink(reader.path)
        except FileNotFoundError:
            pass
        with self._work_lock:  # a fork never sees the reader closed but still listed
            del self._readers[name]
            reader.close()
            if name in self._offsets:
                with self._write_lock:
                    self._work.execute("DELETE FROM spool WHERE segment=?", (name,))
                    self._work.execute("DELETE FROM spool_sent WHERE segment=?", (name,))
                del self._offsets[name]
            self._sent.pop(name, None)
            for key in [k for k in self._sent_saved if k[0] == name]:
                del self._sent_saved[key]
            for state in (self._read_to, self._base, self._taken, self._offsets_dirty):
                state.pop(name, None)
            self._chunks.pop(name, None)

    def _clean_spool_dir(self) -> None:
        """Remove ``.new`` files a crash left between creating and naming a segment, and
        offsets of segments that no longer exist."""
        now = time.time()
        try:
            entries = list(os.scandir(self.spool_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            if not entry.name.endswith(".new"):
                continue
            try:
                if now - entry.stat().st_mtime < STALE_NEW_SEGMENT:
                    continue
                reader = spool.SegmentReader(Path(entry.path))
            except FileNotFoundError:
                continue
            try:  # records are written only after the rename: a ".new" file holds none
                if reader.writer_gone():
                    os.unlink(entry.path)
            finally:
                reader.close()

    def _spool_backlog(self, vendors: Sequence[str]) -> Counter[str]:
        """Per vendor, records spooled but not yet read by the deliverer.

        Each segment's count is kept between calls and only what was written since is read
        (``flush()`` asks every few milliseconds, and a backlog can be large). In another
        process it counts from the offsets the deliverer saved, again from the start when
        they moved; in the deliverer, from where it started reading each segment, less what
        it has read since."""
        with self._work_lock:
            if self._lock_fd is None or self._offsets is None:
                offsets = dict(self._work.execute("SELECT segment, offset FROM spool"))
                taken: dict[str, Counter[str]] = {}
            else:
                offsets = {**self._offsets, **self._base}
                taken = {k: Counter(v) for k, v in self._taken.items()}
        counts: Counter[str] = Counter()
        seen: dict[str, tuple[int, int, Counter[str]]] = {}
        for path in spool.segments(self.spool_dir):
            start = offsets.get(path.name, 0)
            cached = self._backlog.get(path.name)
            if cached is not None and cached[0] == start:
                _, parsed_to, per_key = cached
            else:
                parsed_to, per_key = start, Counter()
            try:
                reader = spool.SegmentReader(path)
            except FileNotFoundError:
                continue
            try:
                for chunk in reader.chunks(parsed_to, INGEST_CHUNK):
                    if chunk.rows:
                        per_key = per_key + Counter(r[3] for r in chunk.rows)
                    parsed_to = chunk.end
            finally:
                reader.close()
            seen[path.name] = (start, parsed_to, per_key)
            if path.name in taken:
                per_key = per_key - taken[path.name]
            for key, n in per_key.items():
                for v in key.split(","):
                    if v:
                        counts[v] += n
        self._backlog = seen
        wanted = set(vendors)
        return Counter({v: n for v, n in counts.items() if v in wanted})

    # --- the deliverer ---------------------------------------------------------------------------

    def acquire_delivery(self) -> bool:
        if self._lock_fd is not None:
            return True
        if self._unreadable is not None:
            return False  # a child that failed closed after fork never delivers
        fd = os.open(f"{self.path}.deliver.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        st = os.fstat(fd)
        with self._work_lock:
            self._lock_fd = fd
            self._lock_ident = (st.st_dev, st.st_ino)
        return True

    def release_delivery(self) -> None:
        if self._lock_fd is not None:
            try:  # events held in memory go into the log: the next deliverer finds them there
                self._persist_cursors()
                if self._live or self._offsets_dirty:
                    self._write_back()
            except (sqlite3.Error, QueueError) as exc:
                log.warning(
                    "could not save the events held for delivery (the spool still "
                    "has them; the next deliverer sends them again): %s",
                    exc,
                )
            with self._work_lock:
                self._reset_held()
                self._offsets = None
                fd, self._lock_fd = self._lock_fd, None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def serve(self, vendors: Sequence[str]) -> None:
        """Tell the queue which vendors this deliverer serves: fresh events for them are
        handed to their lanes from the spool, and the log keeps only what is not served
        here, retries and what waited too long (garbage collection counts on it, too)."""
        with self._work_lock:
            self._served = frozenset(vendors)
            self._routes.clear()

    @_translated
    def recover(self) -> int:
        with self._work_lock, self._write_lock:
            cur = self._work.execute("UPDATE pending SET lease=0 WHERE lease=1")
            self._read_pos.clear()
            self._inflight.clear()
            self._offsets = None
            self._reset_held()
            return cur.rowcount

    def _cursor(self, vendor: str) -> int:
        pos = self._read_pos.get(vendor)
        if pos is None:
            row = self._work.execute("SELECT seq FROM cursors WHERE vendor=?", (vendor,)).fetchone()
            pos = row[0] if row else 0
            self._read_pos[vendor] = pos
        return pos

    def claim(self, vendor: str, limit: int, now_ms: int) -> list[Claimed]:
        if self._spool.wants_preparing:  # whichever delivery thread runs first does it
            self._spool.prepare()
        self._ingest_if_due(vendor)
        out: list[Claimed] = []
        key = vendor_key(vendor)
        with self._work_lock:
            conn = self._work
            try:
                # Due retries: only this process claims (it holds the deliverer lock), so
                # reading them and then leasing them in a short write is race-free. Only this
                # process writes retries, too: it knows when the next is due.
                due_hint = self._due_hint.get(vendor)
                rows = []
                if due_hint is None or due_hint <= now_ms:
                    rows = conn.execute(
                        "SELECT p.seq, e.event_id, e.payload, p.attempts, e.created_ms "
                        "FROM pending p JOIN events e ON e.seq = p.seq "
                        "WHERE p.vendor=? AND p.lease=0 AND p.due_ms<=? "
                        "ORDER BY p.due_ms LIMIT ?",
                        (vendor, now_ms, limit),
                    ).fetchall()
                    if len(rows) < limit:
                        row = conn.execute(
                            "SELECT min(due_ms) FROM pending WHERE vendor=? AND lease=0 "
                            "AND due_ms>?",
                            (vendor, now_ms),
                        ).fetchone()
                        self._due_hint[vendor] = row[0] if row[0] is not None else _NEVER
                if rows:
                    with self._write_lock:
                        conn.execute("BEGIN IMMEDIATE")
                        conn.executemany(
                            "UPDATE pending SET lease=1 WHERE vendor=? AND seq=?",
                            [(vendor, r[0]) for r in rows],
                        )
                        conn.execute("COMMIT")
                    out.extend(map(Claimed._make, rows))
                room = limit - len(out)
                checked = self._log_checked.get(vendor)
                if room > 0 and (
                    checked is None
                    or checked[0] != self._log_version
                    or time.monotonic() - checked[1] > INGEST_POLL  # another process's replay
                ):
                    # New events: a read transaction (one snapshot for both queries), which
                    # never takes the write lock, so track() is never held up by it.
                    version = self._log_version
                    pos = self._cursor(vendor)
                    conn.execute("BEGIN")
                    new = conn.execute(
                        "SELECT seq, event_id, payload, 0, created_ms FROM events "
                        "WHERE seq > ? AND instr(vendors, ?) > 0 ORDER BY seq LIMIT ?",
                        (pos, key, room),
                    ).fetchall()
                    if len(new) == room:
                        self._read_pos[vendor] = new[-1][0]
                        self._log_checked.pop(vendor, None)
                    else:
                        top = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
                        self._read_pos[vendor] = max(pos, top or 0)
                        self._log_checked[vendor] = (version, time.monotonic())
                    conn.execute("COMMIT")
                    if new:
                        self._inflight.setdefault(vendor, set()).update(r[0] for r in new)
                        out.extend(map(Claimed._make, new))
                room = limit - len(out)
                if room > 0 and self._waiting[vendor]:
                    out.extend(self._claim_held(vendor, room))
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._explain(exc) from None
        return out

    def settle(self, vendor: str, settlements: Sequence[Settlement], now_ms: int) -> None:
        if any(s.claimed.seq < 0 for s in settlements):
            settlements = self._settle_held(vendor, settlements, now_ms)
            if not settlements:
                self._persist_soon()
                return
        if all(s.kind == "done" for s in settlements):
            # The common case, events read from the log and delivered: nothing to write but
            # the cursor, which request threads settling at the same time share (one
            # transaction for all of them instead of one each).
            with self._work_lock:
                inflight = self._inflight.setdefault(vendor, set())
                seqs = [s.claimed.seq for s in settlements]
                fresh = all(seq in inflight for seq in seqs)
                if fresh:
                    inflight.difference_update(seqs)
                    self._cursor_dirty.add(vendor)
            if fresh:
                self._persist_soon()
                return
        with self._work_lock, self._write_lock:
            conn = self._work
            inflight = self._inflight.setdefault(vendor, set())
            self._due_hint.pop(vendor, None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                for s in settlements:
                    seq = s.claimed.seq
                    fresh = seq in inflight
                    if s.kind == "done":
                        if not fresh:
                            conn.execute(
                                "DELETE FROM pending WHERE vendor=? AND seq=?", (vendor, seq)
                            )
                    elif s.kind in ("retry", "release"):
                        attempts = s.attempts if s.kind == "retry" else s.claimed.attempts
                        conn.execute(
                            "INSERT INTO pending(vendor, seq, attempts, due_ms, lease, last_error)"
                            " VALUES (?,?,?,?,0,?) ON CONFLICT(vendor, seq) DO UPDATE SET "
                            "attempts=excluded.attempts, due_ms=excluded.due_ms, lease=0, "
                            "last_error=coalesce(excluded.last_error, last_error)",
                            (vendor, seq, attempts, s.due_ms, s.error),
                        )
                    else:  # dead
                        conn.execute(
                            "INSERT INTO dead_letters(vendor, event_id, name, created_ms, "
                            "failed_ms, attempts, reason, payload) SELECT ?, event_id, name, "
                            "created_ms, ?, ?, ?, payload FROM events WHERE seq=?",
                            (vendor, now_ms, s.attempts, s.error or "", seq),
                        )
                        if not fresh:
                            conn.execute(
                                "DELETE FROM pending WHERE vendor=? AND seq=?", (vendor, seq)
                            )
                    inflight.discard(seq)
                self._save_cursor(vendor)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._explain(exc) from None

    def _claim_held(self, vendor: str, room: int) -> list[Claimed]:
        """Up to ``room`` events held from the spool (their seq: negative, see ROW_BITS)."""
        out: list[Claimed] = []
        chunks = self._ready[vendor]
        new = tuple.__new__
        while room and chunks:
            chunk = chunks[0]
            returned = chunk.returned.get(vendor)
            if returned:
                take: Sequence[int] = returned[:room]
                del returned[:room]
            else:
                start = chunk.claimed[vendor]
                take = chunk.lists[vendor][start : start + room]
                chunk.claimed[vendor] = start + len(take)
            if not take or (not returned and chunk.claimed[vendor] >= len(chunk.lists[vendor])):
                chunks.popleft()
            if take:
                chunk.inflight[vendor].update(take)
                rows = chunk.rows
                first = chunk.first
                out.extend(
                    [
                        new(Claimed, (first - i, r[0], r[4], 0, r[2]))
                        for i in take
                        for r in (rows[i],)
                    ]
                )
                room -= len(take)
        self._waiting[vendor] -= len(out)
        self._holding[vendor] += len(out)
        self._claimed_at[vendor] = time.monotonic()
        return out

    def _settle_held(
        self, vendor: str, settlements: Sequence[Settlement], now_ms: int
    ) -> list[Settlement]:
        """Settle the events held from the spool; returns the settlements for the log.

        Delivered: nothing to write (the segment's offset moves once its chunk is settled).
        Failed: the event goes into the log with its retry (or into the dead letters) before
        the spool lets go of it. Released: held again for the lane.
        """
        rest: list[Settlement] = []
        failed: list[tuple[HeldChunk, int, Settlement]] = []
        ours: list[tuple[HeldChunk, int, Settlement]] = []
        with self._work_lock:
            live = self._live
            for s in settlements:
                ident = s.claimed.seq
                if ident >= 0:
                    rest.append(s)
                    continue
                found = live.get(-ident >> ROW_BITS)
                i = -ident & ROW_MASK
                inflight = found.inflight.get(vendor) if found is not None else None
                if found is None or inflight is None or i not in inflight:
                    continue  # held before a recover(): the spool still has it
                if found.written is None and (
                    s.kind in ("retry", "dead") or (s.kind == "release" and s.due_ms > now_ms)
                ):
                    failed.append((found, i, s))
                else:
                    ours.append((found, i, s))
            # Failures are written first: if that raises, nothing here has changed, and the
            # lane's retried settle finds every event as it was.
            if failed:
                self._write_failed(vendor, failed, now_ms)
            done = 0
            for chunk, i, s in ours:
                inflight = chunk.inflight[vendor]
                inflight.discard(i)
                if chunk.written is not None:  # written back while in flight: a leased retry
                    if not any(chunk.inflight.values()):
                        live.pop(chunk.number, None)
                    rest.append(s._replace(claimed=s.claimed._replace(seq=chunk.written[i])))
                elif s.kind == "done":
                    chunk.open -= 1
                    done += 1
                    if not chunk.open:
                        self._chunk_settled(chunk)
                else:  # released, due now: held again for the lane
                    chunk.returned.setdefault(vendor, []).append(i)
                    self._holding[vendor] -= 1
                    self._waiting[vendor] += 1
                    self._ready.setdefault(vendor, deque()).appendleft(chunk)
            for chunk, i, _ in failed:
                chunk.inflight[vendor].discard(i)
                chunk.open -= 1
                done += 1
                if not chunk.open:
                    self._chunk_settled(chunk)
            self._holding[vendor] -= done
            if done:
                self._sent_dirty = True
        return rest

    def _write_failed(
        self, vendor: str, failed: list[tuple[HeldChunk, int, Settlement]], now_ms: int
    ) -> None:
        self._due_hint.pop(vendor, None)
        try:
            with self._write_lock, self._transaction() as conn:
                seq = conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
                for chunk, i, s in failed:
                    event_id, name, created_ms, _, payload = chunk.rows[i]
                    if s.kind == "dead":
                        conn.execute(
                            "INSERT INTO dead_letters(vendor, event_id, name, created_ms, "
                            "failed_ms, attempts, reason, payload) VALUES (?,?,?,?,?,?,?,?)",
                            (
                                vendor,
                                event_id,
                                name,
                                created_ms,
                                now_ms,
                                s.attempts,
                                s.error or "",
                                payload,
                            ),
                        )
                        continue
                    seq += 1  # in the log for its retries only: no vendor reads it as new
                    conn.execute(_INSERT_NUMBERED, (seq, event_id, name, created_ms, ",", payload))
                    conn.execute(
                        "INSERT INTO pending(vendor, seq, attempts, due_ms, lease, last_error) "
                        "VALUES (?,?,?,?,0,?)",
                        (vendor, seq, s.attempts if s.kind == "retry" else 0, s.due_ms, s.error),
                    )
        except sqlite3.Error as exc:
            raise self._explain(exc) from None

    def _chunk_settled(self, chunk: HeldChunk) -> None:
        del self._live[chunk.number]
        self._held_count -= len(chunk.rows)
        if chunk.segment in self._chunks:
            self._advance(chunk.segment)

    def _persist_soon(self) -> None:
        """Save progress if it was last saved more than PERSIST_EVERY ago (else the next
        settle, poll or maintenance does): one small transaction per batch delivered was
        half a microsecond per event. Progress saved later only means that a deliverer
        that dies sends a few more events again."""
        if time.monotonic() - self._persisted_at >= PERSIST_EVERY:
            self._persist_cursors()

    def _persist_cursors(self) -> None:
        """Write the cursors marked dirty, in one transaction; a thread that finds another
        writing them leaves its mark for that one, which looks again before it stops."""
        while self._cursor_dirty or self._offsets_dirty or self._sent_dirty:
            if not self._persist_lock.acquire(blocking=False):
                return
            try:
                with self._work_lock, self._write_lock:
                    self._persisted_at = time.monotonic()
                    vendors = list(self._cursor_dirty)
                    self._cursor_dirty.clear()
                    offsets = self._offsets_dirty
                    self._offsets_dirty = {}
                    self._sent_dirty = False
                    sent = self._sent_progress()
                    try:
                        with self._transaction() as conn:
                            for vendor in vendors:
                                self._save_cursor(vendor)
                            conn.executemany(_SAVE_OFFSET, list(offsets.items()))
                            conn.executemany(_SAVE_SENT, sent)
                        self._sent_saved.update({(s, v): o for s, v, o in sent})
                        if self._offsets is not None:
                            self._offsets.update(offsets)
                        self.faults.ok("saving delivery progress")
                    except sqlite3.Error as exc:
                        self._offsets_dirty = {**offsets, **self._offsets_dirty}
                        self._cursor_dirty.update(vendors)
                        self._sent_dirty = True
                        # Maintenance writes every cursor once a second: nothing is lost, a
                        # crash now would re-deliver a little more.
                        self.faults.failed("saving delivery progress", self._explain(exc))
                        return
            finally:
                self._persist_lock.release()

    def _sent_progress(self) -> list[tuple[str, str, int]]:
        """(segment, vendor, offset) for each vendor whose settled point in a segment's held
        chunks moved since it was saved (the caller holds the work lock)."""
        out: list[tuple[str, str, int]] = []
        for segment, chunks in self._chunks.items():
            reached: dict[str, int] = {}
            stuck: set[str] = set()
            for chunk in chunks:
                for vendor in chunk.lists:
                    if vendor in stuck:
                        continue
                    to = chunk.settled_to(vendor)
                    if to is None:
                        reached[vendor] = chunk.end
                    else:
                        reached[vendor] = to
                        stuck.add(vendor)
            for vendor, offset in reached.items():
                if self._sent_saved.get((segment, vendor), -1) < offset:
                    out.append((segment, vendor, offset))
        return out

    def _save_cursor(self, vendor: str) -> None:
        pos = self._cursor(vendor)
        inflight = self._inflight.get(vendor)
        low = min(inflight) - 1 if inflight else pos
        self._work.execute(
            "INSERT INTO cursors(vendor, seq) VALUES (?, ?) "
            "ON CONFLICT(vendor) DO UPDATE SET seq=max(seq, excluded.seq)",
            (vendor, low),
        )

    @_translated
    def next_due_ms(self, vendor: str) -> int | None:
        with self._work_lock:
            row = self._work.execute(
                "SELECT min(due_ms) FROM pending WHERE vendor=? AND lease=0", (vendor,)
            ).fetchone()
        return row[0] if row else None

    def maintenance(self) -> None:
        """Ingest the spool, persist cursors, drop events every served vendor is done with (in
        chunks), checkpoint the WAL (without the write lock)."""
        try:
            self._ingest()
            self._clean_spool_dir()
            self.faults.ok("ingesting the spool")
        except (QueueError, OSError) as exc:
            self.faults.failed("ingesting the spool", exc)
        with self._work_lock:
            conn = self._work
            try:
                with self._write_lock:
                    conn.execute("BEGIN IMMEDIATE")
                    for vendor in list(self._read_pos):
                        self._save_cursor(vendor)
                    conn.execute("COMMIT")
                upto = self._collectable_upto()
                # An event is collectable once every vendor it is for is one we serve: its
                # vendors key (",a,b,") with each served vendor taken out is just ",".
                served = sorted(self._served)
                only_served = "vendors"
                for _ in served:
                    only_served = f"replace({only_served}, ?, ',')"
                while upto is not None:
                    with self._write_lock:
                        deleted = conn.execute(
                            "DELETE FROM events WHERE seq IN (SELECT seq FROM events "
                            "WHERE seq <= ? AND seq < (SELECT max(seq) FROM events) "
                            "AND seq NOT IN (SELECT seq FROM pending) "
                            f"AND {only_served} = ',' ORDER BY seq LIMIT ?)",
                            (upto, *map(vendor_key, served), GC_CHUNK),
                        ).rowcount
                    if deleted < GC_CHUNK:
                        break
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.faults.ok("queue maintenance")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self.faults.failed("queue maintenance", self._explain(exc))

    def _collectable_upto(self) -> int | None:
        """The sequence number up to which every served vendor's cursor has moved."""
        if not self._served:
            return None
        rows = self._work.execute(
            "SELECT vendor, seq FROM cursors WHERE vendor IN ({})".format(
                ",".join("?" * len(self._served))
            ),
            tuple(self._served),
        ).fetchall()
        if len(rows) < len(self._served):
            return None  # a vendor has not started yet: keep everything for it
        return int(min(seq for _, seq in rows))

    # --- inspection ------------------------------------------------------------------------------

    @_translated
    def depth(self, vendors: Sequence[str], now_ms: int) -> dict[str, QueueDepth]:
        if self._lock_fd is None:
            return self._depth(vendors, now_ms, self._spool_backlog(vendors))
        # The deliverer: no reading of the spool meanwhile, or records read between counting
        # the spool and counting what is held would count twice (or not at all).
        with self._ingest_lock:
            self._ingest_now()
            return self._depth(vendors, now_ms, self._spool_backlog(vendors))

    def _depth(
        self, vendors: Sequence[str], now_ms: int, spooled: Counter[str]
    ) -> dict[str, QueueDepth]:
        out: dict[str, QueueDepth] = {}
        with self._work_lock:
            conn = self._work
            for v in vendors:
                row = conn.execute("SELECT seq FROM cursors WHERE vendor=?", (v,)).fetchone()
                cursor = row[0] if row else 0
                inflight_new = len(self._inflight.get(v, ()))
                pos = self._read_pos.get(v, cursor)
                unread, unread_oldest = conn.execute(
                    "SELECT count(*), min(created_ms) FROM events "
                    "WHERE seq > ? AND instr(vendors, ?) > 0",
                    (pos, vendor_key(v)),
                ).fetchone()
                held_oldest = conn.execute(
                    "SELECT min(e.created_ms) FROM pending p JOIN events e ON e.seq = p.seq "
                    "WHERE p.vendor=?",
                    (v,),
                ).fetchone()[0]
                claimed = self._inflight.get(v)
                if claimed:  # read from the log and sent now: not in the counts above
                    row = conn.execute(
                        "SELECT created_ms FROM events WHERE seq=?", (min(claimed),)
                    ).fetchone()
                    if row and (held_oldest is None or row[0] < held_oldest):
                        held_oldest = row[0]
                due, waiting, leased = conn.execute(
                    "SELECT coalesce(sum(lease=0 AND due_ms<=?),0), "
                    "coalesce(sum(lease=0 AND due_ms>?),0), coalesce(sum(lease=1),0) "
                    "FROM pending WHERE vendor=?",
                    (now_ms, now_ms, v),
                ).fetchone()
                dead = conn.execute(
                    "SELECT count(*) FROM dead_letters WHERE vendor=?", (v,)
                ).fetchone()[0]
                out[v] = QueueDepth(
                    ready=unread + spooled[v] + due + self._waiting[v],
                    retrying=waiting,
                    inflight=leased + inflight_new + self._holding[v],
                    dead=dead,
                    oldest_ms=min(
                        (t for t in (unread_oldest, held_oldest) if t is not None), default=None
                    ),
                )
        return out

    @_translated
    def vendors_seen(self) -> list[str]:
        """Every vendor that has a cursor, pending work or dead letters in this file."""
        with self._work_lock:
            rows = self._work.execute(
                "SELECT vendor FROM cursors UNION SELECT vendor FROM pending "
                "UNION SELECT vendor FROM dead_letters"
            ).fetchall()
        return sorted(r[0] for r in rows)

    @_translated
    def _dead_rows(self, where: str, args: tuple[object, ...], limit: int) -> list[DeadLetter]:
        with self._work_lock:
            rows = self._work.execute(
                "SELECT id, vendor, event_id, name, created_ms, failed_ms, attempts, reason, "
                f"payload FROM dead_letters {where} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [DeadLetter(*r) for r in rows]

    @staticmethod
    def _dead_filter(
        vendor: str | None, since_ms: int | None, ids: Sequence[int] = ()
    ) -> tuple[str, tuple[object, ...]]:
        clauses: list[str] = []
        args: list[object] = []
        if vendor is not None:
            clauses.append("vendor=?")
            args.append(vendor)
        if since_ms is not None:
            clauses.append("failed_ms>=?")
            args.append(since_ms)
        if ids:
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)

    def dead_letters(
        self, vendor: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        where, args = self._dead_filter(vendor, since_ms)
        return self._dead_rows(where, args, limit)

    def dead_letter(self, id: int) -> DeadLetter | None:
        rows = self._dead_rows("WHERE id=?", (id,), 1)
        return rows[0] if rows else None

    def requeue_dead(
        self, vendor: str | None = None, since_ms: int | None = None, ids: Sequence[int] = ()
    ) -> list[DeadLetter]:
        where, args = self._dead_filter(vendor, since_ms, ids)
        with self._work_lock, self._write_lock:
            rows = self._dead_rows(where, args, 10**9)
            self._log_version += 1
            conn = self._work
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    _INSERT,
                    [
                        (d.event_id, d.name, d.created_ms, vendor_key(d.vendor), d.payload)
                        for d in reversed(rows)
                    ],
                )
                conn.executemany("DELETE FROM dead_letters WHERE id=?", [(d.id,) for d in rows])
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._explain(exc) from None
        return rows

    def discard_dead(self, ids: Sequence[int]) -> list[DeadLetter]:
        if not ids:
            return []
        where, args = self._dead_filter(None, None, ids)
        with self._work_lock, self._write_lock:
            rows = self._dead_rows(where, args, len(ids))
            conn = self._work
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("DELETE FROM dead_letters WHERE id=?", [(d.id,) for d in rows])
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._explain(exc) from None
        return rows

    def expire_dead(self, before_ms: int) -> int:
        with self._work_lock, self._write_lock:
            try:
                return self._work.execute(
                    "DELETE FROM dead_letters WHERE failed_ms < ?", (before_ms,)
                ).rowcount
            except sqlite3.Error as exc:
                raise self._explain(exc) from None

    def erasure_log(self) -> erase.ErasureLog:
        return erase.SQLiteErasureLog(Path(f"{self.path}.erased"))

    def stored_events(self) -> Iterable[tuple[str, bytes]]:
        return erase.sqlite_stored_events(self.path, self.spool_dir)

    @_translated
    def remember(self, vendor: str, key: str) -> bool:
        with self._work_lock, self._write_lock:
            cur = self._work.execute(
                "INSERT OR IGNORE INTO remembered(vendor, key) VALUES (?, ?)", (vendor, key)
            )
            return cur.rowcount == 1

    @_translated
    def forget(self, vendor: str, key: str) -> None:
        with self._work_lock, self._write_lock:
            self._work.execute("DELETE FROM remembered WHERE vendor=? AND key=?", (vendor, key))

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
        rows = [(vendor, reason, n) for (vendor, reason), n in counts.items()]
        with self._work_lock, self._write_lock:
            try:
                with self._transaction() as conn:
                    conn.executemany(_ADD_SKIPS, rows)
            except sqlite3.Error as exc:
                raise self._explain(exc) from None

    @_translated
    def skip_counts(self) -> dict[str, dict[str, int]]:
        with self._work_lock:
            rows = self._work.execute("SELECT vendor, reason, count FROM skips").fetchall()
        out: dict[str, dict[str, int]] = {}
        for vendor, reason, n in rows:
            out.setdefault(vendor, {})[reason] = n
        return out

    def __repr__(self) -> str:
        return f"<SQLiteQueue {self.path}>"

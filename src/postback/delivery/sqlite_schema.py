"""The ``sqlite://`` queue file itself: its layout, how it is opened, and the state shared by
the parts of :class:`~postback.delivery.sqlite.SQLiteQueue`.

Duties: the DDL (``_SCHEMA``; the layout is described in :mod:`postback.delivery.sqlite`) and
the format check; creating the file owner-only (0600, directories 0700) before SQLite opens it,
one process at a time (``<queue>.init.lock``); opening connections with the pragmas; turning
SQLite's and the spool's errors into the :class:`~postback.errors.QueueError` subclass that
says what to do; and the insert of records that every write of new events goes through.
Transactions are :mod:`postback.delivery.sqltx`'s (:meth:`SQLiteFile.transaction` is its write
transaction on the work connection).

:class:`SQLiteFile` is the small explicit state the parts share (no part holds the façade):
the work connection, its locks, the deliverer lock's descriptor (see
:mod:`postback.delivery.election`), the vendors served here, a version of the log that moves
on every insert, and the fault log.

Lock order (every part): ``work_lock`` (an RLock: one thread at a time uses the connection)
before ``write_lock`` (every write transaction of this process, on either connection, takes
it: our own writers queue in Python instead of colliding inside SQLite, whose busy handler
sleeps 1, 2, 5, 10 ms...; other processes still meet SQLite's locks). Never the other way.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from postback.delivery import spool, sqltx
from postback.delivery.faultlog import FaultLog
from postback.errors import QueueCorrupt, QueueDiskFull, QueueError, QueueReadOnly

__all__ = ["SCHEMA_VERSION", "SQLiteFile", "translated"]

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
INSERT = "INSERT INTO events(event_id, name, created_ms, vendors, payload) VALUES (?,?,?,?,?)"
INSERT_NUMBERED = (
    "INSERT INTO events(seq, event_id, name, created_ms, vendors, payload) VALUES (?,?,?,?,?,?)"
)
SAVE_OFFSET = (
    "INSERT INTO spool(segment, offset) VALUES (?, ?) "
    "ON CONFLICT(segment) DO UPDATE SET offset=excluded.offset"
)


def disk_nearly_full(path: Path) -> bool:
    """Whether the filesystem of ``path`` has (almost) no space left: SQLite reports a write
    that failed for want of space as a plain "disk I/O error" as often as "disk is full"."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


_F = TypeVar("_F", bound=Callable[..., Any])


def translated(method: _F) -> _F:
    """A public method (of a part that keeps its :class:`SQLiteFile` as ``_file``) that reads or
    writes the file: SQLite's errors come out as the :class:`QueueError` subclass that says
    what is wrong and what to do."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise self._file.explain(exc) from None

    return wrapper  # type: ignore[return-value]


class SQLiteFile:
    """The queue file's connection, locks and shared flags (see the module docstring)."""

    def __init__(self, path: Path, *, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self.spool_dir = Path(f"{self.path}.spool")
        self.write_lock = threading.Lock()
        self.work_lock = threading.RLock()
        self.lock_fd: int | None = None  # the deliverer lock, while this process holds it
        self.lock_ident = (0, 0)
        self.unreadable: str | None = None  # why this forked child has no connection
        self.faults = FaultLog(log)
        self.served: frozenset[str] = frozenset()
        self.log_version = 0
        self.work: sqlite3.Connection  # made by open()

    def connect(self, autocheckpoint: int) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
            return conn
        except sqlite3.DatabaseError as exc:
            raise self.explain(exc) from None

    def explain(self, exc: sqlite3.Error) -> QueueError:
        msg = str(exc)
        if self.unreadable is not None:
            return QueueError(
                f"this process cannot read the queue file {self.path}: {self.unreadable}. "
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
        if "disk is full" in msg or ("disk I/O" in msg and disk_nearly_full(self.path)):
            return QueueDiskFull(
                f"the queue file {self.path} cannot grow ({msg}): free disk space; "
                "nothing already queued is lost"
            )
        return QueueError(f"queue file {self.path}: {msg}")

    def explain_spool(self, exc: OSError) -> QueueError:
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

    def open(self) -> None:
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
        self.work = self.connect(0)
        try:
            self.work.execute("PRAGMA journal_mode=WAL")
            tables = {
                r[0] for r in self.work.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if tables and "meta" not in tables:
                raise QueueCorrupt(
                    f"{self.path} is a SQLite database but not a postback queue (it has tables "
                    f"{', '.join(sorted(tables))}); point [postback] queue at another file"
                )
            self.work.executescript(_SCHEMA)
            self.work.execute(
                "INSERT OR IGNORE INTO meta VALUES ('format', 'postback-queue'), ('version', ?)",
                (SCHEMA_VERSION,),
            )
            version = self.work.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if version and version[0] != SCHEMA_VERSION:
                raise QueueCorrupt(
                    f"{self.path} is a postback queue of format {version[0]}, this postback "
                    f"reads format {SCHEMA_VERSION}: deliver it with the version that wrote it"
                )
        except sqlite3.DatabaseError as exc:
            raise self.explain(exc) from None
        try:
            self.spool_dir.mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise self.explain_spool(exc) from None
        if not os.access(self.spool_dir, os.W_OK | os.X_OK):
            raise self.explain_spool(PermissionError(errno.EACCES, "Permission denied"))

    def transaction(self) -> sqltx._Transaction:
        """A write transaction on the work connection (:func:`postback.delivery.sqltx.write`),
        rolled back if anything fails in it (the caller holds ``write_lock``)."""
        return sqltx.write(self.work)

    def insert(self, rows: list[spool.Row], offset: tuple[str, int] | None = None) -> None:
        """Insert records into the log, with a segment's new offset if given."""
        with self.work_lock, self.write_lock:
            self.log_version += 1
            with self.transaction() as conn:
                conn.executemany(INSERT, rows)
                if offset is not None:
                    conn.execute(SAVE_OFFSET, offset)

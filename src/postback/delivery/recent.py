"""Recent keys of a ``sqlite://`` queue: event ids remembered for a window, for local dedupe.

:meth:`SQLiteQueue.remember_for <postback.delivery.sqlite.SQLiteQueue.remember_for>` runs on the
``track()`` path, so it must never wait behind the deliverer. The keys therefore live in a
small SQLite file of their own next to the queue file, ``<queue>.recent`` (WAL, created
owner-only)::

    recent(vendor, key, expires_ms)     PRIMARY KEY (key, vendor); indexed by expires_ms

The deliverer's long transactions on the queue file (ingesting the spool, garbage collection)
hold no lock on it. One call is one autocommit upsert: a row that is new, or whose window ran
out, is (re)written and named by ``RETURNING``; a row still in its window is left alone. That
makes it atomic across threads, processes and trackers sharing the file. Every 256 calls, up to
1,024 expired rows are deleted (more than the calls add), so the file stays as small as the
keys of one window.

The calling thread never checkpoints the WAL: a checkpoint syncs the file (10-30 ms), and on
the connection ``track()`` commits on it stalled one call (or an ``AsyncTracker``'s event loop)
every few thousand. That connection has automatic checkpoints off; every
:data:`CHECKPOINT_EVERY` calls it wakes a thread of its own, which checkpoints on a connection
of its own (``PASSIVE``: it never waits for, nor blocks, a writer).

A connection is never used across ``fork()``: :meth:`RecentFile.usable` is false in a child,
which opens its own (the parent's is left untouched, as the queue does with its own).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from postback.errors import QueueError

__all__ = ["RecentFile"]

#: Calls between deletions of expired rows, and how many one deletion takes at most.
SWEEP_EVERY = 256
SWEEP_ROWS = 1024
#: WAL pages (of 1 KiB) kept after a checkpoint (the WAL is truncated to this).
CHECKPOINT_PAGES = 10_000
#: Calls between wake-ups of the checkpoint thread (a call writes about two pages).
CHECKPOINT_EVERY = 2_000
_abandoned: list[sqlite3.Connection] = []  # connections inherited across fork: never touched


_UPSERT: dict[int, str] = {}


def _upsert(n: int) -> str:
    """The upsert of ``n`` vendors' rows: new rows, and rows whose window ran out, are
    (re)written and returned; rows still in their window are left alone."""
    _UPSERT[n] = sql = (
        f"INSERT INTO recent(vendor, key, expires_ms) VALUES {','.join(['(?,?,?)'] * n)} "
        "ON CONFLICT(key, vendor) DO UPDATE SET expires_ms = excluded.expires_ms "
        "WHERE expires_ms <= ? RETURNING vendor"
    )
    return sql


class RecentFile:
    """The ``recent`` table of one queue file, as one process sees it."""

    def __init__(self, queue_path: Path, busy_timeout: float) -> None:
        self.path = Path(f"{queue_path}.recent")
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._calls = 0
        self._checkpoint_due = threading.Event()
        self._closing = False
        self._checkpointer: threading.Thread | None = None
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # owner-only from the start
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            init_fd = os.open(f"{queue_path}.init.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:  # one process at a time switches a new file to WAL (as the queue file)
                fcntl.flock(init_fd, fcntl.LOCK_EX)
                # Small pages: a commit writes each page it changed to the WAL whole, and a
                # remember changes two (the row, its expiry's index entry).
                self._conn.execute("PRAGMA page_size=1024")
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS recent(vendor TEXT NOT NULL, key TEXT NOT NULL, "
                    "expires_ms INTEGER NOT NULL, PRIMARY KEY(key, vendor)) WITHOUT ROWID"
                )
                self._conn.execute("CREATE INDEX IF NOT EXISTS recent_expiry ON recent(expires_ms)")
            finally:
                fcntl.flock(init_fd, fcntl.LOCK_UN)
                os.close(init_fd)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # Never on this connection: the checkpoint thread does it (see the module). The
            # first commit after a checkpoint truncates the WAL to this connection's limit.
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._conn.execute(f"PRAGMA journal_size_limit={CHECKPOINT_PAGES * 1024}")
        except (OSError, sqlite3.Error) as exc:
            raise QueueError(
                f"cannot open the dedupe file {self.path} next to the queue ({exc}): make the "
                "directory writable by this process or set [postback] queue to another path"
            ) from None

    def usable(self) -> bool:
        """False in a process forked after this was opened (it must open its own)."""
        if self.pid == os.getpid():
            return True
        _abandoned.append(self._conn)
        return False

    def remember_for(self, vendors: Sequence[str], key: str, window_ms: int) -> list[str]:
        """See :meth:`postback.delivery.queue.Queue.remember_for`."""
        now = time.time_ns() // 1_000_000
        args: list[object] = []
        for vendor in vendors:
            args += (vendor, key, now + window_ms)
        args.append(now)
        sql = _UPSERT.get(len(vendors)) or _upsert(len(vendors))
        try:
            with self._lock:
                got = {row[0] for row in self._conn.execute(sql, args).fetchall()}
                self._calls += 1
                if self._calls % CHECKPOINT_EVERY == 0:
                    self._wake_checkpointer()
                if self._calls % SWEEP_EVERY == 0:
                    self._conn.execute(
                        "DELETE FROM recent WHERE (key, vendor) IN (SELECT key, vendor FROM "
                        "recent WHERE expires_ms <= ? LIMIT ?)",
                        (now, SWEEP_ROWS),
                    )
        except sqlite3.Error as exc:
            raise QueueError(f"dedupe file {self.path}: {exc}") from None
        return [v for v in vendors if v in got]

    def forget_for(self, vendors: Sequence[str], key: str) -> None:
        """See :meth:`postback.delivery.queue.Queue.forget_for`."""
        try:
            with self._lock:
                self._conn.executemany(
                    "DELETE FROM recent WHERE key=? AND vendor=?", [(key, v) for v in vendors]
                )
        except sqlite3.Error as exc:
            raise QueueError(f"dedupe file {self.path}: {exc}") from None

    # --- checkpoints, off the calling thread ----------------------------------------------------

    def _wake_checkpointer(self) -> None:
        if self._checkpointer is None:
            thread = threading.Thread(
                target=self._checkpoints, name="postback-recent-checkpoint", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:  # the interpreter is exiting (3.12+): the close checkpoints
                return
            self._checkpointer = thread
        self._checkpoint_due.set()

    def _checkpoints(self) -> None:
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=0.0, isolation_level=None)
            while True:
                self._checkpoint_due.wait()
                self._checkpoint_due.clear()
                if self._closing:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy: the next wake-up tries again (the WAL only grows meanwhile)
        except sqlite3.Error:
            return  # the file went away: the calling connection reports its own errors
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        if self.pid != os.getpid():
            return
        thread = self._checkpointer
        if thread is not None:
            self._closing = True
            self._checkpoint_due.set()
            thread.join(5.0)
        self._conn.close()

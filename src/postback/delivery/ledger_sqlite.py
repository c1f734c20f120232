"""The delivery ledger of a ``sqlite://`` queue: a ``<queue file>.ledger`` SQLite file beside it.

Why a file of its own rather than a table in the queue's file: the queue file has one write
lock, which ``track()`` (ingesting spools) and the lanes (claims, settlements) contend for; the
ledger's writes would hold it longer for no gain, and a reader of the ledger (``postback
status``, the dashboard) would share the queue's WAL. In its own file the ledger has its own
lock and WAL, cannot slow delivery down, and can be deleted at any time without touching a
queued event. It is created ``0600`` (it names events and vendors), in WAL mode, and written
only by the :class:`~postback.ledger.LedgerWriter` thread of each process, a batch per
transaction; any process reads it.

Layout::

    entries(id INTEGER PRIMARY KEY, event_id, vendor, at_ms, kind, attempt, note, ref,
            name, queued_ms, due_ms)        one row per outcome; indexed by event_id only

No index on ``at_ms`` (it cost about 0.6 µs of the writer's CPU per row, and the writer's CPU
is delivery's: about a row per event delivered): rows are appended in about the order of
their time, so :meth:`SQLiteLedger.prune` finds by a binary search on ``id`` the first row
within the retention and deletes the older rows before it. It never removes a row within the
retention; a row written late, out of time order, goes at a later prune. A ledger written by
an older version loses its ``at_ms`` index when it is first opened.

What an event waiting in the queue looks like (``queued``, ``retrying``, ``in flight``) is read
from the queue file through a read-only connection, in the layout documented in
:mod:`postback.delivery.sqlite`; an event still in a process's spool file (tracked in the last
moments) is not seen there yet.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from postback.delivery import sqltx, timing
from postback.errors import QueueError
from postback.ledger import DEFAULT_MAX_ENTRIES, DEFAULT_RETENTION, LedgerEntry, safe_note

__all__ = ["SQLiteLedger", "ledger_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    vendor TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    note TEXT NOT NULL,
    ref TEXT NOT NULL,
    name TEXT NOT NULL,
    queued_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_event ON entries(event_id);
DROP INDEX IF EXISTS entries_by_time;
"""
_INSERT = (
    "INSERT INTO entries(event_id, vendor, at_ms, kind, attempt, note, ref, name, queued_ms, "
    "due_ms) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_COLUMNS = "event_id, vendor, at_ms, kind, attempt, note, ref, name, queued_ms, due_ms"


def ledger_path(queue_path: Path) -> Path:
    """Where a queue file's ledger lives: ``/var/lib/app/postback.db.ledger``."""
    return Path(f"{queue_path}.ledger")


class SQLiteLedger:
    """The ledger in ``<queue>.ledger``; one connection per process, opened on first use."""

    def __init__(
        self,
        queue_path: Path,
        *,
        retention: float = DEFAULT_RETENTION,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.queue_path = Path(queue_path)
        self.path = ledger_path(self.queue_path)
        self.retention = retention
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._queue_conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def _connect(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked without after_fork(): never reuse the parent's
            self._conn = self._queue_conn = None
            self._pid = os.getpid()
        if self._conn is None:
            try:
                if not self.path.exists():
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
                conn = sqlite3.connect(
                    self.path,
                    timeout=timing.BUSY_TIMEOUT,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                raise QueueError(
                    f"cannot open the delivery ledger {self.path}: {exc}. Check that the "
                    "directory is writable by this process, or delete the file (only the "
                    "ledger's history is lost; queued events are in the queue file)"
                ) from exc
            self._conn = conn
        return self._conn

    def write(self, entries: Sequence[LedgerEntry]) -> None:
        with self._lock:
            conn = self._connect()
            try:
                with sqltx.write(conn):
                    conn.executemany(_INSERT, entries)
            except sqlite3.Error as exc:
                raise QueueError(f"cannot write the delivery ledger {self.path}: {exc}") from exc

    def read(self, event_id: str) -> list[LedgerEntry]:
        if not self.path.exists():
            return []
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    f"SELECT {_COLUMNS} FROM entries WHERE event_id=? ORDER BY id", (event_id,)
                )
                .fetchall()
            )
        return [LedgerEntry(*r) for r in rows]

    def prune(self, now_ms: int) -> int:
        cutoff = now_ms - int(self.retention * 1000)
        with self._lock:
            conn = self._connect()
            gone = 0
            upto = self._first_at(conn, cutoff)
            if upto is not None:
                gone = conn.execute(
                    "DELETE FROM entries WHERE id < ? AND at_ms < ?", (upto, cutoff)
                ).rowcount
            top = conn.execute("SELECT max(id) FROM entries").fetchone()[0]
            if top is not None:
                gone += conn.execute(
                    "DELETE FROM entries WHERE id <= ?", (top - self.max_entries,)
                ).rowcount
            return gone

    @staticmethod
    def _first_at(conn: sqlite3.Connection, cutoff: int) -> int | None:
        """The id of the first row at or after ``cutoff`` (epoch ms), rows taken to be in about
        the order of their time (a binary search on ``id``); past the last row if every row is
        older; None if there is no row."""
        low, high = conn.execute("SELECT min(id), max(id) FROM entries").fetchone()
        if low is None:
            return None
        high += 1  # "past the last row"
        while low < high:
            mid = (low + high) // 2
            row = conn.execute(
                "SELECT id, at_ms FROM entries WHERE id >= ? ORDER BY id LIMIT 1", (mid,)
            ).fetchone()
            if row is None or row[1] >= cutoff:
                high = mid
            else:
                low = row[0] + 1
        return int(low)

    def waiting(self, event_id: str) -> list[LedgerEntry]:
        """The queue file's records of ``event_id`` that are still waiting, per vendor."""
        if not self.queue_path.exists():
            return []
        with self._lock:
            if self._queue_conn is None:
                self._queue_conn = sqlite3.connect(
                    f"file:{self.queue_path}?mode=ro",
                    uri=True,
                    timeout=timing.BUSY_TIMEOUT,
                    check_same_thread=False,
                )
            conn = self._queue_conn
            out: list[LedgerEntry] = []
            try:
                events = conn.execute(
                    "SELECT seq, name, created_ms, vendors FROM events WHERE event_id=?",
                    (event_id,),
                ).fetchall()
                cursors = dict(conn.execute("SELECT vendor, seq FROM cursors").fetchall())
                for seq, name, created, vendors in events:
                    pending = conn.execute(
                        "SELECT vendor, attempts, due_ms, lease, last_error FROM pending "
                        "WHERE seq=?",
                        (seq,),
                    ).fetchall()
                    seen = set()
                    for vendor, attempts, due, lease, error in pending:
                        seen.add(vendor)
                        kind = "in flight" if lease else "retrying"
                        out.append(
                            LedgerEntry(
                                event_id, vendor, 0, kind, attempts, safe_note(error), "", name,
                                created, due,
                            )
                        )  # fmt: skip
                    for vendor in filter(None, str(vendors).split(",")):
                        if vendor not in seen and seq > cursors.get(vendor, 0):
                            out.append(
                                LedgerEntry(event_id, vendor, 0, "queued", 0, "", "", name, created)
                            )
            except sqlite3.OperationalError:
                return []  # a queue file not created yet (no table): nothing waits
        return out

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._conn = self._queue_conn = None
        self._pid = os.getpid()

    def close(self) -> None:
        with self._lock:
            for conn in (self._conn, self._queue_conn):
                if conn is not None:
                    conn.close()
            self._conn = self._queue_conn = None

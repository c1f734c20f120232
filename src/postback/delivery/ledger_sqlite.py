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

    outcomes(id INTEGER PRIMARY KEY, vendor, at_ms, kind, attempt, note, ref, name, due_ms,
             events, queued, total)      one row per group of outcomes; no index
    entries(id INTEGER PRIMARY KEY, event_id, vendor, at_ms, ...)   the previous layout (one
             row per outcome, indexed by event_id): read and pruned, never written (an
             older version's processes may still write it)

A row of ``outcomes`` holds the outcomes of a request's events that share everything but the
event: ``events`` is a JSON array of their ids, ``queued`` a JSON array of when the queue
accepted each (epoch ms), in the same order; ``total`` is how many outcomes the table has
taken up to and including this row (the size cap counts outcomes, not rows). One row per
request, not per event, and no index: writing an event's outcome costs the writer about 0.6-0.8
µs of CPU instead of 2.6 µs (ordered ids) to 13 µs (random UUIDs, each in its own page of an
index), and the writer's CPU is delivery's. A lookup (``postback status``, the dashboard) scans
the table for the quoted id instead (``instr``): about 55 ms per million outcomes kept, on a
2-core machine.

Rows are appended in about the order of their time, so :meth:`SQLiteLedger.prune` finds by a
binary search on ``id`` the first row within the retention and deletes the older rows before
it, and the first row within the size cap by the same search on ``total``. It never removes a
row within the retention; a row written late, out of time order, goes at a later prune. The
``entries`` table of a ledger written by an older version is read and pruned the same way, and
kept once empty: processes of that version, still running during a rolling deploy, go on
writing there.

What an event waiting in the queue looks like (``queued``, ``retrying``, ``in flight``) is read
from the queue file through a read-only connection, in the layout documented in
:mod:`postback.delivery.sqlite`; an event still in a process's spool file (tracked in the last
moments) is not seen there yet.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import threading
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson

from postback.delivery import sqltx, timing
from postback.errors import QueueError
from postback.ledger import DEFAULT_MAX_ENTRIES, DEFAULT_RETENTION, LedgerEntry, safe_note

__all__ = ["SQLiteLedger", "grouped_rows", "ledger_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes(
    id INTEGER PRIMARY KEY,
    vendor TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    note TEXT NOT NULL,
    ref TEXT NOT NULL,
    name TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    events TEXT NOT NULL,
    queued TEXT NOT NULL,
    total INTEGER NOT NULL
);
"""
_INSERT = (
    "INSERT INTO outcomes(vendor, at_ms, kind, attempt, note, ref, name, due_ms, events, "
    "queued, total) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_LEGACY_COLUMNS = "event_id, vendor, at_ms, kind, attempt, note, ref, name, queued_ms, due_ms"
#: What the outcomes of one row share: vendor, at_ms, kind, attempt, note, ref, name, due_ms.
_shared = operator.itemgetter(1, 2, 3, 4, 5, 6, 7, 9)
_event_id = operator.itemgetter(0)
_queued_ms = operator.itemgetter(8)


def _dumps(value: object) -> str:
    """Compact JSON text (orjson: about a fifth of the stdlib encoder's time per row)."""
    return orjson.dumps(value).decode()


def grouped_rows(entries: Sequence[LedgerEntry], total: int) -> list[tuple[Any, ...]]:
    """The ``outcomes`` rows of ``entries``: consecutive entries that share all but the event
    (a request's outcomes) become one row; ``total`` is the table's count of outcomes
    before them."""
    rows: list[tuple[Any, ...]] = []
    for shared, group in groupby(entries, _shared):
        members = list(group)
        total += len(members)
        ids = _dumps(list(map(_event_id, members)))
        queued = _dumps(list(map(_queued_ms, members)))
        rows.append((*shared, ids, queued, total))
    return rows


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
        self._legacy = False  # the file has the previous layout's ``entries`` table

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
                self._legacy = _has_table(conn, "entries")
                if self._legacy:
                    conn.execute("DROP INDEX IF EXISTS entries_by_time")
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
                    last = conn.execute(
                        "SELECT total FROM outcomes ORDER BY id DESC LIMIT 1"
                    ).fetchone()
                    conn.executemany(_INSERT, grouped_rows(entries, last[0] if last else 0))
            except sqlite3.Error as exc:
                raise QueueError(f"cannot write the delivery ledger {self.path}: {exc}") from exc

    def read(self, event_id: str) -> list[LedgerEntry]:
        if not self.path.exists():
            return []
        with self._lock:
            conn = self._connect()
            out: list[LedgerEntry] = []
            if self._legacy:
                try:
                    rows = conn.execute(
                        f"SELECT {_LEGACY_COLUMNS} FROM entries WHERE event_id=? ORDER BY id",
                        (event_id,),
                    ).fetchall()
                    out.extend(LedgerEntry(*r) for r in rows)
                except sqlite3.OperationalError:  # another process dropped it, empty
                    self._legacy = False
            grouped = conn.execute(
                "SELECT vendor, at_ms, kind, attempt, note, ref, name, due_ms, events, queued "
                "FROM outcomes WHERE instr(events, ?) ORDER BY id",
                (_dumps(event_id),),
            ).fetchall()
        for vendor, at_ms, kind, attempt, note, ref, name, due_ms, events, queued in grouped:
            ids = orjson.loads(events)
            queued_ms: list[int] = orjson.loads(queued)
            for i, member in enumerate(ids):
                if member == event_id:  # instr() found the quoted id; this confirms it
                    out.append(
                        LedgerEntry(
                            event_id, vendor, at_ms, kind, attempt, note, ref, name,
                            queued_ms[i], due_ms,
                        )
                    )  # fmt: skip
        return out

    def prune(self, now_ms: int) -> int:
        cutoff = now_ms - int(self.retention * 1000)
        with self._lock, sqltx.write(self._connect()) as conn:
            gone = 0
            upto = _first_row(conn, "outcomes", "at_ms", cutoff)
            if upto is not None:
                gone += _delete_outcomes(conn, "id < ? AND at_ms < ?", (upto, cutoff))
            last = conn.execute("SELECT total FROM outcomes ORDER BY id DESC LIMIT 1").fetchone()
            if last is not None:
                first_kept = last[0] - self.max_entries + 1  # the oldest outcome kept
                keep = _first_row(conn, "outcomes", "total", first_kept)
                if keep is not None:  # (there are rows: ``last`` is one)
                    gone += _delete_outcomes(conn, "id < ?", (keep,))
                    gone += _trim_first(conn, keep, first_kept)
            if self._legacy and _has_table(conn, "entries"):  # (another process may drop it)
                gone += self._prune_legacy(conn, cutoff)
            else:
                self._legacy = False
            return gone

    def _prune_legacy(self, conn: sqlite3.Connection, cutoff: int) -> int:
        """Prune the previous layout's ``entries`` table (a row per outcome). It is kept once
        empty: during a rolling deploy, processes of the previous version still write their
        outcomes there, and this version reads them (an empty table costs one indexed
        lookup per read)."""
        gone = 0
        upto = _first_row(conn, "entries", "at_ms", cutoff)
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

    def waiting(self, event_id: str) -> list[LedgerEntry]:
        """The queue file's records of ``event_id`` that are still waiting, per vendor."""
        if not self.queue_path.exists():
            return []
        with self._lock:
            if self._queue_conn is None:
                self._queue_conn = sqltx.connect_read_only(
                    self.queue_path, timeout=timing.BUSY_TIMEOUT, check_same_thread=False
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


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)
    ).fetchone()
    return found is not None


def _first_row(conn: sqlite3.Connection, table: str, column: str, value: int) -> int | None:
    """The id of the first row of ``table`` whose ``column`` is at least ``value``, the rows
    taken to be in about the order of ``column`` (a binary search on ``id``); past the last
    row if every row is below; None if there is no row."""
    low, high = conn.execute(f"SELECT min(id), max(id) FROM {table}").fetchone()
    if low is None:
        return None
    high += 1  # "past the last row"
    while low < high:
        mid = (low + high) // 2
        row = conn.execute(
            f"SELECT id, {column} FROM {table} WHERE id >= ? ORDER BY id LIMIT 1", (mid,)
        ).fetchone()
        if row is None or row[1] >= value:
            high = mid
        else:
            low = row[0] + 1
    return int(low)


def _delete_outcomes(conn: sqlite3.Connection, where: str, args: tuple[int, ...]) -> int:
    """Delete the ``outcomes`` rows ``where`` says; how many outcomes they held."""
    held = conn.execute(
        f"SELECT coalesce(sum(json_array_length(events)), 0) FROM outcomes WHERE {where}", args
    ).fetchone()[0]
    conn.execute(f"DELETE FROM outcomes WHERE {where}", args)
    return int(held)


def _trim_first(conn: sqlite3.Connection, row_id: int, first_kept: int) -> int:
    """Remove from the row ``row_id`` the outcomes before the ``first_kept``-th (the size cap
    falling within a row); how many went."""
    row = conn.execute(
        "SELECT events, queued, total FROM outcomes WHERE id=?", (row_id,)
    ).fetchone()
    if row is None:
        return 0
    ids, queued = orjson.loads(row[0]), orjson.loads(row[1])
    drop = first_kept - (int(row[2]) - len(ids) + 1)
    if drop <= 0:
        return 0
    conn.execute(
        "UPDATE outcomes SET events=?, queued=? WHERE id=?",
        (_dumps(ids[drop:]), _dumps(queued[drop:]), row_id),
    )
    return drop

"""A read-only view of a ``sqlite://`` queue file for the dashboard: figures the queue's own API
does not give yet (the age of each vendor's oldest waiting event, the ids of an event's dead
letters).

It opens its own read-only connection (``mode=ro``), so it never takes the queue's locks or
writes; it reads the layout documented in :mod:`postback.delivery.sqlite`. Events still in a
process's spool file (tracked in the last moments, not yet ingested by the deliverer) are not
seen. When the queue's API grows these reads (a delivery ledger, OpenTelemetry's queue-age
gauge), this module goes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from postback.delivery import sqltx
from postback.delivery.queue import Queue

__all__ = ["SQLiteView"]


class SQLiteView:
    """Read-only queries on a SQLite queue file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn_: sqlite3.Connection | None = None

    @classmethod
    def of(cls, queue: Queue) -> SQLiteView | None:
        """A view of ``queue``'s file if it is a SQLite queue, else None."""
        from postback.delivery.sqlite import SQLiteQueue

        if not isinstance(queue, SQLiteQueue):
            return None
        view: SQLiteView | None = queue.__dict__.get("_dashboard_view")
        if view is None:
            view = cls(str(queue.path))
            queue.__dict__["_dashboard_view"] = view
        return view

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn_ is None:
                self._conn_ = sqltx.connect_read_only(
                    self.path, timeout=2.0, check_same_thread=False
                )
            yield self._conn_

    def close(self) -> None:
        with self._lock:
            if self._conn_ is not None:
                self._conn_.close()
                self._conn_ = None

    def oldest_ms(self, vendors: Sequence[str]) -> dict[str, int | None]:
        """When each vendor's oldest waiting event (new or retrying) was queued, epoch ms."""
        out: dict[str, int | None] = {}
        with self._conn() as conn:
            for v in vendors:
                row = conn.execute("SELECT seq FROM cursors WHERE vendor=?", (v,)).fetchone()
                cursor = row[0] if row else 0
                new = conn.execute(
                    "SELECT min(created_ms) FROM events WHERE seq > ? AND instr(vendors, ?) > 0",
                    (cursor, f",{v},"),
                ).fetchone()[0]
                retry = conn.execute(
                    "SELECT min(e.created_ms) FROM pending p JOIN events e ON e.seq = p.seq "
                    "WHERE p.vendor = ?",
                    (v,),
                ).fetchone()[0]
                found = [ms for ms in (new, retry) if ms is not None]
                out[v] = min(found) if found else None
        return out

    def dead_letter_ids(self, event_id: str) -> list[int]:
        """The ids of ``event_id``'s dead letters."""
        with self._conn() as conn:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM dead_letters WHERE event_id=? ORDER BY id DESC", (event_id,)
                )
            ]

"""The SQL event log of ``sqlite://``: the ``events``, ``cursors``, ``pending``,
``dead_letters``, ``remembered`` and ``skips`` tables (layout in :mod:`postback.delivery.sqlite`).

Duties: claiming from the log (due retries first, leased in a short write; then new events
past each lane's cursor, read in a read transaction that never takes the write lock);
settling what was claimed from it (the cursor as a low watermark below what is in flight,
retries into ``pending``, dead letters); maintenance (cursors saved, events every served
vendor is done with deleted in chunks of :data:`GC_CHUNK`, the WAL checkpointed); depth;
dead letters (list, requeue, discard); remembered keys and skip counts.

Its state: per vendor, how far the lane has read (``read_pos``), what it has in flight
(``inflight``), whose cursor must be saved (``cursor_dirty``), and two hints that spare
queries which cannot find anything (``due_hint``: when the next retry is due, as only the
deliverer writes retries; ``log_checked``: whether the log grew since the lane caught up).

Lock order: ``work_lock`` then ``write_lock`` (see :mod:`postback.delivery.sqlite_schema`);
every write takes both, reads only ``work_lock``.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from postback.delivery import sqltx, timing
from postback.delivery.held import vendor_key
from postback.delivery.queue import Claimed, DeadLetter, QueueDepth, Settlement
from postback.delivery.sqlite_schema import INSERT, SQLiteFile, translated

if TYPE_CHECKING:
    from postback.delivery.sqlite_held import HeldLanes

__all__ = ["SQLiteLog"]

GC_CHUNK = 1000  # rows per delete: the deliverer's own lanes may wait for one chunk
_NEVER = 1 << 62  # no retry waiting
ADD_SKIPS = (
    "INSERT INTO skips(vendor, reason, count) VALUES (?, ?, ?) "
    "ON CONFLICT(vendor, reason) DO UPDATE SET count = count + excluded.count"
)


class SQLiteLog:
    """The SQL log's queries and this process's reading state (see the module docstring)."""

    def __init__(self, file: SQLiteFile) -> None:
        self._file = file
        self.read_pos: dict[str, int] = {}
        self.inflight: dict[str, set[int]] = {}
        self.cursor_dirty: set[str] = set()
        self.reset_hints()

    def reset_hints(self) -> None:
        # Claims skip queries that cannot find anything: when the next retry is due (only the
        # deliverer writes retries), and whether the log grew since a lane caught up with it.
        self.due_hint: dict[str, int] = {}
        self.log_checked: dict[str, tuple[int, float]] = {}

    def forget_reading(self) -> None:
        """Forget where the lanes read and what they have in flight (after fork, recover)."""
        self.read_pos = {}
        self.inflight = {}
        self.cursor_dirty = set()

    def cursor(self, vendor: str) -> int:
        pos = self.read_pos.get(vendor)
        if pos is None:
            row = self._file.work.execute(
                "SELECT seq FROM cursors WHERE vendor=?", (vendor,)
            ).fetchone()
            pos = row[0] if row else 0
            self.read_pos[vendor] = pos
        return pos

    def claim(self, vendor: str, limit: int, now_ms: int, held: HeldLanes) -> list[Claimed]:
        """Due retries, then new events past the lane's cursor, then events ``held`` for it."""
        out: list[Claimed] = []
        key = vendor_key(vendor)
        with self._file.work_lock:
            conn = self._file.work
            try:
                # Due retries: only this process claims (it holds the deliverer lock), so
                # reading them and then leasing them in a short write is race-free. Only this
                # process writes retries, too: it knows when the next is due.
                due_hint = self.due_hint.get(vendor)
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
                        self.due_hint[vendor] = row[0] if row[0] is not None else _NEVER
                if rows:
                    with self._file.write_lock, sqltx.write(conn):
                        conn.executemany(
                            "UPDATE pending SET lease=1 WHERE vendor=? AND seq=?",
                            [(vendor, r[0]) for r in rows],
                        )
                    out.extend(map(Claimed._make, rows))
                room = limit - len(out)
                checked = self.log_checked.get(vendor)
                if room > 0 and (
                    checked is None
                    or checked[0] != self._file.log_version
                    or time.monotonic() - checked[1]
                    > timing.INGEST_POLL  # another process's replay
                ):
                    # New events: a read transaction (one snapshot for both queries), which
                    # never takes the write lock, so track() is never held up by it.
                    version = self._file.log_version
                    pos = self.cursor(vendor)
                    with sqltx.read(conn):
                        new = conn.execute(
                            "SELECT seq, event_id, payload, 0, created_ms FROM events "
                            "WHERE seq > ? AND instr(vendors, ?) > 0 ORDER BY seq LIMIT ?",
                            (pos, key, room),
                        ).fetchall()
                        if len(new) < room:
                            top = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
                    if len(new) == room:
                        self.read_pos[vendor] = new[-1][0]
                        self.log_checked.pop(vendor, None)
                    else:
                        self.read_pos[vendor] = max(pos, top or 0)
                        self.log_checked[vendor] = (version, time.monotonic())
                    if new:
                        self.inflight.setdefault(vendor, set()).update(r[0] for r in new)
                        out.extend(map(Claimed._make, new))
                room = limit - len(out)
                if room > 0 and held.waiting[vendor]:
                    out.extend(held.claim(vendor, room))
            except sqlite3.Error as exc:
                raise self._file.explain(exc) from None
        return out

    def settle(self, vendor: str, settlements: Sequence[Settlement], now_ms: int) -> bool:
        """Settle events claimed from the log; whether only the cursor moved (the caller then
        saves progress soon, see :meth:`SpoolIngest.persist_soon
        <postback.delivery.sqlite_ingest.SpoolIngest.persist_soon>`)."""
        if all(s.kind == "done" for s in settlements):
            # The common case, events read from the log and delivered: nothing to write but
            # the cursor, which request threads settling at the same time share (one
            # transaction for all of them instead of one each).
            with self._file.work_lock:
                inflight = self.inflight.setdefault(vendor, set())
                seqs = [s.claimed.seq for s in settlements]
                fresh = all(seq in inflight for seq in seqs)
                if fresh:
                    inflight.difference_update(seqs)
                    self.cursor_dirty.add(vendor)
            if fresh:
                return True
        with self._file.work_lock, self._file.write_lock:
            conn = self._file.work
            inflight = self.inflight.setdefault(vendor, set())
            self.due_hint.pop(vendor, None)
            try:
                self._settle_logged(conn, vendor, settlements, inflight, now_ms)
            except sqlite3.Error as exc:
                raise self._file.explain(exc) from None
        return False

    def _settle_logged(
        self,
        conn: sqlite3.Connection,
        vendor: str,
        settlements: Sequence[Settlement],
        inflight: set[int],
        now_ms: int,
    ) -> None:
        with sqltx.write(conn):
            for s in settlements:
                seq = s.claimed.seq
                fresh = seq in inflight
                if s.kind == "done":
                    if not fresh:
                        conn.execute("DELETE FROM pending WHERE vendor=? AND seq=?", (vendor, seq))
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
                        conn.execute("DELETE FROM pending WHERE vendor=? AND seq=?", (vendor, seq))
                inflight.discard(seq)
            self.save_cursor(vendor)

    def save_cursor(self, vendor: str) -> None:
        pos = self.cursor(vendor)
        inflight = self.inflight.get(vendor)
        low = min(inflight) - 1 if inflight else pos
        self._file.work.execute(
            "INSERT INTO cursors(vendor, seq) VALUES (?, ?) "
            "ON CONFLICT(vendor) DO UPDATE SET seq=max(seq, excluded.seq)",
            (vendor, low),
        )

    @translated
    def next_due_ms(self, vendor: str) -> int | None:
        with self._file.work_lock:
            row = self._file.work.execute(
                "SELECT min(due_ms) FROM pending WHERE vendor=? AND lease=0", (vendor,)
            ).fetchone()
        return row[0] if row else None

    def maintenance(self) -> None:
        """Persist cursors, drop events every served vendor is done with (in chunks),
        checkpoint the WAL (without the write lock)."""
        with self._file.work_lock:
            conn = self._file.work
            try:
                with self._file.write_lock, sqltx.write(conn):
                    for vendor in list(self.read_pos):
                        self.save_cursor(vendor)
                upto = self.collectable_upto()
                # An event is collectable once every vendor it is for is one we serve: its
                # vendors key (",a,b,") with each served vendor taken out is just ",".
                served = sorted(self._file.served)
                only_served = "vendors"
                for _ in served:
                    only_served = f"replace({only_served}, ?, ',')"
                while upto is not None:
                    with self._file.write_lock:
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
                self._file.faults.ok("queue maintenance")
            except sqlite3.Error as exc:
                self._file.faults.failed("queue maintenance", self._file.explain(exc))

    def collectable_upto(self) -> int | None:
        """The sequence number up to which every served vendor's cursor has moved."""
        if not self._file.served:
            return None
        rows = self._file.work.execute(
            "SELECT vendor, seq FROM cursors WHERE vendor IN ({})".format(
                ",".join("?" * len(self._file.served))
            ),
            tuple(self._file.served),
        ).fetchall()
        if len(rows) < len(self._file.served):
            return None  # a vendor has not started yet: keep everything for it
        return int(min(seq for _, seq in rows))

    def depth(
        self, vendors: Sequence[str], now_ms: int, spooled: Counter[str], held: HeldLanes
    ) -> dict[str, QueueDepth]:
        out: dict[str, QueueDepth] = {}
        with self._file.work_lock:
            conn = self._file.work
            for v in vendors:
                row = conn.execute("SELECT seq FROM cursors WHERE vendor=?", (v,)).fetchone()
                cursor = row[0] if row else 0
                inflight_new = len(self.inflight.get(v, ()))
                pos = self.read_pos.get(v, cursor)
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
                claimed = self.inflight.get(v)
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
                    ready=unread + spooled[v] + due + held.waiting[v],
                    retrying=waiting,
                    inflight=leased + inflight_new + held.holding[v],
                    dead=dead,
                    oldest_ms=min(
                        (t for t in (unread_oldest, held_oldest) if t is not None), default=None
                    ),
                )
        return out

    @translated
    def vendors_seen(self) -> list[str]:
        """Every vendor that has a cursor, pending work or dead letters in this file."""
        with self._file.work_lock:
            rows = self._file.work.execute(
                "SELECT vendor FROM cursors UNION SELECT vendor FROM pending "
                "UNION SELECT vendor FROM dead_letters"
            ).fetchall()
        return sorted(r[0] for r in rows)

    @translated
    def dead_rows(self, where: str, args: tuple[object, ...], limit: int) -> list[DeadLetter]:
        with self._file.work_lock:
            rows = self._file.work.execute(
                "SELECT id, vendor, event_id, name, created_ms, failed_ms, attempts, reason, "
                f"payload FROM dead_letters {where} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [DeadLetter(*r) for r in rows]

    @staticmethod
    def dead_filter(
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
        where, args = self.dead_filter(vendor, since_ms)
        return self.dead_rows(where, args, limit)

    def dead_letter(self, id: int) -> DeadLetter | None:
        rows = self.dead_rows("WHERE id=?", (id,), 1)
        return rows[0] if rows else None

    def requeue_dead(
        self, vendor: str | None = None, since_ms: int | None = None, ids: Sequence[int] = ()
    ) -> list[DeadLetter]:
        where, args = self.dead_filter(vendor, since_ms, ids)
        with self._file.work_lock, self._file.write_lock:
            self._file.log_version += 1
            conn = self._file.work
            try:
                with sqltx.write(conn):  # read under the write lock: another process may replay
                    rows = self.dead_rows(where, args, 10**9)
                    conn.executemany(
                        INSERT,
                        [
                            (d.event_id, d.name, d.created_ms, vendor_key(d.vendor), d.payload)
                            for d in reversed(rows)
                        ],
                    )
                    conn.executemany("DELETE FROM dead_letters WHERE id=?", [(d.id,) for d in rows])
            except sqlite3.Error as exc:
                raise self._file.explain(exc) from None
        return rows

    def discard_dead(self, ids: Sequence[int]) -> list[DeadLetter]:
        if not ids:
            return []
        where, args = self.dead_filter(None, None, ids)
        with self._file.work_lock, self._file.write_lock:
            conn = self._file.work
            try:
                with sqltx.write(conn):  # read under the write lock: another process may replay
                    rows = self.dead_rows(where, args, len(ids))
                    conn.executemany("DELETE FROM dead_letters WHERE id=?", [(d.id,) for d in rows])
            except sqlite3.Error as exc:
                raise self._file.explain(exc) from None
        return rows

    def expire_dead(self, before_ms: int) -> int:
        """Delete the dead letters that failed before ``before_ms`` (dead_letter_retention)."""
        with self._file.work_lock, self._file.write_lock:
            try:
                return self._file.work.execute(
                    "DELETE FROM dead_letters WHERE failed_ms < ?", (before_ms,)
                ).rowcount
            except sqlite3.Error as exc:
                raise self._file.explain(exc) from None

    @translated
    def remember(self, vendor: str, key: str) -> bool:
        with self._file.work_lock, self._file.write_lock:
            cur = self._file.work.execute(
                "INSERT OR IGNORE INTO remembered(vendor, key) VALUES (?, ?)", (vendor, key)
            )
            return cur.rowcount == 1

    @translated
    def forget(self, vendor: str, key: str) -> None:
        with self._file.work_lock, self._file.write_lock:
            self._file.work.execute(
                "DELETE FROM remembered WHERE vendor=? AND key=?", (vendor, key)
            )

    @translated
    def forget_prefix(self, vendor: str, prefix: str) -> None:
        with self._file.work_lock, self._file.write_lock:
            self._file.work.execute(  # substr, not LIKE: the prefix is taken literally
                "DELETE FROM remembered WHERE vendor=? AND substr(key, 1, ?)=?",
                (vendor, len(prefix), prefix),
            )

    # --- skip counts -----------------------------------------------------------------------

    def add_skips(self, counts: Mapping[tuple[str, str], int]) -> None:
        rows = [(vendor, reason, n) for (vendor, reason), n in counts.items()]
        with self._file.work_lock, self._file.write_lock:
            try:
                with self._file.transaction() as conn:
                    conn.executemany(ADD_SKIPS, rows)
            except sqlite3.Error as exc:
                raise self._file.explain(exc) from None

    @translated
    def skip_counts(self) -> dict[str, dict[str, int]]:
        with self._file.work_lock:
            rows = self._file.work.execute("SELECT vendor, reason, count FROM skips").fetchall()
        out: dict[str, dict[str, int]] = {}
        for vendor, reason, n in rows:
            out.setdefault(vendor, {})[reason] = n
        return out

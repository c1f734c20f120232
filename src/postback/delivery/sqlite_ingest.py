"""Spool ingestion for ``sqlite://``: the deliverer reads every process's spool files.

Duties: reading the spool segments (:mod:`postback.delivery.spool`) past their saved offsets
(``spool`` table), handing fresh events to the lanes in memory (the held set,
:mod:`postback.delivery.sqlite_held`) or writing them into the ``events`` log (events for
vendors another process serves, and everything when not holding); the write-back of held
events into the log when they wait too long (``timing.HOT_STALE``),
the held set is full (:data:`HOT_LIMIT`) and a lane starves, or the deliverer lets go;
saving delivery progress (cursors, offsets and each vendor's settled point per segment in
``spool_sent``, so that a successor re-sends a vendor only what was in flight) at most every
``timing.PERSIST_EVERY``; deleting segments read to their end whose writer is gone (and their
rows in ``spool`` and ``spool_sent``), ``.new`` files a crash left, and readers of segments
that vanished; counting what is spooled and not yet read (depth, and what a process that does
not deliver waits for at exit).

Lock order: ``lock`` (one reader of the spool at a time) before the file's ``work_lock``,
then ``write_lock`` (see :mod:`postback.delivery.sqlite_schema`); the progress saver's
``_persist_lock`` (never waited for: a thread that finds it taken leaves its mark) before
``work_lock``. Spool files are read outside ``work_lock``; the readers' table changes only
under it, so a fork never sees a reader closed but still listed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path

from postback.delivery import spool, timing
from postback.delivery.held import HeldChunk, skip_settled
from postback.delivery.sqlite_held import HeldLanes
from postback.delivery.sqlite_log import SQLiteLog
from postback.delivery.sqlite_schema import (
    INSERT_NUMBERED,
    SAVE_OFFSET,
    SQLiteFile,
    translated,
)

__all__ = ["SpoolIngest"]

log = logging.getLogger("postback.queue")

INGEST_CHUNK = 1 << 20  # bytes of spool read (and rows inserted) per transaction
# Bytes of spool read at a time to hold for the lanes: parsing is pure Python, and a smaller
# bite gives a thread that tracks events in this process the interpreter lock back sooner.
HOLD_CHUNK = 1 << 18
HOT_LIMIT = 10_000  # events read from the spool and held for the lanes, not yet in the log
_SAVE_SENT = (
    "INSERT INTO spool_sent(segment, vendor, offset) VALUES (?, ?, ?) "
    "ON CONFLICT(segment, vendor) DO UPDATE SET offset=excluded.offset"
)


class SpoolIngest:
    """The deliverer's reading of the spool and saving of its progress (see the module)."""

    def __init__(
        self,
        file: SQLiteFile,
        log: SQLiteLog,
        held: HeldLanes,
        writer: spool.SpoolWriter,
        wake: Callable[[set[str]], None],
    ) -> None:
        self._file = file
        self._log = log
        self._held = held
        self._writer = writer  # this process's own spool file
        self._wake = wake  # told the vendors that new events were found for
        self.lock = threading.Lock()
        self._persist_lock = threading.Lock()
        self._persisted_at = 0.0
        self.readers: dict[str, spool.SegmentReader] = {}
        self.offsets: dict[str, int] | None = None  # as saved in the spool table
        self.dirty = False  # this process spooled something since the last read
        self._ingested_at = 0.0
        self._backlog: dict[str, tuple[int, int, Counter[str]]] = {}
        self._routes: dict[str, tuple[list[str], str]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget how far the held events were read (with :meth:`HeldLanes.reset`)."""
        self._read_to: dict[str, int] = {}  # how far each segment has been read
        # Per segment and vendor, the offset before which that vendor has settled everything
        # (saved in spool_sent): read again after a crash, those rows skip that vendor, so a
        # dead deliverer's successor re-sends a vendor only what it had in flight.
        self._sent: dict[str, dict[str, int]] = {}
        self._sent_saved: dict[tuple[str, str], int] = {}
        self._base: dict[str, int] = {}  # where this deliverer started reading each segment
        self._taken: dict[str, Counter[str]] = {}  # vendor keys read since the base

    def after_fork(self) -> None:
        """In a forked child (part of the queue's all-or-nothing swap: assignments only)."""
        self.lock = threading.Lock()
        self._persist_lock = threading.Lock()
        self.readers = {}
        self.offsets = None
        self._backlog = {}
        self.dirty = False
        self.reset()

    def routes_changed(self) -> None:
        """The vendors served here changed (the caller holds ``work_lock``)."""
        self._routes.clear()

    @translated
    def waiting_here(self) -> int | None:
        """Events this process spooled that the deliverer has neither delivered nor written
        to the log yet (``None`` in the deliverer: it answers for the whole queue). What a
        process that does not deliver waits for at exit."""
        if self._file.lock_fd is not None:
            return None
        names = list(self._writer.made)
        if not names or self._file.unreadable is not None:
            return 0  # stored in the spool: another process delivers it
        try:
            with self._file.work_lock:
                offsets = dict(
                    self._file.work.execute(
                        "SELECT segment, offset FROM spool WHERE segment IN ({})".format(
                            ",".join("?" * len(names))
                        ),
                        names,
                    )
                )
        except sqlite3.Error as exc:
            raise self._file.explain(exc) from None
        count = 0
        for name in names:
            try:
                reader = spool.SegmentReader(self._file.spool_dir / name)
            except FileNotFoundError:
                continue  # ingested to its end and deleted
            try:
                for chunk in reader.chunks(offsets.get(name, 0), INGEST_CHUNK):
                    count += len(chunk.rows)
            finally:
                reader.close()
        return count

    def drop_readers(self) -> None:
        with self._file.work_lock:
            for reader in self.readers.values():
                reader.close()
            self.readers.clear()

    def ingest_if_due(self, vendor: str) -> None:
        """Read the spool when this process spooled something, when ``vendor``'s lane has
        nothing held for it, or now and then for other processes."""
        if self._file.lock_fd is None:
            return
        elapsed = time.monotonic() - self._ingested_at
        if (
            not self.dirty
            and elapsed < timing.INGEST_POLL
            and (self._held.waiting[vendor] or elapsed < timing.HOT_LOOK)
        ):
            return
        self.ingest()

    def ingest(self, *, hold: bool = True) -> int:
        """Read every process's spool: hand fresh events to the lanes in memory (``hold``),
        or write them into the ``events`` log. Returns how many records were read."""
        with self.lock:
            return self.ingest_now(hold)

    def ingest_now(self, hold: bool = True) -> int:
        self.dirty = False  # before reading: a put() from now on asks again
        self._ingested_at = time.monotonic()
        try:
            return self._ingest_locked(hold)
        except sqlite3.Error as exc:
            self.dirty = True  # what is left stays spooled: the next claim tries again
            raise self._file.explain(exc) from None

    def _ingest_locked(self, hold: bool) -> int:
        """The spool is read into memory up to :data:`HOT_LIMIT` held events; past that it
        waits in its files (a backlog costs disk, not memory). Held events that wait longer
        than ``timing.HOT_STALE`` (a vendor down, paused or slow) are written to the log, and
        so are events for vendors this deliverer does not serve."""
        with self._file.work_lock:
            if self.offsets is None:
                self.offsets = dict(self._file.work.execute("SELECT segment, offset FROM spool"))
                self._read_to = dict(self.offsets)
                self._sent = {}
                for segment, vendor, offset in self._file.work.execute(
                    "SELECT segment, vendor, offset FROM spool_sent"
                ):
                    self._sent.setdefault(segment, {})[vendor] = offset
                    self._sent_saved[(segment, vendor)] = offset
            hold = hold and bool(self._file.served)
            if self._held.held_count and (
                not hold
                or self._held.stale()
                or (self._held.held_count >= HOT_LIMIT and self._held.starving())
            ):
                self.write_back()
        total = 0
        woken: set[str] = set()
        present: set[str] = set()
        for path in spool.segments(self._file.spool_dir):
            name = path.name
            present.add(name)
            reader = self.readers.get(name)
            if reader is None:
                try:
                    with self._file.work_lock:
                        reader = self.readers[name] = spool.SegmentReader(path)
                except FileNotFoundError:
                    continue
            gone = reader.writer_gone()  # before reading: then what we read is all there is
            offset = self._read_to.setdefault(name, self.offsets.get(name, 0))
            self._base.setdefault(name, offset)
            finished = False
            # Up to what is written now: a record still being copied, and what a live writer
            # adds meanwhile, wait for the next look (fewer, larger transactions).
            if hold and self._held.held_count >= HOT_LIMIT:
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
                if hold and self._held.held_count >= HOT_LIMIT:
                    break  # before the next chunk is read
            if finished and not self._held.chunks.get(name):
                self._forget_segment(name, reader)
        with self._file.work_lock:
            for name in set(self.readers) - present:
                self.readers.pop(name).close()
        if self._held.offsets_dirty:
            self.persist_cursors()
        if woken:
            self._wake(woken)
        return total

    def _route(self, key: str) -> tuple[list[str], str]:
        """A record's vendors key -> (the vendors served here, a key of the others)."""
        route = self._routes.get(key)
        if route is None:
            vendors = [v for v in key.split(",") if v]
            mine = [v for v in vendors if v in self._file.served]
            others = [v for v in vendors if v not in self._file.served]
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
        with self._file.work_lock:
            if not hold and not self._held.chunks.get(segment):
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
                    self._file.insert(
                        [(r[0], r[1], r[2], routes[r[3]][1], r[4]) for r in rows if routes[r[3]][1]]
                    )
                self._held.chunk_number += 1
                chunk = HeldChunk(self._held.chunk_number, segment, end, rows, start, ends)
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
                    queue = self._held.ready.get(v)
                    if queue is None:
                        queue = self._held.ready[v] = deque()
                    queue.append(chunk)
                    self._held.waiting[v] += len(rows_for_v)
                    chunk.open += len(rows_for_v)
                    woken.add(v)
                self._held.chunks.setdefault(segment, deque()).append(chunk)
                if chunk.open:
                    self._held.live[chunk.number] = chunk
                    self._held.held_count += len(rows)
                else:
                    self._held.advance(segment)
            self._read_to[segment] = end
            taken = self._taken.get(segment)
            if taken is None:
                taken = self._taken[segment] = Counter()
            taken.update(spooled)

    def write_back(self) -> None:
        """Write every held event that is not settled into the log, in one transaction with
        the offsets read so far: for the vendors that have not claimed it, as a new event;
        for those with a request in flight, as a leased retry that their settle completes
        (or that ``recover()`` frees after a crash)."""
        with self._file.work_lock, self._file.write_lock:
            if self.offsets is None:
                return
            self._file.log_version += 1
            offsets = {k: v for k, v in self._read_to.items() if self.offsets.get(k) != v}
            plan: list[tuple[HeldChunk, dict[int, list[str]], list[tuple[str, int]]]] = []
            for chunk in self._held.live.values():
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
            with self._file.transaction() as conn:
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
                conn.executemany(INSERT_NUMBERED, events)
                conn.executemany(
                    "INSERT INTO pending(vendor, seq, attempts, due_ms, lease) VALUES (?,?,0,0,1)"
                    " ON CONFLICT(vendor, seq) DO UPDATE SET lease=1",
                    pending,
                )
                conn.executemany(SAVE_OFFSET, list(offsets.items()))
            woken = {v for _, waiting, _ in plan for vs in waiting.values() for v in vs}
            for (chunk, _, _), numbered in zip(plan, numbers, strict=True):
                chunk.written = numbered
                if not any(chunk.inflight.values()):
                    del self._held.live[chunk.number]
            self.offsets.update(offsets)
            self._held.offsets_dirty.clear()
            self._held.chunks.clear()
            self._held.ready.clear()
            self._held.waiting.clear()
            self._held.holding.clear()  # leased retries in the log now: counted there
            self._held.held_count = 0
        if events:
            log.debug("wrote %d held events to the log", len(events))
        if woken:
            self._wake(woken)

    def _store(self, segment: str, offset: int, records: list[spool.Row]) -> None:
        """Insert records and the segment's new offset in one transaction."""
        assert self.offsets is not None
        self._file.insert(records, (segment, offset))
        self.offsets[segment] = offset

    def _forget_segment(self, name: str, reader: spool.SegmentReader) -> None:
        """A segment read to its end whose writer is gone: delete it, then its offset."""
        assert self.offsets is not None
        try:
            os.unlink(reader.path)
        except FileNotFoundError:
            pass
        with self._file.work_lock:  # a fork never sees the reader closed but still listed
            del self.readers[name]
            reader.close()
            if name in self.offsets:
                with self._file.write_lock, self._file.transaction() as conn:
                    conn.execute("DELETE FROM spool WHERE segment=?", (name,))
                    conn.execute("DELETE FROM spool_sent WHERE segment=?", (name,))
                del self.offsets[name]
            self._sent.pop(name, None)
            for key in [k for k in self._sent_saved if k[0] == name]:
                del self._sent_saved[key]
            for state in (self._read_to, self._base, self._taken, self._held.offsets_dirty):
                state.pop(name, None)
            self._held.chunks.pop(name, None)

    def clean_spool_dir(self) -> None:
        """Remove ``.new`` files a crash left between creating and naming a segment, and
        offsets of segments that no longer exist."""
        now = time.time()
        try:
            entries = list(os.scandir(self._file.spool_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            if not entry.name.endswith(".new"):
                continue
            try:
                if now - entry.stat().st_mtime < timing.STALE_NEW_SEGMENT:
                    continue
                reader = spool.SegmentReader(Path(entry.path))
            except FileNotFoundError:
                continue
            try:  # records are written only after the rename: a ".new" file holds none
                if reader.writer_gone():
                    os.unlink(entry.path)
            finally:
                reader.close()

    def spool_backlog(self, vendors: Sequence[str]) -> Counter[str]:
        """Per vendor, records spooled but not yet read by the deliverer.

        Each segment's count is kept between calls and only what was written since is read
        (``flush()`` asks every few milliseconds, and a backlog can be large). In another
        process it counts from the offsets the deliverer saved, again from the start when
        they moved; in the deliverer, from where it started reading each segment, less what
        it has read since."""
        with self._file.work_lock:
            if self._file.lock_fd is None or self.offsets is None:
                offsets = dict(self._file.work.execute("SELECT segment, offset FROM spool"))
                taken: dict[str, Counter[str]] = {}
            else:
                offsets = {**self.offsets, **self._base}
                taken = {k: Counter(v) for k, v in self._taken.items()}
        counts: Counter[str] = Counter()
        seen: dict[str, tuple[int, int, Counter[str]]] = {}
        for path in spool.segments(self._file.spool_dir):
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

    def persist_soon(self) -> None:
        """Save progress if it was last saved more than timing.PERSIST_EVERY ago (else the next
        settle, poll or maintenance does): one small transaction per batch delivered was
        half a microsecond per event. Progress saved later only means that a deliverer
        that dies sends a few more events again."""
        if time.monotonic() - self._persisted_at >= timing.PERSIST_EVERY:
            self.persist_cursors()

    def persist_cursors(self) -> None:
        """Write the cursors marked dirty, in one transaction; a thread that finds another
        writing them leaves its mark for that one, which looks again before it stops."""
        while self._log.cursor_dirty or self._held.offsets_dirty or self._held.sent_dirty:
            if not self._persist_lock.acquire(blocking=False):
                return
            try:
                with self._file.work_lock, self._file.write_lock:
                    self._persisted_at = time.monotonic()
                    vendors = list(self._log.cursor_dirty)
                    self._log.cursor_dirty.clear()
                    offsets = self._held.offsets_dirty
                    self._held.offsets_dirty = {}
                    self._held.sent_dirty = False
                    sent = self._sent_progress()
                    try:
                        with self._file.transaction() as conn:
                            for vendor in vendors:
                                self._log.save_cursor(vendor)
                            conn.executemany(SAVE_OFFSET, list(offsets.items()))
                            conn.executemany(_SAVE_SENT, sent)
                        self._sent_saved.update({(s, v): o for s, v, o in sent})
                        if self.offsets is not None:
                            self.offsets.update(offsets)
                        self._file.faults.ok("saving delivery progress")
                    except sqlite3.Error as exc:
                        self._held.offsets_dirty = {**offsets, **self._held.offsets_dirty}
                        self._log.cursor_dirty.update(vendors)
                        self._held.sent_dirty = True
                        # Maintenance writes every cursor once a second: nothing is lost, a
                        # crash now would re-deliver a little more.
                        self._file.faults.failed(
                            "saving delivery progress", self._file.explain(exc)
                        )
                        return
            finally:
                self._persist_lock.release()

    def _sent_progress(self) -> list[tuple[str, str, int]]:
        """(segment, vendor, offset) for each vendor whose settled point in a segment's held
        chunks moved since it was saved (the caller holds the work lock)."""
        out: list[tuple[str, str, int]] = []
        for segment, chunks in self._held.chunks.items():
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

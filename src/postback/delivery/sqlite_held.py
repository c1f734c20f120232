"""The held lanes of ``sqlite://``: events read from the spool and handed to the deliverer's
lanes from memory, without a round trip through the SQLite log.

Duties: the held set's state across chunks (which chunks are live, which have rows ready for
each vendor, counts of rows waiting and in flight per vendor), claiming held rows
(:meth:`HeldLanes.claim`), settling them (:meth:`HeldLanes.settle`: delivered rows cost no
write; failed ones go into the log as a retry or a dead letter before the spool lets go of
them), and moving each segment's offset to save past its settled chunks (``offsets_dirty``,
saved with the next cursors by :mod:`postback.delivery.sqlite_ingest`). The bookkeeping of one
chunk is :class:`~postback.delivery.held.HeldChunk` (pure; its theory of operation is there).
Reading the spool and writing held events back to the log are
:mod:`postback.delivery.sqlite_ingest`'s.

Lock order: every method is called with the file's ``work_lock`` held (the state here is
only ever touched under it); :meth:`HeldLanes.write_failed` takes ``write_lock`` inside it.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, deque
from collections.abc import Sequence

from postback.delivery import timing
from postback.delivery.held import ROW_BITS, ROW_MASK, HeldChunk, HeldClaim
from postback.delivery.queue import Claimed, Settlement
from postback.delivery.sqlite_log import SQLiteLog
from postback.delivery.sqlite_schema import INSERT_NUMBERED, SQLiteFile

__all__ = ["HeldLanes"]


class HeldLanes:
    """The events held in memory for this deliverer's lanes (see the module docstring)."""

    def __init__(self, file: SQLiteFile, log: SQLiteLog) -> None:
        self._file = file
        self._log = log
        self.reset()

    def reset(self) -> None:
        """Forget the events held in memory (they are still in the spool: the saved offsets
        never pass an event that is neither delivered nor in the log)."""
        self.live: dict[int, HeldChunk] = {}  # by number: chunks with work open
        self.chunk_number = 0
        self.held_count = 0  # rows of the live chunks not written back
        self.ready: dict[str, deque[HeldChunk]] = {}  # per vendor: chunks with rows to claim
        self.waiting: Counter[str] = Counter()  # per vendor: held rows not claimed
        self.holding: Counter[str] = Counter()  # per vendor: held rows in flight
        self.claimed_at: dict[str, float] = {}  # per vendor: when it last took held rows
        self.chunks: dict[str, deque[HeldChunk]] = {}  # per segment, in order, until settled
        self.sent_dirty = False  # a vendor's settled point in a segment moved (spool_sent)
        self.offsets_dirty: dict[str, int] = {}  # offsets to save with the next cursors

    def advance(self, segment: str) -> None:
        """Move the segment's offset (saved with the next cursors) past its settled chunks."""
        chunks = self.chunks[segment]
        end = None
        while chunks and not chunks[0].open:
            end = chunks.popleft().end
        if end is not None:
            self.offsets_dirty[segment] = end

    def starving(self) -> bool:
        """Whether a vendor that has been taking held events has none left while the held
        set is full (of events another vendor is slow to take): it must not wait for them."""
        now = time.monotonic()
        return any(
            not self.waiting[v] and now - at < timing.STARVING_AFTER
            for v, at in self.claimed_at.items()
        )

    def stale(self) -> bool:
        horizon = time.monotonic() - timing.HOT_STALE
        return any(c and c[0].born < horizon for c in self.chunks.values())

    def claim(self, vendor: str, room: int) -> list[Claimed]:
        """Up to ``room`` events held from the spool, as :class:`HeldClaim` tokens."""
        out: list[Claimed] = []
        chunks = self.ready[vendor]
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
                        new(HeldClaim, (first | i, r[0], r[4], 0, r[2]))
                        for i in take
                        for r in (rows[i],)
                    ]
                )
                room -= len(take)
        self.waiting[vendor] -= len(out)
        self.holding[vendor] += len(out)
        self.claimed_at[vendor] = time.monotonic()
        return out

    def settle(
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
        with self._file.work_lock:
            live = self.live
            for s in settlements:
                c = s.claimed
                if type(c) is not HeldClaim:  # claimed from the log
                    rest.append(s)
                    continue
                token = c[0]
                found = live.get(token >> ROW_BITS)
                i = token & ROW_MASK
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
                self.write_failed(vendor, failed, now_ms)
            done = 0
            for chunk, i, s in ours:
                inflight = chunk.inflight[vendor]
                inflight.discard(i)
                if chunk.written is not None:  # written back while in flight: a leased retry
                    if not any(chunk.inflight.values()):
                        live.pop(chunk.number, None)
                    rest.append(s._replace(claimed=Claimed(chunk.written[i], *s.claimed[1:])))
                elif s.kind == "done":
                    chunk.open -= 1
                    done += 1
                    if not chunk.open:
                        self.chunk_settled(chunk)
                else:  # released, due now: held again for the lane
                    chunk.returned.setdefault(vendor, []).append(i)
                    self.holding[vendor] -= 1
                    self.waiting[vendor] += 1
                    self.ready.setdefault(vendor, deque()).appendleft(chunk)
            for chunk, i, _ in failed:
                chunk.inflight[vendor].discard(i)
                chunk.open -= 1
                done += 1
                if not chunk.open:
                    self.chunk_settled(chunk)
            self.holding[vendor] -= done
            if done:
                self.sent_dirty = True
        return rest

    def write_failed(
        self, vendor: str, failed: list[tuple[HeldChunk, int, Settlement]], now_ms: int
    ) -> None:
        self._log.due_hint.pop(vendor, None)
        try:
            with self._file.write_lock, self._file.transaction() as conn:
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
                    conn.execute(INSERT_NUMBERED, (seq, event_id, name, created_ms, ",", payload))
                    conn.execute(
                        "INSERT INTO pending(vendor, seq, attempts, due_ms, lease, last_error) "
                        "VALUES (?,?,?,?,0,?)",
                        (vendor, seq, s.attempts if s.kind == "retry" else 0, s.due_ms, s.error),
                    )
        except sqlite3.Error as exc:
            raise self._file.explain(exc) from None

    def chunk_settled(self, chunk: HeldChunk) -> None:
        del self.live[chunk.number]
        self.held_count -= len(chunk.rows)
        if chunk.segment in self.chunks:
            self.advance(chunk.segment)

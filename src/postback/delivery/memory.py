"""``memory://``: an in-process queue for tests and short-lived scripts.

Loss semantics, stated plainly: everything in it is lost when the process exits or dies
(whatever ``close()`` could not deliver within its timeout, too). It is bounded by
``max_queue_size`` events: at the bound, ``track()`` raises :class:`~postback.QueueFull` and
the event is not accepted; nothing already accepted is ever dropped to make room. A process
forked from the one that holds it starts with it empty: what was queued before the fork is
the parent's to deliver, once.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from postback.delivery import erase
from postback.delivery.queue import (
    Claimed,
    DeadLetter,
    Queue,
    QueueCapabilities,
    QueueDepth,
    Settlement,
)
from postback.errors import QueueFull

if TYPE_CHECKING:
    from postback.ledger import LedgerEntry

__all__ = ["MemoryQueue"]


class MemoryQueue(Queue):
    capabilities = QueueCapabilities(loop_safe_put=True)

    def __init__(self, max_size: int = 100_000) -> None:
        self.url = "memory://"
        self.max_size = max_size
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        # seq -> [event_id, name, created_ms, payload, refcount]
        self._events: dict[int, list[object]] = {}
        self._new: dict[str, deque[int]] = {}
        self._retry: dict[str, list[tuple[int, int]]] = {}  # heap of (due_ms, seq)
        self._attempts: dict[tuple[str, int], int] = {}
        self._inflight: dict[str, set[int]] = {}
        self._dead: list[DeadLetter] = []
        self._dead_ids = itertools.count(1)
        self._remembered: set[tuple[str, str]] = set()
        self._erasures = erase.MemoryErasureLog()

    def after_fork(self) -> None:
        """In a forked child the queue starts empty: the events, retries, dead letters and
        counts it inherited are the parent's, which goes on delivering them (kept here, each
        event would go out once per process)."""
        self._reset()
        self.__dict__.pop("_skip_counts", None)

    def put(
        self, event_id: str, name: str, created_ms: int, vendors: Sequence[str], payload: bytes
    ) -> None:
        with self._lock:
            if len(self._events) >= self.max_size:
                raise QueueFull(
                    f"the memory queue holds {self.max_size} undelivered events; the event was "
                    "not accepted. Raise [postback] max_queue_size or use a sqlite:// queue"
                )
            seq = next(self._seq)
            self._events[seq] = [event_id, name, created_ms, payload, len(vendors)]
            for v in vendors:
                self._new.setdefault(v, deque()).append(seq)

    def _release(self, seq: int) -> None:
        rec = self._events.get(seq)
        if rec is not None:
            rec[4] = int(rec[4]) - 1  # type: ignore[call-overload]
            if rec[4] <= 0:  # type: ignore[operator]
                del self._events[seq]

    def claim(self, vendor: str, limit: int, now_ms: int) -> list[Claimed]:
        out: list[Claimed] = []
        with self._lock:
            inflight = self._inflight.setdefault(vendor, set())
            heap = self._retry.get(vendor)
            while heap and heap[0][0] <= now_ms and len(out) < limit:
                _, seq = heapq.heappop(heap)
                out.append(self._claimed(vendor, seq))
                inflight.add(seq)
            new = self._new.get(vendor)
            while new and len(out) < limit:
                seq = new.popleft()
                out.append(self._claimed(vendor, seq))
                inflight.add(seq)
        return out

    def _claimed(self, vendor: str, seq: int) -> Claimed:
        rec = self._events[seq]
        return Claimed(
            seq,
            rec[0],  # type: ignore[arg-type]
            rec[3],  # type: ignore[arg-type]
            self._attempts.get((vendor, seq), 0),
            rec[2],  # type: ignore[arg-type]
        )

    def settle(self, vendor: str, settlements: Sequence[Settlement], now_ms: int) -> None:
        with self._lock:
            inflight = self._inflight.setdefault(vendor, set())
            for s in settlements:
                seq = s.claimed.seq
                inflight.discard(seq)
                if s.kind in ("retry", "release"):
                    if s.kind == "retry":
                        self._attempts[(vendor, seq)] = s.attempts
                    heapq.heappush(self._retry.setdefault(vendor, []), (s.due_ms, seq))
                    continue
                self._attempts.pop((vendor, seq), None)
                if s.kind == "dead":
                    rec = self._events[seq]
                    self._dead.append(
                        DeadLetter(
                            next(self._dead_ids),
                            vendor,
                            rec[0],  # type: ignore[arg-type]
                            rec[1],  # type: ignore[arg-type]
                            rec[2],  # type: ignore[arg-type]
                            now_ms,
                            s.attempts,
                            s.error or "",
                            rec[3],  # type: ignore[arg-type]
                        )
                    )
                self._release(seq)

    def next_due_ms(self, vendor: str) -> int | None:
        with self._lock:
            heap = self._retry.get(vendor)
            return heap[0][0] if heap else None

    def depth(self, vendors: Sequence[str], now_ms: int) -> dict[str, QueueDepth]:
        with self._lock:
            out = {}
            for v in vendors:
                heap = self._retry.get(v, [])
                due = sum(1 for d, _ in heap if d <= now_ms)
                new = self._new.get(v, ())
                inflight = self._inflight.get(v, ())
                seqs = [new[0]] if new else []
                seqs += [seq for _, seq in heap] + list(inflight)
                out[v] = QueueDepth(
                    ready=len(new) + due,
                    retrying=len(heap) - due,
                    inflight=len(inflight),
                    dead=sum(1 for d in self._dead if d.vendor == v),
                    oldest_ms=self._events[min(seqs)][2] if seqs else None,  # type: ignore[arg-type]
                )
            return out

    def dead_letters(
        self, vendor: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        with self._lock:
            rows = [
                d
                for d in reversed(self._dead)
                if (vendor is None or d.vendor == vendor)
                and (since_ms is None or d.failed_ms >= since_ms)
            ]
        return rows[:limit]

    def dead_letter(self, id: int) -> DeadLetter | None:
        with self._lock:
            return next((d for d in self._dead if d.id == id), None)

    def erasure_log(self) -> erase.ErasureLog:
        return self._erasures

    def stored_events(self) -> Iterable[tuple[str, bytes, int]]:
        with self._lock:
            return [
                (str(e[0]), e[3], int(e[2]))  # type: ignore[call-overload]
                for e in self._events.values()
                if isinstance(e[3], bytes)
            ]

    def discard_dead(self, ids: Sequence[int]) -> list[DeadLetter]:
        wanted = set(ids)
        with self._lock:
            gone = [d for d in self._dead if d.id in wanted]
            self._dead = [d for d in self._dead if d.id not in wanted]
        return gone

    def requeue_dead(
        self, vendor: str | None = None, since_ms: int | None = None, ids: Sequence[int] = ()
    ) -> list[DeadLetter]:
        with self._lock:
            chosen = [
                d
                for d in self._dead
                if (vendor is None or d.vendor == vendor)
                and (since_ms is None or d.failed_ms >= since_ms)
                and (not ids or d.id in ids)
            ]
            keep = {d.id for d in chosen}
            self._dead = [d for d in self._dead if d.id not in keep]
            for d in chosen:
                seq = next(self._seq)
                self._events[seq] = [d.event_id, d.name, d.created_ms, d.payload, 1]
                self._new.setdefault(d.vendor, deque()).append(seq)
        return chosen

    def remember(self, vendor: str, key: str) -> bool:
        with self._lock:
            if (vendor, key) in self._remembered:
                return False
            self._remembered.add((vendor, key))
            return True

    def forget(self, vendor: str, key: str) -> None:
        with self._lock:
            self._remembered.discard((vendor, key))

    def forget_prefix(self, vendor: str, prefix: str) -> None:
        with self._lock:
            self._remembered -= {
                (v, k) for v, k in self._remembered if v == vendor and k.startswith(prefix)
            }

    def waiting_records(self, event_id: str) -> list[LedgerEntry]:
        """What waits for ``event_id`` per vendor (queued, retrying, in flight), for the
        delivery ledger's status (:class:`postback.ledger.MemoryLedger`)."""

        out: list[LedgerEntry] = []
        with self._lock:
            seqs = {seq: rec for seq, rec in self._events.items() if rec[0] == event_id}
            if not seqs:
                return out
            for vendor, new in self._new.items():
                for seq in new:
                    if seq in seqs:
                        out.append(self._waiting(seqs[seq], vendor, "queued", 0, 0))
            for vendor, heap in self._retry.items():
                for due, seq in heap:
                    if seq in seqs:
                        tries = self._attempts.get((vendor, seq), 0)
                        out.append(self._waiting(seqs[seq], vendor, "retrying", tries, due))
            for vendor, inflight in self._inflight.items():
                for seq in inflight:
                    if seq in seqs:
                        tries = self._attempts.get((vendor, seq), 0)
                        out.append(self._waiting(seqs[seq], vendor, "in flight", tries, 0))
        return out

    @staticmethod
    def _waiting(rec: list[object], vendor: str, kind: str, tries: int, due: int) -> LedgerEntry:
        from postback.ledger import LedgerEntry

        name, created = str(rec[1]), int(rec[2])  # type: ignore[call-overload]
        return LedgerEntry(str(rec[0]), vendor, 0, kind, tries, "", "", name, created, due)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<MemoryQueue {len(self._events)} events>"

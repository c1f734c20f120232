"""A queue backend from outside the core, registered as a third party's would be: ``toy://``.

It keeps everything in one dict per process (like ``memory://``, but written here from the
interface alone), declares that, and passes QueueContract (tests/test_queue_registry.py).
``toy://leaky`` opens a broken variant that hands an event out twice, to show that the contract
catches it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from postback import hookimpl
from postback.delivery.queue import (
    Claimed,
    DeadLetter,
    Queue,
    QueueBackend,
    QueueCapabilities,
    QueueDepth,
    QueueOptions,
    Settlement,
)


class ToyQueue(Queue):
    capabilities = QueueCapabilities(loop_safe_put=True)

    def __init__(self, url: str, leaky: bool = False) -> None:
        self.url = url
        self.leaky = leaky
        self._lock = threading.Lock()
        self._events: dict[int, tuple[str, str, int, bytes]] = {}
        # (vendor, seq) -> [state, due_ms, attempts]; state: new, retry, inflight
        self._work: dict[tuple[str, int], list[object]] = {}
        self._dead: dict[int, DeadLetter] = {}
        self._keys: set[tuple[str, str]] = set()
        self._next = 0

    def put(
        self, event_id: str, name: str, created_ms: int, vendors: Sequence[str], payload: bytes
    ) -> None:
        with self._lock:
            self._next += 1
            self._events[self._next] = (event_id, name, created_ms, payload)
            for v in vendors:
                self._work[(v, self._next)] = ["new", 0, 0]

    def claim(self, vendor: str, limit: int, now_ms: int) -> list[Claimed]:
        with self._lock:
            out = []
            for (v, seq), w in sorted(self._work.items(), key=lambda kv: kv[0][1]):
                if len(out) == limit:
                    break
                due = w[0] == "new" or (w[0] == "retry" and int(w[1]) <= now_ms)  # type: ignore[call-overload]
                if v == vendor and due:
                    if not self.leaky:
                        w[0] = "inflight"
                    event_id, _, created_ms, payload = self._events[seq]
                    out.append(Claimed(seq, event_id, payload, int(w[2]), created_ms))  # type: ignore[call-overload]
            return out

    def settle(self, vendor: str, settlements: Sequence[Settlement], now_ms: int) -> None:
        with self._lock:
            for s in settlements:
                key = (vendor, s.claimed.seq)
                if s.kind in ("retry", "release"):
                    attempts = s.attempts if s.kind == "retry" else s.claimed.attempts
                    self._work[key] = ["retry", s.due_ms, attempts]
                    continue
                self._work.pop(key, None)
                if s.kind == "dead":
                    event_id, name, created_ms, payload = self._events[s.claimed.seq]
                    self._next += 1
                    self._dead[self._next] = DeadLetter(
                        self._next, vendor, event_id, name, created_ms, now_ms, s.attempts,
                        s.error or "", payload,
                    )  # fmt: skip

    def next_due_ms(self, vendor: str) -> int | None:
        with self._lock:
            dues = [
                int(w[1]) for (v, _), w in self._work.items() if v == vendor and w[0] == "retry"
            ]  # type: ignore[call-overload]
        return min(dues, default=None)

    def depth(self, vendors: Sequence[str], now_ms: int) -> dict[str, QueueDepth]:
        with self._lock:
            out = {}
            for vendor in vendors:
                states = [
                    "ready" if w[0] == "new" or (w[0] == "retry" and int(w[1]) <= now_ms)  # type: ignore[call-overload]
                    else str(w[0])
                    for (v, _), w in self._work.items()
                    if v == vendor
                ]  # fmt: skip
                dead = sum(1 for d in self._dead.values() if d.vendor == vendor)
                out[vendor] = QueueDepth(
                    states.count("ready"), states.count("retry"), states.count("inflight"), dead
                )
            return out

    def dead_letters(
        self, vendor: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        with self._lock:
            found = [
                d
                for _, d in sorted(self._dead.items(), reverse=True)
                if vendor in (None, d.vendor) and (since_ms is None or d.failed_ms >= since_ms)
            ]
        return found[:limit]

    def dead_letter(self, id: int) -> DeadLetter | None:
        with self._lock:
            return self._dead.get(id)

    def requeue_dead(
        self, vendor: str | None = None, since_ms: int | None = None, ids: Sequence[int] = ()
    ) -> list[DeadLetter]:
        chosen = [d for d in self.dead_letters(vendor, since_ms, 10**9) if not ids or d.id in ids]
        for d in reversed(chosen):
            with self._lock:
                del self._dead[d.id]
            self.put(d.event_id, d.name, d.created_ms, [d.vendor], d.payload)
        return chosen

    def remember(self, vendor: str, key: str) -> bool:
        with self._lock:
            new = (vendor, key) not in self._keys
            self._keys.add((vendor, key))
            return new

    def forget(self, vendor: str, key: str) -> None:
        with self._lock:
            self._keys.discard((vendor, key))

    def forget_prefix(self, vendor: str, prefix: str) -> None:
        with self._lock:
            self._keys -= {(v, k) for v, k in self._keys if v == vendor and k.startswith(prefix)}

    def close(self) -> None:
        pass


def open_toy(url: str, options: QueueOptions) -> Queue:
    return ToyQueue(url, leaky=url.startswith("toy://leaky"))


TOY = QueueBackend(
    name="toy",
    schemes=("toy",),
    open=open_toy,
    capabilities=ToyQueue.capabilities,
    example="toy://",
    summary="a dict in this process (the registry's tests)",
)


@hookimpl
def postback_register_queues(register: Callable[[QueueBackend], None]) -> None:
    register(TOY)

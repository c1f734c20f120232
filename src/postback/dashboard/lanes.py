"""The figures on the lanes page, one row per vendor, gathered from what the tracker exposes.

Depth comes from ``queue.depth()`` (every process's events), the age of the oldest waiting
event from :class:`~postback.dashboard.sqlite_view.SQLiteView` (SQLite queues only), and the
counters, halts and latency from ``tracker.stats()`` (this process's engine). The rate is
measured here: :class:`RateMeter` keeps recent samples of each vendor's delivered counter and
reports events per minute over the last minute or so.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs

from postback.dashboard.masking import mask_text
from postback.dashboard.sqlite_view import SQLiteView

__all__ = ["LaneRow", "RateMeter", "lane_rows"]

WINDOW_S = 60.0


@attrs.frozen
class LaneRow:
    vendor: str
    ready: int
    retrying: int
    inflight: int
    dead: int
    #: Seconds since the oldest waiting event was queued (None: nothing waits, or unknown).
    oldest_age_s: float | None
    #: Events delivered per minute by this process (None: this process does not deliver).
    rate_per_min: float | None
    delivered: int
    retried: int
    skipped: int
    latency_p50_ms: float | None
    halted: str | None

    @property
    def pending(self) -> int:
        return self.ready + self.retrying + self.inflight

    @property
    def health(self) -> str:
        """``halted``, ``backlog`` (oldest waiting over a minute), ``ok``."""
        if self.halted:
            return "halted"
        if self.oldest_age_s is not None and self.oldest_age_s > 60:
            return "backlog"
        return "ok"


class RateMeter:
    """Delivered-per-minute per vendor from samples taken whenever the lanes are read."""

    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def rate(self, vendor: str, delivered: int, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            samples = self._samples.setdefault(vendor, deque())
            samples.append((now, delivered))
            while len(samples) > 2 and now - samples[1][0] >= self.window:
                samples.popleft()
            first_t, first_n = samples[0]
        if now - first_t < 1.0:
            return None  # not enough time observed yet
        return max(delivered - first_n, 0) * 60.0 / (now - first_t)


def lane_rows(tracker: Any, meter: RateMeter) -> list[LaneRow]:
    """One row per vendor the config enables or the queue has state for."""
    queue = tracker.queue
    stats: Mapping[str, Mapping[str, Any]] = tracker.stats()
    vendors = sorted(set(tracker.destinations) | set(queue.vendors_seen()))
    now_ms = time.time_ns() // 1_000_000
    depth = queue.depth(vendors, now_ms)
    view = SQLiteView.of(queue)
    oldest = view.oldest_ms(vendors) if view is not None else {}
    delivers = bool(getattr(tracker.mode, "delivers", False))
    rows = []
    for v in vendors:
        d = depth[v]
        s = stats.get(v, {})
        delivered = int(s.get("delivered", 0))
        first = oldest.get(v)
        p50 = s.get("latency_p50")
        halted = s.get("halted")
        rows.append(
            LaneRow(
                vendor=v,
                ready=d.ready,
                retrying=d.retrying,
                inflight=d.inflight,
                dead=d.dead,
                oldest_age_s=max((now_ms - first) / 1000, 0.0) if first is not None else None,
                rate_per_min=meter.rate(v, delivered) if delivers and v in stats else None,
                delivered=delivered,
                retried=int(s.get("retried", 0)),
                skipped=int(s.get("skipped", 0)),
                latency_p50_ms=round(p50 * 1000, 1) if isinstance(p50, int | float) else None,
                halted=mask_text(str(halted)) if halted else None,
            )
        )
    return rows

"""What delivery counts: per-vendor counters since start, and the reports ``flush()`` returns."""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs

__all__ = ["FlushReport", "VendorReport", "VendorStats"]


@attrs.define
class VendorStats:
    """Per-vendor counters (since the tracker started)."""

    tracked: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    requests: int = 0
    attributed: int = 0
    halted: str | None = None
    latencies: deque[float] = attrs.field(factory=lambda: deque(maxlen=2048))

    def snapshot(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(int(len(lat) * p), len(lat) - 1)], 6) if lat else None

        return {
            "tracked": self.tracked,
            "delivered": self.delivered,
            "retried": self.retried,
            "dead": self.dead,
            "skipped": self.skipped,
            "requests": self.requests,
            "attributed": self.attributed,
            "halted": self.halted,
            "latency_p50": pct(0.5),
            "latency_p95": pct(0.95),
        }


@attrs.frozen
class VendorReport:
    """What a flush saw for one vendor: counts since the previous flush, and what is left."""

    delivered: int
    dead: int
    retried: int
    skipped: int
    pending: int
    halted: str | None = None


@attrs.frozen
class FlushReport:
    """Returned by ``flush()``: ``complete`` is true when nothing is left to deliver."""

    complete: bool
    vendors: dict[str, VendorReport]

    def __getitem__(self, vendor: str) -> VendorReport:
        return self.vendors[vendor]

    def then(self, later: FlushReport) -> FlushReport:
        """This report followed by ``later`` (which counts from where this one ended): the
        counts added up, what is left and the halts as ``later`` says."""
        vendors = dict(self.vendors)
        for name, after in later.vendors.items():
            before = vendors.get(name)
            vendors[name] = (
                after
                if before is None
                else attrs.evolve(
                    after,
                    delivered=before.delivered + after.delivered,
                    dead=before.dead + after.dead,
                    retried=before.retried + after.retried,
                    skipped=before.skipped + after.skipped,
                )
            )
        return FlushReport(not any(r.pending for r in vendors.values()), vendors)

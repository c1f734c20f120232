"""Recent deliveries and attributions, kept in memory for the dashboard (a plugin).

:class:`Recorder` implements ``postback_on_delivery`` and ``postback_on_attribution`` and keeps
the last few hundred of each, masked as they arrive (event id, name, vendor, outcome, attempt,
latency; attribution fields through :func:`~postback.dashboard.masking.mask_value`), so nothing
personal is held longer than the page that shows it. It sees what the process it is registered
in delivers: pass it to ``Tracker.from_config(plugins=[dashboard.recorder])`` (``postback ui``
does) or it records nothing. A delivery ledger in the queue would make this cross-process.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import attrs

from postback.dashboard.masking import mask_text, mask_value
from postback.hookspecs import hookimpl

__all__ = ["RecentAttribution", "RecentDelivery", "Recorder"]


@attrs.frozen
class RecentDelivery:
    at_ms: int
    vendor: str
    event_id: str
    name: str
    outcome: str
    attempt: int
    latency_ms: float
    note: str


@attrs.frozen
class RecentAttribution:
    at_ms: int
    vendor: str
    event_id: str
    name: str
    fields: dict[str, Any]


_LABELS = {"Delivered": "delivered", "DeadLettered": "dead-lettered"}


class Recorder:
    """The plugin object; ``deliveries()`` and ``attributions()`` newest first."""

    __name__ = "postback.dashboard.recorder"

    def __init__(self, size: int = 200) -> None:
        self._lock = threading.Lock()
        self._deliveries: deque[RecentDelivery] = deque(maxlen=size)
        self._attributions: deque[RecentAttribution] = deque(maxlen=size)

    @hookimpl
    def postback_on_delivery(
        self, vendor: str, event: Any, outcome: Any, attempt: int, latency: float
    ) -> None:
        kind = type(outcome).__name__
        note = ""
        for attr in ("reason", "note", "vendor_ref"):
            value = getattr(outcome, attr, None)
            if isinstance(value, str) and value:
                note = value
                break
        record = RecentDelivery(
            at_ms=time.time_ns() // 1_000_000,
            vendor=vendor,
            event_id=event.event_id,
            name=event.name,
            outcome=_LABELS.get(kind, kind.lower()),
            attempt=attempt,
            latency_ms=round(latency * 1000, 1),
            note=mask_text(note)[:300],
        )
        with self._lock:
            self._deliveries.appendleft(record)

    @hookimpl
    def postback_on_attribution(self, attribution: Any, event: Any) -> None:
        fields = {
            f.name: getattr(attribution, f.name)
            for f in attrs.fields(type(attribution))
            if f.name not in ("raw", "vendor", "event_id")
            and getattr(attribution, f.name) is not None
        }
        record = RecentAttribution(
            at_ms=time.time_ns() // 1_000_000,
            vendor=str(getattr(attribution, "vendor", "")),
            event_id=event.event_id,
            name=event.name,
            fields=mask_value(fields),
        )
        with self._lock:
            self._attributions.appendleft(record)

    def deliveries(self) -> list[RecentDelivery]:
        with self._lock:
            return list(self._deliveries)

    def attributions(self) -> list[RecentAttribution]:
        with self._lock:
            return list(self._attributions)

"""Local dedupe: an ``event_id`` tracked again within a window is not sent again.

Some vendors have no dedupe key (X, Mobana and Ton AI: their APIs count a conversion sent
twice as two). For those, postback remembers each ``event_id`` it queued for the vendor for a
window (``Destination.default_dedupe_window``: 24 hours for the three; ``[vendors.NAME]
dedupe_window`` changes it, ``0`` turns it off, and a vendor with its own key may turn it on).
A second ``track()`` with the same ``event_id`` within the window leaves that vendor out: a
skip with reason ``"duplicate"``, counted in ``tracker.stats()`` like any skip, never an error
(not even with ``strict = true``). The other vendors still get the event, and deduplicate it
themselves.

The keys live in the queue's storage (:meth:`~postback.delivery.queue.Queue.remember_for`), so
the dedupe holds across restarts and processes sharing a ``sqlite://`` file, and across hosts
sharing a ``redis://`` queue; it is atomic, so two processes tracking one id at once send it
once. Only an ``event_id`` the app passed is checked: one ``track()`` generates is new by
construction, and costs nothing here. If the event then cannot be queued, its keys are
forgotten again, so that the app's retry is not taken for a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from postback.delivery.queue import Queue
from postback.destination import Skip
from postback.durations import parse_duration

__all__ = ["DEDUPE_HELP", "DUPLICATE", "Deduper", "parse_dedupe_window"]

#: The skip reason of a vendor left out of an event it already got within its window.
DUPLICATE = "duplicate"
DEDUPE_HELP = (
    "Drop an event whose event_id this vendor got within this window, e.g. '24h' (default "
    "for vendors without a dedupe key: X, Mobana, Ton AI); 0 turns it off."
)


def parse_dedupe_window(value: object) -> float:
    """``dedupe_window``: a duration in seconds (``0`` or ``false``: off)."""
    if value is False:
        return 0.0
    return parse_duration(value)


class Deduper:
    """Leaves out of an event the vendors that got its ``event_id`` within their window."""

    def __init__(self, queue: Queue, windows: Mapping[str, float]) -> None:
        self.queue = queue
        #: Window in milliseconds per vendor that dedupes locally (others are absent).
        self.windows_ms = {v: int(w * 1000) for v, w in windows.items() if w > 0}
        self._skips = {
            v: Skip(
                DUPLICATE,
                field="event_id",
                fix=f"not an error: this event_id was already queued for {v} within its "
                f"dedupe_window ({w:g} s); track a new event with a new event_id",
                vendor=v,
            )
            for v, w in windows.items()
            if w > 0
        }

    def admit(self, event_id: str, names: Sequence[str]) -> tuple[Sequence[str], list[Skip]]:
        """``names`` without the vendors that got ``event_id`` within their window (one call
        to the queue per distinct window, usually one), and a skip for each of those."""
        windows = self.windows_ms
        groups: dict[int, list[str]] = {}
        for name in names:
            window = windows.get(name)
            if window is not None:
                groups.setdefault(window, []).append(name)
        if not groups:
            return names, []
        fresh: set[str] = set()
        for window, vendors in groups.items():
            fresh.update(self.queue.remember_for(vendors, event_id, window))
        dups = [n for vendors in groups.values() for n in vendors if n not in fresh]
        if not dups:
            return names, []
        return [n for n in names if n not in dups], [self._skips[n] for n in dups]

    def undo(self, event_id: str, names: Sequence[str]) -> None:
        """Forget ``event_id`` for ``names`` (the event could not be queued)."""
        vendors = [n for n in names if n in self.windows_ms]
        if vendors:
            self.queue.forget_for(vendors, event_id)

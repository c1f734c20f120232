"""Local dedupe: an ``event_id`` tracked again within a window is not sent again.

Some vendors have no dedupe key (X, Mobana and Ton AI: their APIs count a conversion sent
twice as two). For those, postback remembers each ``event_id`` it queued for the vendor for a
window (``Destination.default_dedupe_window``: 24 hours for the three; ``[vendors.NAME]
dedupe_window`` changes it, ``0`` turns it off, and a vendor with its own key may turn it on).
A second ``track()`` with the same ``event_id`` within the window leaves that vendor out: a
skip with reason ``"duplicate"``, counted in ``tracker.stats()`` like any skip, never an error
(not even with ``strict = true``). The other vendors still get the event, and deduplicate it
themselves.

The keys live in the queue's storage, remembered as the event is stored
(:meth:`~postback.delivery.queue.Queue.put_unique`: one Lua call on Redis, a
:meth:`~postback.delivery.queue.Queue.remember_for` upsert then the spool append on SQLite), so
the dedupe holds across restarts and processes sharing a ``sqlite://`` file, and across hosts
sharing a ``redis://`` queue; it is atomic, so two processes tracking one id at once send it
once. Only an ``event_id`` the app passed is checked: one ``track()`` generates is new by
construction, and costs nothing here. If the event then cannot be queued, its keys are
forgotten again, so that the app's retry is not taken for a duplicate. This module holds the
settings and the skips; the tracker and the queue do the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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

    def __init__(self, windows: Mapping[str, float]) -> None:
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

    def windows_for(self, names: Sequence[str]) -> dict[str, int] | None:
        """The windows (ms) of the vendors among ``names`` that dedupe locally, or None."""
        windows = self.windows_ms
        if windows.keys().isdisjoint(names):  # the common case, answered in C (track())
            return None
        return {n: windows[n] for n in names if n in windows}

    def skips(self, vendors: Sequence[str]) -> list[Skip]:
        """The ``duplicate`` skip of each of ``vendors``."""
        return [self._skips[v] for v in vendors]

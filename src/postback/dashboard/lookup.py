"""Where one event stands, per vendor, as far as the queue's records tell: the event lookup page.

:func:`find_event` is the single seam the page reads. Today it looks for the event among the
records the queue keeps anyway: events waiting for their first attempt, waiting for a retry
(with the last error), and dead letters (with the reason). A delivered or skipped event leaves
no record once its lane has moved past it, so the answer there is "passed", and "no record" when
nothing at all is found. A per-event delivery ledger (``tracker.status(event_id)``) will replace
this function's body and keep its return type.

Only the SQLite queue's waiting records are read (through a read-only connection to its file,
see :mod:`postback.dashboard.sqlite_view`); other backends are searched for dead letters only,
and the lookup says so.
"""

from __future__ import annotations

from typing import Literal

import attrs

from postback.dashboard.sqlite_view import SQLiteView
from postback.delivery.queue import Queue

__all__ = ["DEAD_LETTER_SCAN", "EventLookup", "VendorRecord", "find_event"]

#: How many of the newest dead letters a backend without an index by event id is searched.
DEAD_LETTER_SCAN = 5000

State = Literal["queued", "retrying", "in flight", "passed", "dead-lettered"]


@attrs.frozen
class VendorRecord:
    """What the queue's records say about the event for one vendor."""

    vendor: str
    state: State
    #: Attempts made so far (0 while queued for its first).
    attempts: int = 0
    #: The last error, the dead-letter reason, or what "passed" means (never raw PII: callers
    #: mask it before showing).
    note: str = ""
    #: When the next attempt is due (retrying) or when it failed (dead-lettered), epoch ms.
    at_ms: int | None = None
    #: The dead letter's id, for show / replay / discard.
    dead_letter_id: int | None = None


@attrs.frozen
class EventLookup:
    """The answer for one event id: its name, when it was queued, and a record per vendor."""

    event_id: str
    name: str | None = None
    created_ms: int | None = None
    records: tuple[VendorRecord, ...] = ()
    #: What was searched, in words, so "no record" can be read correctly.
    searched: str = ""

    @property
    def found(self) -> bool:
        return bool(self.records)


def find_event(queue: Queue, event_id: str) -> EventLookup:
    """Where ``event_id`` stands per vendor, from the queue's own records."""
    event_id = event_id.strip()
    records: list[VendorRecord] = []
    name: str | None = None
    created: int | None = None
    view = SQLiteView.of(queue)
    if view is not None:
        searched = "waiting events, retries and dead letters in the SQLite queue"
        for row in view.waiting(event_id):
            name, created = row.name, row.created_ms
            records.append(
                VendorRecord(
                    vendor=row.vendor,
                    state=row.state,
                    attempts=row.attempts,
                    note=row.note,
                    at_ms=row.due_ms,
                )
            )
        dead = view.dead_letter_ids(event_id)
        letters = [d for d in (queue.dead_letter(i) for i in dead) if d is not None]
    else:
        searched = f"the newest {DEAD_LETTER_SCAN} dead letters ({type(queue).__name__})"
        letters = [d for d in queue.dead_letters(limit=DEAD_LETTER_SCAN) if d.event_id == event_id]
    for d in letters:
        name, created = d.name, d.created_ms
        records.append(
            VendorRecord(
                vendor=d.vendor,
                state="dead-lettered",
                attempts=d.attempts,
                note=d.reason,
                at_ms=d.failed_ms,
                dead_letter_id=d.id,
            )
        )
    dead_vendors = {r.vendor for r in records if r.state == "dead-lettered"}
    records = [r for r in records if not (r.state == "passed" and r.vendor in dead_vendors)]
    records.sort(key=lambda r: (r.vendor, r.state))
    return EventLookup(event_id, name, created, tuple(records), searched)

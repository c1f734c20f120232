"""Where one event stands, per vendor: the event lookup page, read from the delivery ledger.

:func:`find_event` is the single seam the page reads. It asks the delivery ledger
(:mod:`postback.ledger`: every outcome any process recorded, and what waits in the queue now)
and adds the id of each dead letter, so the page can link to show / replay / discard.
"""

from __future__ import annotations

from typing import Literal

import attrs

from postback.dashboard.sqlite_view import SQLiteView
from postback.delivery.ledgers import open_ledger
from postback.delivery.queue import Queue
from postback.ledger import Attempt, EventStatus, LedgerWriter, VendorStatus, read_status

__all__ = ["DEAD_LETTER_SCAN", "EventLookup", "VendorRecord", "find_event"]

#: How many of the newest dead letters a backend without an index by event id is searched.
DEAD_LETTER_SCAN = 5000

State = Literal["queued", "retrying", "in flight", "held", "delivered", "skipped", "dead-lettered"]


@attrs.frozen
class VendorRecord:
    """What the ledger says about the event for one vendor."""

    vendor: str
    state: State
    #: Attempts made so far (0 while queued for its first).
    attempts: int = 0
    #: The dead-letter or skip reason, the last error, or the vendor's id for a delivered
    #: event (secrets removed and personal data masked when stored; callers mask again).
    note: str = ""
    #: When it was delivered, failed, or last tried; for ``retrying``, when the next attempt
    #: is due; epoch ms.
    at_ms: int | None = None
    #: The dead letter's id, for show / replay / discard.
    dead_letter_id: int | None = None
    #: Every attempt, oldest first.
    history: tuple[Attempt, ...] = ()


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


def find_event(queue: Queue, event_id: str, ledger: LedgerWriter | None = None) -> EventLookup:
    """Where ``event_id`` stands per vendor: ``ledger`` (the tracker's, which writes what it
    buffered first) or the ledger of ``queue``'s backend."""
    event_id = event_id.strip()
    if ledger is not None:
        status = ledger.status(event_id)
    else:
        backend = open_ledger(queue)
        try:
            status = read_status(backend, event_id)
        finally:
            backend.close()
    dead_ids = _dead_letter_ids(queue, event_id, status)
    scanned = SQLiteView.of(queue) is None
    records = tuple(_record(v, dead_ids.get(v.vendor)) for v in status.vendors.values())
    searched = "the delivery ledger and the events waiting in the queue"
    if scanned:
        searched += f" (dead letters: the newest {DEAD_LETTER_SCAN} dead letters)"
    return EventLookup(event_id, status.name, status.queued_ms, records, searched)


def _record(v: VendorStatus, dead_id: int | None) -> VendorRecord:
    last = v.attempts[-1] if v.attempts else None
    note = {
        "delivered": v.vendor_ref or "",
        "skipped": v.skipped_reason or "",
        "dead-lettered": v.dead_reason or "",
    }.get(v.state, last.note if last else "")
    at_ms = {
        "delivered": v.delivered_ms,
        "retrying": v.next_attempt_ms,
    }.get(v.state, last.at_ms if last else None)
    return VendorRecord(
        vendor=v.vendor,
        state=v.state,
        attempts=sum(1 for a in v.attempts if a.outcome != "held"),
        note=note,
        at_ms=at_ms,
        dead_letter_id=dead_id if v.state == "dead-lettered" else None,
        history=v.attempts,
    )


def _dead_letter_ids(queue: Queue, event_id: str, status: EventStatus) -> dict[str, int]:
    """vendor -> the newest dead letter of ``event_id`` (a backend without an index by event
    id: among the newest :data:`DEAD_LETTER_SCAN`)."""
    if not any(v.state == "dead-lettered" for v in status.vendors.values()):
        return {}
    view = SQLiteView.of(queue)
    out: dict[str, int] = {}
    if view is not None:
        for i in view.dead_letter_ids(event_id):  # newest first
            d = queue.dead_letter(i)
            if d is not None:
                out.setdefault(d.vendor, d.id)
        return out
    for d in queue.dead_letters(limit=DEAD_LETTER_SCAN):  # newest first
        if d.event_id == event_id:
            out.setdefault(d.vendor, d.id)
    return out

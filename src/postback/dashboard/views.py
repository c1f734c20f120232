"""The dashboard's pages as functions from the tracker (and a request's inputs) to the values a
template shows. Every string from the queue passes through :mod:`~postback.dashboard.masking`
here, and a stored event through :func:`postback.privacy.mask_event` (as ``postback
deadletters show`` masks it: ids and click ids too); templates never see a raw payload, reason
or secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from postback.dashboard.lanes import RateMeter, lane_rows
from postback.dashboard.lookup import find_event
from postback.dashboard.masking import mask_text, mask_value, redacted_config, safe_url
from postback.dashboard.recorder import Recorder
from postback.delivery.queue import DeadLetter
from postback.destination import Destination
from postback.encryption import open_payload
from postback.privacy import mask_event
from postback.textmask import public_settings

__all__ = [
    "config_page",
    "dead_letter_page",
    "dead_letters_page",
    "deliveries_page",
    "event_page",
    "lanes_page",
    "masked_letter",
]

DEAD_LETTERS_PER_PAGE = 100
#: A stored event's strings and lists are shown up to this many characters or items (masked
#: first, whole): an event may be up to 1 MB, too much for a page.
SHOWN_CHARS = 1000
SHOWN_ITEMS = 100


def lanes_page(tracker: Any, meter: RateMeter) -> dict[str, Any]:
    rows = lane_rows(tracker, meter)
    return {
        "lanes": rows,
        "queue_url": _queue_label(tracker),
        "delivers": bool(getattr(tracker.mode, "delivers", False)),
    }


def deliveries_page(recorder: Recorder | None) -> dict[str, Any]:
    return {
        "recording": recorder is not None,
        "deliveries": recorder.deliveries() if recorder else [],
        "attributions": recorder.attributions() if recorder else [],
    }


def event_page(tracker: Any, event_id: str | None) -> dict[str, Any]:
    if not event_id or not event_id.strip():
        return {"event_id": "", "lookup": None}
    # Bounded by what an event id can be (255 characters): a longer one matches nothing.
    lookup = find_event(tracker.queue, event_id.strip()[:256], getattr(tracker, "ledger", None))
    records = [
        {
            "vendor": r.vendor,
            "state": r.state,
            "attempts": r.attempts,
            "note": mask_text(r.note),
            "at_ms": r.at_ms,
            "dead_letter_id": r.dead_letter_id,
        }
        for r in lookup.records
    ]
    return {"event_id": lookup.event_id, "lookup": lookup, "records": records}


def masked_letter(
    d: DeadLetter, destinations: Iterable[Destination] = (), *, event: bool = True
) -> dict[str, Any]:
    """A dead letter as the pages show it: reason and payload masked (the fields the vendor
    plugins in ``destinations`` declare as not identifying anyone are kept). ``event=False``
    leaves the stored event unread (``payload`` empty): the list does not show it, and an
    event near the 1 MB limit takes a fifth of a second to decode and mask. The vendors'
    non-secret settings (an app id) stay as they are in the reason."""
    destinations = list(destinations)
    return {
        "id": d.id,
        "vendor": d.vendor,
        "event_id": d.event_id,
        "name": d.name,
        "created_ms": d.created_ms,
        "failed_ms": d.failed_ms,
        "attempts": d.attempts,
        "reason": mask_text(d.reason, public_settings(destinations)),
        "payload": _shown_event(d, destinations) if event else "",
    }


def _shown_event(d: DeadLetter, destinations: Iterable[Destination]) -> str:
    plain = [f.name for dest in destinations for f in dest.fields if not f.identifier]
    try:
        loaded = orjson.loads(open_payload(d.payload))
        event = mask_event(loaded, plain) if isinstance(loaded, dict) else mask_value(loaded)
        return orjson.dumps(_cut(event), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return "(the stored event could not be read)"


def _cut(value: Any) -> Any:
    """``value`` with each long string and list cut, saying how much was left out."""
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"{value[:SHOWN_CHARS]}… ({len(value) - SHOWN_CHARS:,} characters more)"
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    if isinstance(value, list):
        kept = [_cut(v) for v in value[:SHOWN_ITEMS]]
        more = len(value) - SHOWN_ITEMS
        return [*kept, f"… ({more:,} items more)"] if more > 0 else kept
    return value


def dead_letters_page(tracker: Any, vendor: str | None) -> dict[str, Any]:
    vendor = vendor or None
    rows = tracker.queue.dead_letters(vendor, None, DEAD_LETTERS_PER_PAGE)
    vendors = sorted(set(tracker.destinations) | set(tracker.queue.vendors_seen()))
    return {
        "letters": [masked_letter(d, tracker.destinations.values(), event=False) for d in rows],
        "vendor": vendor or "",
        "vendors": vendors,
        "limit": DEAD_LETTERS_PER_PAGE,
    }


def dead_letter_page(tracker: Any, dead_id: int) -> dict[str, Any] | None:
    d = tracker.queue.dead_letter(dead_id)
    return None if d is None else {"letter": masked_letter(d, tracker.destinations.values())}


def config_page(tracker: Any) -> dict[str, Any]:
    return {
        "source": tracker.config.source or "(a mapping passed in code)",
        "sections": redacted_config(tracker.config),
    }


def _queue_label(tracker: Any) -> str:
    return safe_url(str(tracker.queue.url))

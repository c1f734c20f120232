"""Outcomes: what a vendor's ``parse_response`` says happened to each event of a batch, and
what ``postback_on_delivery`` is told.

:data:`Outcome` is what a :class:`~postback.destination.Destination` returns (``Delivered``,
``Retry``, ``Rejected``, ``RejectedBatch``, ``Halt``); :data:`Reported` is what the engine
reports after acting on it (``DeadLettered`` and ``Skipped`` are the engine's words, never a
plugin's). :data:`NOT_SENT` names the transport errors after which a request cannot have
reached the vendor. Plain frozen values, no behaviour: the engine (:mod:`postback.delivery`)
decides what each one does to the queue. Plugins import them from :mod:`postback.plugin`
(``postback.destination`` re-exports them too).
"""

from __future__ import annotations

from typing import TypeAlias

import attrs
import httpx

from postback.events import Attribution

__all__ = [
    "NOT_SENT",
    "DeadLettered",
    "Delivered",
    "Halt",
    "Outcome",
    "Rejected",
    "RejectedBatch",
    "Reported",
    "Retry",
    "Skipped",
]


@attrs.frozen
class Delivered:
    """The vendor accepted the event. ``attribution`` is set when the vendor returned one.

    ``note`` says what was odd about an answer that still means "accepted" (a 2xx without the
    usual body): the engine logs it as a warning. A 2xx is never retried, since the vendor
    may have counted the event.
    """

    attribution: Attribution | None = None
    vendor_ref: str | None = None
    note: str | None = None


@attrs.frozen
class Retry:
    """A transient failure: try again later (after ``after`` seconds if the vendor said)."""

    reason: str
    after: float | None = None


@attrs.frozen
class Rejected:
    """The vendor refused this event for good: it goes to the dead-letter store with the reason."""

    reason: str
    status: int | None = None
    detail: str | None = None


@attrs.frozen
class RejectedBatch:
    """The vendor refused the whole batch without saying which event was bad.

    The engine splits the batch in halves and resends each, until the bad event is alone (and
    then rejected with ``reason``) and the good ones are delivered. When the vendor refuses
    every request the same way (both halves of a split, or single events in a row), the events
    are not at fault but a setting is: the engine halts the lane instead, keeps every event,
    and names ``likely_setting`` (e.g. ``"payload_format"``) in the halt's reason.
    """

    reason: str
    status: int | None = None
    likely_setting: str | None = None


@attrs.frozen
class Halt:
    """The vendor refused our credentials (401/403), or refused every request the same way
    (a wrong setting): stop the lane, keep every event queued.

    The engine logs ``reason`` loudly, pauses the lane for ``after`` seconds (or its default)
    and tries again; no event is dropped or counted as an attempt.

    With ``scope`` (what :meth:`Destination.halt_scope` says of the refused event, e.g. one
    app or advertiser account), only events of that scope are held: the lane goes on with the
    others, and holds that scope's events without sending them until the pause is over.
    """

    reason: str
    status: int | None = None
    after: float | None = None
    scope: str | None = None


@attrs.frozen
class Skipped:
    """The event was not sent to this vendor, on purpose (a :class:`Skip` at ``track()``,
    or :class:`SkipEvent` raised from ``transform``). Never an error, never a dead letter:
    reported to ``postback_on_delivery`` and counted per vendor and ``reason``."""

    reason: str


Outcome: TypeAlias = Delivered | Retry | Rejected | RejectedBatch | Halt


@attrs.frozen
class DeadLettered:
    """The event went to the dead-letter store: it is not sent again unless replayed.

    Only the engine reports it (to ``postback_on_delivery``); a vendor's ``parse_response``
    returns :class:`Rejected` instead. ``reason`` is what the dead letter records. ``cause`` is
    the outcome that put the event there: the vendor's :class:`Rejected`, or the last
    :class:`Retry` when ``max_attempts`` or ``max_age`` ran out; ``None`` when a plugin raised
    (``reason`` is then the exception's last traceback line) or ``transform`` failed.
    """

    reason: str
    cause: Outcome | None = None


#: What ``postback_on_delivery`` receives: the final word on one attempt at one event.
Reported: TypeAlias = Delivered | Retry | Halt | DeadLettered | Skipped

#: Transport errors after which the vendor cannot have acted on the request: it was not
#: written, or not completely (a server acts on a request once it has all of it). After any
#: other ``httpx.TransportError`` the request's fate is unknown ("unconfirmed").
NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.WriteError,
    httpx.WriteTimeout,
)

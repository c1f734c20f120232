"""What an outcome means for one claimed event: its settlement in the queue, and what the
``postback_on_delivery`` hook and the lane's counters are told.

Rules (``Verdicts.decide``):

* :class:`~postback.Delivered` -> done; reported as is (its ``note``, if any, logged as a
  warning).
* :class:`~postback.Retry` -> retried after the vendor's delay or our backoff, unless that was
  the last attempt (``max_attempts``) or the event is older than ``max_age``: then a dead
  letter, reported as :class:`~postback.DeadLettered` with the ``Retry`` as its cause. Every
  wait is bounded: a vendor's delay that is not a finite number of seconds is ignored, no event
  waits past its ``max_age``, and the whole lane pauses at most :func:`lane_pause_cap`.
* :class:`~postback.Halt` -> released untouched (no attempt counted) and the lane pauses; a
  Halt with a ``scope`` pauses only that scope's events (``Lane.scoped_halts``).
* :class:`~postback.Rejected` -> dead letter, reported as ``DeadLettered`` (cause: the
  ``Rejected``).

A vendor that refuses every request the same way (:class:`RefusalWatch`: both halves of a
split batch refused with the same reason, or :data:`SYSTEMATIC_SINGLES` single events in a row)
is refusing a setting, not the events: the lane halts with a reason naming the likely setting
instead of bisecting every batch down to single events and dead-lettering them all.

A :class:`Verdict` is applied (counters, the hook, attribution) only once the queue has
recorded its settlement, so that what the hook heard and what the counters say agree with
what the queue holds. The attempt number reported is the one the queue counts (1 for the
first); a halted attempt is not counted, and is reported with the number it would have had.
"""

from __future__ import annotations

import logging
import math
import operator
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import attrs

from postback.delivery import timing
from postback.delivery.queue import Claimed, Settlement
from postback.delivery.retry import backoff_seconds
from postback.events import Event
from postback.outcomes import (
    DeadLettered,
    Delivered,
    Halt,
    Outcome,
    Rejected,
    RejectedBatch,
    Reported,
    Retry,
    Skipped,
)
from postback.textmask import mask_text, visible

if TYPE_CHECKING:
    from postback.delivery.lanes import Lane
    from postback.destination import Prepared

__all__ = [
    "SYSTEMATIC_SINGLES",
    "RefusalWatch",
    "SystematicRefusal",
    "Verdict",
    "Verdicts",
    "lane_pause_cap",
    "plainly_delivered",
    "scrubbed",
]

log = logging.getLogger("postback.delivery")
_new_tuple = tuple.__new__  # a named tuple without its Python-level __new__
_note = operator.attrgetter("note")
_reported = operator.attrgetter("reported")
_reported_note = operator.attrgetter("reported.note")
_reported_attribution = operator.attrgetter("reported.attribution")
_ONLY_DELIVERED = {Delivered}


def plainly_delivered(outcomes: Sequence[object]) -> bool:
    """Whether every outcome is a :class:`Delivered` itself (not a subclass) without a note:
    the common batch, accepted whole, which the lane then handles per batch, not per event.
    The checks run in C (``map`` over the batch), a few nanoseconds an event."""
    return (
        set(map(type, outcomes)) == _ONLY_DELIVERED
        and list(map(_note, outcomes)).count(None) == len(outcomes)  # (a note may not hash)
    )


#: Single events refused in a row with the same reason (and nothing delivered in between)
#: after which the refusal is taken for a wrong setting rather than bad events.
SYSTEMATIC_SINGLES = 5


class Verdict(NamedTuple):
    """One event's settlement, and what to report once the queue has recorded it."""

    settlement: Settlement
    event: Event | None  # None: the stored event could not be read (nothing to report)
    reported: Reported
    attempt: int


def lane_pause_cap(lane: Lane) -> float:
    """The longest a vendor's delay pauses a whole lane: the policy's ``max_backoff`` (at
    least :data:`timing.HALT_PAUSE`), and never more than ``max_age``. Events wait as long as the
    vendor asked (up to ``max_age``); the lane tries newer events after this, so a vendor's
    "come back in three days" costs one request per pause, not three days of silence."""
    policy = lane.policy
    return min(max(policy.max_backoff, timing.HALT_PAUSE), policy.max_age)


def _seconds(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value


@attrs.frozen
class SystematicRefusal(Halt):
    """The :class:`~postback.Halt` of a vendor refusing every request the same way: its events
    are released due at once (the lane's pause holds this process; a restart resumes)."""


class RefusalWatch:
    """Tells a batched vendor's refusal of some events from its refusal of every request.

    A vendor that drops a whole batch for one bad event (a :class:`~postback.RejectedBatch`)
    is bisected until the bad event is alone. When a setting is wrong instead (AppLovin's body
    shape, an account that wants another format), every request is refused the same way, and
    bisection would send ``2n - 1`` requests for ``n`` events and dead-letter them all. The
    refusal is taken as systematic when both halves of a split are refused with the same
    reason (one half having more than one event), or when :data:`SYSTEMATIC_SINGLES` single
    events are refused in a row with the same reason and nothing was delivered in between. The
    lane then halts: events are kept, and it tries one batch again after
    :func:`lane_pause_cap` (a restart with the setting fixed resumes at once).
    """

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._singles = 0

    def delivered(self) -> None:
        """The vendor took something: the single refusals so far were the events' fault."""
        with self._lock:
            self._reason, self._singles = None, 0

    def halves(self, size: int, first: RejectedBatch, second: RejectedBatch) -> Halt | None:
        """Both halves of a refused batch of ``size`` events were refused as a whole again."""
        if first.reason != second.reason or size < 3 or first.status == 413:
            return None  # (413: too large, and halves may still be: splitting is the cure)
        return self._halt(first, f"a batch of {size} and both its halves")

    def single(self, refusal: RejectedBatch) -> Halt | None:
        """One event alone was refused as a batch; a Halt once that is the rule."""
        with self._lock:
            if refusal.reason == self._reason:
                self._singles += 1
            else:
                self._reason, self._singles = refusal.reason, 1
            count = self._singles
            if count < SYSTEMATIC_SINGLES:
                return None
            self._reason, self._singles = None, 0
        return self._halt(refusal, f"{count} single events in a row")

    def _halt(self, refusal: RejectedBatch, how: str) -> Halt:
        name = self.lane.name
        where = (
            f"check {refusal.likely_setting} in [vendors.{name}]"
            if refusal.likely_setting
            else f"check the [vendors.{name}] settings"
        )
        pause = lane_pause_cap(self.lane)
        return SystematicRefusal(
            f"{name} refused {how} the same way ({refusal.reason}): the events are likely fine "
            f"and a setting is wrong; {where}. Delivery is halted with every event kept; one "
            f"batch is tried again every {pause:.0f}s, and a restart with the fixed setting "
            "resumes at once",
            refusal.status,
            pause,
        )


class Verdicts:
    """Decides settlements for one lane, and applies them once they are recorded."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane

    def dead(self, c: Claimed, event: Event | None, reason: str, cause: object = None) -> Verdict:
        """A dead letter with ``reason``."""
        attempt = c.attempts + 1
        settlement = Settlement(c, "dead", error=reason, attempts=attempt)
        outcome = cause if isinstance(cause, (Retry, Rejected)) else None
        return Verdict(settlement, event, DeadLettered(reason, outcome), attempt)

    def held(self, c: Claimed, event: Event, until: float, halt: Halt) -> Verdict:
        """Not sent: its scope is halted (``Lane.scoped_halts``) until ``until``."""
        settlement = Settlement(c, "release", due_ms=int(until * 1000), error=halt.reason)
        return Verdict(settlement, event, halt, c.attempts + 1)

    def skipped(self, c: Claimed, event: Event, reason: str) -> Verdict:
        return Verdict(Settlement(c, "done"), event, Skipped(reason), c.attempts + 1)

    def decide_all(
        self, batch: Sequence[tuple[Claimed, Prepared]], outcomes: Sequence[Outcome], now: float
    ) -> list[Verdict]:
        """:meth:`decide` for each event of ``batch``; a batch whose every outcome is a plain
        Delivered (the common case) gets the same verdicts without a call per event."""
        if set(map(type, outcomes)) == _ONLY_DELIVERED:
            new = _new_tuple  # as decide() makes them, without its call per event
            return [
                new(Verdict, (new(Settlement, (c, "done", 0, None, a)), p.event, o, a))
                for (c, p), o in zip(batch, outcomes, strict=True)
                for a in (c.attempts + 1,)
            ]
        decide = self.decide
        return [decide(c, p.event, o, now) for (c, p), o in zip(batch, outcomes, strict=True)]

    def decide(self, c: Claimed, event: Event, outcome: object, now: float) -> Verdict:
        lane = self.lane
        attempt = c.attempts + 1
        if isinstance(outcome, Delivered):
            settlement = _new_tuple(Settlement, (c, "done", 0, None, attempt))  # the common case
            return _new_tuple(Verdict, (settlement, event, outcome, attempt))
        if isinstance(outcome, Retry):
            policy = lane.policy
            age = now - c.created_ms / 1000.0
            left = policy.max_age - age
            if attempt >= policy.max_attempts or left <= 0:
                why = (
                    f"gave up after {attempt} attempts"
                    if attempt >= policy.max_attempts
                    else f"gave up after {age:.0f}s (max_age)"
                )
                reason = f"{why}: {outcome.reason}"
                log.warning(
                    "%s: %s dead-lettered: %s", lane.name, event.event_id, mask_text(reason)
                )
                return self.dead(c, event, reason, outcome)
            asked = _seconds(outcome.after)
            wait = asked if asked is not None else backoff_seconds(policy, attempt)
            wait = min(wait, left)  # a last attempt when max_age is reached, not later
            if asked is not None:
                # The vendor told us when: hold the whole lane, not just this event.
                lane.paused_until = max(lane.paused_until, now + min(asked, lane_pause_cap(lane)))
            log.info(
                "%s: %s will be retried in %.1fs: %s",
                lane.name,
                event.event_id,
                wait,
                mask_text(outcome.reason),  # a vendor may quote the event (its page URL)
            )
            settlement = Settlement(
                c, "retry", due_ms=int((now + wait) * 1000), error=outcome.reason, attempts=attempt
            )
            return Verdict(settlement, event, Retry(outcome.reason, wait), attempt)
        if isinstance(outcome, Halt):
            asked = _seconds(outcome.after)
            pause = min(asked, lane_pause_cap(lane)) if asked is not None else timing.HALT_PAUSE
            if outcome.scope is not None:  # one app or account: the lane goes on with others
                lane.scoped_halts[outcome.scope] = (now + pause, outcome)
                settlement = Settlement(c, "release", due_ms=int((now + pause) * 1000))
                held = Halt(outcome.reason, outcome.status, pause, outcome.scope)
                return Verdict(settlement, event, held, attempt)
            lane.paused_until = max(lane.paused_until, now + pause)
            due = now if isinstance(outcome, SystematicRefusal) else now + pause
            settlement = Settlement(c, "release", due_ms=int(due * 1000), error=outcome.reason)
            return Verdict(settlement, event, Halt(outcome.reason, outcome.status, pause), attempt)
        if isinstance(outcome, Rejected):
            detail = f" ({outcome.detail})" if outcome.detail else ""
            shown = mask_text(f"{outcome.reason}{detail}")  # a vendor may quote the event
            log.warning("%s: %s rejected: %s", lane.name, event.event_id, shown)
            return self.dead(c, event, f"{outcome.reason}{detail}", outcome)
        return self.dead(c, event, f"unknown outcome {outcome!r}")

    def apply(self, verdicts: list[Verdict], latency: float) -> None:
        """Count, report and hand on attribution, for verdicts the queue has recorded."""
        lane = self.lane
        stats = lane.stats
        host = lane.engine.host
        notify = lane.engine.notify_delivery
        name = lane.name
        if (
            not notify
            and set(map(type, map(_reported, verdicts))) == _ONLY_DELIVERED
            # (counts, not sets: an Attribution's raw response is a dict, which cannot be
            # hashed, nor can a plugin's wrongly typed note)
            and list(map(_reported_note, verdicts)).count(None) == len(verdicts)
            and list(map(_reported_attribution, verdicts)).count(None) == len(verdicts)
        ):  # the common batch: every event delivered plainly, and no hook to tell
            stats.delivered += len(verdicts)
            if not lane.scoped_halts:
                stats.halted = None
            return
        for v in verdicts:
            outcome = v.reported
            if isinstance(outcome, Delivered):
                stats.delivered += 1
                if not lane.scoped_halts:  # an app still held keeps the lane's halt reason
                    stats.halted = None
                if outcome.note is not None:
                    log.warning(
                        "%s: %s delivered, but: %s",
                        name,
                        v.settlement.claimed.event_id,
                        mask_text(outcome.note),
                    )
                if outcome.attribution is not None and v.event is not None:
                    stats.attributed += 1
                    host.on_attribution(outcome.attribution, v.event)
            elif isinstance(outcome, Retry):
                stats.retried += 1
            elif isinstance(outcome, DeadLettered):
                stats.dead += 1
            elif isinstance(outcome, Skipped):
                stats.skipped += 1
                log.debug("%s: skipped %s: %s", name, v.settlement.claimed.event_id, outcome)
            elif isinstance(outcome, Halt):
                self._halted(outcome)
            if notify and v.event is not None:
                host.on_delivery(name, v.event, outcome, v.attempt, latency)

    def _halted(self, outcome: Halt) -> None:
        lane = self.lane
        if outcome.scope is not None:
            if lane.stats.halted != outcome.reason:
                log.error(
                    "%s: %s. Events of %s are held for %.0fs (no event is dropped); the others "
                    "go on.",
                    lane.name,
                    outcome.reason,
                    outcome.scope,
                    outcome.after or timing.HALT_PAUSE,
                )
        elif lane.stats.halted != outcome.reason and outcome.status in (401, 403):
            log.error(
                "%s: the vendor refused our credentials: %s. Delivery to %s is paused "
                "(retrying every %.0fs); no event is dropped. Fix the [vendors.%s] "
                "credentials and restart.",
                lane.name,
                outcome.reason,
                lane.name,
                outcome.after or timing.HALT_PAUSE,
                lane.name,
            )
        elif lane.stats.halted != outcome.reason:
            log.error(
                "%s: delivery halted: %s. Paused (retrying every %.0fs); no event is dropped.",
                lane.name,
                outcome.reason,
                outcome.after or timing.HALT_PAUSE,
            )
        lane.stats.halted = outcome.reason


def scrubbed(outcome: Outcome, redact: Callable[[str], str]) -> Outcome:
    """``outcome`` with every text field (reason, detail, note) passed through ``redact``: a
    plugin that quoted a response echoing its credentials leaks nothing to the logs, the
    stored dead letters or ``postback_on_delivery``; and through
    :func:`~postback.textmask.visible`, so that a control character a vendor's answer holds
    (an escape sequence, U+202E) is written out, not replayed on a terminal or a page. A
    Delivered without a note is returned as is (the common case costs one check)."""
    if isinstance(outcome, Delivered) and outcome.note is None:
        return outcome
    if not attrs.has(type(outcome)):
        return outcome
    changes: dict[str, str] = {}
    for a in attrs.fields(type(outcome)):
        val = getattr(outcome, a.name)
        if isinstance(val, str):
            clean = visible(redact(val))
            if clean != val:
                changes[a.name] = clean
    return attrs.evolve(outcome, **changes) if changes else outcome  # type: ignore[arg-type]

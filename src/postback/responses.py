"""Reading a vendor's HTTP response: the helpers every :class:`~postback.Destination` shares.

Plugins reach these through :mod:`postback.plugin`. Each helper never raises on a strange body
(``parse_response`` must always return an outcome) and never shows a secret:

- :func:`json_or_none`: the body as JSON, or ``None`` when it is not JSON.
- :func:`body_snippet`: a short one-line excerpt of the body for reasons and dead letters,
  secrets removed by the caller's ``redact`` (usually ``Destination.redact``).
- :func:`retry_after_seconds` / :func:`seconds_from_message`: the wait a vendor asked for
  (``Retry-After``, ``retry-after-ms``, "Try again in 12 seconds."), bounded and sane.
- :class:`StatusOutcomes` / :data:`DEFAULT_STATUS_OUTCOMES`: the usual reading of an HTTP
  status into an outcome (401/403 halt, 408/429/503 retry, 500/502/504 unconfirmed ...), which
  a vendor extends with its own statuses rather than re-writing the ladder.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

import attrs
import httpx
import orjson

from postback.destination import (
    Delivered,
    Destination,
    Halt,
    Outcome,
    Rejected,
    RejectedBatch,
    Retry,
)

__all__ = [
    "DEFAULT_STATUS_OUTCOMES",
    "MAX_RETRY_AFTER",
    "OutcomeKind",
    "StatusOutcomes",
    "body_snippet",
    "json_or_none",
    "retry_after_seconds",
    "seconds_from_message",
]

#: The longest delay a vendor's hint is taken at (one day, the default ``max_age``).
MAX_RETRY_AFTER = 24 * 3600.0

#: Characters of a body kept by :func:`body_snippet` unless told otherwise.
SNIPPET_CHARS = 200

_TRY_AGAIN_RE = re.compile(
    r"try again in\s+(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|seconds?|m|minutes?)?", re.IGNORECASE
)


def json_or_none(response: httpx.Response) -> Any:
    """The response body parsed as JSON, or ``None`` when it is empty or not JSON."""
    try:
        return orjson.loads(response.content)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None


def body_snippet(
    response: httpx.Response,
    redact: Callable[[str], str],
    *,
    limit: int = SNIPPET_CHARS,
    empty: str = "",
) -> str:
    """The body as one short line for a reason or a dead letter: whitespace collapsed, cut to
    ``limit`` characters (``...`` marks a cut), undecodable bytes replaced. The whole body goes
    through ``redact`` (give ``self.redact``, which removes the vendor's secret settings) before
    it is cut, so a secret cut in half cannot show. ``empty`` when there is no body.
    """
    text = " ".join(redact(response.content.decode("utf-8", errors="replace")).split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return text or empty


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds the vendor asked us to wait: ``retry-after-ms``, or ``Retry-After`` as seconds
    or an HTTP date. ``None`` when the response says nothing usable.

    A hint is only a hint: a delay that is not a finite, non-negative number is ignored
    (``Retry-After: nan``, ``inf``, ``-5``) and one longer than :data:`MAX_RETRY_AFTER` is cut
    to it. The engine bounds what is left further, by the retry policy's ``max_age``.
    """
    ms = response.headers.get("retry-after-ms")
    if ms:
        try:
            seconds = _usable(float(ms) / 1000.0)
        except ValueError:
            seconds = None
        if seconds is not None:
            return seconds
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return _usable(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return _usable(max(when.timestamp() - (now if now is not None else time.time()), 0.0))


def seconds_from_message(message: str) -> float | None:
    """Read a delay from text such as Whop's ``"Try again in 12 seconds."``."""
    m = _TRY_AGAIN_RE.search(message or "")
    if not m:
        return None
    value = float(m.group(1))
    unit = (m.group(2) or "s").lower()
    if unit.startswith("ms") or unit.startswith("milli"):
        return _usable(value / 1000.0)
    if unit.startswith("m"):
        return _usable(value * 60.0)
    return _usable(value)


def _usable(seconds: float) -> float | None:
    """A finite, non-negative delay of at most :data:`MAX_RETRY_AFTER`; None otherwise."""
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


# ------------------------------------------------------------------------------------------
# Status -> outcome

#: What a status means, in :meth:`StatusOutcomes.outcome`'s terms:
#: ``delivered`` (accepted), ``retry`` (not processed: send again), ``unconfirmed`` (failed
#: while processing: the vendor may have recorded it, see ``Destination.unconfirmed``),
#: ``halt`` (credentials or a setting refused: hold the lane), ``reject`` (this event is bad:
#: dead letter), ``reject_batch`` (the batch was refused without saying which event).
OutcomeKind: TypeAlias = Literal[
    "delivered", "retry", "unconfirmed", "halt", "reject", "reject_batch"
]


def _frozen_copy(statuses: Mapping[int, OutcomeKind]) -> Mapping[int, OutcomeKind]:
    return MappingProxyType(dict(statuses))


@attrs.frozen
class StatusOutcomes:
    """The reading of an HTTP status into an outcome kind, with explicit ``statuses`` first and
    these rules for the rest: 2xx delivered (a 2xx is never resent: the vendor may have
    counted it), 401/403 halt, 408/429 retry, 500/502/504 unconfirmed, other 5xx retry,
    anything else (3xx, 4xx) reject.

    A vendor extends the default rather than re-writing it::

        STATUSES = DEFAULT_STATUS_OUTCOMES.extend({400: "reject_batch", 404: "halt"})

        def parse_response(self, batch, response):
            if response.status_code == 200:
                return Delivered()
            return STATUSES.outcome(self, response, f"HTTP {response.status_code}")
    """

    statuses: Mapping[int, OutcomeKind] = attrs.field(factory=dict, converter=_frozen_copy)

    def extend(self, statuses: Mapping[int, OutcomeKind]) -> StatusOutcomes:
        """A copy in which ``statuses`` take precedence over this mapping's."""
        return StatusOutcomes({**self.statuses, **statuses})

    def kind(self, status: int) -> OutcomeKind:
        """What ``status`` means for this vendor."""
        explicit = self.statuses.get(status)
        if explicit is not None:
            return explicit
        if 200 <= status < 300:
            return "delivered"
        if status in (401, 403):
            return "halt"
        if status in (408, 429):
            return "retry"
        if status in (500, 502, 504):
            return "unconfirmed"
        if status >= 500:
            return "retry"
        return "reject"

    def outcome(
        self,
        destination: Destination,
        response: httpx.Response,
        reason: str,
        *,
        detail: str | None = None,
    ) -> Outcome:
        """The outcome of ``response`` for ``destination``: ``reason`` is what the lane logs
        or the dead letter records; ``detail`` (a body snippet) goes with a rejection. Waits
        the vendor asked for (Retry-After) are read for retries and halts."""
        status = response.status_code
        kind = self.kind(status)
        if kind == "delivered":
            return Delivered()
        if kind == "retry":
            return Retry(reason, retry_after_seconds(response))
        if kind == "unconfirmed":
            return destination.unconfirmed(reason, status, retry_after_seconds(response))
        if kind == "halt":
            return Halt(reason, status, retry_after_seconds(response))
        if kind == "reject_batch":
            return RejectedBatch(reason, status)
        return Rejected(reason, status, detail)


#: The usual reading (see :class:`StatusOutcomes`); vendors extend it with their own statuses.
DEFAULT_STATUS_OUTCOMES = StatusOutcomes()

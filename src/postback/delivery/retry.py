"""Retry timing: exponential backoff with full jitter, and reading the vendor's own hints.

A vendor's hint is only a hint: a delay that is not a finite, non-negative number is ignored
(``Retry-After: nan``, ``inf``, ``-5``) and one longer than :data:`MAX_RETRY_AFTER` is cut to it.
The engine bounds what is left further, by the retry policy's ``max_age``.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time

import httpx

from postback.destination import RetryPolicy

__all__ = ["MAX_RETRY_AFTER", "backoff_seconds", "retry_after_seconds", "seconds_from_message"]

#: The longest delay a vendor's hint is taken at (one day, the default ``max_age``).
MAX_RETRY_AFTER = 24 * 3600.0

_TRY_AGAIN_RE = re.compile(
    r"try again in\s+(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|seconds?|m|minutes?)?", re.IGNORECASE
)


def backoff_seconds(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)].

    ``attempt`` counts from 1 (the wait after the first failure).
    """
    ceiling = min(policy.max_backoff, policy.initial_backoff * (2 ** max(attempt - 1, 0)))
    return (rng or random).uniform(0, ceiling)


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds the vendor asked us to wait: ``retry-after-ms``, or ``Retry-After`` as seconds
    or an HTTP date. ``None`` when the response says nothing usable."""
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


def _usable(seconds: float) -> float | None:
    """A finite, non-negative delay of at most :data:`MAX_RETRY_AFTER`; None otherwise."""
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


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

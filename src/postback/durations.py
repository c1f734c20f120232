"""Durations in configuration: seconds from a number or a string such as ``"24h"``.

One parser for every duration setting (``exit_timeout``, retry ages, ``dedupe_window``...), kept
apart from :mod:`postback.config` so that the modules parsing their own tables
(:mod:`postback.consent`, :mod:`postback.dedupe`) can use it without importing the config.
A duration is always finite and not negative (``nan``, ``inf`` and ``-1`` are refused), at most
:data:`MAX_DURATION` unless the caller bounds it otherwise, and above zero where asked.
"""

from __future__ import annotations

import math
import re

__all__ = ["MAX_DURATION", "parse_duration"]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


#: The longest duration a setting takes (retry ``max_age`` included): a year.
MAX_DURATION = 366 * 86400.0


def parse_duration(
    value: object, *, positive: bool = False, at_most: float | None = MAX_DURATION
) -> float:
    """Seconds from a number or a string such as ``"500ms"``, ``"2s"``, ``"15m"``, ``"24h"``.

    Always finite and not negative (``nan`` and ``inf`` are refused); above zero when
    ``positive``; at most ``at_most`` seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration (seconds, or e.g. '15m'), got bool")
    seconds: float | None = None
    if isinstance(value, (int, float)):
        seconds = (
            float(value) if not isinstance(value, int) or value.bit_length() < 64 else math.inf
        )
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds is None:
        raise ValueError(f"must be a duration such as 30, '500ms', '15m' or '24h', got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration, got {value!r}")
    if seconds < 0:
        raise ValueError("must not be negative")
    if positive and seconds == 0:
        raise ValueError("must be more than 0 seconds")
    if at_most is not None and seconds > at_most:
        raise ValueError(f"must be at most {at_most:g} seconds, got {value!r}")
    return seconds

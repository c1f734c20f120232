"""Checks and parsers for single setting values, shared by every table of the config.

Each one says what is wrong in words a user can act on; :mod:`postback.config` turns what they
raise (ValueError) or return (problems) into a :class:`~postback.ConfigError` naming the key.

* :func:`control_character_problems` refuses a line break or other control character in any
  string setting, secrets included (a secret read from a file often ends with a newline). Such
  a value would otherwise reach a request header or URL, where it splits the request or is
  refused by the vendor for every event. The value is refused, never stripped: what the vendor
  receives is exactly what the config says, and the value itself is never shown.
* :func:`parse_duration` refuses ``nan``, ``inf``, negative and (where zero means nothing is
  ever delivered) zero durations, and bounds each by a maximum; :func:`parse_rate_limit`
  refuses an infinite or zero window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from postback.destination import RateLimit

__all__ = [
    "MAX_DURATION",
    "control_character_problems",
    "parse_duration",
    "parse_rate_limit",
]

# C0 controls (tab, CR and LF included) and DEL: never valid in a header, URL or identifier.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_RATE_RE = re.compile(
    r"^\s*(\d+)\s*(?:/|per)\s*(\d+(?:\.\d+)?)?\s*"
    r"(ms|s|sec|second|seconds|m|min|minute|minutes|h|hour|hours|d|day|days)\s*$"
)
_RATE_UNITS = {
    "ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip


def control_character_problems(raw: object, path: str = "") -> list[tuple[str, str]]:
    """``(key path, message)`` for every string value under ``raw`` with a control character."""
    found: list[tuple[str, str]] = []
    if isinstance(raw, str):
        m = _CONTROL_RE.search(raw)
        if m is not None:
            what = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab"}.get(
                m.group(), f"the control character {m.group()!r}"
            )
            where = "at the end" if m.start() >= len(raw.rstrip("\r\n\t ")) else "inside it"
            found.append(
                (
                    path,
                    f"contains {what} ({where}); settings are sent in request headers and "
                    "URLs, where it is not allowed. Remove it (a secret read from a file often "
                    "ends with a newline: export it with \"$(tr -d '\\n' < FILE)\")",
                )
            )
    elif isinstance(raw, Mapping):
        for key, val in raw.items():
            found.extend(control_character_problems(val, f"{path}.{key}" if path else str(key)))
    elif isinstance(raw, list):
        for i, val in enumerate(raw):
            found.extend(control_character_problems(val, f"{path}[{i}]"))
    return found


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


def parse_rate_limit(value: object) -> RateLimit:
    """``"600/minute"``, ``"60000/15 minutes"``, ``"60000 per 15m"`` or {requests, per}."""
    if isinstance(value, Mapping) and set(value) == {"requests", "per"}:
        requests, per = value["requests"], parse_duration(value["per"], positive=True)
        if isinstance(requests, int) and requests > 0 and per > 0:
            return RateLimit(requests, per)
    elif isinstance(value, str):
        m = _RATE_RE.match(value)
        if m:
            window = float(m.group(2) or 1) * _RATE_UNITS[m.group(3)]
            if int(m.group(1)) > 0 and 0 < window <= MAX_DURATION:
                return RateLimit(int(m.group(1)), window)
    raise ValueError(
        f"must look like '600/minute' or '60000/15 minutes' (or false for no limit), got {value!r}"
    )

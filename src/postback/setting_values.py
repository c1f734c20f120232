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

import re
from collections.abc import Mapping

from postback.destination import RateLimit
from postback.durations import MAX_DURATION, parse_duration

__all__ = [
    "MAX_DURATION",
    "control_character_problems",
    "parse_duration",
    "parse_rate_limit",
]

# C0 controls (tab, CR and LF included) and DEL: never valid in a header, URL or identifier.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
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

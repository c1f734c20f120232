"""Durations in configuration: seconds from a number or a string such as ``"24h"``.

One parser for every duration setting (``exit_timeout``, retry ages, ``dedupe_window``...), kept
apart from :mod:`postback.config` so that the modules parsing their own tables
(:mod:`postback.consent`, :mod:`postback.dedupe`) can use it without importing the config.
"""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"500ms"``, ``"2s"``, ``"15m"``, ``"24h"``."""
    if isinstance(value, bool):
        raise ValueError("must be a duration (seconds, or e.g. '15m'), got bool")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"must be a duration such as 30, '500ms', '15m' or '24h', got {value!r}")

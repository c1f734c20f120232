"""Checks and parsers for single setting values, shared by every table of the config.

Each one says what is wrong in words a user can act on; :mod:`postback.config` turns what they
raise (ValueError) or return (problems) into a :class:`~postback.ConfigError` naming the key.

* :func:`control_character_problems` refuses a line break or other control character in any
  string setting, secrets included (a secret read from a file often ends with a newline). Such
  a value would otherwise reach a request header or URL, where it splits the request or is
  refused by the vendor for every event. The value is refused, never stripped: what the vendor
  receives is exactly what the config says, and the value itself is never shown.
* :func:`secret_text_problem` refuses a secret with a character outside printable ASCII: an
  invisible one pasted with it (a no-break or zero-width space), or a byte that is not UTF-8
  text (a variable or file in another encoding). Vendors' keys are ASCII, and such a key
  cannot be sent in a request header: every event would fail. The character is named by its
  code point, never the value.
* :func:`parse_duration` refuses ``nan``, ``inf``, negative and (where zero means nothing is
  ever delivered) zero durations, and bounds each by a maximum; :func:`parse_rate_limit`
  reads rate-limit strings with the ``limits`` library (the one the delivery lanes limit
  with), after spelling out the short units it does not know (``s``, ``m``, ``h``, ``d``), and
  refuses a zero count, a window over a year, and several limits in one string.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

import limits

from postback.destination import RateLimit
from postback.durations import MAX_DURATION, parse_duration

__all__ = [
    "MAX_DURATION",
    "control_character_problems",
    "parse_duration",
    "parse_rate_limit",
    "secret_text_problem",
]

# C0 controls (tab, CR and LF included) and DEL: never valid in a header, URL or identifier.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Short units people write that limits does not know, at the end of the string.
_SHORT_UNIT_RE = re.compile(r"(?<=[\d\s/])(s|secs?|m|mins?|h|hrs?|d)\s*$")
# A window of zero units ("1/0 seconds"), which limits reads as one unit.
_ZERO_WINDOW_RE = re.compile(r"(?:/|per)\s*0+\s*[a-z]")
_SHORT_UNITS = {
    "s": "second", "sec": "second", "secs": "second", "m": "minute", "min": "minute",
    "mins": "minute", "h": "hour", "hr": "hour", "hrs": "hour", "d": "day",
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


def secret_text_problem(value: str) -> str | None:
    """Why the secret ``value`` cannot be sent as given, or None. Control characters are
    :func:`control_character_problems`' to name; this finds any other character outside
    printable ASCII, and says which (never the value) and where."""
    if value.isascii():  # printable or a control character (reported by the check above)
        return None
    i, ch = next((i, c) for i, c in enumerate(value) if c > "\x7f")
    where = (
        "at the end"
        if not value[i + 1 :].strip()
        else "at the start"
        if not value[:i].strip()
        else f"inside it, after {i} characters"
    )
    if 0xD800 <= ord(ch) <= 0xDFFF:  # how Python keeps a byte that did not decode as UTF-8
        what = (
            f"a byte that is not UTF-8 text ({where}): the variable or file it came from is in "
            "another encoding, or is not text"
        )
    else:
        name = unicodedata.name(ch, "a character without a name")
        what = f"the character U+{ord(ch):04X} {name} ({where})"
    return (
        f"contains {what}. Vendors' keys are plain ASCII, and this one cannot be sent in a "
        "request header, so every event would fail: copy the key again from the vendor's "
        "dashboard (text pasted from a web page or chat can bring invisible characters along)"
    )


def parse_rate_limit(value: object) -> RateLimit:
    """``"600/minute"``, ``"60000/15 minutes"``, ``"60000 per 15m"`` or {requests, per}.

    Strings are the ``limits`` library's notation (``[count] [/ or per] [n] [unit]``, units
    second, minute, hour, day, month, year, singular or plural), plus ``s``/``m``/``h``/``d``.
    """
    if isinstance(value, Mapping) and set(value) == {"requests", "per"}:
        requests, per = value["requests"], parse_duration(value["per"], positive=True)
        if (
            isinstance(requests, int)
            and not isinstance(requests, bool)
            and requests > 0
            and per > 0
        ):
            return RateLimit(requests, per)
    elif isinstance(value, str):
        text = _SHORT_UNIT_RE.sub(lambda m: _SHORT_UNITS[m.group(1)], value.strip())
        try:
            items = limits.parse_many(text) if text and not _ZERO_WINDOW_RE.search(text) else []
        except ValueError:
            items = []
        if len(items) > 1:
            raise ValueError(f"must be one limit, got {len(items)} in {value!r}")
        if items:
            window = items[0].get_expiry()  # seconds, an int: possibly a huge one
            if items[0].amount > 0 and 0 < window <= MAX_DURATION:
                return RateLimit(items[0].amount, float(window))
    raise ValueError(
        "must look like '600/minute', '60000/15 minutes' or '10 per 2 seconds' (units second, "
        "minute, hour or day, or s, m, h, d; at most a year), or false for no limit, "
        f"got {value!r}"
    )

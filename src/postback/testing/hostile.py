"""A catalogue of hostile ``track()`` inputs, so that tests keep finding what once broke.

Each list holds values that an adversarial run found, or that sit on a bound: ``track()`` must
refuse each with :class:`~postback.InvalidEvent` naming the field, or accept it and store an
event every routed vendor can send (issue 23). The property suite
(``tests/test_track_property.py``) draws from these lists alongside hypothesis' own strategies;
a plugin's tests can use them the same way::

    from postback.testing.hostile import HOSTILE_STRINGS

    @pytest.mark.parametrize("value", HOSTILE_STRINGS)
    def test_my_vendor_survives(tracker, value): ...

Plain data: importing this module needs nothing beyond the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

__all__ = [
    "HOSTILE_EVENT_IDS",
    "HOSTILE_NAMES",
    "HOSTILE_PROPERTIES",
    "HOSTILE_STRINGS",
    "HOSTILE_TIMESTAMPS",
    "HOSTILE_VALUES",
]

#: Text that broke headers, hashing or JSON: lone surrogates, control characters, line breaks,
#: NUL, very long and non-Latin text, look-alikes of secrets and of JSON.
HOSTILE_STRINGS: list[str] = [
    "",
    " ",
    "\n",
    "order-1\n",
    "a\r\nX-Injected: 1",
    "\x00",
    "\x7f",
    "\ud800",
    "a\udfff@b.co",
    "\U0001f600",
    "é" * 300,
    "x" * 10_000,
    "null",
    '{"a": 1}',
    "Bearer abc",
    "%0d%0a",
    "\u202e",
    "\ufeff",
]

#: Money amounts: exponents that burn CPU or overflow Decimal, non-finite, bounds, odd types.
HOSTILE_VALUES: list[Any] = [
    "9e999990",
    "1e999999",
    "-1e-999999",
    "1" * 65,
    "nan",
    "-inf",
    "sNaN",
    float("nan"),
    float("inf"),
    1e300,
    10**12,
    10**12 - 1,
    -(10**12) + 1,
    2**63,
    Decimal("1e-30"),
    Decimal("Infinity"),
    "0x10",
    "1_000",
    " 49.99 ",
    True,
    [],
]

#: Event times: before 2001, at and after 2100, year 1 and 9999 with offsets, huge numbers.
HOSTILE_TIMESTAMPS: list[Any] = [
    0,
    -1,
    978_307_199_999,
    978_307_200_000,
    4_102_444_799_999,
    4_102_444_800_000,
    253_402_300_800_000,
    10**30,
    1e300,
    float("nan"),
    "0001-01-01T00:00:00+00:00",
    "9999-12-31T23:59:59+00:00",
    "2100-01-01T00:00:00Z",
    "2026-01-01T00:00:00",
    "2026-13-01T00:00:00Z",
    "x" * 100,
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))),
    datetime(2026, 1, 1),
    datetime(2026, 1, 1, tzinfo=UTC),
]

#: Event ids: a final newline (a ``$`` regex accepts it), CR/LF, NUL, spaces, too long.
HOSTILE_EVENT_IDS: list[Any] = [
    "order-1\n",
    "order-1\r\n",
    "\norder",
    "o\x00",
    "with space",
    "x" * 256,
    "x" * 255,
    "",
    "é",
    7,
]

#: Event names.
HOSTILE_NAMES: list[Any] = ["", "purchase\n", "Add To Cart", "x" * 65, "\ud800", "1abc", None, 3]


def _nested(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth):
        value = [value]
    return value


#: Properties: non-finite numbers (JSON would write null), surrogates in keys and values,
#: integers beyond 64 bits, deep nesting, non-string keys, objects JSON cannot hold.
HOSTILE_PROPERTIES: list[Any] = [
    {"n": float("nan")},
    {"a": [float("inf")]},
    {"a": {"b": -float("inf")}},
    {"s": "\ud800"},
    {"\ud800": 1},
    {"n": 2**70},
    {1: "non-string key"},
    {"o": object()},
    {"deep": _nested(300)},  # orjson refuses more than 254 levels
    {"blob": "x" * (1 << 20)},
    {"none": None},
    [],
    "not a dict",
]

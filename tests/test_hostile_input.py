"""Hostile input to track(): every value is refused with InvalidEvent naming the right field,
or accepted and storable; none raises an internal exception or burns CPU (issue 23)."""

from __future__ import annotations

import pytest

from postback import InvalidEvent
from postback.events import MAX_VALUE, make_event, to_micros


@pytest.mark.parametrize(
    "value",
    ["9e999990", "1e999999", "-9e999990", 10**400, 1e300, MAX_VALUE, -MAX_VALUE, "1" * 65],
)
def test_huge_or_long_values_are_refused_naming_value(value: object) -> None:
    with pytest.raises(InvalidEvent) as info:
        make_event("purchase", value=value, currency="USD")
    assert [p.field for p in info.value.problems] == ["value"]


def test_tiny_exponents_round_to_zero_without_scaling() -> None:
    assert to_micros("1e-999999") == 0
    assert to_micros("0.0000015") == 2
    assert to_micros(str(MAX_VALUE - 1)) == (MAX_VALUE - 1) * 1_000_000

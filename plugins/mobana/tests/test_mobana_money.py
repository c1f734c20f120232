"""Money is exact: decimal digits in, the same digits out; conversions in Decimal arithmetic."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import orjson
import pytest

from postback.events import Event
from postback_mobana import MobanaDestination

Dest = Callable[..., MobanaDestination]
Ev = Callable[..., Event]


@pytest.mark.parametrize("cents", [1, 10, 99, 999, 1999, 4999, 10001, 123456789, 99999999999])
def test_app_currency_values_keep_their_digits(
    cents: int, make_dest: Dest, make_event_: Ev
) -> None:
    dest = make_dest()
    text = str(Decimal(cents) / 100)
    for value in (float(text), text, Decimal(text)):
        record = dest.transform(make_event_(value=value, currency="USD"))
        body = orjson.dumps(record).decode()
        expected = Decimal(text)
        shown = str(int(expected)) if expected == expected.to_integral_value() else text
        assert f'"value":{shown},' in body


def test_whole_values_are_json_integers(make_dest: Dest, make_event_: Ev) -> None:
    record = make_dest().transform(make_event_(value=50, currency="USD"))
    assert record["value"] == 50
    assert isinstance(record["value"], int)


def test_conversion_uses_exact_decimal_arithmetic(make_dest: Dest, make_event_: Ev) -> None:
    # 0.1 * 3 in floats is 0.30000000000000004; in Decimal it is 0.3.
    dest = make_dest(rates={"EUR": "3"})
    assert dest.mobana_value(make_event_(value=0.1, currency="EUR")) == Decimal("0.30")
    assert dest.transform(make_event_(value=0.1, currency="EUR"))["value"] == 0.3


@pytest.mark.parametrize(
    ("value", "rate", "expected"),
    [
        ("49.99", "1.08", "53.99"),  # 53.9892
        ("1.5", "1.27", "1.90"),  # 1.905: half-even keeps the even 0
        ("2.5", "1.27", "3.18"),  # 3.175: half-even rounds the odd 7 up
        ("100", "0.00001", "0.00"),  # below a cent
        ("0.333333", "3", "1.00"),
    ],
)
def test_converted_values_round_half_even_to_cents(
    value: str, rate: str, expected: str, make_dest: Dest, make_event_: Ev
) -> None:
    dest = make_dest(rates={"EUR": rate})
    assert dest.mobana_value(make_event_(value=value, currency="EUR")) == Decimal(expected)


def test_converted_values_round_to_the_app_currency_minor_unit(
    make_dest: Dest, make_event_: Ev
) -> None:
    jpy = make_dest(currency="JPY", rates={"USD": "151.37"})
    assert jpy.mobana_value(make_event_(value="9.99", currency="USD")) == Decimal("1512")
    kwd = make_dest(currency="KWD", rates={"USD": "0.30712"})
    assert kwd.mobana_value(make_event_(value="10", currency="USD")) == Decimal("3.071")


def test_event_without_value_has_no_value_field(make_dest: Dest, make_event_: Ev) -> None:
    record = make_dest().transform(make_event_("sign_up"))
    assert "value" not in record


def test_currency_without_value_is_fine_and_ignored(make_dest: Dest, make_event_: Ev) -> None:
    dest = make_dest()
    ev = make_event_("sign_up", currency="EUR")
    assert list(dest.validate(ev)) == []
    assert "value" not in dest.transform(ev)

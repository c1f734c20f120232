"""Hostile input to track(): every value is refused with InvalidEvent naming the right field,
or accepted and storable; none raises an internal exception or burns CPU (issue 23)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from postback import InvalidEvent, Tracker
from postback.events import MAX_VALUE, make_event, to_micros
from postback.storable import MAX_EVENT_BYTES


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


@pytest.mark.parametrize(
    "timestamp",
    [
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59+00:00",
        "2100-01-01T00:00:00Z",
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))),
        253_402_300_800_000,  # year 10000 in epoch milliseconds
        10**30,
        1e300,
    ],
)
def test_timestamps_outside_what_vendors_send_are_refused(timestamp: object) -> None:
    with pytest.raises(InvalidEvent) as info:
        make_event("purchase", timestamp=timestamp)
    assert [p.field for p in info.value.problems] == ["timestamp"]


def test_timestamp_range_edges_are_accepted() -> None:
    assert make_event("purchase", timestamp="2001-01-01T00:00:00Z").timestamp_ms == 978_307_200_000
    assert make_event("purchase", timestamp="2099-12-31T23:59:59.999Z").timestamp_ms == (
        4_102_444_800_000 - 1
    )


@pytest.fixture
def tracker(make_tracker: Callable[..., Tracker]) -> Tracker:
    return make_tracker(core={"workers": False})


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"user": {"email": "a\ud800@b.co"}}, "user.email"),
        ({"user": {"user_id": "\udfff"}}, "user.user_id"),
        ({"context": {"ip": "1.2.3.4\ud800"}}, "context.ip"),
        ({"properties": {"sku": "x\ud800"}}, "properties.sku"),
        ({"properties": {"a": [1, {"b": "\ud800"}]}}, "properties.a[1].b"),
        ({"properties": {"\ud800": 1}}, "properties.'\\ud800'"),
        ({"properties": {"n": 2**70}}, "properties.n"),
        ({"properties": {"n": float("nan")}}, "properties.n"),
        ({"properties": {"a": [float("inf")]}}, "properties.a[0]"),
        ({"properties": {"a": {"b": -float("inf")}}}, "properties.a.b"),
    ],
)
def test_unstorable_fields_are_refused_naming_the_field(
    tracker: Tracker, fields: dict[str, Any], where: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", value=1, currency="USD", **fields)
    assert [p.field for p in info.value.problems] == [where]
    assert tracker.explain("purchase", value=1, currency="USD", **fields).error is not None


def test_null_properties_are_still_accepted(tracker: Tracker) -> None:
    tracker.track("purchase", value=1, currency="USD", properties={"coupon": None, "n": 1.5})


def test_an_event_larger_than_max_event_bytes_is_refused_naming_properties(
    tracker: Tracker,
) -> None:
    big = {"blob": "x" * MAX_EVENT_BYTES}
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", value=1, currency="USD", properties=big)
    assert [p.field for p in info.value.problems] == ["properties"]
    assert "MAX_EVENT_BYTES" in str(info.value)
    assert tracker.queue.depth(["example"], 0)["example"].pending == 0
    # well under the bound is accepted and queued
    tracker.track(
        "purchase", user={"user_id": "u1"}, value=1, currency="USD", properties={"blob": "x" * 1000}
    )
    assert tracker.queue.depth(["example"], 0)["example"].pending == 1


def test_an_unknown_vendor_name_with_on_invalid_log_keeps_the_event_for_the_others(
    make_tracker: Callable[..., Tracker], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 23 item 11 (fixed on main by the routing work; kept as a regression test)."""
    tracker = make_tracker(core={"workers": False, "on_invalid": "log"})
    eid = tracker.track(
        "purchase", user={"user_id": "u"}, value=1, currency="USD", vendors={"nosuch": {}}
    )
    assert eid
    assert tracker.queue.depth(["example"], 0)["example"].pending == 1
    assert "vendors.nosuch: is not a configured vendor" in caplog.text

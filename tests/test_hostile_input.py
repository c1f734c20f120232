"""Hostile input to track(): every value is refused with InvalidEvent naming the right field,
or accepted and storable; none raises an internal exception or burns CPU (issue 23)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from postback import InvalidEvent, Tracker
from postback.errors import PluginError
from postback.events import MAX_VALUE, Event, make_event, to_micros
from postback.plugin import hookimpl
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


# Huge integers and huge or hostile values (issue 23 follow-up): every one is an InvalidEvent
# naming its field, with a message of bounded size, never a ValueError from str() of a
# 5000-digit integer, a 5 MB message, or whatever a hostile __repr__ raises.

_HUGE = 10**5000  # str() raises: "Exceeds the limit (4300 digits) for integer string conversion"


class _Hostile:
    """A value whose repr and str raise."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    __str__ = __repr__


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        ((_HUGE,), {}, "name"),
        (("purchase",), {"event_id": _HUGE}, "event_id"),
        (("purchase",), {"user": {"user_id": _HUGE}}, "user.user_id"),
        (("purchase",), {"user": {"user_id": 2**64}}, "user.user_id"),
        (("purchase",), {"user": {"user_id": -(2**63) - 1}}, "user.user_id"),
        (("purchase",), {"context": {"url": _HUGE}}, "context.url"),
        (("purchase",), {"consent": {"ads": _HUGE}}, "consent.ads"),
        (("purchase",), {"value": _HUGE, "currency": "USD"}, "value"),
        (("purchase",), {"timestamp": _HUGE}, "timestamp"),
        ((_Hostile(),), {}, "name"),
        (("purchase",), {"event_id": _Hostile()}, "event_id"),
        (("purchase",), {"user": {"user_id": _Hostile()}}, "user.user_id"),
        (("purchase",), {"user": {_HUGE: "u"}}, "user.an integer of 16,610 bits"),
        (("purchase",), {"consent": {"ads": _Hostile()}}, "consent.ads"),
        (("purchase",), {"value": _Hostile(), "currency": "USD"}, "value"),
        (("purchase",), {"value": 1, "currency": _Hostile()}, "currency"),
        (("purchase",), {"timestamp": _Hostile()}, "timestamp"),
    ],
)
def test_huge_integers_and_hostile_values_are_refused_naming_the_field(
    tracker: Tracker, args: tuple[object, ...], kwargs: dict[str, Any], where: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track(*args, **kwargs)
    assert [p.field for p in info.value.problems] == [where]
    assert len(str(info.value)) < 500


def test_too_large_integers_say_how_to_fix_them(tracker: Tracker) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", user={"user_id": _HUGE}, context={"url": 2**64})
    assert [p.field for p in info.value.problems] == ["user.user_id", "context.url"]
    text = str(info.value)
    assert "is too large: an integer of 16,610 bits" in text
    assert "is too large: 18446744073709551616" in text
    assert "fits in 64 bits (-9223372036854775808 to 18446744073709551615)" in text
    assert "pass it as a string" in text


def test_integers_that_fit_in_64_bits_are_accepted(tracker: Tracker) -> None:
    for n in (2**63 - 1, -(2**63), 0, 7_123_456_789, 2**63, 2**64 - 1):  # unsigned ids too
        event = make_event("purchase", user={"user_id": n}, context={"ad_id": n})
        assert event.user.user_id == event.context.ad_id == str(n)
    tracker.track("purchase", user={"user_id": 2**63 - 1})


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"event_id": "x" * 5_000_000}, "event_id"),
        ({"event_id": "\x00" * 5_000_000}, "event_id"),
        ({"value": " " * 5_000_000 + "x", "currency": "USD"}, "value"),
        ({"value": 1, "currency": "X" * 5_000_000}, "currency"),
        ({"user": {"x" * 5_000_000: "u"}}, "user." + "x" * 77 + "..."),
        ({"consent": {"x" * 5_000_000: True}}, "consent." + "x" * 77 + "..."),
    ],
)
def test_a_huge_value_is_quoted_briefly(
    tracker: Tracker, kwargs: dict[str, Any], where: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", **kwargs)
    assert [p.field for p in info.value.problems] == [where]
    assert len(str(info.value)) < 1000
    assert "..." in str(info.value)


def test_a_huge_event_name_is_quoted_briefly(tracker: Tracker) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("x y" * 2_000_000)
    assert [p.field for p in info.value.problems] == ["name"]
    assert len(info.value.event_name) == 80
    assert info.value.event_name.endswith("...")
    assert len(str(info.value)) < 1000


def test_with_on_invalid_log_the_log_line_is_brief(
    make_tracker: Callable[..., Tracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker(core={"workers": False, "on_invalid": "log"})
    assert tracker.track("purchase", event_id="x" * 5_000_000) == "x" * 5_000_000
    assert tracker.track(_HUGE) == ""
    assert tracker.track("purchase", user={"user_id": _Hostile()}) == ""
    assert "event_id: must be 1 to 255" in caplog.text
    assert "name: must be a string, got int" in caplog.text
    assert "user.user_id: must be a string, got _Hostile" in caplog.text
    assert len(caplog.text) < 2000


def test_a_declared_whole_number_field_refuses_a_huge_one_briefly() -> None:
    from postback.fields import user_field

    field = user_field("level", help="A level.", type=int)
    assert field.parse("-0042") == "-42"
    assert field.parse(str(2**63 - 1)) == str(2**63 - 1)
    for bad in ("9" * 5000, str(2**63), "1" * 20):
        with pytest.raises(ValueError, match="is too large") as info:
            field.parse(bad)
        assert len(str(info.value)) < 300
    with pytest.raises(ValueError, match="must be a whole number") as info:
        field.parse("x" * 5_000_000)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("depth", [64, 65, 66, 100, 250])
def test_a_deeply_nested_nan_is_refused_naming_its_path(tracker: Tracker, depth: int) -> None:
    # Was: below 64 levels the search stopped, so the NaN was stored as null (accepted), and
    # at 65 levels InvalidEvent listed no problem at all.
    deep: Any = float("nan")
    for _ in range(depth):
        deep = [deep]
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", value=1, currency="USD", properties={"a": deep})
    assert [p.field for p in info.value.problems] == ["properties.a" + "[0]" * depth]


@dataclasses.dataclass
class _Reading:
    x: float


def test_a_nan_inside_a_dataclass_property_is_refused_naming_its_path(tracker: Tracker) -> None:
    # orjson writes a dataclass as an object; its NaN was written as null and accepted.
    with pytest.raises(InvalidEvent) as info:
        tracker.track(
            "purchase", value=1, currency="USD", properties={"r": [_Reading(float("nan"))]}
        )
    assert [p.field for p in info.value.problems] == ["properties.r[0].x"]


@pytest.mark.parametrize("click_id", ["G\n1", "G\x001", "\x1b[31mG1", "G1\u202e", "G\x7f1"])
@pytest.mark.parametrize("field", ["gclid", "fbclid", "msclkid", "li_fat_id"])
def test_a_click_id_with_a_control_character_is_refused_naming_it(
    tracker: Tracker, field: str, click_id: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", value=1, currency="USD", context={field: click_id})
    assert [p.field for p in info.value.problems] == [f"context.{field}"]
    assert "control character" in info.value.problems[0].message
    # The same through the general path (a value that is not a plain string beside it).
    with pytest.raises(InvalidEvent) as info:
        make_event("purchase", context={field: click_id, "utm_id": 7})
    assert [p.field for p in info.value.problems] == [f"context.{field}"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Mozilla/5.0 (X11)\r\nX-Injected: 1", "Mozilla/5.0 (X11)X-Injected: 1"),
        ("Mozilla/5.0\x00 (X11)", "Mozilla/5.0 (X11)"),
        ("Mozilla/5.0\t(X11)\x1b", "Mozilla/5.0(X11)"),
        ("Mozilla/5.0 (X11; é)", "Mozilla/5.0 (X11; é)"),
        # Other non-printables are text, not control characters: they stay.
        ("Mozilla/5.0 (X11;\u00a0ja\u3000JP)", "Mozilla/5.0 (X11;\u00a0ja\u3000JP)"),
        ("\x00\x01", None),
    ],
)
def test_a_user_agent_loses_its_control_characters(given: str, stored: str | None) -> None:
    # The app passes the browser's header as it came (the docs say so): never a refusal.
    assert make_event("purchase", user={"user_agent": given}).user.user_agent == stored
    general = make_event("purchase", user={"user_agent": given, "user_id": 7})
    assert general.user.user_agent == stored


class _TouchyStr(str):
    """A str subclass whose comparisons and hash raise (a caller's own string type)."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__ called")

    def __hash__(self) -> int:
        raise RuntimeError("__hash__ called")


def test_a_str_subclass_event_id_is_kept_as_a_plain_str(tracker: Tracker) -> None:
    """The id is stored and compared by the background threads (the ledger writer): a str
    subclass whose ``__eq__`` raises killed that thread, and no later outcome was recorded."""
    event_id = tracker.track("sign_up", event_id=_TouchyStr("order-1"), user={"user_id": "u1"})
    assert type(event_id) is str and event_id == "order-1"
    again = tracker.track("sign_up", event_id=_TouchyStr("order-1"), user={"user_id": "u1"})
    assert type(again) is str
    assert tracker.status("order-1").event_id == "order-1"


@pytest.mark.parametrize("group", ["user", "context"])
def test_a_dict_of_many_unknown_fields_is_refused_briefly(tracker: Tracker, group: str) -> None:
    """Each unknown field got its own problem with a did-you-mean (difflib, ~40 µs) and the
    list of known fields: a request's 2-million-key dict kept track() busy for over a minute
    and built a message of about a gigabyte. The first few are named, the rest counted."""
    many = {f"k{i}": "v" for i in range(50_000)}
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", **{group: many})
    problems = info.value.problems
    assert len(problems) <= 21, len(problems)
    assert problems[0].field == f"{group}.k0"
    assert problems[-1].field == group and "49980 more unknown" in problems[-1].message
    assert len(str(info.value)) < 20_000
    assert tracker.explain("purchase", **{group: many}).error is not None


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("__str__ called")

    __repr__ = __str__


def _deep(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for _ in range(depth):
        inner = {"a": inner}
    return inner


@pytest.mark.parametrize(
    "name",
    [_Unprintable(), _deep(100_000), 10**5000, ["x"] * 1_000_000],
    ids=["unprintable", "deep-dict", "huge-int", "long-list"],
)
def test_explain_never_raises_for_a_hostile_event_name(tracker: Tracker, name: object) -> None:
    """explain() quoted the name with str(): a RecursionError, a ValueError (int digits) or the
    caller's own exception, where track() refuses the same name with InvalidEvent."""
    with pytest.raises(InvalidEvent) as info:
        tracker.track(name, user={"user_id": "u1"})  # type: ignore[arg-type]
    assert [p.field for p in info.value.problems] == ["name"]
    explanation = tracker.explain(name, user={"user_id": "u1"})  # type: ignore[arg-type]
    assert explanation.error is not None
    assert [p.field for p in explanation.problems] == ["name"]
    assert len(explanation.name) <= 200


class _HostileStr(str):
    """A str subclass whose own methods raise: taken as the plain string it holds."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ called")

    def __hash__(self) -> int:
        raise RuntimeError("__hash__ called")

    def strip(self, chars: str | None = None) -> str:
        raise RuntimeError("strip called")


class _HostileInt(int):
    def __str__(self) -> str:
        raise RuntimeError("__str__ called")

    __repr__ = __str__


class _HostileFloat(float):
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ called")

    __str__ = __repr__


@pytest.mark.parametrize(
    "fields",
    [
        {"name": _HostileStr("Sign Up")},
        {"currency": _HostileStr("usd"), "value": 1},
        {"value": _HostileStr("1.5"), "currency": "USD"},
        {"value": _HostileFloat(1.2345678), "currency": "USD"},
        {"value": _HostileInt(3), "currency": "USD"},
        {"timestamp": _HostileStr("2026-01-02T03:04:05Z")},
        {"user": {"user_id": _HostileStr(" u1 ")}},
        {"user": {"user_id": _HostileInt(42)}},
        {"user": {"user_id": "u1", "email": _HostileStr("A@B.co")}},
        {"context": {"utm_source": _HostileStr("news")}, "user": {"user_id": "u1"}},
    ],
    ids=lambda f: "-".join(f),
)
def test_str_int_and_float_subclasses_are_taken_as_their_plain_values(
    tracker: Tracker, fields: dict[str, Any]
) -> None:
    """Their own methods (strip, __str__, __repr__, __hash__) were called and raised through
    track() and explain(): the values they hold are read instead."""
    fields = {"name": "sign_up", "user": {"user_id": "u1"}, **fields}
    name = fields.pop("name")
    event_id = tracker.track(name, **fields)
    assert type(event_id) is str
    assert tracker.explain(name, **fields).error is None


# Hostile mappings (a Mapping or dict subclass whose own methods raise) and str, int or float
# subclasses inside per-vendor options: the caller's programming error, refused with
# InvalidEvent naming the argument (or read as the plain value it holds), never an exception of
# the caller's own escaping track(), nor reported as a plugin's bug.


class _FlakyMapping(Mapping[Any, Any]):
    """A Mapping over ``data`` whose method ``broken`` raises (``__getitem__``: a KeyError for
    a key it lists)."""

    def __init__(self, data: dict[Any, Any], broken: str) -> None:
        self._data, self._broken = data, broken

    def _check(self, method: str) -> None:
        if method == self._broken:
            raise RuntimeError(f"{method} is broken")

    def __getitem__(self, key: Any) -> Any:
        if self._broken == "__getitem__":
            raise KeyError(key)
        return self._data[key]

    def __iter__(self) -> Any:
        self._check("__iter__")
        return iter(self._data)

    def __len__(self) -> int:
        self._check("__len__")
        return len(self._data)

    def items(self) -> Any:
        self._check("items")
        return super().items()

    def keys(self) -> Any:
        self._check("keys")
        return super().keys()

    def values(self) -> Any:
        self._check("values")
        return super().values()

    def get(self, key: Any, default: Any = None) -> Any:
        self._check("get")
        return super().get(key, default)

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken")


class _FlakyDict(dict[Any, Any]):
    """A dict subclass whose every reading method raises: read as the plain dict it holds."""

    def _broken(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken " * 100_000)  # a huge message too

    __getitem__ = items = keys = values = get = __iter__ = __len__ = __repr__ = _broken
    __contains__ = __eq__ = __bool__ = _broken  # type: ignore[assignment]


#: The methods a caller's mapping may have broken.
_BROKEN = ["__getitem__", "__iter__", "__len__", "items", "keys", "values", "get"]

#: Where a mapping goes in track(): (the argument built around the mapping, the field that is
#: named if it cannot be read).
_PLACES: dict[str, tuple[Callable[[Any], dict[str, Any]], str]] = {
    "user": (lambda m: {"user": m}, "user"),
    "context": (lambda m: {"context": m}, "context"),
    "properties": (lambda m: {"properties": m}, "properties"),
    "items-entry": (
        lambda m: {"properties": {"items": [{"item_id": "a"}, m]}},
        "properties.items[1]",
    ),
    "vendors": (lambda m: {"vendors": m}, "vendors"),
    "vendor-options": (lambda m: {"vendors": {"example": m}}, "vendors.example"),
    "consent": (lambda m: {"consent": m}, "consent"),
}

_CONTENT: dict[str, dict[str, Any]] = {
    "user": {"user_id": "u7", "email": "A@b.co"},
    "context": {"url": "https://shop.example/p", "utm_source": "news"},
    "properties": {"sku": "S-1", "n": 2},
    "items-entry": {"item_id": "S-2", "quantity": 1},
    "vendors": {"example": {"click_id": "c-9"}},
    "vendor-options": {"click_id": "c-9"},
    "consent": {"ads": True, "measurement": False},
}


def _track_then_a_normal_one(
    tracker: Tracker, sandbox: Any, fields: dict[str, Any], where: str
) -> None:
    """track() and explain() with ``fields``: accepted, or InvalidEvent naming ``where``
    (briefly, saying what to pass); then the tracker still delivers a normal event."""
    fields = {"user": {"user_id": "u1"}, **fields}
    try:
        tracker.track("purchase", value=1, currency="USD", **fields)
    except InvalidEvent as exc:
        assert [p.field for p in exc.problems] == [where], exc.problems
        assert "pass a dict" in str(exc) or "pass a list" in str(exc), str(exc)
        assert len(str(exc)) < 1000
        refused = True
    else:
        refused = False
    explanation = tracker.explain("purchase", value=1, currency="USD", **fields)
    assert (explanation.error is not None) is refused
    if refused:
        assert [p.field for p in explanation.problems] == [where]
    event_id = tracker.track("purchase", user={"user_id": "after"}, value=2, currency="USD")
    assert tracker.flush(timeout=10).complete
    assert event_id in [e["id"] for e in sandbox.received("example")]


@pytest.mark.parametrize("broken", _BROKEN)
@pytest.mark.parametrize("place", list(_PLACES))
def test_a_mapping_whose_own_methods_raise_never_escapes_track(
    make_tracker: Callable[..., Tracker], sandbox: Any, place: str, broken: str
) -> None:
    tracker = make_tracker(core={"workers": True})
    wrap, where = _PLACES[place]
    fields = wrap(_FlakyMapping(_CONTENT[place], broken))
    _track_then_a_normal_one(tracker, sandbox, fields, where)


@pytest.mark.parametrize("place", list(_PLACES))
def test_a_dict_subclass_whose_methods_raise_is_read_as_the_dict_it_holds(
    make_tracker: Callable[..., Tracker], sandbox: Any, place: str
) -> None:
    tracker = make_tracker(core={"workers": True})
    wrap, _ = _PLACES[place]
    fields = {"user": {"user_id": "u1"}, **wrap(_FlakyDict(_CONTENT[place]))}
    event_id = tracker.track("purchase", value=1, currency="USD", **fields)
    assert tracker.explain("purchase", value=1, currency="USD", **fields).error is None
    assert tracker.flush(timeout=10).complete
    [sent] = [e for e in sandbox.received("example") if e["id"] == event_id]
    if place == "user":
        assert sent["user"] == "a@b.co"
    if place in ("vendors", "vendor-options"):
        assert sent["click_id"] == "c-9"


@pytest.mark.parametrize("place", list(_PLACES))
def test_a_mapping_that_behaves_is_read_as_its_content(
    make_tracker: Callable[..., Tracker], sandbox: Any, place: str
) -> None:
    tracker = make_tracker(core={"workers": True})
    wrap, _ = _PLACES[place]
    fields = {"user": {"user_id": "u1"}, **wrap(_FlakyMapping(_CONTENT[place], "none"))}
    event_id = tracker.track("purchase", value=1, currency="USD", **fields)
    assert tracker.explain("purchase", value=1, currency="USD", **fields).error is None
    assert tracker.flush(timeout=10).complete
    [sent] = [e for e in sandbox.received("example") if e["id"] == event_id]
    if place in ("vendors", "vendor-options"):
        assert sent["click_id"] == "c-9"


@pytest.mark.parametrize("broken", ["items", "__getitem__"])
def test_a_mapping_that_cannot_be_read_is_refused_naming_it(tracker: Tracker, broken: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", user=_FlakyMapping({"user_id": "u"}, broken))
    [problem] = info.value.problems
    assert problem.field == "user" and problem.vendor is None
    assert problem.message.startswith("could not be read as a mapping (")
    assert problem.message.endswith("); pass a dict")
    assert "RuntimeError: items is broken" in problem.message or "KeyError" in problem.message


@pytest.mark.parametrize("broken", ["items", "__getitem__", "__iter__"])
def test_a_consent_mapping_that_cannot_be_read_is_refused_naming_it(
    tracker: Tracker, broken: str
) -> None:
    # Was: parse_consent() called its items() (and the gate its get()): the caller's own
    # RuntimeError escaped track() and explain().
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", consent=_FlakyMapping({"ads": True}, broken))
    [problem] = info.value.problems
    assert problem.field == "consent" and problem.vendor is None
    assert problem.message.startswith("could not be read as a mapping (")
    assert problem.message.endswith("); pass a dict")
    explanation = tracker.explain("purchase", consent=_FlakyMapping({"ads": True}, broken))
    assert explanation.error is not None
    assert [p.field for p in explanation.problems] == ["consent"]


def test_a_web_request_s_consent_signals_leave_an_unreadable_consent_to_track(
    tracker: Tracker,
) -> None:
    # Was: with Sec-GPC: 1 (or a consent_reader), the web integrations merged the app's
    # consent= with `if consent:` and update(): its own RuntimeError escaped before track().
    from postback.consent import ConsentSettings
    from postback.integrations._context import RequestContext, merge_request_consent

    signals, settings = RequestContext(gpc=True), ConsentSettings()
    for broken in ("__len__", "items", "keys", "__getitem__"):
        consent = _FlakyMapping({"measurement": True}, broken)
        merged = merge_request_consent(signals, consent, settings)
        if merged is consent:  # unreadable: track() refuses it, naming it
            with pytest.raises(InvalidEvent) as info:
                tracker.track("purchase", consent=merged)
            assert [p.field for p in info.value.problems] == ["consent"]
        else:
            assert merged == {"ads": False, "measurement": True}, broken
    merged = merge_request_consent(signals, _FlakyDict({"ads": True}), settings)
    assert merged == {"ads": True} and merged.__class__ is dict


def test_an_unreadable_mapping_is_named_briefly(tracker: Tracker) -> None:
    class Huge(_FlakyMapping):
        def items(self) -> Any:
            raise RuntimeError("x" * 5_000_000)

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    class Worse(_FlakyMapping):
        def items(self) -> Any:
            raise Unprintable

    for mapping in (Huge({}, ""), Worse({}, "")):
        with pytest.raises(InvalidEvent) as info:
            tracker.track("purchase", context=mapping)
        assert [p.field for p in info.value.problems] == ["context"]
        assert len(str(info.value)) < 500


class _TouchyKey(str):
    """A str subclass that hashes as a str (so it can be a dict key) but whose ``__eq__``,
    ``__str__``, ``__format__`` and ``strip`` raise."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__ called")

    def __str__(self) -> str:
        raise RuntimeError("__str__ called")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("__format__ called")

    def strip(self, chars: str | None = None) -> str:
        raise RuntimeError("strip called")


class _TouchyInt(int):
    def __index__(self) -> int:
        raise RuntimeError("__index__ called")

    def __str__(self) -> str:
        raise RuntimeError("__str__ called")

    __repr__ = __format__ = __eq__ = __hash__ = __str__  # type: ignore[assignment]


class _TouchyFloat(float):
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ called")

    __str__ = __format__ = __eq__ = __hash__ = __float__ = __repr__  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("consent", "sent"),
    [
        (_FlakyDict({"ads": False}), False),
        (_FlakyDict({"ads": True}), True),
        ({_TouchyKey("ads"): False}, False),
        (_FlakyMapping({_TouchyKey("ads"): False}, "get"), False),
    ],
    ids=["dict-subclass-denies", "dict-subclass-grants", "touchy-key", "mapping-touchy-key"],
)
def test_consent_is_read_as_its_plain_content(
    make_tracker: Callable[..., Tracker], sandbox: Any, consent: Any, sent: bool
) -> None:
    tracker = make_tracker(core={"workers": True})
    fields: dict[str, Any] = {"user": {"user_id": "u1"}, "value": 1, "currency": "USD"}
    explanation = tracker.explain("purchase", consent=consent, **fields)
    assert explanation.error is None
    assert explanation.queued == (("example",) if sent else ())
    event_id = tracker.track("purchase", consent=consent, **fields)
    assert tracker.flush(timeout=10).complete
    assert (event_id in [e["id"] for e in sandbox.received("example")]) is sent


@pytest.mark.parametrize(
    ("vendors", "click_id"),
    [
        ({"example": {"click_id": _TouchyKey("c-1")}}, "c-1"),
        ({"example": {_TouchyKey("click_id"): "c-2"}}, "c-2"),
        ({_TouchyKey("example"): {"click_id": "c-3"}}, "c-3"),
        ({"example": {"click_id": _HostileStr("c-4")}}, "c-4"),
        ({"example": {"click_id": [_TouchyInt(5), _TouchyFloat(0.5)]}}, [5, 0.5]),
        ({"example": {"click_id": {"n": _TouchyInt(6)}}}, {"n": 6}),
    ],
    ids=["value", "option-name", "vendor-name", "strip", "int-float", "nested"],
)
def test_str_int_and_float_subclasses_in_vendor_options_are_taken_as_plain_values(
    make_tracker: Callable[..., Tracker], sandbox: Any, vendors: dict[Any, Any], click_id: Any
) -> None:
    """The main fields read such values with normalize.plain(); the per-vendor options were
    passed on as given: the core's option check (``key in option_keys``), the vendor's own
    validate() and the stored form called their methods."""
    tracker = make_tracker(core={"workers": True})
    event_id = tracker.track(
        "purchase", user={"user_id": "u1"}, value=1, currency="USD", vendors=vendors
    )
    explanation = tracker.explain(
        "purchase", user={"user_id": "u1"}, value=1, currency="USD", vendors=vendors
    )
    assert explanation.error is None and explanation.queued == ("example",)
    assert tracker.flush(timeout=10).complete
    [sent] = [e for e in sandbox.received("example") if e["id"] == event_id]
    assert sent["click_id"] == click_id


class _ReadsOptions:
    """A vendor plugin's validate reading the per-event options and the items as a vendor's
    does (``opts.get``, ``value in {...}``): a hostile value there was reported as the
    plugin's bug ("the plugin of vendor 'example' failed in validate")."""

    @hookimpl
    def postback_validate(self, event: Event, destination: Any) -> list[Any]:
        opts = event.options_for(destination.name)
        assert opts.__class__ is dict
        for key, value in opts.items():
            assert key.__class__ is str and key in {"click_id"}
            assert value.__class__ in (str, int, float, list, dict)
        for item in event.properties.get("items", []):
            assert item.__class__ is dict
            assert all(k.__class__ is str and k in {"item_id", "n"} for k in item)
        return []


@pytest.mark.parametrize(
    "fields",
    [
        {"vendors": {"example": {"click_id": _TouchyKey("c")}}},
        {"vendors": {"example": {_TouchyKey("click_id"): "c"}}},
        {"vendors": {"example": _FlakyDict({"click_id": "c"})}},
        {"vendors": {"example": _FlakyMapping({"click_id": "c"}, "get")}},
        {"properties": {"items": [{_TouchyKey("item_id"): "a", "n": _TouchyInt(1)}]}},
        {"properties": {"items": [_FlakyDict({"item_id": "a"})]}},
        {"properties": {"items": [_FlakyMapping({"item_id": "a"}, "get")]}},
    ],
    ids=[
        "option-value",
        "option-name",
        "options-dict",
        "options-mapping",
        "item-keys",
        "item-dict",
        "item-mapping",
    ],
)
def test_a_plugin_reading_options_and_items_sees_plain_values(
    make_tracker: Callable[..., Tracker], fields: dict[str, Any]
) -> None:
    tracker = make_tracker(core={"workers": False}, plugins=[_ReadsOptions()])
    tracker.track("purchase", user={"user_id": "u1"}, value=1, currency="USD", **fields)
    explanation = tracker.explain(
        "purchase", user={"user_id": "u1"}, value=1, currency="USD", **fields
    )
    assert explanation.error is None and explanation.queued == ("example",)


def test_a_hostile_vendor_option_never_blames_the_plugin(
    make_tracker: Callable[..., Tracker],
) -> None:
    """An options mapping that cannot be read is the caller's error, never a PluginError."""
    tracker = make_tracker(core={"workers": False}, plugins=[_ReadsOptions()])
    broken = {"example": _FlakyMapping({"click_id": "c"}, "items")}
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", user={"user_id": "u1"}, vendors=broken)
    assert [p.field for p in info.value.problems] == ["vendors.example"]
    assert not isinstance(info.value, PluginError)
    assert tracker.explain("purchase", user={"user_id": "u1"}, vendors=broken).error is not None

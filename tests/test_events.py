"""The canonical event model: normalisation on the way in, and every problem reported at once."""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postback import InvalidEvent
from postback.event_codec import dumps_event, loads_event
from postback.events import (
    CANONICAL_EVENTS,
    Event,
    make_event,
    normalize_currency,
    normalize_event_name,
    to_micros,
    to_timestamp_ms,
)


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        ("purchase", "purchase"),
        ("Purchase", "purchase"),
        ("Add To Cart", "add_to_cart"),
        ("addToCart", "add_to_cart"),
        ("add-to-cart", "add_to_cart"),
        ("  level.achieved ", "level_achieved"),
        ("my_custom_event", "my_custom_event"),
    ],
)
def test_event_names_are_normalised(given_name: str, expected: str) -> None:
    assert normalize_event_name(given_name) == expected


@pytest.mark.parametrize("bad", ["", "1purchase", "purchase!", "x" * 65, "ümlaut"])
def test_unusable_event_names_are_refused_with_a_hint(bad: str) -> None:
    with pytest.raises(ValueError, match="snake_case"):
        normalize_event_name(bad)


def test_canonical_names_include_the_design_list() -> None:
    assert {"install", "purchase", "submit_application", "page_view", "re_engage"} <= (
        CANONICAL_EVENTS
    )


def test_money_is_exact() -> None:
    assert to_micros(49.99) == 49_990_000  # never 49_989_999
    assert to_micros(0.1 + 0.2) == 300_000  # 0.30000000000000004 rounds to the micro
    assert to_micros("19.99") == 19_990_000
    assert to_micros(Decimal("1.0000005")) == 1_000_000  # half-even at the micro
    assert to_micros(Decimal("1.0000015")) == 1_000_002
    assert to_micros(7) == 7_000_000
    assert to_micros(-5.5) == -5_500_000


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False))
def test_two_decimal_amounts_survive_float_round_trip(amount: Decimal) -> None:
    assert to_micros(float(amount)) == int(amount * 1_000_000)


@given(st.floats(min_value=-(10**12), max_value=10**12, exclude_min=True, exclude_max=True))
def test_a_float_is_its_shortest_repr_in_micros(amount: float) -> None:
    """The float path without Decimal gives what the Decimal of its repr gives."""
    from decimal import ROUND_HALF_EVEN

    exact = Decimal(repr(amount))
    expected = (
        0
        if exact and exact.adjusted() < -12
        else int((exact * 1_000_000).to_integral_value(ROUND_HALF_EVEN))
    )
    assert to_micros(amount) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (-0.0, 0),
        (0.0, 0),
        (5e-05, 50),  # repr '5e-05': exponent form
        (1e-07, 0),  # below a micro: half-even
        (1.5e-06, 2),
        (2.5e-06, 2),
        (14.995, 14_995_000),
        (123456.1234565, 123_456_123_456),  # 7 decimals: rounded half-even
        (float(2**30) - 0.5, (2**30) * 1_000_000 - 500_000),  # just inside the fast path
        (float(2**30), (2**30) * 1_000_000),  # at its bound: the repr path
        (-(float(2**30)), -(2**30) * 1_000_000),
        (999_999_999_999.5, 999_999_999_999_500_000),  # huge: the repr path
        (1e11 + 0.1, 100_000_000_000_100_000),
    ],
)
def test_float_fast_path_edges(amount: float, expected: int) -> None:
    assert to_micros(amount) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [(Decimal("64.98"), 64_980_000), ("64.98", 64_980_000), (7, 7_000_000), (-3, -3_000_000)],
)
def test_non_floats_skip_the_float_fast_path(amount: object, expected: int) -> None:
    assert to_micros(amount) == expected


class _Money(float):
    """A float subclass: never taken by the fast paths (they test the exact class)."""


@pytest.mark.parametrize(
    "bad", [float("-inf"), -float("nan"), 1e12, -1e12, 1e300, False, Decimal("NaN"), "inf"]
)
def test_non_finite_huge_and_bool_amounts_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        to_micros(bad)


def test_a_float_subclass_gives_the_same_micros() -> None:
    assert to_micros(_Money(49.99)) == 49_990_000
    assert to_micros(_Money(-0.0)) == 0


def test_generated_event_ids_are_version_4_uuids() -> None:
    import uuid

    from postback.events import new_event_id

    ids = {new_event_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_repeats_its_parents_event_ids() -> None:
    """Parent and child make ids of their own after a fork (see new_event_id: no state that a
    fork could copy)."""
    from postback.event_ids import new_event_id

    new_event_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        os.write(write_end, " ".join(new_event_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    parent_ids = {new_event_id() for _ in range(50)}
    with os.fdopen(read_end, "rb") as pipe:
        child_ids = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    assert len(child_ids) == 50
    assert not parent_ids & child_ids


@pytest.mark.parametrize("bad", [True, float("nan"), float("inf"), "abc", [1], None.__class__])
def test_bad_money_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        to_micros(bad)


def test_currency_is_validated_and_upper_cased() -> None:
    assert normalize_currency("usd") == "USD"
    assert normalize_currency(" eur ") == "EUR"
    with pytest.raises(ValueError, match="ISO 4217"):
        normalize_currency("DOLLARS")
    with pytest.raises(ValueError, match="ISO 4217"):
        normalize_currency("XYZ")


def test_timestamps_become_utc_milliseconds() -> None:
    aware = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert to_timestamp_ms(aware) == int(
        datetime(2026, 11, 24, 8, 0, 0, 123000, tzinfo=UTC).timestamp() * 1000
    )
    assert to_timestamp_ms(1_764_000_000_123) == 1_764_000_000_123
    assert to_timestamp_ms("2014-05-22T02:38:28.103Z") == 1_400_726_308_103
    with pytest.raises(ValueError, match="naive"):
        to_timestamp_ms(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="seconds"):
        to_timestamp_ms(1_764_000_000)  # seconds, not milliseconds
    with pytest.raises(ValueError, match="ISO 8601"):
        to_timestamp_ms("yesterday")


def test_make_event_normalises_everything() -> None:
    e = make_event(
        "Purchase",
        user={"email": "  Ada@Example.COM ", "user_id": 1728125519, "phone": None},
        value=49.99,
        currency="usd",
        timestamp="2026-11-24T10:00:00.5+00:00",
        context={"utm_source": "x"},
        properties={"transaction_id": "1042"},
        vendors={"x": {"app_id": "1"}},
    )
    assert e.name == "purchase"
    assert e.user.email == "ada@example.com"
    assert e.user.user_id == "1728125519"
    assert e.user.phone is None
    assert e.value_micros == 49_990_000
    assert e.value == Decimal("49.99")
    assert e.currency == "USD"
    assert e.timestamp == datetime(2026, 11, 24, 10, 0, 0, 500000, tzinfo=UTC)
    assert e.options_for("x") == {"app_id": "1"}
    assert e.options_for("whop") == {}
    assert len(e.event_id) == 36  # generated uuid


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidEvent) as info:
        make_event(
            "bad name!",
            user={"emial": "a@b.co", "ifa": 12.5},
            value="lots",
            currency="dollars",
            event_id="has space",
            timestamp=123,
            context={"utm_sauce": "x"},
            properties=[1, 2],
        )
    fields = [p.field for p in info.value.problems]
    assert fields == [
        "name",
        "event_id",
        "timestamp",
        "value",
        "currency",
        "user.emial",
        "user.ifa",
        "context.utm_sauce",
        "properties",
    ]
    message = str(info.value)
    assert "did you mean 'email'" in message
    assert "did you mean 'utm_source'" in message
    assert "9 problem(s)" in message
    assert isinstance(info.value, ValueError)


def test_value_needs_a_currency_unless_a_default_is_configured() -> None:
    with pytest.raises(InvalidEvent, match="default_currency"):
        make_event("purchase", value=10)
    assert make_event("purchase", value=10, default_currency="EUR").currency == "EUR"


def test_round_trip_through_the_stored_form() -> None:
    e = make_event(
        "purchase",
        user={"email": "a@b.co", "ifa": "AB-CD"},
        value=1.5,
        currency="JPY",
        context={"url": "https://x.example/p"},
        properties={"items": [{"item_id": "a", "quantity": 2}]},
        vendors={"x": {"level": 3}},
        event_id="order-1",
    )
    data = dumps_event(e)
    assert isinstance(data, bytes)
    assert b'"first_name"' not in data  # unset fields are omitted
    assert loads_event(data) == e


def test_fast_paths_match_cattrs_generated_hooks() -> None:
    from postback.event_codec import (
        _generated_structure_event,
        _generated_unstructure_event,
        converter,
    )

    for e in [
        make_event("sign_up"),
        make_event(
            "purchase",
            user={"email": "A@b.co", "user_id": 5},
            value=1,
            currency="EUR",
            context={"url": "u"},
            properties={"a": [1]},
            vendors={"x": False},
            event_id="e-1",
        ),
    ]:
        assert converter.unstructure(e) == _generated_unstructure_event(e)
        data = converter.unstructure(e)
        assert converter.structure(data, Event) == _generated_structure_event(data, Event) == e
    # An unexpected stored shape still reads through cattrs (and fails clearly).
    with pytest.raises(Exception):
        loads_event(b'{"name": "x"}')


def test_user_fields_that_are_not_strings_take_the_general_path() -> None:
    from datetime import date

    e = make_event(
        "sign_up", user={"birthdate": date(1990, 1, 15), "user_id": 42, "email": " X@Y.CO "}
    )
    assert (e.user.birthdate, e.user.user_id, e.user.email) == ("1990-01-15", "42", "x@y.co")


def test_fast_built_user_and_context_behave_like_attrs_built_ones() -> None:
    import attrs

    from postback import Context, User

    fast = make_event("x", user={"email": "a@b.co"}, context={"url": "u"})
    assert fast.user == User(email="a@b.co") and hash(fast.user) == hash(User(email="a@b.co"))
    assert fast.context == Context(url="u") and repr(fast.context) == repr(Context(url="u"))
    assert fast.user.phone is None and fast.context.gclid is None
    assert attrs.asdict(fast.user) == attrs.asdict(User(email="a@b.co"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.user.email = "b@b.co"  # type: ignore[misc]
    assert attrs.evolve(fast.user, phone="+1") == User(email="a@b.co", phone="+1")


def test_events_built_without_attrs_init_are_whole() -> None:
    """make_event() and loads_event() fill the slots directly: every field is set, and the
    result equals, reprs and evolves like an Event built through attrs."""
    import attrs

    e = make_event("purchase", user={"email": "a@b.co"}, value=2, currency="USD", event_id="w-1")
    built = Event(**{f.name: getattr(e, f.name) for f in attrs.fields(Event)})
    for event in (e, loads_event(dumps_event(e))):
        assert type(event) is Event  # filled as a private subclass, then made an Event
        assert all(hasattr(event, f.name) for f in attrs.fields(Event))
        assert event == built and repr(event) == repr(built)
        assert attrs.evolve(event, name="refund").name == "refund"
        assert pickle.loads(pickle.dumps(event)) == built
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            event.name = "refund"  # type: ignore[misc]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            del event.currency  # type: ignore[misc]


def test_stored_form_is_the_same_however_user_and_context_were_built() -> None:
    """dumps_event reads a User/Context filled with its set fields directly; one built by
    attrs' __init__ (every field, None included) must store the same bytes."""
    import attrs
    import orjson

    from postback.event_codec import _unstructure_event_fast, dumps_event
    from postback.events import Context, User

    e = make_event(
        "purchase",
        user={"email": " A@B.co", "user_id": "u1"},
        context={"url": "https://shop.example.com/"},
        value=9.99,
        currency="USD",
        event_id="e1",
    )
    built = attrs.evolve(
        e,
        user=User(email="a@b.co", user_id="u1"),
        context=Context(url="https://shop.example.com/"),
    )
    assert len(built.user.__dict__) > len(e.user.__dict__)  # attrs wrote the None fields
    for event in (e, built):
        assert dumps_event(event) == orjson.dumps(_unstructure_event_fast(event))
    assert orjson.loads(dumps_event(built)) == orjson.loads(dumps_event(e))
    assert b"null" not in dumps_event(built)


@pytest.mark.parametrize(
    "event_id",
    ["order-1042", "a" * 255, "a" * 256, "", "a b", "tab\there", "nl\n", "\x7f", "caf\u00e9",
     "nbsp\u00a0", "~!#", "x\x00y", "\u2028"],
)  # fmt: skip
def test_event_id_check_is_the_documented_pattern(event_id: str) -> None:
    """make_event checks an event id without the regex engine: the same verdict as the
    pattern it documents (1 to 255 printable ASCII characters, no space)."""
    from postback.event_ids import EVENT_ID_RE

    expected = EVENT_ID_RE.match(event_id) is not None
    if expected:
        assert make_event("purchase", event_id=event_id).event_id == event_id
    else:
        with pytest.raises(InvalidEvent) as exc:
            make_event("purchase", event_id=event_id)
        assert [p.field for p in exc.value.problems] == ["event_id"]


def test_dumps_event_writes_what_the_general_unstructure_writes() -> None:
    # dumps_event builds the stored form inline; the general function is the reference.
    import orjson

    from postback.event_codec import _stored_fields, _unstructure_event_fast
    from postback.events import Context, User

    made = [
        make_event("purchase"),
        make_event(
            "purchase",
            user={"email": "A@B.co ", "ip_address": "203.0.113.7"},
            value=5,
            currency="EUR",
            context={"url": "https://x.example/"},
            properties={"items": [{"item_id": "a"}]},
            vendors={"example": {"k": 1}},
        ),
    ]
    # attrs' __init__ writes every field, None included: those are read through set_fields.
    full = Event(
        name="sign_up",
        event_id="e-1",
        timestamp_ms=1,
        user=User(email="a@b.co"),
        context=Context(url="https://x.example/"),
    )
    for event in [*made, full, loads_event(dumps_event(made[1]))]:
        assert dumps_event(event) == orjson.dumps(_unstructure_event_fast(event, _stored_fields))
    assert b"null" not in dumps_event(full)

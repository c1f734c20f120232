"""Every validation rule of the Ton AI plugin, plus routing (which events count).

A Skip when Ton AI cannot use the event (no Telegram user id: the other vendors still get it),
a Problem when it is malformed (an id that is not one, a bad mapping, an option)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from postback import InvalidEvent, Problem, Skip, Tracker
from postback_tonai import TonAIDestination

from .conftest import DOC_USER, TEST_KEY, event, make_destination


def problems(dest: TonAIDestination, **kwargs: Any) -> dict[str, str]:
    found = [f for f in dest.validate(event(**kwargs)) if isinstance(f, Problem)]
    out = {p.field: p.message for p in found}
    assert len(out) == len(found)  # one problem per field
    return out


def skips(dest: TonAIDestination, **kwargs: Any) -> dict[str, Skip]:
    found = [f for f in dest.validate(event(**kwargs)) if isinstance(f, Skip)]
    assert all(s.vendor == "tonai" and s.reason and s.fix for s in found), found
    return {s.field: s for s in found}


@pytest.fixture
def dest() -> TonAIDestination:
    return make_destination()


# --- user.telegram_user_id -----------------------------------------------------------------


def test_a_valid_event_has_no_problems(dest: TonAIDestination) -> None:
    assert problems(dest) == {}


def test_no_telegram_user_id_is_a_skip(dest: TonAIDestination) -> None:
    given = {"telegram_user_id": None, "user": {"email": "a@b.co", "user_id": "42"}}
    assert problems(dest, **given) == {}
    skip = skips(dest, **given)["user.telegram_user_id"]
    assert skip.reason == "no Telegram user id"
    assert "user={'telegram_user_id'" in skip.fix  # says how to fix it


def test_telegram_user_id_given_as_an_integer_is_accepted(dest: TonAIDestination) -> None:
    ev = event(telegram_user_id=1728125519)
    assert ev.user.telegram_user_id == "1728125519"
    assert list(dest.validate(ev)) == []


@pytest.mark.parametrize("value", ["abc", "12a45", "12 34", "1.5", "1e9", "١٢٣", "0x1F"])
def test_telegram_user_id_must_be_digits(dest: TonAIDestination, value: str) -> None:
    msg = problems(dest, telegram_user_id=value)["user.telegram_user_id"]
    assert "digits" in msg


def test_telegram_username_is_refused_with_a_hint(dest: TonAIDestination) -> None:
    msg = problems(dest, telegram_user_id="@alice")["user.telegram_user_id"]
    assert "username" in msg and "numeric" in msg


def test_negative_chat_id_is_refused_with_a_hint(dest: TonAIDestination) -> None:
    msg = problems(dest, telegram_user_id="-1001234567890")["user.telegram_user_id"]
    assert "negative" in msg and "group or channel" in msg


@pytest.mark.parametrize("value", ["0", "0123456789"])
def test_telegram_user_id_has_no_leading_zero(dest: TonAIDestination, value: str) -> None:
    msg = problems(dest, telegram_user_id=value)["user.telegram_user_id"]
    assert "leading" in msg or "starts with 0" in msg


@pytest.mark.parametrize("value", ["9223372036854775808", "12345678901234567890123"])
def test_telegram_user_id_is_bounded(dest: TonAIDestination, value: str) -> None:
    msg = problems(dest, telegram_user_id=value)["user.telegram_user_id"]
    assert "too large" in msg


@pytest.mark.parametrize("value", ["1", "777000", "4503599627370495", "9223372036854775807"])
def test_telegram_user_id_bounds_accept_real_ids(dest: TonAIDestination, value: str) -> None:
    assert problems(dest, telegram_user_id=value) == {}


def test_long_bad_values_are_shortened_in_the_message(dest: TonAIDestination) -> None:
    msg = problems(dest, telegram_user_id="x" * 500)["user.telegram_user_id"]
    assert "x" * 41 not in msg


# --- event name / mapping ------------------------------------------------------------------


def test_an_event_routed_without_a_mapping_is_a_problem() -> None:
    dest = make_destination()
    got = problems(dest, name="first_deposit")
    assert list(got) == ["name"]
    assert "event_map" in got["name"] and "conversion" in got["name"]


def test_event_map_must_map_to_conversion() -> None:
    dest = make_destination(event_map={"sign_up": "signup"})
    got = problems(dest, name="sign_up")
    assert list(got) == ["name"]
    assert "'signup'" in got["name"] and '"conversion"' in got["name"]


# --- per-event options ---------------------------------------------------------------------


def test_per_event_options_are_refused_by_the_core(dest: TonAIDestination) -> None:
    from postback.routing import option_problems

    (got,) = option_problems(dest, {"click_id": "abc"})
    assert got.field == "vendors.tonai.click_id" and "no per-event options" in got.message


def test_other_fields_are_not_problems(dest: TonAIDestination) -> None:
    """Value, PII and context are simply not sent; they make no problem."""
    assert (
        problems(
            dest,
            user={"email": "a@b.co", "phone": "+14155550123", "ip_address": "203.0.113.7"},
            value=49.99,
            currency="USD",
            context={"utm_source": "tonai"},
            properties={"items": [{"item_id": "x"}]},
        )
        == {}
    )


# --- through track(): every problem at once --------------------------------------------------


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    t = Tracker.from_config(
        {
            "postback": {"queue": "memory://", "workers": False},
            "vendors": {"tonai": {"api_key": TEST_KEY}},
        }
    )
    yield t
    t.close(timeout=0)


def test_every_problem_is_reported_at_once(tracker: Tracker) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track(
            "first_deposit",
            user={"telegram_user_id": "@bob"},
            vendors={"tonai": {"click_id": "c1", "value": 1}},
        )
    got = {(p.vendor, p.field) for p in info.value.problems}
    assert got == {
        ("tonai", "user.telegram_user_id"),
        ("tonai", "name"),
        ("tonai", "vendors.tonai.click_id"),
        ("tonai", "vendors.tonai.value"),
    }
    assert "tonai: user.telegram_user_id" in str(info.value)


def test_track_skips_ton_ai_for_a_sign_up_without_telegram_id(tracker: Tracker) -> None:
    assert tracker.track("sign_up", user={"email": "a@b.co"})
    assert tracker.stats()["tonai"]["skips"] == {"no Telegram user id": 1}
    assert tracker.queue.depth(["tonai"], 0)["tonai"].pending == 0


def test_strict_mode_refuses_a_sign_up_without_telegram_id(tracker: Tracker) -> None:
    strict = Tracker.from_config(
        {
            "postback": {"queue": "memory://", "strict": True},
            "vendors": {"tonai": dict(tracker.config.raw["vendors"]["tonai"])},
        }
    )
    try:
        with pytest.raises(InvalidEvent) as info:
            strict.track("sign_up", user={"email": "a@b.co"})
        assert [(p.vendor, p.field) for p in info.value.problems] == [
            ("tonai", "user.telegram_user_id")
        ]
    finally:
        strict.close(timeout=0)


# --- routing: which canonical events count as Ton AI's conversion ------------------------------


def routed(tracker: Tracker, name: str) -> bool:
    _, targets = tracker.prepare(name, user={"telegram_user_id": DOC_USER})
    return [d.name for d in targets] == ["tonai"]


def test_default_routing_is_sign_up_only(tracker: Tracker) -> None:
    assert routed(tracker, "sign_up")
    for name in ("install", "purchase", "app_open", "login", "lead", "subscribe"):
        assert not routed(tracker, name), name


def make_tracker(**table: Any) -> Tracker:
    return Tracker.from_config(
        {
            "postback": {"queue": "memory://", "workers": False},
            "vendors": {"tonai": {"api_key": TEST_KEY, **table}},
        }
    )


def test_events_filter_chooses_the_conversion() -> None:
    t = make_tracker(events=["install", "purchase"])
    try:
        assert routed(t, "install") and routed(t, "purchase")
        assert not routed(t, "sign_up")
    finally:
        t.close(timeout=0)


def test_any_canonical_event_may_be_chosen() -> None:
    t = make_tracker(events=["tutorial_complete"])
    try:
        assert routed(t, "tutorial_complete")
    finally:
        t.close(timeout=0)


def test_event_map_adds_a_custom_conversion_without_a_filter() -> None:
    t = make_tracker(event_map={"first_deposit": "conversion"})
    try:
        assert routed(t, "first_deposit") and routed(t, "sign_up")
        assert not routed(t, "purchase")
    finally:
        t.close(timeout=0)


def test_opting_out_per_event(tracker: Tracker) -> None:
    _, targets = tracker.prepare(
        "sign_up", user={"telegram_user_id": DOC_USER}, vendors={"tonai": False}
    )
    assert targets == []


# --- transform re-checks (events queued without this validation go to the dead letters) ---------


def test_transform_refuses_an_event_without_a_usable_id(dest: TonAIDestination) -> None:
    with pytest.raises(ValueError, match=r"user\.telegram_user_id is required"):
        dest.transform(event(telegram_user_id=None))
    with pytest.raises(ValueError, match="digits"):
        dest.transform(event(telegram_user_id="abc"))


def test_one_conversion_per_request(dest: TonAIDestination) -> None:
    from postback.destination import Prepared

    ev = event()
    p = Prepared(ev, dest.transform(ev))
    with pytest.raises(ValueError, match="one conversion per request"):
        dest.build_request([p, p])


def test_skip_without_says_what_validate_says_without_a_telegram_user_id() -> None:
    # The router skips Ton AI on skip_without's word, without calling validate: they agree;
    # a name not mapped to "conversion" is a Problem too, so it is left to validate.
    dest = make_destination(event_map={"sign_up": "conversion", "lead": "signup"})
    assert dest.skip_without("lead") is None and dest.skip_without("never_mapped") is None
    said = dest.skip_without("sign_up")
    assert said is not None and said[0] == "telegram_user_id"
    for kw in ({}, {"value": 5, "currency": "USD"}):
        found = list(dest.validate(event("sign_up", telegram_user_id=None, **kw)))
        assert found == [said[1]] and found[0] is said[1]

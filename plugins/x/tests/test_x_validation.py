"""Every validation rule of the X destination, one test each, plus all-at-once reporting."""

from __future__ import annotations

from typing import Any

import pytest

import postback
from postback.destination import SkipEvent
from postback_x import CONVERSION_TYPES, DEFAULT_EVENT_MAP, XDestination


def test_a_valid_event_has_no_problems(kit: Any, dest: XDestination) -> None:
    assert kit.problems(dest, kit.event()) == {}


# --- mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canonical", "conversion_type"),
    [
        ("purchase", "PURCHASE"), ("sign_up", "SIGN_UP"), ("install", "INSTALL"),
        ("re_engage", "RE_ENGAGE"), ("update", "UPDATE"), ("app_update", "UPDATE"),
        ("tutorial_complete", "TUTORIAL_COMPLETE"), ("reservation", "RESERVATION"),
        ("add_to_cart", "ADD_TO_CART"), ("add_to_wishlist", "ADD_TO_WISHLIST"),
        ("login", "LOGIN"), ("begin_checkout", "CHECKOUT_INITIATED"), ("search", "SEARCH"),
        ("level_achieved", "LEVEL_ACHIEVED"), ("achievement_unlocked", "ACHIEVEMENT_UNLOCKED"),
        ("view_item", "CONTENT_VIEW"), ("share", "SHARE"), ("invite", "INVITE"),
        ("add_payment_info", "ADDED_PAYMENT_INFO"), ("spent_credits", "SPENT_CREDITS"),
        ("rate", "RATED"),
    ],
)  # fmt: skip
def test_canonical_names_map_to_conversion_types(
    kit: Any, dest: XDestination, canonical: str, conversion_type: str
) -> None:
    ev = kit.event(canonical)
    assert kit.problems(dest, ev) == {}
    assert dest.transform(ev)["conversion_type"] == conversion_type


def test_all_twenty_conversion_types_are_reachable() -> None:
    assert len(CONVERSION_TYPES) == 20
    assert set(DEFAULT_EVENT_MAP.values()) == set(CONVERSION_TYPES)


def test_unmapped_event_sent_to_x_by_options_says_how_to_map_it(
    kit: Any, dest: XDestination
) -> None:
    ev = kit.event("subscribe", vendors={"x": {"app_id": "333903271"}})
    msg = kit.problems(dest, ev)["name"]
    assert "'subscribe'" in msg
    assert "[vendors.x.event_map] subscribe" in msg
    assert "PURCHASE" in msg


def test_event_map_to_an_unknown_conversion_type(kit: Any) -> None:
    dest = kit.destination(event_map={"subscribe": "SUBSCRIBED"})
    msg = kit.problems(dest, kit.event("subscribe"))["name"]
    assert "'SUBSCRIBED'" in msg and "not an X conversion_type" in msg


def test_unmapped_events_are_not_routed_to_x_by_default(kit: Any, dest: XDestination) -> None:
    assert not dest.supports("subscribe")
    assert not dest.supports("page_view")
    assert dest.supports("purchase")


def test_unknown_option(dest: XDestination) -> None:
    from postback.routing import option_problems

    (got,) = option_problems(dest, {"clickwindow": 7})
    assert got.field == "vendors.x.clickwindow" and "unknown option for x" in got.message


# --- device id ----------------------------------------------------------------------------


def test_missing_ifa_is_a_skip_not_a_problem(kit: Any, dest: XDestination) -> None:
    ev = kit.event(user={"email": "a@b.co"})
    assert kit.problems(dest, ev) == {}
    skip = kit.skips(dest, ev)["user.ifa"]
    assert skip.reason == "no device id"
    assert "user={'ifa': ...}" in skip.fix and "events = [...]" in skip.fix


def test_a_skipped_event_is_not_checked_further_except_its_options(
    kit: Any, dest: XDestination
) -> None:
    """X does not judge the formats of an event it does not take; options for X it does."""
    ev = kit.event(user={"email": "a@b.co", "ip_address": "999.1.1.1"}, value=-1, currency="USD")
    assert set(kit.skips(dest, ev)) == {"user.ifa"}
    assert kit.problems(dest, ev) == {}
    ev = kit.event(user={"email": "a@b.co"}, vendors={"x": {"click_window": 3}})
    assert set(kit.skips(dest, ev)) == {"user.ifa"}
    assert set(kit.problems(dest, ev)) == {"vendors.x.click_window"}


def test_ifa_that_is_neither_a_uuid_nor_a_hash(kit: Any, dest: XDestination) -> None:
    ev = kit.event(user={"ifa": "not-an-idfa"})
    assert "UUID" in kit.problems(dest, ev)["user.ifa"]


def test_hashed_ifa_must_be_44_chars_of_base64(kit: Any, dest: XDestination) -> None:
    assert (
        kit.problems(dest, kit.event(user={"ifa": "lke1GZa3AseB343ZcCQq7svfHzLfuSqyYnE+Rf49MOI="}))
        == {}
    )
    bad = kit.event(user={"ifa": "lke1GZa3AseB343ZcCQq7svfHzLfuSqyYnE+Rf49MO=="})
    assert "user.ifa" in kit.problems(dest, bad)


def test_all_zero_ifa_is_skipped_not_sent(kit: Any, dest: XDestination) -> None:
    ev = kit.event(user={"ifa": "00000000-0000-0000-0000-000000000000"})
    assert kit.problems(dest, ev) == {}
    assert kit.skips(dest, ev)["user.ifa"].reason == "ad tracking limited"
    with pytest.raises(SkipEvent, match="limited"):  # queued before this version, or replayed
        dest.transform(ev)


def test_bad_ip_address(kit: Any, dest: XDestination) -> None:
    ev = kit.event(user={"ifa": kit.IDFA, "ip_address": "192.168.1"})
    assert "IPv4 or IPv6" in kit.problems(dest, ev)["user.ip_address"]


# --- os_type and app_id -------------------------------------------------------------------


def test_os_type_needed_when_nothing_gives_it(kit: Any) -> None:
    dest = kit.destination(os_type=None, app_id=None, android_app_id=None)
    ev = kit.event(vendors={"x": {"app_id": "333903271"}})
    assert kit.problems(dest, ev) == {}
    skip = kit.skips(dest, ev)["user.os"]
    assert skip.reason == "no os_type" and "user={'os': 'ios'}" in skip.fix


def test_os_type_derived_from_user_os(kit: Any) -> None:
    dest = kit.destination(os_type=None, app_id=None, android_app_id=None)
    ev = kit.event(user={"ifa": kit.IDFA, "os": "iOS"}, vendors={"x": {"app_id": "333903271"}})
    assert kit.problems(dest, ev) == {}
    assert dest.transform(ev)["os_type"] == "IOS"


def test_invalid_os_type_option(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"os_type": "windows"}})
    assert "'IOS' or 'ANDROID'" in kit.problems(dest, ev)["vendors.x.os_type"]


def test_os_type_option_is_case_insensitive(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"os_type": "android", "app_id": "com.example.postback"}})
    assert kit.problems(dest, ev) == {}
    assert dest.transform(ev)["os_type"] == "ANDROID"


def test_android_device_with_only_an_ios_app_configured(kit: Any) -> None:
    dest = kit.destination(android_app_id=None)
    ev = kit.event(user={"ifa": kit.IDFA, "os": "android"})
    assert kit.problems(dest, ev) == {}
    skip = kit.skips(dest, ev)["vendors.x.app_id"]
    assert skip.reason == "no Android app id" and "android_app_id" in skip.fix


def test_user_os_picks_the_platform_app(kit: Any, dest: XDestination) -> None:
    ev = kit.event(user={"ifa": kit.IDFA, "os": "android"})
    assert kit.problems(dest, ev) == {}
    record = dest.transform(ev)
    assert (record["os_type"], record["app_id"]) == ("ANDROID", "com.example.postback")
    ev = kit.event(user={"ifa": kit.IDFA, "os": "ios"})
    assert dest.transform(ev)["app_id"] == "333903271"


def test_ios_app_id_wins_over_app_id_for_ios(kit: Any) -> None:
    dest = kit.destination(app_id="com.example.postback", os_type="ANDROID",
                           ios_app_id="444444444")  # fmt: skip
    ev = kit.event(user={"ifa": kit.IDFA, "os": "iPadOS"})
    assert dest.transform(ev)["app_id"] == "444444444"
    assert dest.transform(kit.event())["app_id"] == "com.example.postback"


def test_os_type_option_wins_over_user_os(kit: Any, dest: XDestination) -> None:
    ev = kit.event(user={"ifa": kit.IDFA, "os": "android"}, vendors={"x": {"os_type": "IOS"}})
    assert dest.transform(ev)["os_type"] == "IOS"


def test_missing_app_id(kit: Any) -> None:
    dest = kit.destination(app_id=None, android_app_id=None)
    assert kit.problems(dest, kit.event()) == {}
    skip = kit.skips(dest, kit.event())["vendors.x.app_id"]
    assert "app_id" in skip.fix and "vendors=" in skip.fix


def test_app_id_that_does_not_fit_the_os(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"app_id": "com.example.postback"}})
    assert "App Store id" in kit.problems(dest, ev)["vendors.x.app_id"]
    ev = kit.event(vendors={"x": {"app_id": "333903271", "os_type": "ANDROID"}},
                   user={"ifa": kit.IDFA})  # fmt: skip
    assert "package name" in kit.problems(dest, ev)["vendors.x.app_id"]


def test_app_id_option_must_be_a_string(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"app_id": ["333903271"]}})
    assert "string" in kit.problems(dest, ev)["vendors.x.app_id"]


def test_app_id_option_may_be_an_int(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"app_id": 333903271}})
    assert kit.problems(dest, ev) == {}
    assert dest.transform(ev)["app_id"] == "333903271"


# --- windows ------------------------------------------------------------------------------


def test_click_window_must_be_an_allowed_value(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"click_window": 3}})
    assert "1, 7, 14, 30" in kit.problems(dest, ev)["vendors.x.click_window"]


def test_view_through_window_must_be_an_allowed_value(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"view_through_window": 2}})
    assert "0, 1, 7, 14, 30" in kit.problems(dest, ev)["vendors.x.view_through_window"]


def test_windows_must_be_ints(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"click_window": "7", "view_through_window": True}})
    found = kit.problems(dest, ev)
    assert "vendors.x.click_window" in found
    assert "vendors.x.view_through_window" in found


def test_click_window_must_not_be_below_view_through_window(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"click_window": 7, "view_through_window": 14}})
    msg = kit.problems(dest, ev)["vendors.x.view_through_window"]
    assert "greater than or equal" in msg
    # Against the settings' default click window (14) too.
    ev = kit.event(vendors={"x": {"view_through_window": 30}})
    assert "vendors.x.view_through_window" in kit.problems(dest, ev)


def test_click_window_option_below_the_default_view_window(kit: Any) -> None:
    dest = kit.destination(click_window=7, view_through_window=7)
    ev = kit.event(vendors={"x": {"click_window": 1}})
    assert "greater than or equal" in kit.problems(dest, ev)["vendors.x.click_window"]


# --- non-X engagement and payment info ------------------------------------------------------


def test_non_twitter_engagement_type(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"non_twitter_engagement_type": "IMPRESSION"}})
    assert "'CLICK' or 'VIEW'" in kit.problems(dest, ev)["vendors.x.non_twitter_engagement_type"]


def test_non_twitter_engagement_time_format(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"non_twitter_engagement_time": "yesterday"}})
    assert "ISO 8601" in kit.problems(dest, ev)["vendors.x.non_twitter_engagement_time"]


def test_non_twitter_engagement_time_must_precede_the_conversion(
    kit: Any, dest: XDestination
) -> None:
    ev = kit.event(vendors={"x": {"non_twitter_engagement_time": "2014-05-22T03:00:00Z"}})
    assert (
        "before the conversion" in kit.problems(dest, ev)["vendors.x.non_twitter_engagement_time"]
    )


def test_non_twitter_engagement_time_accepts_datetimes_and_epoch_ms(
    kit: Any, dest: XDestination
) -> None:
    from datetime import UTC, datetime

    for when in (datetime(2014, 5, 22, 1, 0, tzinfo=UTC), 1400720400000):
        ev = kit.event(vendors={"x": {"non_twitter_engagement_time": when}})
        assert kit.problems(dest, ev) == {}
        assert dest.transform(ev)["non_twitter_engagement_time"] == "2014-05-22T01:00:00.000Z"


def test_user_payment_info_must_be_a_bool(kit: Any, dest: XDestination) -> None:
    ev = kit.event(vendors={"x": {"user_payment_info": "yes"}})
    assert "true or false" in kit.problems(dest, ev)["vendors.x.user_payment_info"]
    ev = kit.event(vendors={"x": {"user_payment_info": False}})
    assert dest.transform(ev)["user_payment_info"] == "false"


# --- value, level, items --------------------------------------------------------------------


def test_negative_value(kit: Any, dest: XDestination) -> None:
    ev = kit.event(value=-5, currency="USD")
    assert "negative" in kit.problems(dest, ev)["value"]


def test_level_must_be_a_whole_number(kit: Any, dest: XDestination) -> None:
    ev = kit.event("level_achieved", properties={"level": 2.5})
    assert "whole number" in kit.problems(dest, ev)["properties.level"]
    ev = kit.event("level_achieved", properties={"level": "7"})
    assert dest.transform(ev)["level"] == "7"


def test_number_items_must_be_a_whole_number(kit: Any, dest: XDestination) -> None:
    ev = kit.event(properties={"number_items": -1})
    assert "whole number" in kit.problems(dest, ev)["properties.number_items"]


def test_item_quantities_must_be_whole_numbers(kit: Any, dest: XDestination) -> None:
    ev = kit.event(properties={"items": [{"quantity": 1}, {"quantity": "two"}]})
    assert "whole number" in kit.problems(dest, ev)["properties.items[1].quantity"]


def test_explicit_number_items_wins_over_item_quantities(kit: Any, dest: XDestination) -> None:
    ev = kit.event(properties={"number_items": 5, "items": [{"quantity": 1}]})
    assert dest.transform(ev)["number_items"] == "5"


# --- everything at once, through track() ------------------------------------------------------


def test_every_problem_is_reported_at_once_by_track(kit: Any, tmp_path: Any) -> None:
    tracker = postback.Tracker.from_config(
        {
            "postback": {"queue": f"sqlite:///{tmp_path}/q.db", "workers": False},
            "vendors": {"x": {**kit.settings(), "base_url": "http://127.0.0.1:9"}},
        }
    )
    try:
        with pytest.raises(postback.InvalidEvent) as info:
            tracker.track(
                "purchase",
                user={"ip_address": "999.1.1.1", "os": "ios", "ifa": kit.IDFA},
                value=-1,
                currency="USD",
                properties={"level": "high"},
                vendors={"x": {"click_window": 1, "view_through_window": 7, "nope": 1}},
            )
        fields = {p.field for p in info.value.problems if p.vendor == "x"}
        assert fields == {
            "user.ip_address", "value", "properties.level",
            "vendors.x.view_through_window", "vendors.x.nope",
        }  # fmt: skip
        text = str(info.value)
        assert "x: user.ip_address" in text
    finally:
        tracker.close(timeout=0)


def test_strict_mode_makes_the_skips_problems_too(kit: Any, tmp_path: Any) -> None:
    tracker = postback.Tracker.from_config(
        {
            "postback": {"queue": f"sqlite:///{tmp_path}/q.db", "workers": False, "strict": True},
            "vendors": {"x": {**kit.settings(), "base_url": "http://127.0.0.1:9"}},
        }
    )
    try:
        with pytest.raises(postback.InvalidEvent) as info:
            tracker.track("purchase", user={"email": "a@b.co"}, value=1, currency="USD")
        [problem] = info.value.problems
        assert (problem.vendor, problem.field) == ("x", "user.ifa")
        assert "no device id" in problem.message and "user={'ifa': ...}" in problem.message
    finally:
        tracker.close(timeout=0)


def test_events_filter_naming_an_unmapped_event_is_a_config_error(kit: Any) -> None:
    with pytest.raises(postback.ConfigError) as info:
        postback.Tracker.from_config(
            {
                "postback": {"queue": "memory://"},
                "vendors": {"x": {**kit.settings(), "events": ["purchase", "subscribe"]}},
            }
        )
    assert any(
        p.path == "vendors.x.events" and "subscribe" in p.message for p in info.value.problems
    )


@pytest.mark.parametrize(
    "event_map", [None, {"sign_up": "SIGN_UP", "order": "PURCHASE", "wish": "NOT_A_TYPE"}]
)
def test_skip_without_says_what_validate_says_without_a_device_id(
    kit: Any, event_map: dict[str, str] | None
) -> None:
    # The router skips X on skip_without's word, without calling validate: the two agree.
    dest = kit.destination(event_map=event_map)
    names = {*postback.events.CANONICAL_EVENTS, *dest.event_map, "custom_thing"}
    declared = 0
    for name in sorted(names):
        said = dest.skip_without(name)
        if said is None:
            continue
        declared += 1
        field, skip = said
        assert field == "ifa"
        for user in ({"email": "a@b.co"}, {"ifa": None, "os": "ios"}, {}):
            ev = kit.event(name, user=user, value=5, currency="USD")
            found = list(dest.validate(ev))
            assert found == [skip] and found[0] is skip, name
    assert declared == len(dest._mapped_ok) > 0

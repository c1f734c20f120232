"""Every validation rule (one test each), routing and naming, and all problems at once.

A currency Whop's API does not take is a Skip (Whop cannot use the value; the other vendors
get the event); every other rule finds a Problem (the event is malformed: refused)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import httpx
import pytest

from postback import InvalidEvent, Skip, Tracker
from postback.errors import Problem
from postback.events import Event
from postback_whop import WhopDestination, WhopEmulator

from .conftest import TEST_ACCOUNT, TEST_KEY

Dest = Callable[..., WhopDestination]
Ev = Callable[..., Event]


def problems(dest: WhopDestination, event: Event) -> dict[str, str]:
    found = [f for f in dest.validate(event) if isinstance(f, Problem)]
    return {p.field: p.message for p in found}


def skips(dest: WhopDestination, event: Event) -> dict[str, Skip]:
    found = [f for f in dest.validate(event) if isinstance(f, Skip)]
    assert all(s.vendor == "whop" and s.reason and s.fix for s in found), found
    return {s.field: s for s in found}


# --- a valid event has no problems -------------------------------------------------------


def test_valid_event_has_no_problems(dest: WhopDestination, event: Ev) -> None:
    ev = event(
        "lead",
        value=10,
        currency="USD",
        user={"email": "a@b.co", "phone": "+14155550123", "birthdate": "1990-01-15", "gender": "f"},
        context={"action_source": "website"},
        properties={"plan_id": "plan_1"},
        vendors={"whop": {"product_id": "prod_1", "fingerprint_confidence": 0.9}},
    )
    assert problems(dest, ev) == {}


# --- per-event options ---------------------------------------------------------------------


def test_unknown_option(dest: WhopDestination) -> None:
    from postback.routing import option_problems

    (got,) = option_problems(dest, {"plan": "plan_1"})
    assert got.field == "vendors.whop.plan" and "unknown option for whop" in got.message
    assert "did you mean 'plan_id'" in got.message


@pytest.mark.parametrize("key", ["app_id", "app_build_id", "fingerprint", "fingerprint_confidence"])
def test_events_only_option_refused_by_conversions(make_dest: Dest, event: Ev, key: str) -> None:
    value: Any = 0.5 if key == "fingerprint_confidence" else "x"
    got = problems(make_dest(api="conversions"), event(vendors={"whop": {key: value}}))
    assert "only accepted by Whop's events API" in got[f"vendors.whop.{key}"]


@pytest.mark.parametrize("value", [1.5, -0.1, "0.5", True])
def test_fingerprint_confidence_is_a_number_0_to_1(
    dest: WhopDestination, event: Ev, value: Any
) -> None:
    got = problems(dest, event(vendors={"whop": {"fingerprint_confidence": value}}))
    assert "number from 0 to 1" in got["vendors.whop.fingerprint_confidence"]


@pytest.mark.parametrize("key", ["plan_id", "product_id", "app_id", "custom_name"])
def test_string_options_must_be_non_empty_strings(
    dest: WhopDestination, event: Ev, key: str
) -> None:
    got = problems(dest, event("purchase", vendors={"whop": {key: 5}}))
    assert "non-empty string" in got[f"vendors.whop.{key}"]


def test_custom_name_option_on_a_standard_event(dest: WhopDestination, event: Ev) -> None:
    got = problems(dest, event("lead", vendors={"whop": {"custom_name": "my_lead"}}))
    assert "only applies to custom events" in got["vendors.whop.custom_name"]


# --- event names ---------------------------------------------------------------------------


def test_custom_event_name_at_most_35_chars(dest: WhopDestination, event: Ev) -> None:
    name = "completed_the_very_long_onboarding_flow"  # 39 characters
    got = problems(dest, event(name, vendors={"whop": {}}))
    assert "at most 35 characters" in got["name"]
    assert "event_map" in got["name"]


def test_custom_name_limit_in_conversions_shape(make_dest: Dest, event: Ev) -> None:
    name = "x" * 36
    got = problems(make_dest(api="conversions"), event(name, vendors={"whop": {}}))
    assert "has 36" in got["name"]
    assert problems(make_dest(api="conversions"), event("x" * 35, vendors={"whop": {}})) == {}


def test_custom_name_limit_for_event_map_target(make_dest: Dest, event: Ev) -> None:
    dest = make_dest(event_map={"purchase": "p" * 40})
    got = problems(dest, event("purchase"))
    assert "shorter name in [vendors.whop.event_map]" in got["name"]


def test_custom_name_limit_for_option(dest: WhopDestination, event: Ev) -> None:
    got = problems(dest, event("purchase", vendors={"whop": {"custom_name": "c" * 36}}))
    assert "at most 35" in got["vendors.whop.custom_name"]


def test_empty_mapped_event_name(dest: WhopDestination, event: Ev) -> None:
    # The config loader refuses an empty name at start-up; built directly, the plugin says so.
    direct = WhopDestination(dest.settings, event_map={"purchase": " "})
    got = problems(direct, event("purchase"))
    assert "empty Whop event name" in got["name"]


# --- action source -------------------------------------------------------------------------


def test_action_source_from_context_must_be_whops(dest: WhopDestination, event: Ev) -> None:
    got = problems(dest, event(context={"action_source": "web"}))
    assert "not one of Whop's action sources" in got["context.action_source"]
    assert "website" in got["context.action_source"]


def test_action_source_option_must_be_whops(dest: WhopDestination, event: Ev) -> None:
    got = problems(dest, event(vendors={"whop": {"action_source": "store"}}))
    assert "physical_store" in got["vendors.whop.action_source"]


# --- money ---------------------------------------------------------------------------------


def test_currency_not_on_whops_events_list_is_a_skip(dest: WhopDestination, event: Ev) -> None:
    ev = event(value=5, currency="AFN")
    assert problems(dest, ev) == {}
    skip = skips(dest, ev)["currency"]
    assert skip.reason == "currency AFN not accepted" and "events API takes only" in skip.fix
    assert list(dest.validate(event(value=5, currency="AWG"))) == []  # events-only code


def test_currency_list_of_conversions_shape(make_dest: Dest, event: Ev) -> None:
    got = skips(make_dest(api="conversions"), event(value=5, currency="AWG"))
    assert "conversions API takes only" in got["currency"].fix
    assert list(make_dest(api="conversions").validate(event(value=5, currency="KZT"))) == []


# --- ids -----------------------------------------------------------------------------------


def test_event_id_fits_the_idempotency_key(dest: WhopDestination, event: Ev) -> None:
    ev = attrs.evolve(event(), event_id="e" * 256)  # make_event already refuses this
    got = problems(dest, ev)
    assert "at most 255 bytes" in got["event_id"]


@pytest.mark.parametrize("key", ["plan_id", "product_id"])
def test_plan_and_product_from_properties_are_strings(
    dest: WhopDestination, event: Ev, key: str
) -> None:
    got = problems(dest, event(properties={key: 123}))
    assert "Whop id string" in got[f"properties.{key}"]


# --- user ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["15/01/1990", "1990-02-30", "1990-1-5"])
def test_birthdate_is_yyyy_mm_dd(dest: WhopDestination, event: Ev, value: str) -> None:
    got = problems(dest, event(user={"birthdate": value}))
    assert "YYYY-MM-DD" in got["user.birthdate"]


def test_gender_is_male_or_female(dest: WhopDestination, event: Ev) -> None:
    got = problems(dest, event(user={"gender": "nonbinary"}))
    assert "only 'male' or 'female'" in got["user.gender"]
    for ok in ("male", "Female", "M", "f"):
        assert problems(dest, event(user={"gender": ok})) == {}


def test_email_must_be_an_address(dest: WhopDestination, event: Ev) -> None:
    got = problems(dest, event(user={"email": "not-an-email"}))
    assert "not an email address" in got["user.email"]
    hashed = "a" * 64  # a SHA-256 hex passes through
    assert problems(dest, event(user={"email": hashed})) == {}


def test_phone_must_parse(dest: WhopDestination, event: Ev) -> None:
    got = problems(dest, event(user={"phone": "+1 12"}))
    assert "E.164" in got["user.phone"]


def test_phone_without_country_needs_phone_region(make_dest: Dest, event: Ev) -> None:
    got = problems(make_dest(), event(user={"phone": "(415) 555-0123"}))
    assert "+country prefix" in got["user.phone"]
    dest = make_dest(phone_region="US")
    ev = event(user={"phone": "(415) 555-0123"})
    assert problems(dest, ev) == {}
    assert dest.transform(ev)["user"]["phone"] == "+14155550123"


# --- every problem at once, through track() ------------------------------------------------


def test_track_reports_every_problem(emulator: WhopEmulator) -> None:
    config = {
        "postback": {"queue": "memory://"},
        "vendors": {
            "whop": {
                "api_key": TEST_KEY,
                "account_id": TEST_ACCOUNT,
                "base_url": "http://127.0.0.1:9",
            }
        },
    }
    tracker = Tracker.from_config(config, transport=httpx.MockTransport(emulator.handle))
    try:
        with pytest.raises(InvalidEvent) as info:
            tracker.track(
                "lead",
                value=5,
                currency="AFN",
                user={"gender": "x", "birthdate": "1990", "email": "nope", "phone": "12"},
                context={"action_source": "web"},
                vendors={"whop": {"bogus": 1, "custom_name": "nope"}},
            )
        fields = {(p.vendor, p.field) for p in info.value.problems}
        assert fields == {
            ("whop", "user.gender"),
            ("whop", "user.birthdate"),
            ("whop", "user.email"),
            ("whop", "user.phone"),
            ("whop", "context.action_source"),
            ("whop", "vendors.whop.bogus"),
            ("whop", "vendors.whop.custom_name"),
        }
        assert tracker.stats()["whop"]["tracked"] == 0
    finally:
        tracker.close(timeout=1)


# --- routing and naming --------------------------------------------------------------------


def test_default_routing_is_the_standard_events(dest: WhopDestination) -> None:
    for name in (
        "lead",
        "submit_application",
        "contact",
        "sign_up",
        "schedule",
        "view_item",
        "page_view",
        "add_to_cart",
    ):
        assert dest.supports(name), name
    for name in ("purchase", "install", "login", "subscribe", "begin_checkout"):
        assert not dest.supports(name), name


def test_send_custom_events_routes_everything(make_dest: Dest) -> None:
    dest = make_dest(send_custom_events=True)
    assert dest.supports("purchase") and dest.supports("my_event")


def test_events_filter_may_name_any_event(make_dest: Dest, event: Ev) -> None:
    dest = make_dest(events=["purchase", "lead"])
    assert dest.transform(event("purchase"))["event_name"] == "purchase"


@pytest.mark.parametrize(
    ("api", "fmt", "name", "expected"),
    [
        ("events", "name", "lead", ("lead", None)),
        ("events", "name", "sign_up", ("complete_registration", None)),
        ("events", "name", "view_item", ("view_content", None)),
        ("events", "name", "purchase", ("purchase", None)),
        ("events", "custom", "purchase", ("custom", "purchase")),
        ("events", "custom", "add_to_cart", ("add_to_cart", None)),
        ("conversions", "name", "lead", ("lead", None)),
        ("conversions", "name", "sign_up", ("complete_registration", None)),
        ("conversions", "name", "page_view", ("custom", "view_content")),
        ("conversions", "name", "add_to_cart", ("custom", "add_to_cart")),
        ("conversions", "name", "purchase", ("custom", "purchase")),
    ],
)
def test_wire_names(
    make_dest: Dest, event: Ev, api: str, fmt: str, name: str, expected: tuple[str, str | None]
) -> None:
    dest = make_dest(api=api, custom_event_format=fmt)
    assert dest.wire_name(event(name)) == expected


def test_event_map_to_custom_uses_the_canonical_name(make_dest: Dest, event: Ev) -> None:
    dest = make_dest(event_map={"purchase": "custom"})
    body = dest.transform(event("purchase"))
    assert (body["event_name"], body["custom_name"]) == ("custom", "purchase")


def test_user_id_as_settings(make_dest: Dest, event: Ev) -> None:
    ev = event(user={"user_id": "app-7"})
    assert make_dest().transform(ev)["user"] == {"external_id": "app-7"}
    assert make_dest(user_id_as="user_id").transform(ev)["user"] == {"user_id": "app-7"}
    whop = event(user={"user_id": "user_abc"})
    assert make_dest().transform(whop)["user"] == {"user_id": "user_abc"}
    assert make_dest(user_id_as="external_id").transform(whop)["user"] == {
        "external_id": "user_abc"
    }


def test_options_override_properties_and_settings(make_dest: Dest, event: Ev) -> None:
    dest = make_dest(action_source="system_generated")
    body = dest.transform(
        event(properties={"plan_id": "plan_prop"}, vendors={"whop": {"plan_id": "plan_opt"}})
    )
    assert body["plan_id"] == "plan_opt"
    assert body["action_source"] == "system_generated"
    body = dest.transform(event(context={"action_source": "chat"}))
    assert body["action_source"] == "chat"


def test_events_only_fields_from_options(dest: WhopDestination, event: Ev) -> None:
    body = dest.transform(
        event(
            vendors={
                "whop": {
                    "app_id": "app_1",
                    "app_build_id": "apbu_1",
                    "fingerprint": "fp",
                    "fingerprint_confidence": 0.75,
                }
            }
        )
    )
    assert body["app_id"] == "app_1" and body["app_build_id"] == "apbu_1"
    assert body["context"] == {"fingerprint": "fp", "fingerprint_confidence": 0.75}


def test_transform_refuses_what_current_settings_refuse(make_dest: Dest, event: Ev) -> None:
    # Queued for api = 'events', replayed after switching to 'conversions'.
    ev = event(value=1, currency="AWG")
    assert make_dest().transform(ev)["currency"] == "awg"
    with pytest.raises(ValueError, match="currency"):
        make_dest(api="conversions").transform(ev)


def test_build_request_takes_one_event(dest: WhopDestination, event: Ev) -> None:
    from postback.destination import Prepared

    ev = event()
    p = Prepared(ev, dest.transform(ev))
    with pytest.raises(ValueError, match="one event per request"):
        dest.build_request([p, p])
    assert WhopDestination.max_batch_size == 1

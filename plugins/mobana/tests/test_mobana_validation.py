"""Every validation rule of the Mobana plugin, one test each, plus all problems at once.

Two kinds: a Skip (Mobana cannot use the event as given: no install id, a currency without a
rate; the other vendors still get it) and a Problem (the event is malformed: refused)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from postback import InvalidEvent, Problem, Skip, Tracker
from postback.events import Event
from postback_mobana import MobanaDestination, UnsendableEvent
from postback_mobana.destination import install_id_problem

Dest = Callable[..., MobanaDestination]
Ev = Callable[..., Event]

CANONICAL_UUID = "550e8400-e29b-41d4-a716-446655440000"
DOCS_EXAMPLE = "520e8400-c466-a554-40e0-0"  # the vendor page's own (non-canonical) example


def problems(dest: MobanaDestination, ev: Event) -> dict[str, str]:
    found = [f for f in dest.validate(ev) if isinstance(f, Problem)]
    out = {p.field: p.message for p in found}
    assert len(out) == len(found), "one problem per field expected here"
    return out


def skips(dest: MobanaDestination, ev: Event) -> dict[str, Skip]:
    found = [f for f in dest.validate(ev) if isinstance(f, Skip)]
    assert all(s.vendor == "mobana" and s.reason and s.fix for s in found), found
    return {s.field: s for s in found}


def test_a_valid_event_has_no_problem(dest: MobanaDestination, make_event_: Ev) -> None:
    ev = make_event_(value=49.99, currency="USD", vendors={"mobana": {"flow_session_id": "s-1"}})
    assert list(dest.validate(ev)) == []


# --- user.install_id -------------------------------------------------------------------------


def test_no_install_id_is_a_skip(dest: MobanaDestination, make_event_: Ev) -> None:
    ev = make_event_(user={"email": "a@b.co"})
    assert problems(dest, ev) == {}
    skip = skips(dest, ev)["user.install_id"]
    assert skip.reason == "no install id"
    assert "Mobana.getInstallId()" in skip.fix and "events = [...]" in skip.fix


def test_install_id_at_most_36_characters(dest: MobanaDestination, make_event_: Ev) -> None:
    too_long = CANONICAL_UUID + "a"  # 37 hex/dash characters
    found = problems(dest, make_event_(user={"install_id": too_long}))
    assert "37 characters" in found["user.install_id"]
    assert "at most 36" in found["user.install_id"]


def test_install_id_must_be_hex_and_dashes(dest: MobanaDestination, make_event_: Ev) -> None:
    for bad in (
        "user-42",
        "{550e8400-e29b}",
        "550e8400 e29b",
        "-550e8400",
        "550e8400-",
        "550e8400--e29b",
        "urn:uuid:550e8400",
    ):
        found = problems(dest, make_event_(user={"install_id": bad}))
        assert "hex digits in dash-separated groups" in found["user.install_id"], bad
        assert repr(bad) in found["user.install_id"]


@pytest.mark.parametrize(
    "good",
    [CANONICAL_UUID, CANONICAL_UUID.upper(), DOCS_EXAMPLE, "0123456789abcdef0123456789abcdef"],
)
def test_loose_format_accepts_uuids_and_the_docs_example(
    dest: MobanaDestination, make_event_: Ev, good: str
) -> None:
    assert problems(dest, make_event_(user={"install_id": good})) == {}


def test_uuid_format_accepts_only_canonical_uuids(make_dest: Dest, make_event_: Ev) -> None:
    strict = make_dest(install_id_format="uuid")
    assert problems(strict, make_event_(user={"install_id": CANONICAL_UUID})) == {}
    assert problems(strict, make_event_(user={"install_id": CANONICAL_UUID.upper()})) == {}
    for bad in (DOCS_EXAMPLE, "0123456789abcdef0123456789abcdef"):
        found = problems(strict, make_event_(user={"install_id": bad}))
        assert "install_id_format = 'uuid'" in found["user.install_id"]


def test_install_id_problem_helper() -> None:
    assert install_id_problem(CANONICAL_UUID) is None
    assert install_id_problem(DOCS_EXAMPLE) is None
    assert install_id_problem(DOCS_EXAMPLE, "uuid") is not None
    assert install_id_problem(None) is not None
    assert install_id_problem("x" * 500) is not None
    long_message = install_id_problem("g" * 500)
    assert long_message is not None and len(long_message) < 300  # the value is shortened


# --- currency ----------------------------------------------------------------------------------


def test_other_currency_without_rate_is_a_skip(dest: MobanaDestination, make_event_: Ev) -> None:
    ev = make_event_(value=49.99, currency="EUR")
    assert problems(dest, ev) == {}
    skip = skips(dest, ev)["currency"]
    assert skip.reason == "no rate for EUR"
    assert "no currency field" in skip.fix
    assert "app currency USD" in skip.fix
    assert "[vendors.mobana.rates] EUR" in skip.fix


def test_other_currency_with_a_rate_is_accepted(make_dest: Dest, make_event_: Ev) -> None:
    dest = make_dest(rates={"EUR": "1.08"})
    assert problems(dest, make_event_(value=49.99, currency="EUR")) == {}


def test_app_currency_is_configurable(make_dest: Dest, make_event_: Ev) -> None:
    eur = make_dest(currency="eur")
    assert eur.settings.currency == "EUR"
    assert list(eur.validate(make_event_(value=10, currency="EUR"))) == []
    assert "app currency EUR" in skips(eur, make_event_(value=10, currency="USD"))["currency"].fix


def test_transform_refuses_an_event_whose_rate_disappeared(
    make_dest: Dest, make_event_: Ev
) -> None:
    """Queued under a config with a rate, delivered under one without: never a wrong number."""
    ev = make_event_(value=10, currency="EUR")
    assert problems(make_dest(rates={"EUR": "1.1"}), ev) == {}
    with pytest.raises(UnsendableEvent, match="no currency field"):
        make_dest().transform(ev)


def test_transform_refuses_an_event_without_install_id(
    dest: MobanaDestination, make_event_: Ev
) -> None:
    with pytest.raises(UnsendableEvent, match=r"user\.install_id"):
        dest.transform(make_event_(user={"email": "a@b.co"}))


# --- event names -------------------------------------------------------------------------------


def test_event_name_defaults_to_the_canonical_name(
    dest: MobanaDestination, make_event_: Ev
) -> None:
    assert dest.transform(make_event_("tutorial_complete"))["name"] == "tutorial_complete"
    assert dest.transform(make_event_("boss_defeated"))["name"] == "boss_defeated"
    assert dest.supports("anything_custom")


def test_event_map_renames(make_dest: Dest, make_event_: Ev) -> None:
    dest = make_dest(event_map={"sign_up": "signup"})
    assert dest.transform(make_event_("sign_up"))["name"] == "signup"
    assert dest.transform(make_event_("purchase"))["name"] == "purchase"


def test_empty_mapped_name_is_refused(make_dest: Dest, make_event_: Ev) -> None:
    # The config loader refuses an empty name at start-up; built directly, the plugin says so.
    dest = MobanaDestination(make_dest().settings, event_map={"sign_up": " "})
    found = problems(dest, make_event_("sign_up"))
    assert "empty Mobana conversion name" in found["name"]
    with pytest.raises(UnsendableEvent, match="maps to no Mobana conversion name"):
        dest.transform(make_event_("sign_up"))


# --- per-event options -------------------------------------------------------------------------


def test_unknown_option_is_refused_by_the_core(dest: MobanaDestination) -> None:
    from postback.routing import option_problems

    (found,) = option_problems(dest, {"flowSessionId": "s"})
    assert found.field == "vendors.mobana.flowSessionId"
    assert "did you mean 'flow_session_id'" in found.message


@pytest.mark.parametrize("bad", ["", "   ", 42, ["s"]])
def test_flow_session_id_must_be_a_non_empty_string(
    dest: MobanaDestination, make_event_: Ev, bad: Any
) -> None:
    found = problems(dest, make_event_(vendors={"mobana": {"flow_session_id": bad}}))
    assert "startFlow()" in found["vendors.mobana.flow_session_id"]


def test_flow_session_id_is_sent(dest: MobanaDestination, make_event_: Ev) -> None:
    record = dest.transform(make_event_(vendors={"mobana": {"flow_session_id": "abc123"}}))
    assert record["flowSessionId"] == "abc123"
    assert "flowSessionId" not in dest.transform(make_event_())


def test_timestamp_is_the_event_time(dest: MobanaDestination, make_event_: Ev) -> None:
    assert dest.transform(make_event_(timestamp=1706745600000))["timestamp"] == 1706745600000


# --- every problem at once, through track() ----------------------------------------------------


@pytest.fixture
def tracker(settings: dict[str, Any]) -> Iterator[Tracker]:
    t = Tracker.from_config(
        {
            "postback": {"queue": "memory://"},
            "vendors": {"mobana": settings},
        }
    )
    yield t
    t.close(timeout=0)


def test_every_problem_is_reported_at_once(tracker: Tracker) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track(
            "lead",
            user={"install_id": "not-an-install-id!"},
            value=12.5,
            currency="GBP",
            vendors={"mobana": {"flow_session_id": 7, "colour": "red"}},
        )
    found = {(p.vendor, p.field) for p in info.value.problems}
    # (An empty mapped name is a ConfigError at start-up: tests/test_config.py.)
    assert found == {
        ("mobana", "user.install_id"),
        ("mobana", "vendors.mobana.flow_session_id"),
        ("mobana", "vendors.mobana.colour"),
    }
    assert tracker.queue.depth(["mobana"], 0)["mobana"].pending == 0  # nothing queued


def test_a_web_event_skips_mobana_without_raising(tracker: Tracker) -> None:
    event_id = tracker.track("purchase", user={"email": "a@b.co"}, value=12.5, currency="GBP")
    assert event_id
    assert tracker.queue.depth(["mobana"], 0)["mobana"].pending == 0  # Mobana left out
    assert tracker.stats()["mobana"]["skips"] == {"no install id": 1}


def test_opting_out_skips_validation(tracker: Tracker) -> None:
    """A web event without an install id can be kept from Mobana per event."""
    tracker.track("page_view", user={"email": "a@b.co"}, vendors={"mobana": False})


def test_skip_without_says_what_validate_says_without_an_install_id(
    make_dest: Callable[..., MobanaDestination], make_event_: Callable[..., Event]
) -> None:
    # The router skips Mobana on skip_without's word, without calling validate: they agree.
    dest = make_dest(event_map={"order": "order_done"})
    for name in ["purchase", "sign_up", "order", "custom_thing"]:
        said = dest.skip_without(name)
        assert said is not None and said[0] == "install_id"
        for kw in ({}, {"value": 5, "currency": "EUR"}, {"value": 5, "currency": "JPY"}):
            ev = make_event_(name, user={"email": "a@b.co"}, **kw)
            found = list(dest.validate(ev))
            assert found == [said[1]] and found[0] is said[1], (name, kw)

"""Fields vendors declare (postback.fields): accepted by track() when their plugin is installed,
unknown (saying which plugin declares them) when not; merged per host, conflicts refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import postback.testing.example
from postback import InvalidEvent, PluginError, Tracker
from postback.event_codec import dumps_event, loads_event
from postback.events import Context, User, make_event
from postback.fields import CORE_FIELDS, FieldSet
from postback.plugin import Destination, Problem, context_field, hookimpl, user_field
from postback.privacy import mask_event


def _loyalty(value: str) -> str:
    if not value.upper().startswith("L-"):
        raise ValueError(f"must start with 'L-' (e.g. 'L-1042'), got {value!r}")
    return value.upper()


@attrs.frozen
class _NoSettings:
    pass


class Loyalty(Destination):
    """A vendor that declares a user field with a validator, an int one and a context field."""

    name = "loyalty"
    settings_class = _NoSettings
    accepts_custom_events = True
    default_event_map = {"purchase": "purchase", "sign_up": "sign_up"}
    fields = (
        user_field("loyalty_id", help="The shop's loyalty card number.", validator=_loyalty),
        user_field("player_id", help="The game's numeric player id.", type=int),
        context_field("campaign_step", help="The funnel step.", identifier=False),
    )
    seen: list[Any] = []

    def validate(self, event: Any) -> list[Problem]:
        Loyalty.seen.append(event.user.get("loyalty_id"))
        return []


class LoyaltyTwin(Destination):
    """Another vendor declaring ``loyalty_id`` the same way (help text aside)."""

    name = "loyalty_twin"
    settings_class = _NoSettings
    fields = (user_field("loyalty_id", help="Same field, other words.", validator=_loyalty),)


class Rival(Destination):
    """A vendor declaring ``loyalty_id`` differently (an int)."""

    name = "rival"
    settings_class = _NoSettings
    fields = (user_field("loyalty_id", help="A number.", type=int),)


def plugin(*classes: type[Destination]) -> object:
    class _Plugin:
        @hookimpl
        def postback_register_destinations(self, register: Any) -> None:
            for cls in classes:
                register(cls)

    return _Plugin()


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    t = Tracker.from_config(
        {"postback": {"queue": "memory://", "workers": False}, "vendors": {"loyalty": {}}},
        plugins=[plugin(Loyalty)],
        load_entry_points=False,
    )
    yield t
    t.close(timeout=0)


def test_a_declared_field_reaches_the_vendor(tracker: Tracker) -> None:
    Loyalty.seen.clear()
    event, vendors = tracker.prepare(
        "purchase",
        user={"loyalty_id": " l-1042 ", "player_id": 7, "email": "A@B.co"},
        context={"campaign_step": "checkout"},
        value=1,
        currency="USD",
    )
    assert [d.name for d in vendors] == ["loyalty"]
    assert event.user.get("loyalty_id") == "L-1042"  # stripped, then the validator's form
    assert event.user.get("player_id") == "7"
    assert event.user.loyalty_id == "L-1042"  # attribute access works for declared fields
    assert event.user.email == "a@b.co"
    assert event.context.get("campaign_step") == "checkout"
    assert Loyalty.seen == ["L-1042"]
    assert tracker.track("purchase", user={"loyalty_id": "L-1"}, value=1, currency="USD")


def test_declared_fields_are_stored_like_core_ones(tracker: Tracker) -> None:
    event, _ = tracker.prepare("sign_up", user={"loyalty_id": "L-1", "user_id": "u"})
    stored = dumps_event(event)
    assert b'"user":{"loyalty_id":"L-1","user_id":"u"}' in stored or (
        b'"user":{"user_id":"u","loyalty_id":"L-1"}' in stored
    )
    back = loads_event(stored)
    assert back == event and back.user.get("loyalty_id") == "L-1"
    assert hash(back.user) == hash(event.user)
    assert "loyalty_id='L-1'" in repr(back.user)
    assert back.user != User(user_id="u")  # the declared field counts in equality


def test_a_declared_field_s_problems_are_reported_at_once(tracker: Tracker) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("sign_up", user={"loyalty_id": "1042", "player_id": "seven"})
    problems = {p.field: p.message for p in info.value.problems}
    assert problems == {
        "user.loyalty_id": "must start with 'L-' (e.g. 'L-1042'), got '1042'",
        "user.player_id": "must be a whole number, got 'seven'",
    }


def test_an_unknown_field_gets_a_did_you_mean_over_declared_fields(tracker: Tracker) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("sign_up", user={"loyalty_idd": "L-1"}, context={"campaign_stp": "x"})
    text = str(info.value)
    assert "user.loyalty_idd: unknown user field; did you mean 'loyalty_id'?" in text
    assert "context.campaign_stp: unknown context field; did you mean 'campaign_step'?" in text
    assert "loyalty_id" in text.split("known fields:")[1]


def test_without_the_plugin_a_declared_field_is_unknown() -> None:
    t = Tracker.from_config(
        {
            "postback": {"queue": "memory://", "workers": False},
            "vendors": {"example": {"api_key": "k"}},
        },
        plugins=[postback.testing.example],
        load_entry_points=False,
    )
    try:
        with pytest.raises(InvalidEvent) as info:
            t.track("sign_up", user={"telegram_user_id": "1728125519", "loyalty_id": "L-1"})
        problems = {p.field: p.message for p in info.value.problems}
        # A first-party plugin's field: which distribution declares it.
        assert problems["user.telegram_user_id"].startswith(
            "unknown user field: the postback-tonai plugin declares it, and it is not loaded "
            "(pip install postback-tonai"
        )
        # Anyone else's: as for a typo (a did-you-mean when one is close, the known fields).
        assert problems["user.loyalty_id"].startswith("unknown user field (known fields: ")
    finally:
        t.close(timeout=0)


def test_the_six_single_vendor_fields_left_the_core() -> None:
    for group, name in [
        ("user", "install_id"),
        ("user", "telegram_user_id"),
        ("user", "member_id"),
        ("context", "aleid"),
        ("context", "alart"),
        ("context", "axwrt"),
    ]:
        assert name not in CORE_FIELDS.known(group)
        with pytest.raises(InvalidEvent, match="plugin declares it"):
            make_event("sign_up", **{group: {name: "x"}})


def test_two_plugins_may_declare_one_field_when_they_agree() -> None:
    fields = FieldSet.of([Loyalty, LoyaltyTwin])
    assert fields.owners["user.loyalty_id"] == ("loyalty", "loyalty_twin")
    assert "loyalty_id" in fields.user and "loyalty_id" in fields.user_checks


def test_two_plugins_declaring_one_field_differently_is_an_error_naming_both() -> None:
    with pytest.raises(PluginError) as info:
        FieldSet.of([Loyalty, Rival])
    message = str(info.value)
    assert "user.loyalty_id is declared by 'loyalty' and by 'rival'" in message
    assert "type str, validator _loyalty vs type int" in message
    # ... and a host with both installed refuses to start, with the same message.
    with pytest.raises(PluginError, match="declared by 'loyalty' and by 'rival'"):
        Tracker.from_config(
            {"postback": {"queue": "memory://", "workers": False}},
            plugins=[plugin(Loyalty, Rival)],
            load_entry_points=False,
        )


def test_a_declaration_may_not_shadow_the_core_or_be_malformed() -> None:
    class Shadow(Destination):
        name = "shadow"
        fields = (user_field("email", help="mine"),)

    with pytest.raises(PluginError, match=r"user\.email, which is a core field"):
        FieldSet.of([Shadow])

    class Method(Destination):
        name = "method"
        fields = (context_field("get", help="a method name"),)

    with pytest.raises(PluginError, match="name of a method"):
        FieldSet.of([Method])

    class Loose(Destination):
        name = "loose"
        fields = ("loyalty_id",)  # type: ignore[assignment]

    with pytest.raises(PluginError, match=r"declare each with postback\.plugin\.user_field"):
        FieldSet.of([Loose])
    with pytest.raises(ValueError, match="lower-case Python identifier"):
        user_field("Loyalty-Id", help="x")
    with pytest.raises(ValueError, match="type is str or int"):
        user_field("n", help="x", type=float)  # type: ignore[arg-type]


def test_declared_identifiers_are_masked_when_shown() -> None:
    stored = {
        "name": "sign_up",
        "user": {"telegram_user_id": "1728125519", "loyalty_id": "L-1042", "os": "ios"},
        "context": {"aleid": "ALE-123", "utm_source": "news"},
    }
    masked = mask_event(stored)
    assert masked["user"] == {"telegram_user_id": "17•••", "loyalty_id": "L-•••", "os": "ios"}
    assert masked["context"] == {"aleid": "AL•••", "utm_source": "news"}
    # A field declared with identifier=False is shown as it is.
    stored["context"] = {"campaign_step": "checkout"}
    assert mask_event(stored)["context"] == {"campaign_step": "ch•••"}
    plain = [f.name for f in Loyalty.fields if not f.identifier]
    assert mask_event(stored, plain)["context"] == {"campaign_step": "checkout"}


def test_fields_group_objects_compare_by_the_fields_set() -> None:
    a = make_event("x", user={"email": "a@b.co"}, context={"url": "u"})
    assert a.user == User(email="a@b.co") and a.context == Context(url="u")
    assert repr(a.user) == "User(email='a@b.co')"
    assert a.user.get("phone") is None and a.user.get("never_declared") is None
    with pytest.raises(AttributeError, match="no installed plugin declares it"):
        _ = a.user.never_declared_anywhere


def test_a_validator_that_breaks_is_the_plugin_s_error_named() -> None:
    def broken(value: str) -> str:
        raise KeyError(value)

    def not_text(value: str) -> str:
        return 42  # type: ignore[return-value]

    class Buggy(Destination):
        name = "buggy"
        fields = (
            user_field("one", help="x", validator=broken),
            user_field("two", help="x", validator=not_text),
        )

    fields = FieldSet.of([Buggy])
    with pytest.raises(PluginError, match=r"validator of user\.one failed: KeyError"):
        make_event("sign_up", user={"one": "a"}, fields=fields)
    with pytest.raises(PluginError, match=r"validator of user\.two returned int"):
        make_event("sign_up", user={"two": "a"}, fields=fields)


@pytest.mark.parametrize(
    ("given", "stored"),
    [("0" * 4300 + "5", "5"), ("-" + "0" * 5000 + "42", "-42"), (str(2**63 - 1), str(2**63 - 1))],
)
def test_a_declared_whole_number_with_leading_zeros_is_read_not_raised(
    tracker: Tracker, given: str, stored: str
) -> None:
    """int() counts leading zeros against Python's 4300-digit limit: the value is read from its
    significant digits, never a ValueError out of track()."""
    from postback.event_codec import loads_event
    from postback.events import make_event
    from postback.storable import stored_form

    made = make_event("sign_up", user={"player_id": given}, fields=tracker.host.fields)
    assert loads_event(stored_form(made)).user.get("player_id") == stored


def test_a_declared_whole_number_beyond_64_bits_says_the_range(tracker: Tracker) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("sign_up", user={"player_id": str(2**63)})
    message = {p.field: p.message for p in info.value.problems}["user.player_id"]
    assert "-9223372036854775808 to 9223372036854775807" in message


def test_erase_matches_declared_identifiers_and_the_core_ids(tracker: Tracker) -> None:
    # Was: erase() took user_id, email and phone only: a person known to a vendor by a field
    # its plugin declares (Ton AI's telegram_user_id) could not be erased.
    for user in ({"loyalty_id": "L-1042"}, {"player_id": "0042"}, {"ifa": "AB-12"}, {}):
        tracker.track("purchase", user={"user_id": "u", **user}, value=1, currency="USD")
    # Read as track() reads them: stripped, then the declaration's type and validator.
    assert tracker.erase(user={"loyalty_id": " l-1042 "}).pending == 1
    assert tracker.erase(user={"player_id": 42}).pending == 1
    assert tracker.erase(user={"ifa": "AB-12"}).pending == 1
    with pytest.raises(ValueError, match=r"loyalty_id.*must start with 'L-'"):
        tracker.erase(user={"loyalty_id": "1042"})
    with pytest.raises(ValueError, match="loyalty_id"):  # did you mean
        tracker.erase(user={"loyalty_idd": "L-1"})
    with pytest.raises(ValueError, match="identif"):  # masked, not a way to find a person
        tracker.erase(user={"city": "Paris"})
    with pytest.raises(ValueError, match="email="):
        tracker.erase(user={"email": "a@b.co"})
    with pytest.raises(ValueError, match="at least one of"):
        tracker.erase(user={"loyalty_id": " "})

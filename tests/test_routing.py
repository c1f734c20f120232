"""Routing: each event goes to the vendors that can use it; the others skip it, visibly.

Two vendors on one tracker: ``example`` (needs a user id; a web event is fine) and ``devices``
(an app-only vendor that needs ``user.ifa``, like X). A web purchase goes to ``example`` and
skips ``devices``: counted, logged once, reported to ``postback_on_delivery``, explained.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import postback.testing.example as example
from postback import (
    Event,
    InvalidEvent,
    PluginError,
    Problem,
    Skip,
    Skipped,
    Tracker,
    hookimpl,
)
from postback.delivery.memory import MemoryQueue
from postback.delivery.sqlite import SQLiteQueue
from postback.destination import Destination, Emulator, Outcome
from postback.sandbox import Sandbox
from postback.testing.example import ExampleDestination, ExampleEmulator

NO_DEVICE = Skip("no device id", "user.ifa", "pass user={'ifa': ...}", "devices")
WEB_PURCHASE: dict[str, Any] = {
    "user": {"email": "ada@example.com", "ip_address": "203.0.113.7"},
    "value": 49.99,
    "currency": "USD",
    "context": {"url": "https://shop.example.com/done"},
}


class DevicesDestination(ExampleDestination):
    """An app-only vendor: it cannot use an event without a device id."""

    name = "devices"
    accepts_custom_events = False

    def validate(self, event: Event) -> Iterable[Problem | Skip]:
        if not event.user.ifa:
            return [NO_DEVICE]
        return list(super().validate(event))


class DevicesEmulator(ExampleEmulator):
    vendor = "devices"


class DevicesPlugin:
    @hookimpl
    def postback_register_destinations(self, register: Callable[[type[Destination]], None]) -> None:
        register(DevicesDestination)

    @hookimpl
    def postback_register_emulators(self, register: Callable[[type[Emulator]], None]) -> None:
        register(DevicesEmulator)


class Outcomes:
    """An app's ``postback_on_delivery`` listener."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Outcome | Skipped, int, float]] = []

    @hookimpl
    def postback_on_delivery(
        self, vendor: str, event: Event, outcome: Outcome | Skipped, attempt: int, latency: float
    ) -> None:
        self.seen.append((vendor, event.event_id, outcome, attempt, latency))


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox([ExampleEmulator(), DevicesEmulator()]) as sandbox:
        yield sandbox


@pytest.fixture
def make(tmp_path: Path, box: Sandbox) -> Iterator[Callable[..., Tracker]]:
    made: list[Tracker] = []

    def build(
        *,
        core: dict[str, Any] | None = None,
        plugins: Iterable[object] = (),
        example_table: dict[str, Any] | None = None,
        devices_table: dict[str, Any] | None = None,
    ) -> Tracker:
        config = {
            "postback": {"queue": f"sqlite:///{tmp_path}/queue.db", **(core or {})},
            "vendors": {
                "example": {**box.vendor_config("example"), "linger": 0, **(example_table or {})},
                "devices": {**box.vendor_config("devices"), "linger": 0, **(devices_table or {})},
            },
        }
        tracker = Tracker.from_config(
            config, plugins=[example, DevicesPlugin(), *plugins], load_entry_points=False
        )
        made.append(tracker)
        return tracker

    yield build
    for tracker in made:
        tracker.close(timeout=1)


# --- the vendors that can use an event get it ---------------------------------------------------


def test_a_web_purchase_goes_to_the_vendor_that_can_use_it(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make()
    event_id = tracker.track("purchase", **WEB_PURCHASE)
    report = tracker.flush(timeout=10)
    assert report.complete
    assert [e["event_id"] for e in box.received("example")] == [event_id]
    assert box.received("devices") == []
    stats = tracker.stats()
    assert stats["devices"]["skips"] == {"no device id": 1}
    assert stats["devices"]["skipped"] == 1 and stats["devices"]["tracked"] == 0
    assert stats["example"]["skips"] == {} and stats["example"]["tracked"] == 1


def test_an_app_event_goes_to_both(make: Callable[..., Tracker], box: Sandbox) -> None:
    tracker = make()
    user = {**WEB_PURCHASE["user"], "ifa": "EA7583CD-A667-48BC-B806-42ECB2B48606"}
    tracker.track("purchase", **{**WEB_PURCHASE, "user": user})
    assert tracker.flush(timeout=10).complete
    assert len(box.received("example")) == len(box.received("devices")) == 1
    assert tracker.stats()["devices"]["skips"] == {}


def test_a_skip_is_logged_once_at_warning_with_the_fix_then_at_debug(
    make: Callable[..., Tracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make()
    with caplog.at_level(logging.DEBUG, logger="postback"):
        tracker.track("purchase", **WEB_PURCHASE)
        tracker.track("purchase", **WEB_PURCHASE)
    skips = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert [r.levelname for r in skips] == ["WARNING", "DEBUG"]
    warning = skips[0].getMessage()
    assert "devices skipped 'purchase'" in warning
    assert "user.ifa: no device id" in warning and "Fix: pass user={'ifa': ...}" in warning
    assert tracker.stats()["devices"]["skips"] == {"no device id": 2}


def test_a_skip_reaches_on_delivery_as_skipped_with_attempt_0(
    make: Callable[..., Tracker],
) -> None:
    listener = Outcomes()
    tracker = make(plugins=[listener])
    event_id = tracker.track("purchase", **WEB_PURCHASE)
    assert ("devices", event_id, Skipped("no device id"), 0, 0.0) in listener.seen
    tracker.flush(timeout=10)
    delivered = [s for s in listener.seen if s[0] == "example"]
    assert [(s[1], type(s[2]).__name__, s[3]) for s in delivered] == [(event_id, "Delivered", 1)]


# --- strict mode, malformed events, on_invalid = "log" -------------------------------------------


def test_strict_mode_raises_for_a_skip_naming_vendor_and_field(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make(core={"strict": True})
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", **WEB_PURCHASE)
    [problem] = info.value.problems
    assert (problem.vendor, problem.field) == ("devices", "user.ifa")
    assert "no device id (strict mode); pass user={'ifa': ...}" in problem.message
    tracker.flush(timeout=1)
    assert box.received("example") == []  # nothing queued for anyone


def test_a_malformed_event_raises_listing_every_problem(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make()
    with pytest.raises(InvalidEvent) as info:
        tracker.track(
            "purchase",
            **{**WEB_PURCHASE, "user": {"email": "no-at-sign"}},
            vendors={"example": {"colour": "red"}, "nope": {}},
        )
    found = {(p.vendor, p.field) for p in info.value.problems}
    assert found == {
        (None, "vendors.nope"),
        ("example", "user.email"),
        ("example", "vendors.example.colour"),
    }
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", user={"email": "a@b.co"}, value="lots", currency="usd$")
    assert {p.field for p in info.value.problems} == {"value", "currency"}
    tracker.flush(timeout=1)
    assert box.received("example") == []


def test_on_invalid_log_keeps_the_event_for_the_others(
    make: Callable[..., Tracker], box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make(core={"on_invalid": "log"})
    with caplog.at_level(logging.WARNING, logger="postback"):
        kept = tracker.track("purchase", **WEB_PURCHASE, vendors={"nope": {"x": 1}})
        dropped = tracker.track("purchase", user={"email": "a@b.co"}, value=1, currency="usd$")
    assert "ignored vendors option vendors.nope" in caplog.text
    assert "dropped invalid event 'purchase'" in caplog.text
    assert dropped == ""  # no event_id was given, and no event was made
    tracker.flush(timeout=10)
    assert [e["event_id"] for e in box.received("example")] == [kept]


def test_strict_with_on_invalid_log_logs_the_skip_and_leaves_the_vendor_out(
    make: Callable[..., Tracker], box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make(core={"strict": True, "on_invalid": "log"})
    with caplog.at_level(logging.WARNING, logger="postback"):
        event_id = tracker.track("purchase", **WEB_PURCHASE)
    assert "not sent to devices" in caplog.text
    tracker.flush(timeout=10)
    assert [e["event_id"] for e in box.received("example")] == [event_id]


# --- names no vendor routes --------------------------------------------------------------------


def test_a_name_no_vendor_routes_warns_once_with_a_did_you_mean(
    make: Callable[..., Tracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make(example_table={"events": ["purchase", "sign_up"]})
    with caplog.at_level(logging.WARNING, logger="postback"):
        tracker.track("purchace", user={"email": "a@b.co"})
        tracker.track("purchace", user={"email": "a@b.co"})
    warnings = [r.getMessage() for r in caplog.records if "routes events named" in r.getMessage()]
    assert len(warnings) == 1
    assert "'purchace'" in warnings[0] and "Did you mean 'purchase'?" in warnings[0]


def test_a_misspelled_name_a_vendor_takes_anyway_warns_too(
    make: Callable[..., Tracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make()  # example takes any name (custom events)
    with caplog.at_level(logging.WARNING, logger="postback"):
        tracker.track("purchace", user={"email": "a@b.co"})
        tracker.track("trial_started", user={"email": "a@b.co"})  # a custom name: no warning
    assert "Did you mean 'purchase'?" in caplog.text and "go only to example" in caplog.text
    assert "trial_started" not in caplog.text


# --- explain -----------------------------------------------------------------------------------


def test_explain_says_per_vendor_what_would_happen_and_does_nothing(
    make: Callable[..., Tracker], box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    listener = Outcomes()
    tracker = make(plugins=[listener])
    with caplog.at_level(logging.DEBUG, logger="postback"):
        route = tracker.explain("purchase", **WEB_PURCHASE)
    assert route.error is None and route.queued == ("example",)
    assert route.vendors["example"].status == "routed"
    skipped = route.vendors["devices"]
    assert skipped.status == "skipped" and skipped.reason == "user.ifa: no device id"
    assert skipped.skips == (NO_DEVICE,)
    assert "track() would queue it for example" in str(route)
    assert "devices: skipped: user.ifa: no device id" in str(route)
    assert "(fix: pass user={'ifa': ...})" in str(route)
    # Nothing queued, counted, logged or reported.
    assert tracker.stats()["devices"]["skips"] == {} and listener.seen == []
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
    tracker.flush(timeout=1)
    assert box.received("example") == []


def test_explain_refused_not_routed_and_strict(make: Callable[..., Tracker]) -> None:
    tracker = make(devices_table={"events": ["sign_up"]})
    route = tracker.explain("purchase", user={"email": "bad"}, vendors={"example": {"c": 1}})
    assert route.vendors["example"].status == "refused"
    assert {p.field for p in route.vendors["example"].problems} == {
        "user.email",
        "vendors.example.c",
    }
    assert route.vendors["devices"].status == "not routed"
    assert "not in [vendors.devices] events" in route.vendors["devices"].reason
    assert route.error is not None and route.queued == ()
    assert "track() would raise InvalidEvent (2 problem(s))" in str(route)

    opted_out = tracker.explain("sign_up", user={"email": "a@b.co"}, vendors={"devices": False})
    assert "opted out" in opted_out.vendors["devices"].reason

    strict = make(core={"strict": True})
    route = strict.explain("purchase", **WEB_PURCHASE)
    assert route.vendors["devices"].status == "skipped"
    assert route.error is not None
    assert [(p.vendor, p.field) for p in route.error.problems] == [("devices", "user.ifa")]


def test_explain_a_malformed_event(make: Callable[..., Tracker]) -> None:
    route = make().explain("purchase", value="lots", currency="USD")
    assert route.event is None and [p.field for p in route.problems] == ["value"]
    assert {r.status for r in route.vendors.values()} == {"refused"}
    assert route.error is not None


def test_explain_properties_that_are_not_json(make: Callable[..., Tracker]) -> None:
    route = make().explain("sign_up", user={"email": "a@b.co"}, properties={"when": object()})
    assert route.error is not None and [p.field for p in route.problems] == ["properties.when"]


def test_prepare_refuses_what_track_would_even_with_on_invalid_log(
    make: Callable[..., Tracker],
) -> None:
    tracker = make(core={"on_invalid": "log", "strict": True})
    with pytest.raises(InvalidEvent) as info:
        tracker.prepare("purchase", **WEB_PURCHASE)
    assert [(p.vendor, p.field) for p in info.value.problems] == [("devices", "user.ifa")]


def test_explain_a_disabled_vendor(make: Callable[..., Tracker]) -> None:
    route = make(devices_table={"enabled": False}).explain("purchase", **WEB_PURCHASE)
    assert route.vendors["devices"].status == "not routed"
    assert "disabled" in route.vendors["devices"].reason
    assert route.queued == ("example",)


# --- third-party plugins -----------------------------------------------------------------------


def test_a_plugin_can_skip_a_vendor_without_knowing_its_rules(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    class NoConsentNoExample:
        @hookimpl
        def postback_validate(self, event: Event, destination: Destination) -> list[Skip]:
            if destination.name == "example" and event.context.action_source == "email":
                return [Skip("no consent", "context.action_source", "ask for consent first")]
            return []

    tracker = make(plugins=[NoConsentNoExample()])
    user = {**WEB_PURCHASE["user"], "ifa": "EA7583CD-A667-48BC-B806-42ECB2B48606"}
    tracker.track(
        "purchase", **{**WEB_PURCHASE, "user": user, "context": {"action_source": "email"}}
    )
    tracker.flush(timeout=10)
    assert box.received("example") == [] and len(box.received("devices")) == 1
    assert tracker.stats()["example"]["skips"] == {"no consent": 1}  # the core set the vendor


def test_a_plugin_that_returns_something_else_is_named(make: Callable[..., Tracker]) -> None:
    class Broken:
        @hookimpl
        def postback_validate(self, event: Event, destination: Destination) -> list[str]:
            return ["oops"]

    tracker = make(plugins=[Broken()])
    with pytest.raises(PluginError, match=r"neither a postback\.Problem"):
        tracker.track("purchase", **WEB_PURCHASE)


@pytest.mark.parametrize("through", ["destination", "hook"])
def test_a_validate_that_raises_is_the_plugin_s_error_named(
    make: Callable[..., Tracker], monkeypatch: pytest.MonkeyPatch, through: str
) -> None:
    """A plugin's validate (the destination's, a generator, or a postback_validate hook)
    raising is a PluginError naming the vendor and the step, from track() and explain(), as a
    validate returning something else is; not the plugin's bare KeyError."""

    def broken(*args: Any, **kwargs: Any) -> Iterator[Skip]:
        raise KeyError("ifa")
        yield  # a generator, as the scaffold's validate is

    class Hook:
        @hookimpl
        def postback_validate(self, event: Event, destination: Destination) -> list[Skip]:
            if destination.name == "example":
                raise KeyError("ifa")
            return []

    if through == "destination":
        monkeypatch.setattr(ExampleDestination, "validate", broken)
        tracker = make()
    else:
        tracker = make(plugins=[Hook()])
    pattern = r"'example' failed in validate: KeyError: 'ifa'"
    with pytest.raises(PluginError, match=pattern) as info:
        tracker.track("purchase", **WEB_PURCHASE)
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(PluginError, match=pattern):
        tracker.explain("purchase", **WEB_PURCHASE)


@pytest.mark.parametrize("reason", ["", "  \t"])
def test_a_skip_without_a_reason_is_refused_where_it_is_built(reason: str) -> None:
    with pytest.raises(ValueError, match=r"the reason must not be empty.*Skip\('no device id'"):
        Skip(reason, "user.ifa", "pass user={'ifa': ...}")


def test_a_skip_whose_reason_is_not_text_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Skip\(reason=None\): the reason must be a str"):
        Skip(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("through", ["destination", "hook"])
def test_a_validate_yielding_a_skip_without_a_reason_is_the_plugin_s_error_named(
    make: Callable[..., Tracker], monkeypatch: pytest.MonkeyPatch, through: str
) -> None:
    # Was: Skip("") was taken: the event skipped the vendor, counted and logged under an empty
    # reason, and the plugin's author saw nothing wrong.
    def blank(*args: Any, **kwargs: Any) -> Iterator[Skip]:
        yield Skip("", "user.ifa")

    class Hook:
        @hookimpl
        def postback_validate(self, event: Event, destination: Destination) -> list[Skip]:
            return [Skip(" ")] if destination.name == "example" else []

    if through == "destination":
        monkeypatch.setattr(ExampleDestination, "validate", blank)
        tracker = make()
    else:
        tracker = make(plugins=[Hook()])
    pattern = r"'example' failed in validate: ValueError: Skip\(reason='\s*'\): the reason must"
    with pytest.raises(PluginError, match=pattern):
        tracker.track("purchase", **WEB_PURCHASE)
    with pytest.raises(PluginError, match=pattern):
        tracker.explain("purchase", **WEB_PURCHASE)
    assert tracker.stats()["example"]["skips"] == {}  # nothing counted


# --- counts that other processes can read ------------------------------------------------------


def test_skip_counts_reach_the_sqlite_queue_in_the_background(
    make: Callable[..., Tracker], tmp_path: Path
) -> None:
    tracker = make()
    for _ in range(3):
        tracker.track("purchase", **WEB_PURCHASE)
    reader = SQLiteQueue(tmp_path / "queue.db")  # what `postback queue stats` opens
    try:
        deadline = time.monotonic() + 15
        while reader.skip_counts() != {"devices": {"no device id": 3}}:
            assert time.monotonic() < deadline, reader.skip_counts()
            time.sleep(0.05)
        tracker.track("purchase", **WEB_PURCHASE)
        tracker.close(timeout=1)  # writes what is left
        assert reader.skip_counts() == {"devices": {"no device id": 4}}
    finally:
        reader.close()


def test_skip_counts_add_up_across_trackers(make: Callable[..., Tracker], tmp_path: Path) -> None:
    first, second = make(), make()
    first.track("purchase", **WEB_PURCHASE)
    second.track("purchase", **WEB_PURCHASE)
    second.track("purchase", user={"email": "a@b.co", "ifa": "x"})  # both: no value
    first.close(timeout=0)
    second.close(timeout=0)
    reader = SQLiteQueue(tmp_path / "queue.db")
    try:
        assert reader.skip_counts() == {
            "devices": {"no device id": 2, "purchase without value": 1},
            "example": {"purchase without value": 1},
        }
    finally:
        reader.close()


def test_the_memory_queue_keeps_skip_counts_in_the_process() -> None:
    queue = MemoryQueue()
    queue.add_skips({("x", "no device id"): 2})
    queue.add_skips({("x", "no device id"): 1, ("mobana", "no install id"): 1})
    assert queue.skip_counts() == {"x": {"no device id": 3}, "mobana": {"no install id": 1}}


def test_skips_are_logged_once_per_vendor_and_reason_whatever_they_come_with(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The skip bookkeeping shares one tuple per combination of skips; a vendor's first skip
    is still logged at WARNING once, whether it comes alone or with another vendor's, and
    every event is counted."""
    from postback.destination import Skip
    from postback.events import make_event
    from postback.skips import SkipLedger

    queue = MemoryQueue()
    skips = SkipLedger(queue)
    a = Skip("no install id", "user.install_id", "pass it", "mobana")
    b = Skip("no device id", "user.ifa", "pass it", "x")
    event = make_event("purchase")
    with caplog.at_level(logging.DEBUG, logger="postback"):
        for combination in ([a], [a, b], [a, b], [b], [a]):
            skips.record(combination, event)
    levels = [(r.levelname, r.getMessage().split(" ")[0]) for r in caplog.records]
    assert levels == [
        ("WARNING", "mobana"),
        ("DEBUG", "mobana"),
        ("WARNING", "x"),
        ("DEBUG", "mobana"),
        ("DEBUG", "x"),
        ("DEBUG", "x"),
        ("DEBUG", "mobana"),
    ]
    assert skips.totals() == {"mobana": {"no install id": 4}, "x": {"no device id": 3}}
    skips.close()
    assert queue.skip_counts() == {"mobana": {"no install id": 4}, "x": {"no device id": 3}}


def test_skips_made_anew_for_each_event_are_counted_and_logged_once() -> None:
    """A plugin may build its Skip for every event rather than once: each is counted, the
    first logged at WARNING only, and what the bookkeeping keeps of them stays bounded."""
    from postback.destination import Skip
    from postback.events import make_event
    from postback.skips import _MAX_COMBOS, SkipLedger

    skips = SkipLedger(MemoryQueue())
    event = make_event("purchase")
    kept = []
    try:
        for _ in range(_MAX_COMBOS + 50):
            fresh = Skip("no install id", "user.install_id", "pass it", "mobana")
            kept.append(fresh)  # alive, so that no two share an id
            skips.record([fresh], event)
        assert skips.totals() == {"mobana": {"no install id": _MAX_COMBOS + 50}}
        assert len(skips._by_ids) <= _MAX_COMBOS and len(skips._combos) == 1
        assert skips._warned == {("mobana", "no install id")}
        reused = kept[-1]  # a Skip handed out again is found by identity once more
        skips.record([reused], event)
        assert tuple(map(id, [reused])) in skips._by_ids
    finally:
        skips.close()


def test_a_plugin_skip_without_its_vendor_is_stamped_once_and_reused(
    make: Callable[..., Tracker],
) -> None:
    """A Skip built once by a plugin without ``vendor`` (as the scaffold writes it) gets one
    stamped copy, the same for every event: no copy per track()."""
    from postback.destination import Skip

    router = make().router
    built_once = Skip("no device id", "user.ifa", "pass it")
    first, again = router._stamped(built_once, "devices"), router._stamped(built_once, "devices")
    assert first is again and first.vendor == "devices" and built_once.vendor is None
    assert router._stamped(built_once, "example").vendor == "example"
    named = Skip("no device id", vendor="devices")
    assert router._stamped(named, "devices") is named


# --- a vendor that says which user field it skips without (Destination.skip_without) -----------


def test_a_skip_a_vendor_declares_is_decided_without_validate_and_accounted_the_same(
    make: Callable[..., Tracker], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    validate = DevicesDestination.validate

    def counting(self: DevicesDestination, event: Event) -> Iterable[Problem | Skip]:
        calls.append(event.event_id)
        return validate(self, event)

    plain = Skip("no device id", "user.ifa", "pass user={'ifa': ...}")  # the core stamps it
    monkeypatch.setattr(DevicesDestination, "validate", counting)
    monkeypatch.setattr(DevicesDestination, "skip_without", lambda self, name: ("ifa", plain))
    listener = Outcomes()
    tracker = make(plugins=[listener])
    with caplog.at_level(logging.DEBUG, logger="postback"):
        first = tracker.track("purchase", **WEB_PURCHASE)
        second = tracker.track("purchase", **WEB_PURCHASE)
    assert calls == []  # decided from the missing field alone
    assert tracker.stats()["devices"]["skips"] == {"no device id": 2}
    skips = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert [r.levelname for r in skips] == ["WARNING", "DEBUG"]
    assert "user.ifa: no device id" in skips[0].getMessage()
    assert [s[:4] for s in listener.seen if s[0] == "devices"] == [
        ("devices", first, Skipped("no device id"), 0),
        ("devices", second, Skipped("no device id"), 0),
    ]
    assert tracker.status(first).vendors["devices"].state == "skipped"
    # explain() still asks validate, and says the same.
    route = tracker.explain("purchase", **WEB_PURCHASE)
    assert route.vendors["devices"].status == "skipped" and len(calls) == 1
    # With the field, or with per-event options, validate decides.
    user = {**WEB_PURCHASE["user"], "ifa": "EA7583CD-A667-48BC-B806-42ECB2B48606"}
    tracker.track("purchase", **{**WEB_PURCHASE, "user": user})
    assert len(calls) == 2
    tracker.track("purchase", **WEB_PURCHASE, vendors={"devices": True})
    assert len(calls) == 3 and tracker.stats()["devices"]["skips"] == {"no device id": 3}


def test_a_declared_skip_is_a_problem_when_strict_as_before(
    make: Callable[..., Tracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DevicesDestination, "skip_without", lambda self, name: ("ifa", NO_DEVICE))
    tracker = make(core={"strict": True})
    with pytest.raises(InvalidEvent, match="no device id"):
        tracker.track("purchase", **WEB_PURCHASE)


@pytest.mark.parametrize("said", [RuntimeError("broken"), ("ifa", "not a Skip"), "ifa"])
def test_a_skip_without_that_breaks_or_says_nonsense_leaves_it_to_validate(
    make: Callable[..., Tracker], monkeypatch: pytest.MonkeyPatch, said: object
) -> None:
    def skip_without(self: DevicesDestination, name: str) -> object:
        if isinstance(said, Exception):
            raise said
        return said

    monkeypatch.setattr(DevicesDestination, "skip_without", skip_without)
    tracker = make()
    tracker.track("purchase", **WEB_PURCHASE)
    assert tracker.stats()["devices"]["skips"] == {"no device id": 1}


def test_a_skip_recorded_while_the_writer_starts_a_turn_is_written_and_so_are_later_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer thread lowers its flag and clears its event before each write: a skip
    recorded in between (here, deterministically, inside ``clear()``) is in that write, and
    the skips after it wake the thread again. With the flag lowered first, that skip raised
    it again and the event was then cleared: later skips reached the queue only at close()."""
    import threading

    import postback.skips as skips_module
    from postback.destination import Skip
    from postback.events import make_event
    from postback.skips import SkipLedger

    monkeypatch.setattr(skips_module, "WRITE_EVERY", 0.01)
    queue = MemoryQueue()
    skips = SkipLedger(queue)
    skip = Skip("no device id", "user.ifa", "pass it", "x")
    event = make_event("purchase")

    class InBetween(threading.Event):
        landed = False

        def clear(self) -> None:
            if not InBetween.landed:  # a track() on another thread, just then
                InBetween.landed = True
                skips.record([skip], event)
            super().clear()

    skips._dirty = InBetween()

    def written(n: int) -> bool:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if queue.skip_counts().get("x", {}).get("no device id") == n:
                return True
            time.sleep(0.01)
        return False

    try:
        skips.record([skip], event)
        assert written(2) and InBetween.landed
        skips.record([skip], event)
        assert written(3)  # the thread was woken again
    finally:
        skips.close()

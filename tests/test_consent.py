"""Consent before enqueue: a vendor whose purposes the user did not grant never gets the event.

Two vendors of the sandbox, over loopback HTTP, on a real SQLite queue: ``example`` and
``devices`` (both need ``ads`` unless the config says otherwise). What reaches the emulators,
what the stats count and what ``explain()`` says are checked; nothing is mocked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import postback.testing.example as example
from postback import ConfigError, Destination, Event, InvalidEvent, Tracker, hookimpl
from postback.sandbox import Sandbox
from postback.testing.example import ExampleEmulator
from tests.test_routing import DevicesEmulator, DevicesPlugin

APP_PURCHASE: dict[str, Any] = {
    "user": {"email": "ada@example.com", "ifa": "EA7583CD-A667-48BC-B806-42ECB2B48606"},
    "value": 49.99,
    "currency": "USD",
}


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
        consent: dict[str, Any] | None = None,
        plugins: Iterable[object] = (),
        devices_table: dict[str, Any] | None = None,
    ) -> Tracker:
        config: dict[str, Any] = {
            "postback": {"queue": f"sqlite:///{tmp_path}/queue.db", **(core or {})},
            "vendors": {
                "example": {**box.vendor_config("example"), "linger": 0},
                "devices": {**box.vendor_config("devices"), "linger": 0, **(devices_table or {})},
            },
        }
        if consent is not None:
            config["consent"] = consent
        tracker = Tracker.from_config(
            config, plugins=[example, DevicesPlugin(), *plugins], load_entry_points=False
        )
        made.append(tracker)
        return tracker

    yield build
    for tracker in made:
        tracker.close(timeout=1)


def received(box: Sandbox, vendor: str) -> list[str]:
    return [e["event_id"] for e in box.received(vendor)]


def test_an_ads_opt_out_reaches_no_ads_vendor_and_is_counted(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make()
    kept = tracker.track("purchase", **APP_PURCHASE)
    tracker.track("purchase", **APP_PURCHASE, consent={"ads": False})
    assert tracker.flush(timeout=10).complete
    assert received(box, "example") == received(box, "devices") == [kept]
    stats = tracker.stats()
    for vendor in ("example", "devices"):
        assert stats[vendor]["skips"] == {"consent": 1}
        assert stats[vendor]["tracked"] == 1, "not even queued for it"


def test_a_vendor_needing_only_measurement_still_gets_an_ads_opt_out(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make(devices_table={"purposes": ["measurement"]})
    event_id = tracker.track("purchase", **APP_PURCHASE, consent={"ads": False})
    assert tracker.flush(timeout=10).complete
    assert received(box, "devices") == [event_id] and received(box, "example") == []
    second = tracker.track("purchase", **APP_PURCHASE, consent={"measurement": False})
    assert tracker.flush(timeout=10).complete
    assert received(box, "example") == [second] and received(box, "devices") == [event_id]


def test_a_vendor_configured_with_no_purposes_needs_no_consent(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    # purposes = [] is said on purpose: the vendor needs no purpose (it was taken as unset, and
    # the plugin's ['ads'] applied).
    tracker = make(devices_table={"purposes": []})
    event_id = tracker.track(
        "purchase", **APP_PURCHASE, consent={"ads": False, "measurement": False}
    )
    assert tracker.flush(timeout=10).complete
    assert received(box, "devices") == [event_id] and received(box, "example") == []


def test_policy_require_sends_nothing_without_a_grant(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make(consent={"policy": "require"})
    tracker.track("purchase", **APP_PURCHASE)
    tracker.track("purchase", **APP_PURCHASE, consent={"measurement": True})
    granted = tracker.track("purchase", **APP_PURCHASE, consent={"ads": True})
    assert tracker.flush(timeout=10).complete
    assert received(box, "example") == received(box, "devices") == [granted]
    assert tracker.stats()["example"]["skips"] == {"consent": 2}


def test_consent_is_validated_and_declared_purposes_are_known(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make(consent={"purposes": ["analytics"]}, devices_table={"purposes": ["analytics"]})
    with pytest.raises(InvalidEvent) as caught:
        tracker.track("purchase", **APP_PURCHASE, consent={"adz": False, "ads": "no"})
    fields = sorted(p.field for p in caught.value.problems)
    assert fields == ["consent.ads", "consent.adz"]
    event_id = tracker.track("purchase", **APP_PURCHASE, consent={"analytics": True, "ads": False})
    assert tracker.flush(timeout=10).complete
    assert received(box, "devices") == [event_id] and received(box, "example") == []


def test_a_vendor_purpose_nobody_declared_is_a_config_error(make: Callable[..., Tracker]) -> None:
    with pytest.raises(ConfigError) as caught:
        make(devices_table={"purposes": ["analytics"]}, consent={"policy": "maybe"})
    paths = {p.path for p in caught.value.problems}
    assert paths == {"vendors.devices.purposes", "consent.policy"}
    assert "declare more in [consent] purposes" in str(caught.value)


def test_a_consent_skip_is_not_an_error_even_when_strict_and_is_explained(
    make: Callable[..., Tracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make(core={"strict": True})
    with caplog.at_level(logging.DEBUG, logger="postback"):
        tracker.track("purchase", **APP_PURCHASE, consent={"ads": False})
        tracker.track("purchase", **APP_PURCHASE, consent={"ads": False})
    levels = [r.levelname for r in caplog.records if "consent.ads: consent" in r.getMessage()]
    assert levels == ["INFO", "INFO", "DEBUG", "DEBUG"], "once per vendor at INFO, no WARNING"
    explanation = tracker.explain("purchase", **APP_PURCHASE, consent={"ads": False})
    assert explanation.error is None and explanation.queued == ()
    route = explanation.vendors["devices"]
    assert route.status == "skipped" and route.reason == "consent.ads: not granted"
    assert "consent.ads: consent" in str(explanation)
    assert tracker.explain("purchase", **APP_PURCHASE).queued == ("example", "devices")


class Cmp:
    """A consent-management integration: the user opted out of ``devices`` only."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Mapping[str, bool] | None]] = []

    @hookimpl
    def postback_consent(
        self, event: Event, destination: Destination, consent: Mapping[str, bool] | None
    ) -> bool | None:
        self.asked.append((destination.name, consent))
        return destination.name != "devices"


def test_a_consent_plugin_decides_per_vendor_but_never_overrides_an_opt_out(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    cmp = Cmp()
    tracker = make(plugins=[cmp], consent={"policy": "require"})
    sent = tracker.track("purchase", **APP_PURCHASE)  # require, but the CMP grants example
    tracker.track("purchase", **APP_PURCHASE, consent={"ads": False})
    assert tracker.flush(timeout=10).complete
    assert received(box, "example") == [sent] and received(box, "devices") == []
    assert ("example", None) in cmp.asked
    assert all(c is None for _, c in cmp.asked), "not asked when the app said no"
    assert tracker.stats()["devices"]["skips"] == {"consent": 2}
    assert tracker.explain("purchase", **APP_PURCHASE).vendors["devices"].reason == (
        "consent: a postback_consent plugin said no"
    )


class BrokenCmp:
    @hookimpl
    def postback_consent(
        self, event: Event, destination: Destination, consent: Mapping[str, bool] | None
    ) -> bool | None:
        raise RuntimeError("the CMP is unreachable")


def test_a_failing_consent_plugin_counts_as_no(
    make: Callable[..., Tracker], box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make(plugins=[BrokenCmp()])
    with caplog.at_level(logging.ERROR, logger="postback"):
        tracker.track("purchase", **APP_PURCHASE, consent={"ads": True})
    assert tracker.flush(timeout=10).complete
    assert received(box, "example") == received(box, "devices") == []
    assert "postback_consent hook failed" in caplog.text


def test_the_seed_vendors_declare_ads() -> None:
    from postback.plugins import PluginHost

    host = PluginHost()
    for name in ("mobana", "x", "whop", "tonai", "applovin"):
        assert host.destinations[name].purposes == ("ads",), name


def test_a_consent_skip_reaches_on_delivery_as_skipped(make: Callable[..., Tracker]) -> None:
    from postback import Skipped
    from tests.test_routing import Outcomes

    outcomes = Outcomes()
    tracker = make(plugins=[outcomes])
    event_id = tracker.track("purchase", **APP_PURCHASE, consent={"ads": False})
    seen = sorted((v, e, o, a) for v, e, o, a, _ in outcomes.seen)
    assert seen == [
        ("devices", event_id, Skipped("consent"), 0),
        ("example", event_id, Skipped("consent"), 0),
    ]


class _ListKeyed(Mapping[Any, Any]):
    """A mapping whose keys are lists (unhashable): a Mapping all the same."""

    def __init__(self, items: list[tuple[Any, Any]]) -> None:
        self._items = items

    def __getitem__(self, key: Any) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        return iter([k for k, _ in self._items])

    def __len__(self) -> int:
        return len(self._items)


def test_an_unhashable_consent_key_is_an_invalid_event(make: Callable[..., Tracker]) -> None:
    # Was: TypeError (unhashable type: 'list') out of track().
    tracker = make()
    with pytest.raises(InvalidEvent) as caught:
        tracker.track("purchase", **APP_PURCHASE, consent=_ListKeyed([(["ads"], False)]))
    # A mapping with such a key cannot be read as a dict: refused as user= and context= are.
    [problem] = caught.value.problems
    assert problem.field == "consent"
    assert "unhashable type: 'list'" in problem.message and "pass a dict" in problem.message
    assert tracker.explain("purchase", **APP_PURCHASE, consent=_ListKeyed([([], 1)])).error


class _Undecidable:
    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array is ambiguous")


class AmbiguousCmp:
    @hookimpl
    def postback_consent(
        self, event: Event, destination: Destination, consent: Mapping[str, bool] | None
    ) -> Any:
        return _Undecidable()  # a numpy array, say


def test_a_consent_plugin_answer_without_a_truth_value_counts_as_no(
    make: Callable[..., Tracker], box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    # Was: bool() of the answer ran outside the guard: ValueError out of track().
    tracker = make(plugins=[AmbiguousCmp()])
    with caplog.at_level(logging.ERROR, logger="postback"):
        tracker.track("purchase", **APP_PURCHASE)
    assert tracker.flush(timeout=10).complete
    assert received(box, "example") == received(box, "devices") == []
    assert "postback_consent hook failed" in caplog.text


@pytest.mark.parametrize(
    ("core", "fields"),
    [
        # strict: devices' skip (no device id) refuses the event.
        ({"strict": True}, {"user": {"email": "ada@example.com"}}),
        # a per-event option for a vendor that is not configured refuses the event.
        ({}, {**APP_PURCHASE, "vendors": {"nope": {}}}),
    ],
)
def test_a_refused_event_leaves_no_consent_skip_counted(
    make: Callable[..., Tracker], core: dict[str, Any], fields: dict[str, Any]
) -> None:
    from tests.test_routing import Outcomes

    outcomes = Outcomes()
    tracker = make(core=core, plugins=[outcomes], devices_table={"purposes": ["measurement"]})
    with pytest.raises(InvalidEvent):
        tracker.track("purchase", **fields, consent={"ads": False}, event_id="refused-1")
    assert outcomes.seen == []
    stats = tracker.stats()
    assert stats["example"]["skips"] == {} and stats["example"]["skipped"] == 0
    assert stats["devices"]["skips"] == {}
    assert tracker.status("refused-1").vendors == {}
    # The same event, valid, counts its consent skip once.
    tracker.track("purchase", **APP_PURCHASE, consent={"ads": False})
    assert tracker.stats()["example"]["skips"] == {"consent": 1}

"""Delivery over real loopback HTTP: the tracker (plugin found through its entry point) talks
to the X emulator served by ``postback.sandbox.Sandbox``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import postback
from postback import hookimpl
from postback.sandbox import Sandbox
from postback_x import XEmulator
from postback_x.emulator import DEMO_IFA_NONE, DEMO_IFA_TPN, DEMO_IFA_X_CLICK, DEMO_IFA_X_VIEW

FAST_RETRY = {"initial_backoff": 0.01, "max_backoff": 0.05}


class Attributions:
    """An app's in-process plugin that stores what X attributed."""

    def __init__(self) -> None:
        self.seen: list[tuple[postback.Attribution, postback.Event]] = []

    @hookimpl
    def postback_on_attribution(
        self, attribution: postback.Attribution, event: postback.Event
    ) -> None:
        self.seen.append((attribution, event))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox([XEmulator()]).start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def emulator(sandbox: Sandbox) -> XEmulator:
    emu = sandbox.emulators["x"]
    assert isinstance(emu, XEmulator)
    return emu


@pytest.fixture
def make_tracker(
    sandbox: Sandbox, tmp_path: Any
) -> Iterator[Callable[..., tuple[postback.Tracker, Attributions]]]:
    made: list[postback.Tracker] = []

    def make(**overrides: Any) -> tuple[postback.Tracker, Attributions]:
        listener = Attributions()
        vendor = {**sandbox.vendor_config("x"), "retry": FAST_RETRY, **overrides}
        tracker = postback.Tracker.from_config(
            {"postback": {"queue": f"sqlite:///{tmp_path}/q{len(made)}.db"},
             "vendors": {"x": vendor}},
            plugins=[listener],
        )  # fmt: skip
        made.append(tracker)
        return tracker, listener

    yield make
    for tracker in made:
        tracker.close(timeout=1)


def test_events_are_delivered_and_attribution_reaches_the_app(
    make_tracker: Any, emulator: XEmulator
) -> None:
    tracker, listener = make_tracker()
    ids = {
        "purchase": tracker.track("purchase", user={"ifa": DEMO_IFA_X_CLICK, "os": "ios"},
                                  value=49.99, currency="USD", event_id="order-1042-purchase"),
        "install": tracker.track("install", user={"ifa": DEMO_IFA_NONE}),
        "sign_up": tracker.track("sign_up", user={"ifa": DEMO_IFA_TPN}),
        "view_item": tracker.track("view_item", user={"ifa": DEMO_IFA_X_VIEW},
                                   vendors={"x": {"click_window": 30, "view_through_window": 7}}),
        "app_update": tracker.track("app_update", user={"ifa": DEMO_IFA_NONE.upper()}),
    }  # fmt: skip
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["x"].delivered == 5
    assert report["x"].dead == 0 and report["x"].pending == 0

    by_name = {r["name"]: r for r in emulator.received}
    assert set(by_name) == {"PURCHASE", "INSTALL", "SIGN_UP", "CONTENT_VIEW", "UPDATE"}
    assert by_name["PURCHASE"]["price_micro"] == "49990000"
    assert by_name["PURCHASE"]["price_currency"] == "USD"
    assert by_name["CONTENT_VIEW"]["click_window"] == "30"
    assert all(r["event_id"] is None for r in emulator.received)

    got = {event.event_id: a for a, event in listener.seen}
    assert set(got) == {ids["purchase"], ids["sign_up"], ids["view_item"]}
    assert got["order-1042-purchase"].network == "x"
    assert got["order-1042-purchase"].creative_id == "1143463556537760000"
    assert got["order-1042-purchase"].ad_group_id == "3x44d"
    assert got[ids["sign_up"]].network == "tpn"
    assert got[ids["view_item"]].engagement_type == "VIEW"
    assert tracker.stats()["x"]["attributed"] == 3


def test_transient_503_is_retried_then_delivered(
    make_tracker: Any, sandbox: Sandbox, emulator: XEmulator
) -> None:
    tracker, _ = make_tracker()
    sandbox.set_fault("x", status=503, count=2)
    tracker.track("purchase", user={"ifa": DEMO_IFA_NONE}, value=1, currency="EUR")
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["x"].delivered == 1
    assert report["x"].retried == 2
    assert len(emulator.received) == 1


def test_a_200_without_the_envelope_is_delivered_once_never_resent(
    make_tracker: Any, sandbox: Sandbox, emulator: XEmulator
) -> None:
    tracker, _ = make_tracker()
    sandbox.set_fault("x", status=200, body="<html>captive portal</html>", count=1)
    tracker.track("install", user={"ifa": DEMO_IFA_NONE})
    report = tracker.flush(timeout=10)
    assert report.complete and report["x"].delivered == 1 and report["x"].retried == 0
    assert tracker.stats()["x"]["requests"] == 1 and emulator.received == []


def test_a_locked_account_holds_only_its_app_and_other_apps_keep_flowing(
    make_tracker: Any, sandbox: Sandbox, emulator: XEmulator
) -> None:
    tracker, _ = make_tracker(concurrency=1)  # one request at a time: the count is exact
    locked = [
        tracker.track(
            "install", user={"ifa": DEMO_IFA_NONE}, vendors={"x": {"app_id": "403000403"}}
        )
        for _ in range(3)
    ]
    flowing = [tracker.track("install", user={"ifa": DEMO_IFA_NONE}) for _ in range(4)]
    report = tracker.flush(timeout=2)
    assert report["x"].delivered == 4 and report["x"].dead == 0
    assert report["x"].pending == 3  # held, not dropped, not counted as attempts
    assert "app 403000403" in (report["x"].halted or "")  # still said while the app is held
    assert len(emulator.received) == len(flowing)
    assert {r["app_id"] for r in emulator.received} != {"403000403"}
    # One refused request for the locked app; its other events were held without being sent.
    assert tracker.stats()["x"]["requests"] == 5
    assert tracker.queue.dead_letters("x") == []
    assert len(locked) == 3


def test_refused_credentials_halt_the_lane_and_keep_events(
    make_tracker: Any, emulator: XEmulator
) -> None:
    tracker, _ = make_tracker(consumer_secret="wrong-consumer-secret")
    tracker.track("purchase", user={"ifa": DEMO_IFA_X_CLICK}, value=5, currency="USD")
    tracker.track("install", user={"ifa": DEMO_IFA_NONE})
    report = tracker.flush(timeout=1)
    assert not report.complete
    assert report["x"].pending == 2
    assert report["x"].dead == 0
    halted = tracker.stats()["x"]["halted"]
    assert halted and "401" in halted and "UNAUTHORIZED_ACCESS" in halted
    assert tracker.queue.dead_letters("x") == []
    assert emulator.received == []


def test_permanent_refusal_goes_to_the_dead_letters_with_x_reason(
    make_tracker: Any, emulator: XEmulator
) -> None:
    tracker, _ = make_tracker()
    bad = tracker.track("install", user={"ifa": DEMO_IFA_NONE},
                        vendors={"x": {"app_id": "987654321"}})  # fmt: skip
    tracker.track("install", user={"ifa": DEMO_IFA_NONE})
    report = tracker.flush(timeout=10)
    assert report.complete
    assert (report["x"].delivered, report["x"].dead) == (1, 1)
    (letter,) = tracker.queue.dead_letters("x")
    assert letter.event_id == bad
    assert "MACT_APP_NOT_FOUND" in letter.reason and "404" in letter.reason
    assert len(emulator.received) == 1


def test_rate_limit_headers_and_429_are_honoured(make_tracker: Any, emulator: XEmulator) -> None:
    emulator.rate_limit = 3
    emulator.rate_window = 1.0
    tracker, _ = make_tracker(concurrency=1)
    for _ in range(5):
        tracker.track("install", user={"ifa": DEMO_IFA_NONE})
    report = tracker.flush(timeout=15)
    assert report.complete
    assert report["x"].delivered == 5 and report["x"].dead == 0
    assert len(emulator.received) == 5

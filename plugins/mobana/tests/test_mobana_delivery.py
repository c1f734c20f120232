"""Delivery over real loopback HTTP against the sandbox's Mobana emulation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postback import Tracker
from postback.sandbox import Sandbox
from postback_mobana import MobanaEmulator
from postback_mobana.emulator import DEMO_APP_KEY

Config = Callable[..., dict[str, Any]]
IDS = [f"550e8400-e29b-41d4-a716-44665544000{i}" for i in range(10)]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox([MobanaEmulator()]).start()
    yield box
    box.stop()


@pytest.fixture
def open_tracker() -> Iterator[Callable[[dict[str, Any]], Tracker]]:
    made: list[Tracker] = []

    def make(config: dict[str, Any]) -> Tracker:
        tracker = Tracker.from_config(config)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close(timeout=0)


def test_events_are_delivered(
    sandbox: Sandbox, tracker_config: Config, open_tracker: Callable[[dict[str, Any]], Tracker]
) -> None:
    tracker = open_tracker(
        tracker_config(sandbox.vendor_config("mobana"), event_map={"sign_up": "signup"})
    )
    tracker.track(
        "sign_up",
        user={"install_id": IDS[0]},
        timestamp=1706745600000,
        vendors={"mobana": {"flow_session_id": "abc123-session-id"}},
    )
    tracker.track(
        "purchase",
        user={"install_id": IDS[0]},
        value=49.99,
        currency="USD",
        timestamp="2026-11-24T10:00:00.123Z",
    )
    tracker.track(
        "purchase",
        user={"install_id": IDS[1]},
        value=49.99,
        currency="EUR",
        timestamp=1751653800000,
    )
    tracker.track("level_up", user={"install_id": IDS[2]}, timestamp=1751653800001)
    report = tracker.flush(timeout=10)

    assert report.complete
    assert report["mobana"].delivered == 4
    assert report["mobana"].dead == 0
    received = sorted(sandbox.received("mobana"), key=lambda r: r["timestamp"])
    assert [
        (r["name"], r["install_id"], r["value"], r["flow_session_id"], r["timestamp"])
        for r in received
    ] == [
        ("signup", IDS[0], None, "abc123-session-id", 1706745600000),
        ("purchase", IDS[1], 53.99, None, 1751653800000),  # 49.99 EUR at the demo rate 1.08
        ("level_up", IDS[2], None, None, 1751653800001),
        ("purchase", IDS[0], 49.99, None, 1795514400123),
    ]
    assert [r["configured"] for r in received] == [True, True, False, True]
    assert all(r["event_id"] is None for r in received)
    stats = tracker.stats()["mobana"]
    assert stats["delivered"] == 4 and stats["halted"] is None and stats["dead_letters"] == 0


def test_503_is_retried_then_delivered(
    sandbox: Sandbox, tracker_config: Config, open_tracker: Callable[[dict[str, Any]], Tracker]
) -> None:
    tracker = open_tracker(tracker_config(sandbox.vendor_config("mobana")))
    sandbox.set_fault("mobana", status=503, count=2)
    tracker.track("purchase", user={"install_id": IDS[3]}, value=5, currency="USD")
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["mobana"].delivered == 1
    assert report["mobana"].retried == 2
    assert [r["install_id"] for r in sandbox.received("mobana")] == [IDS[3]]


def test_a_backfilled_event_survives_a_transient_failure(
    sandbox: Sandbox, tracker_config: Config, open_tracker: Callable[[dict[str, Any]], Tracker]
) -> None:
    """An offline event from three days ago, tracked now: a 503 does not dead-letter it."""
    tracker = open_tracker(tracker_config({**sandbox.vendor_config("mobana")}))
    three_days_ago = int(time.time() * 1000) - 3 * 24 * 3_600_000
    sandbox.set_fault("mobana", status=503, count=1)
    tracker.track(
        "purchase", user={"install_id": IDS[0]}, value=5, currency="USD", timestamp=three_days_ago
    )
    report = tracker.flush(timeout=10)
    assert report.complete and report["mobana"].delivered == 1 and report["mobana"].retried == 1
    assert sandbox.received("mobana")[0]["timestamp"] == three_days_ago


def test_max_age_counts_from_queueing_so_an_old_backfill_is_retried(
    sandbox: Sandbox, tracker_config: Config, open_tracker: Callable[[dict[str, Any]], Tracker]
) -> None:
    """An event from 30 days ago (older than max_age, 7 days) tracked now: retried after a 503,
    as the README says, because max_age counts from when it was queued."""
    tracker = open_tracker(tracker_config({**sandbox.vendor_config("mobana")}))
    thirty_days_ago = int(time.time() * 1000) - 30 * 24 * 3_600_000
    sandbox.set_fault("mobana", status=503, count=1)
    tracker.track(
        "purchase", user={"install_id": IDS[1]}, value=5, currency="USD", timestamp=thirty_days_ago
    )
    report = tracker.flush(timeout=10)
    assert report.complete and report["mobana"].delivered == 1 and report["mobana"].dead == 0
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "from when the event was **queued**" in readme


def test_garbage_2xx_is_delivered_once_never_resent(
    sandbox: Sandbox, tracker_config: Config, open_tracker: Callable[[dict[str, Any]], Tracker]
) -> None:
    tracker = open_tracker(tracker_config(sandbox.vendor_config("mobana")))
    sandbox.set_fault("mobana", status=200, body="<html>captive portal</html>", count=1)
    tracker.track("purchase", user={"install_id": IDS[4]}, value=5, currency="USD")
    report = tracker.flush(timeout=10)
    assert report.complete and report["mobana"].delivered == 1 and report["mobana"].retried == 0
    assert tracker.stats()["mobana"]["requests"] == 1 and sandbox.received("mobana") == []


def test_timeout_is_retried(
    sandbox: Sandbox, tracker_config: Config, open_tracker: Callable[[dict[str, Any]], Tracker]
) -> None:
    tracker = open_tracker(tracker_config(sandbox.vendor_config("mobana"), timeout=0.2))
    sandbox.set_fault("mobana", hang=0.6, count=1)
    tracker.track("purchase", user={"install_id": IDS[5]}, value=5, currency="USD")
    report = tracker.flush(timeout=10)
    assert report.complete and report["mobana"].delivered == 1 and report["mobana"].retried >= 1


def test_bad_key_halts_without_dropping(
    sandbox: Sandbox,
    tracker_config: Config,
    open_tracker: Callable[[dict[str, Any]], Tracker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = {**sandbox.vendor_config("mobana"), "app_key": "wrong-key-for-this-app"}
    tracker = open_tracker(tracker_config(table))
    with caplog.at_level("DEBUG"):
        tracker.track("purchase", user={"install_id": IDS[6]}, value=5, currency="USD")
        tracker.track("sign_up", user={"install_id": IDS[6]})
        report = tracker.flush(timeout=1)
    assert not report.complete
    assert report["mobana"].pending == 2
    assert report["mobana"].dead == 0
    stats = tracker.stats()["mobana"]
    assert stats["halted"] is not None and "refused the app key" in stats["halted"]
    assert stats["dead_letters"] == 0
    assert tracker.queue.dead_letters("mobana") == []
    assert sandbox.received("mobana") == []
    assert "wrong-key-for-this-app" not in caplog.text
    assert DEMO_APP_KEY not in caplog.text


def test_permanent_refusal_goes_to_dead_letters(
    sandbox: Sandbox, tracker_config: Config, open_tracker: Callable[[dict[str, Any]], Tracker]
) -> None:
    tracker = open_tracker(tracker_config(sandbox.vendor_config("mobana")))
    bad = "00000000-0000-0000-0000-000000000400"  # the emulator answers 400 for it
    tracker.track(
        "purchase", user={"install_id": bad}, value=5, currency="USD", event_id="order-1-purchase"
    )
    tracker.track("purchase", user={"install_id": IDS[7]}, value=6, currency="USD")
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["mobana"].delivered == 1 and report["mobana"].dead == 1
    [letter] = tracker.queue.dead_letters("mobana")
    assert letter.event_id == "order-1-purchase"
    assert "HTTP 400" in letter.reason
    assert "emulated 400" in letter.reason  # Mobana's own message
    assert letter.attempts == 1


def test_unconfirmed_failures_at_most_once(
    sandbox: Sandbox, tracker_config: Config, open_tracker: Callable[[dict[str, Any]], Tracker]
) -> None:
    tracker = open_tracker(tracker_config(sandbox.vendor_config("mobana"), retry_unconfirmed=False))
    sandbox.set_fault("mobana", status=500, count=1)
    tracker.track("purchase", user={"install_id": IDS[8]}, value=5, currency="USD")
    report = tracker.flush(timeout=10)
    assert report.complete and report["mobana"].dead == 1 and report["mobana"].retried == 0
    [letter] = tracker.queue.dead_letters("mobana")
    assert "retry_unconfirmed = false" in letter.reason


def test_event_that_became_unsendable_is_dead_lettered(
    sandbox: Sandbox, tracker_config: Config, tmp_path: Any
) -> None:
    """Tracked with a EUR rate, delivered after the rate was removed: dead letter, no guess."""
    table = sandbox.vendor_config("mobana")
    first = Tracker.from_config(
        {
            **tracker_config(table),
            "postback": {"queue": f"sqlite:///{tmp_path}/q.db", "workers": False},
        }
    )
    first.track("purchase", user={"install_id": IDS[9]}, value=5, currency="EUR")
    first.close(timeout=0)
    second = Tracker.from_config(tracker_config({**table, "rates": {}}))
    try:
        report = second.flush(timeout=10)
        assert report["mobana"].dead == 1
        [letter] = second.queue.dead_letters("mobana")
        assert "no currency field" in letter.reason
        assert sandbox.received("mobana") == []
    finally:
        second.close(timeout=0)

"""Checks the privacy tests run against every backend (SQLite file, memory, Redis server)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from postback import Tracker
from postback.delivery import engine
from postback.sandbox import Sandbox


def make_dead_letters(tracker: Tracker, count: int) -> None:
    """``count`` dead letters: the example vendor refuses a negative value for good."""
    for i in range(count):
        tracker.track(
            "sign_up",
            user={"email": f"dead{i}@example.com", "phone": "+14155550123", "user_id": f"u-{i}"},
            value=-1,
            currency="USD",
            event_id=f"dead-{i}",
        )
    tracker.flush(timeout=10)
    deadline = time.monotonic() + 10
    while len(tracker.queue.dead_letters()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(tracker.queue.dead_letters()) == count


def check_retention(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deliverer's housekeeping keeps dead letters younger than ``dead_letter_retention``
    and deletes older ones (the clock is moved forward rather than waited for)."""
    assert tracker.engine.dead_letter_retention == 3600.0
    make_dead_letters(tracker, 2)
    tracker.engine._expire_dead_letters()
    assert len(tracker.queue.dead_letters()) == 2  # an hour has not passed
    later = time.time() + 3601
    monkeypatch.setattr(engine.time, "time", lambda: later)
    tracker.engine._expire_dead_letters()  # within a minute of the last run: not yet
    assert len(tracker.queue.dead_letters()) == 2
    tracker.engine._expired_at = float("-inf")
    tracker.engine._expire_dead_letters()
    assert tracker.queue.dead_letters() == []
    assert tracker.queue.depth(["example"], int(later * 1000))["example"].dead == 0


ERASE_RETRY = {"initial_backoff": 0.01, "max_backoff": 0.05, "max_attempts": 100_000}


def _purchase(tracker: Tracker, who: dict[str, str], event_id: str) -> None:
    tracker.track("purchase", user=who, value=10, currency="USD", event_id=event_id)


def check_erase(tracker: Tracker, sandbox: Sandbox) -> None:
    """Two people's events wait while the vendor answers 503; one person is erased; when the
    vendor is back only the other's events (and the erased person's later ones) arrive."""
    alice = {"email": " Alice@Example.com", "phone": "+1 (415) 555-0100", "user_id": "alice"}
    bob = {"email": "bob@example.com", "phone": "+14155550199", "user_id": "bob"}
    # A dead letter of Alice's, refused for good before the outage.
    tracker.track("sign_up", user=alice, value=-1, currency="USD", event_id="alice-dead")
    tracker.flush(timeout=10)
    wait(lambda: len(tracker.queue.dead_letters()) == 1, "alice's dead letter")
    sandbox.set_fault("example", status=503, count=10**6)
    for i in range(3):
        _purchase(tracker, alice, f"alice-{i}")
        _purchase(tracker, bob, f"bob-{i}")
    wait(lambda: (sandbox.faults["example"].count or 0) < 10**6 - 2, "refused attempts")

    # Erased by the email as typed differently, normalised as track() stores it.
    report = tracker.erase(email="alice@EXAMPLE.com ")
    assert report.dead_letters == 1
    assert report.pending + (report.in_flight or 0) == 3, report
    assert tracker.queue.dead_letters() == []
    _purchase(tracker, alice, "alice-after")  # tracked after the erase: new data, delivered

    sandbox.clear_faults()
    wanted = {"bob-0", "bob-1", "bob-2", "alice-after"}
    tracker.flush(timeout=10)
    wait(lambda: {r["event_id"] for r in sandbox.received("example")} >= wanted, "delivery")
    assert sorted(r["event_id"] for r in sandbox.received("example")) == sorted(wanted)
    assert tracker.queue.depth(["example"], int(time.time() * 1000))["example"].pending == 0


def wait(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def check_second_erase(tracker: Tracker) -> None:
    """Erasing a person twice before the deliverer has dropped their events: the second
    report counts them as ``already_erased``, not as ``pending`` again; an event tracked
    between the two erases is the second's own (``tracker`` delivers nothing: no workers)."""
    who = {"email": "carol@example.com", "user_id": "carol"}
    for i in range(2):
        _purchase(tracker, who, f"carol-{i}")
    _purchase(tracker, {"user_id": "dave"}, "dave-0")
    first = tracker.erase(email="carol@example.com")
    assert (first.pending, first.already_erased) == (2, 0), first
    second = tracker.erase(email="carol@example.com")
    assert (second.pending, second.already_erased, second.total) == (0, 2, 0), second
    _purchase(tracker, who, "carol-after")  # new data: the third erase's own
    third = tracker.erase(user_id="carol")  # another identifier of hers: those still count
    assert (third.pending, third.already_erased) == (1, 2), third

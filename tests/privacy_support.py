"""Checks the privacy tests run against every backend (SQLite file, memory, Redis server)."""

from __future__ import annotations

import time

import pytest

from postback import Tracker
from postback.delivery import engine


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

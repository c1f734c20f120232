"""Fixtures for the dashboard's tests: a tracker on a real SQLite queue delivering to the example
vendor's sandbox, its dashboard, and dead letters made by the sandbox refusing events."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from postback import Tracker
from postback.dashboard import Dashboard, Recorder
from postback.sandbox import Sandbox
from tests.dashboard.support import PERSON, Pages, wait_for


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def tracker(make_tracker: Callable[..., Tracker], recorder: Recorder) -> Tracker:
    # A failed attempt waits a minute for its retry, so tests see events waiting.
    slow_retry = {"initial_backoff": 60, "max_backoff": 60, "max_attempts": 5}
    return make_tracker(plugins=[recorder], core={"workers": True}, vendor={"retry": slow_retry})


@pytest.fixture
def dashboard(tracker: Tracker, recorder: Recorder) -> Dashboard:
    return Dashboard(tracker, recorder=recorder)


@pytest.fixture
def pages(dashboard: Dashboard) -> Pages:
    return Pages(dashboard)


@pytest.fixture
def dead_letter(tracker: Tracker, sandbox: Sandbox) -> Callable[[str], int]:
    """Track an event the sandbox refuses for good; return its dead letter's id."""

    def make(event_id: str) -> int:
        sandbox.set_fault("example", status=422, count=1)
        tracker.track("purchase", user=PERSON, value=9.5, currency="USD", event_id=event_id)
        tracker.flush(5)
        rows = wait_for(
            lambda: [d for d in tracker.queue.dead_letters() if d.event_id == event_id],
            f"a dead letter for {event_id}",
        )
        return int(rows[0].id)

    return make

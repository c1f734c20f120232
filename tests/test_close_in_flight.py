"""``close()`` while a request is in flight: a vendor that would count a repeat twice is not
sent it again at the next start.

A request abandoned by ``close()`` (its timeout passed) stays queued, and the next start sends
it again. For a vendor that recognises a repeat, or that is configured for at least once (the
default ``retry_unconfirmed = true``), that is the promise. For one configured for at most
once, ``close()`` lets the requests already written end, within the vendor's request timeout,
so that their outcome is recorded (docs/explanation/guarantees.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import postback.testing.example as example
from postback import Tracker
from postback.delivery import timing
from postback.errors import QueueError
from postback.plugin import Outcome, Rejected
from postback.sandbox import Sandbox
from postback.testing.example import ExampleDestination

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]  # 16 s: not repeated on 3.13


class OnceDestination(ExampleDestination):
    """The example vendor, at most once: a request left without an answer is not retried."""

    name = "once"

    def unconfirmed(
        self, reason: str, status: int | None = None, after: float | None = None
    ) -> Outcome:
        return Rejected(f"{reason}; not retried (at most once)", status)


class OncePlugin:
    @staticmethod
    @example.hookimpl
    def postback_register_destinations(register: Callable[[type], None]) -> None:
        register(OnceDestination)


def _tracker(tmp_path: Path, sandbox: Sandbox, vendor: str, workers: Any) -> Tracker:
    return Tracker.from_config(
        {
            "postback": {"queue": f"sqlite:///{tmp_path}/q.db", "workers": workers},
            "vendors": {vendor: {**sandbox.vendor_config("example"), "linger": 0.01}},
        },
        plugins=[example, OncePlugin],
        load_entry_points=False,
    )


def _close_while_in_flight(t: Tracker, sandbox: Sandbox, latency: float = 3.0) -> float:
    """Track one event, wait until the sandbox holds its request (``latency`` seconds),
    close: how long close() took."""
    sandbox.set_fault("example", latency=latency, count=1)
    t.track("sign_up", user={"email": "a@x.co"}, event_id="one")
    deadline = time.monotonic() + 30
    while sandbox.faults["example"].count != 0:  # taken when the request arrives
        assert time.monotonic() < deadline, "the request never reached the sandbox"
        time.sleep(0.02)
    started = time.monotonic()
    t.close(timeout=0.2)
    return time.monotonic() - started


@pytest.mark.parametrize("workers", [True, "process"])
def test_close_lets_an_at_most_once_vendors_request_end_and_never_sends_it_again(
    tmp_path: Path, sandbox: Sandbox, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tracking process waits for its delivery child's last reply this long beyond the
    # close: shorter than the request left in flight, so it must wait for the request too.
    monkeypatch.setattr(timing, "STOP_REPLY_GRACE", 0.5)
    took = _close_while_in_flight(_tracker(tmp_path, sandbox, "once", workers), sandbox, 4.0)
    assert took < 8.0  # the request's 4 s, well within the vendor's 10 s timeout
    assert [r["event_id"] for r in sandbox.received("example")] == ["one"]
    again = _tracker(tmp_path, sandbox, "once", workers)
    try:
        report = again.flush(timeout=10)
        assert report.complete and report["once"].delivered == 0
        time.sleep(0.3)
        assert [r["event_id"] for r in sandbox.received("example")] == ["one"]
    finally:
        again.close(timeout=5)


def test_the_outcome_waited_for_is_recorded_through_a_queue_hiccup(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """While close() waits for an at-most-once request, the queue refuses the outcome twice
    (a Redis blip, a busy SQLite file): it is retried, not given up because the engine is
    stopping, and the event is not sent again."""
    t = _tracker(tmp_path, sandbox, "once", True)
    settle = t.engine.queue.settle
    refused: list[int] = []

    def hiccup(*args: Any, **kwargs: Any) -> Any:
        if t.engine.stopping.is_set() and len(refused) < 2:
            refused.append(1)
            raise QueueError("the queue is busy (injected)")
        return settle(*args, **kwargs)

    t.engine.queue.settle = hiccup  # type: ignore[method-assign]
    _close_while_in_flight(t, sandbox, 3.0)
    assert len(refused) == 2
    again = _tracker(tmp_path, sandbox, "once", True)
    try:
        assert again.flush(timeout=10).complete
        time.sleep(0.3)
        assert [r["event_id"] for r in sandbox.received("example")] == ["one"]
    finally:
        again.close(timeout=5)


def test_a_second_close_waits_for_the_first(tmp_path: Path, sandbox: Sandbox) -> None:
    """The exit hook (or another thread) closing a tracker that a daemon thread is closing
    waits for that close, so the interpreter does not end it halfway through its wait."""
    t = _tracker(tmp_path, sandbox, "once", True)
    ended: list[float] = []

    def close_first() -> None:
        _close_while_in_flight(t, sandbox, 3.0)
        ended.append(time.monotonic())

    first = threading.Thread(target=close_first, daemon=True)
    first.start()
    deadline = time.monotonic() + 30
    while not t.closed:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert t.close(timeout=5) is None
    returned = time.monotonic()
    first.join(10)
    assert ended and ended[0] <= returned
    assert [r["event_id"] for r in sandbox.received("example")] == ["one"]


def test_close_does_not_wait_for_a_vendor_that_takes_a_repeat(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """The example vendor is at least once (a repeat may count twice, as documented): its
    abandoned request is sent again at the next start, and close() keeps to its timeout."""
    took = _close_while_in_flight(_tracker(tmp_path, sandbox, "example", True), sandbox)
    assert took < 2.5  # the 0.2 s flush and the 1 s given to requests in flight
    time.sleep(3.2)  # the sandbox answers the abandoned request meanwhile
    again = _tracker(tmp_path, sandbox, "example", True)
    try:
        assert again.flush(timeout=10).complete
        assert [r["event_id"] for r in sandbox.received("example")] == ["one", "one"]
    finally:
        again.close(timeout=5)


@pytest.mark.parametrize("workers", [True, "process"])
def test_close_reports_the_request_it_waited_for(
    tmp_path: Path, sandbox: Sandbox, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close()'s report was taken before it waited for the at-most-once request in flight:
    the event delivered during that wait was reported (and logged) as still pending."""
    monkeypatch.setattr(timing, "STOP_REPLY_GRACE", 0.5)
    t = _tracker(tmp_path, sandbox, "once", workers)
    sandbox.set_fault("example", latency=2.0, count=1)
    t.track("sign_up", user={"email": "a@x.co"}, event_id="one")
    deadline = time.monotonic() + 30
    while sandbox.faults["example"].count != 0:  # taken when the request arrives
        assert time.monotonic() < deadline, "the request never reached the sandbox"
        time.sleep(0.02)
    report = t.close(timeout=0.2)
    assert [r["event_id"] for r in sandbox.received("example")] == ["one"]
    assert report is not None
    assert report["once"].delivered == 1 and report["once"].pending == 0, report
    assert report.complete

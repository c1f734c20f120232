"""The delivery engine over real loopback HTTP with fault injection."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import postback.testing.example as example
from postback import QueueError, Tracker
from postback.delivery import timing
from postback.delivery.retry import backoff_seconds, retry_after_seconds, seconds_from_message
from postback.destination import RetryPolicy
from postback.sandbox import Sandbox
from postback.testing.example import ExampleEmulator


def test_5xx_then_recovery(make_tracker: Callable[..., Tracker], sandbox: Sandbox) -> None:
    sandbox.set_fault("example", status=503, count=3)
    t = make_tracker()
    ids = {t.track("sign_up", user={"email": f"u{i}@x.co"}) for i in range(5)}
    report = t.flush(timeout=10)
    assert report.complete and report["example"].delivered == 5
    assert report["example"].retried >= 1
    assert {r["event_id"] for r in sandbox.received("example")} == ids


def test_timeouts_are_retried(make_tracker: Callable[..., Tracker], sandbox: Sandbox) -> None:
    sandbox.set_fault("example", hang=1.0, count=1)
    t = make_tracker(vendor={"timeout": 0.2})
    t.track("sign_up", user={"email": "a@x.co"})
    report = t.flush(timeout=10)
    assert report.complete and report["example"].delivered == 1
    assert report["example"].retried == 1


def test_vendor_down_for_a_while_loses_nothing(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", status=502)  # down until cleared
    t = make_tracker(
        vendor={"retry": {"initial_backoff": 0.05, "max_backoff": 0.2, "max_attempts": 1000}}
    )
    ids = {t.track("sign_up", user={"email": f"u{i}@x.co"}) for i in range(30)}
    assert not t.flush(timeout=0.5).complete
    sandbox.clear_faults()
    report = t.flush(timeout=10)
    assert report.complete
    assert {r["event_id"] for r in sandbox.received("example")} == ids


def test_retry_after_spacing_is_honoured(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", status=429, count=1, headers={"retry-after": "1"})
    t = make_tracker()
    started = time.monotonic()
    t.track("sign_up", user={"email": "a@x.co"})
    report = t.flush(timeout=10)
    assert report.complete
    assert time.monotonic() - started >= 0.95  # waited for the vendor, not our backoff


def test_bad_key_halts_the_lane_and_drops_nothing(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    t = make_tracker(vendor={"api_key": "wrong-key-123"})
    with caplog.at_level(logging.ERROR, logger="postback"):
        for i in range(3):
            t.track("sign_up", user={"email": f"u{i}@x.co"})
        report = t.flush(timeout=1)
    assert not report.complete
    assert report["example"].pending == 3 and report["example"].dead == 0
    assert report["example"].halted and "401" in report["example"].halted
    assert "refused our credentials" in caplog.text
    assert "wrong-key-123" not in caplog.text
    assert t.queue.dead_letters() == []


def test_a_poison_event_is_isolated_and_the_rest_delivered(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(vendor={"event_map": {"poison": "poison"}, "linger": 0.2})
    good = [t.track("sign_up", user={"email": f"u{i}@x.co"}) for i in range(9)]
    bad = t.track("poison", user={"email": "p@x.co"})
    good += [t.track("sign_up", user={"email": f"v{i}@x.co"}) for i in range(9)]
    report = t.flush(timeout=10)
    assert report.complete
    assert sorted(r["event_id"] for r in sandbox.received("example")) == sorted(good)
    dead = t.queue.dead_letters()
    assert [d.event_id for d in dead] == [bad]
    assert "400" in dead[0].reason


def test_per_event_rejections_go_to_dead_letters_and_replay(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker()
    bad = t.track("sign_up", user={"email": "a@x.co"}, value=-1, currency="USD")
    ok = t.track("sign_up", user={"email": "b@x.co"})
    report = t.flush(timeout=5)
    assert report["example"].dead == 1 and report["example"].delivered == 1
    (dead,) = t.queue.dead_letters(vendor="example")
    assert dead.event_id == bad and dead.reason == "negative value"
    # Replay re-transforms from the stored canonical event.
    requeued = t.queue.requeue_dead(vendor="example")
    assert [d.event_id for d in requeued] == [bad]
    t.deliverer.notify(["example"])
    t.flush(timeout=5)
    assert t.queue.dead_letters()[0].event_id == bad  # the emulator refuses it again
    assert [r["event_id"] for r in sandbox.received("example")] == [ok]


def test_garbage_answers_are_retried_then_dead_lettered(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.set_fault("example", status=200, body="<html>oops</html>")
    t = make_tracker(
        vendor={"retry": {"initial_backoff": 0.01, "max_backoff": 0.02, "max_attempts": 2}}
    )
    caplog.set_level(logging.INFO, logger="postback")
    event_id = t.track("sign_up", user={"email": "a@x.co"})
    t.flush(timeout=5)
    (dead,) = t.queue.dead_letters()
    assert dead.reason.startswith("gave up after 2 attempts")
    assert "unreadable response" in dead.reason
    # Was: each retry was logged at INFO, the giving up not at all (a rejection is a WARNING).
    [said] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert event_id in said.getMessage() and "dead-lettered: gave up after 2" in said.getMessage()


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_a_slow_vendor_does_not_slow_another(tmp_path, sandbox: Sandbox) -> None:
    class Slow(example.ExampleDestination):
        name = "slow"

    class SlowPlugin:
        @staticmethod
        @example.hookimpl
        def postback_register_destinations(register):  # type: ignore[no-untyped-def]
            register(Slow)

    slow_box = Sandbox([ExampleEmulator()]).start()
    # the slow vendor's emulator is the "example" one on another sandbox with latency
    slow_box.set_fault("example", latency=4.0)
    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db"},
        "vendors": {
            "example": sandbox.vendor_config("example"),
            "slow": {**slow_box.vendor_config("example"), "concurrency": 1},
        },
    }
    t = Tracker.from_config(cfg, plugins=[example, SlowPlugin], load_entry_points=False)
    try:
        for i in range(3):
            t.track("sign_up", user={"email": f"u{i}@x.co"})
        started = time.monotonic()
        while len(sandbox.received("example")) < 3 and time.monotonic() - started < 5:
            time.sleep(0.01)
        fast_done = time.monotonic() - started
        assert len(sandbox.received("example")) == 3
        assert fast_done < 3.0  # the fast vendor did not wait for the slow one (4 s a request)
        assert len(slow_box.received("example")) < 3
    finally:
        t.close(timeout=5)
        slow_box.stop()


def test_rate_limit_is_obeyed(make_tracker: Callable[..., Tracker], sandbox: Sandbox) -> None:
    t = make_tracker(vendor={"rate_limit": "2/second", "batch_size": 1, "linger": 0})
    for i in range(5):
        t.track("sign_up", user={"email": f"u{i}@x.co"})
    started = time.monotonic()
    report = t.flush(timeout=10)
    assert report.complete
    # 5 requests at 2 per second: the last two wait for the next windows.
    assert time.monotonic() - started >= 1.9
    assert sandbox.emulators["example"].requests == 5


def test_memory_queue_is_bounded(make_tracker: Callable[..., Tracker], sandbox: Sandbox) -> None:
    from postback import QueueFull

    sandbox.set_fault("example", status=503)
    t = make_tracker(queue="memory://", core={"max_queue_size": 3})
    for i in range(3):
        t.track("sign_up", user={"email": f"u{i}@x.co"})
    with pytest.raises(QueueFull, match="not accepted"):
        t.track("sign_up", user={"email": "x@x.co"})


def test_concurrent_track_from_many_threads(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker()
    ids: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(50):
            eid = t.track("sign_up", user={"email": f"t{n}-{i}@x.co"})
            with lock:
                ids.append(eid)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.flush(timeout=20).complete
    assert sorted(r["event_id"] for r in sandbox.received("example")) == sorted(ids)


def test_retry_timing_helpers() -> None:
    policy = RetryPolicy(initial_backoff=1, max_backoff=10)
    assert all(0 <= backoff_seconds(policy, n) <= min(10, 2 ** (n - 1)) for n in range(1, 10))
    r = httpx.Response(429, headers={"retry-after": "7"})
    assert retry_after_seconds(r) == 7
    r = httpx.Response(429, headers={"retry-after-ms": "250"})
    assert retry_after_seconds(r) == 0.25
    r = httpx.Response(503, headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after_seconds(r) == 0.0
    assert retry_after_seconds(httpx.Response(503)) is None
    assert seconds_from_message("Try again in 12 seconds.") == 12
    assert seconds_from_message("try again in 1.5 minutes") == 90
    assert seconds_from_message("nope") is None


def test_max_age_counts_from_queueing_not_the_event_time(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", status=503, count=1)
    t = make_tracker(
        vendor={"retry": {"max_age": "1h", "initial_backoff": 0.01, "max_backoff": 0.02}}
    )
    # A backfilled event from last week: the first failure must not make it a dead letter.
    week_ago = int((time.time() - 7 * 86400) * 1000)
    t.track("sign_up", user={"email": "a@x.co"}, timestamp=week_ago)
    report = t.flush(timeout=5)
    assert report["example"].delivered == 1 and report["example"].dead == 0
    assert sandbox.received("example")[0]["ts"] == week_ago


def test_a_lane_survives_claims_that_fail(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More failures than the lane has request slots: each failed claim must give its slots
    # back, or the lane would wait for a slot for ever.
    t = make_tracker(vendor={"concurrency": 2})
    real_claim = t.queue.claim
    failures = {"left": 5}

    def flaky_claim(*args: Any, **kwargs: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise QueueError("the queue file is locked (injected)")
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(t.queue, "claim", flaky_claim)
    monkeypatch.setattr(timing, "LANE_ERROR_PAUSE", 0.01)
    for i in range(3):
        t.track("sign_up", user={"email": f"u{i}@x.co"}, event_id=f"f-{i}")
    assert t.flush(timeout=20).complete
    assert failures["left"] == 0
    assert {r["event_id"] for r in sandbox.received("example")} == {"f-0", "f-1", "f-2"}


@pytest.mark.parametrize("queue", ["memory://", None])
def test_a_lingering_batch_keeps_what_it_claimed_when_a_later_look_fails(
    make_tracker: Callable[..., Tracker],
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    queue: str | None,
) -> None:
    # The queue goes away (Redis restarting) while a batch lingers for more: the events it
    # already claimed must still go (they were lost from the lane, and stayed leased for ever).
    t = make_tracker(queue=queue, vendor={"linger": 0.5, "batch_size": 50})
    real_claim = t.queue.claim
    calls = {"n": 0}

    def claim_then_fail(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise QueueError("the queue server closed the connection (injected)")
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(t.queue, "claim", claim_then_fail)
    for i in range(3):
        t.track("sign_up", user={"email": f"u{i}@x.co"}, event_id=f"l-{i}")
    assert t.flush(timeout=10).complete
    assert calls["n"] >= 2
    assert {r["event_id"] for r in sandbox.received("example")} == {"l-0", "l-1", "l-2"}


class ScriptedQueue:
    """Answers a lane's claims from a script of batch sizes (what arrived meanwhile)."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.calls: list[int] = []

    def claim(self, vendor: str, limit: int, now_ms: int) -> list[Any]:
        self.calls.append(limit)
        n = min(self.sizes.pop(0) if self.sizes else 0, limit)
        return [object()] * n


@pytest.mark.parametrize(
    ("last_full", "script", "want", "quick"),
    [
        # A steady trickle: the batch lingers and gathers what arrives.
        (False, [10, 5, 0, 7], 22, False),
        # Full as soon as enough arrived: it goes then, without waiting out the linger.
        (False, [60, 0, 40], 100, True),
        # The end of a burst (the last batch was full): a look finding nothing sends it.
        (True, [30, 0, 50], 30, True),
    ],
)
def test_a_lingering_batch(
    make_tracker: Callable[..., Tracker],
    last_full: bool,
    script: list[int],
    want: int,
    quick: bool,
) -> None:
    t = make_tracker(vendor={"linger": 0.3})
    lane = t.engine.lanes["example"]
    lane.batch_size = 100
    lane._last_full = last_full
    queue = ScriptedQueue(script)
    started = time.monotonic()
    claimed = lane._claim(queue, 1, time.time(), threading.Event())  # type: ignore[arg-type]
    took = time.monotonic() - started
    assert len(claimed) == want
    assert took < 0.15 if quick else took >= 0.29
    assert all(limit <= 100 for limit in queue.calls)


def test_a_retry_goes_out_when_due_on_a_private_queue(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    """memory:// (a queue no other process writes): the lane idles up to 5 s between looks, so a
    retry settled while it idled waited for that look, or for flush(). It wakes the lane now."""
    t = make_tracker(queue="memory://", core={"workers": True})
    sandbox.set_fault("example", status=503, count=1)
    t.track("sign_up", user={"email": "u@example.com"}, event_id="r-1")
    deadline = time.monotonic() + 3.0  # the retry is due in about 10 ms (FAST_RETRY)
    while not sandbox.received("example") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e["id"] for e in sandbox.received("example")] == ["r-1"]

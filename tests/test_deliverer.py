"""The Deliverer contract (postback.delivery.deliverer), for each of its implementations.

Each mode a tracker can be built with (lanes on threads of this process, a delivery child
process, enqueue-only) gives the tracker one deliverer, and each must do the same duties:
start, deliver what ``track()`` notifies it of (or, enqueue-only, leave it to another
process), report on flush, stop, count in the same shape, and start over after ``fork()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import postback.testing.example as example
from postback import Tracker
from postback.delivery import timing
from postback.delivery.deliverer import Deliverer
from postback.delivery.mode import DeliveryMode
from postback.sandbox import Sandbox

pytestmark = pytest.mark.timeout(120)

#: The counters and depths every deliverer's stats() has for each vendor.
STATS_KEYS = {
    "tracked",
    "delivered",
    "retried",
    "dead",
    "skipped",
    "requests",
    "attributed",
    "halted",
    "latency_p50",
    "latency_p95",
    "queue_depth",
    "ready",
    "retrying",
    "inflight",
    "dead_letters",
}

#: Names of the threads that deliver in this process (lanes, their requests, the coordinator).
DELIVERY_THREADS = ("postback-lane-", "postback-coordinator", "postback-example-")


@pytest.fixture(
    params=[
        pytest.param(True, id="threads"),
        pytest.param("process", id="process"),
        pytest.param(False, id="enqueue-only"),
    ]
)
def tracker(request: pytest.FixtureRequest, make_tracker: Callable[..., Tracker]) -> Tracker:
    return make_tracker(core={"workers": request.param})


def _track(t: Tracker, prefix: str, n: int) -> set[str]:
    ids = {f"{prefix}{i}" for i in range(n)}
    for event_id in sorted(ids):
        t.track("sign_up", user={"email": f"{event_id}@x.co"}, event_id=event_id)
    return ids


def _received(sandbox: Sandbox) -> set[str]:
    return {r["event_id"] for r in sandbox.received("example")}


def _delivery_threads(since: set[threading.Thread] | None = None) -> list[str]:
    """The delivery threads running in this process, those in ``since`` left out.

    Pass the threads that ran before the deliverer under test started: a tracker an earlier
    test closed may still have a request thread finishing its request (``close()`` gives
    requests in flight its timeout, then leaves their daemon threads to end on their own),
    and its name (``postback-example-0``) is the one this deliverer's would have."""
    return [
        th.name
        for th in threading.enumerate()
        if th.name.startswith(DELIVERY_THREADS) and (since is None or th not in since)
    ]


def _delivery_children(since: set[int] | None = None) -> list[int]:
    """The delivery child processes of this process, those in ``since`` left out."""
    out = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "postback.delivery.child"],
        capture_output=True,
        text=True,
    ).stdout.split()
    return [int(p) for p in out if _alive(int(p)) and (since is None or int(p) not in since)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not reaped) counts as gone
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_a_tracker_has_one_deliverer(tracker: Tracker) -> None:
    d = tracker.deliverer
    assert isinstance(d, Deliverer)
    # sqlite:// is shared between processes: an enqueue-only tracker leaves delivery to the
    # process that delivers, and does not wait for it at close.
    assert d.flushes_on_close is tracker.mode.delivers


def test_an_enqueue_only_tracker_on_a_private_queue_reports_at_close(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(queue="memory://", core={"workers": False})
    assert t.deliverer.flushes_on_close is True
    _track(t, "m-", 3)
    report = t.deliverer.flush(5)  # nothing can deliver from here: it says so at once
    assert not report.complete and report["example"].pending == 3
    closed = t.close(timeout=5)
    assert closed is not None and closed["example"].pending == 3
    assert _received(sandbox) == set()


def test_start_is_idempotent_and_never_blocks(tracker: Tracker) -> None:
    d = tracker.deliverer
    threads_before = set(threading.enumerate())  # what earlier tests' trackers left ending
    children_before = set(_delivery_children())
    started = time.monotonic()
    d.start()
    d.start()
    assert time.monotonic() - started < 5  # a child process is started in the background
    assert d.ready(20) is True
    threads = _delivery_threads(since=threads_before)
    if tracker.mode is DeliveryMode.THREADS:
        assert threads.count("postback-coordinator") == 1
    else:
        assert threads == []
    if tracker.mode is DeliveryMode.PROCESS:
        assert _wait_for(lambda: len(_delivery_children(since=children_before)) == 1)
    else:
        assert _delivery_children(since=children_before) == []


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_a_closed_trackers_request_still_ending_is_not_a_new_deliverers_thread(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    """Why the thread checks above count only threads started since the test began: a
    tracker closed while a request was in flight (as an earlier test's teardown may, on a
    loaded machine) leaves that request's thread to end on its own, under the name a new
    tracker's request thread would have."""
    # Its request thread ends within the vendor's timeout (close() closed the connection
    # under it; a read it is blocked in wakes at the deadline): 3 s, not the default 10.
    earlier = make_tracker(queue="memory://", core={"workers": True}, vendor={"timeout": 3})
    sandbox.set_fault("example", latency=2.0)
    earlier.track("sign_up", user={"email": "slow@x.co"}, event_id="slow")
    assert _wait_for(lambda: bool(earlier.engine.sending_here()))
    earlier.close(timeout=0.1)  # gives the request 0.1 s, then leaves it to its thread
    before = set(threading.enumerate())
    assert "postback-example-0" in _delivery_threads()  # still ending: not ours to count
    sandbox.clear_faults()
    t = make_tracker(core={"workers": "process"})
    t.deliverer.start()
    assert t.deliverer.ready(20)
    assert _delivery_threads(since=before) == []  # the child delivers: no thread here
    assert _wait_for(lambda: _delivery_threads() == [])  # and the leftover did end


def test_notify_delivers_and_flush_reports(
    tracker: Tracker, make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    d = tracker.deliverer
    ids = _track(tracker, "n-", 20)  # each track() stores the event and notifies d
    if tracker.mode.delivers:
        assert _wait_for(lambda: _received(sandbox) == ids)  # no flush() needed
        report = d.flush(20)
        assert report.complete and report["example"].pending == 0
    else:
        report = d.flush(0.3)  # nothing delivers here: it reports what waits
        assert not report.complete and report["example"].pending == 20
        assert report["example"].delivered == 0 and _received(sandbox) == set()
        assert make_tracker().start()  # a deliverer elsewhere, on the same queue
        report = d.flush(20)  # waits for it: the queue is shared
        assert report.complete and report["example"].pending == 0
        assert _received(sandbox) == ids


def test_flush_counts_what_this_deliverer_delivered(tracker: Tracker) -> None:
    if not tracker.mode.delivers:
        pytest.skip("enqueue-only: another process delivers and counts")
    _track(tracker, "f-", 5)
    report = tracker.deliverer.flush(20)
    assert report.complete and report["example"].delivered == 5
    assert tracker.deliverer.flush(20)["example"].delivered == 0  # since the previous flush


def test_stats_have_the_same_shape_everywhere(tracker: Tracker) -> None:
    d = tracker.deliverer
    _track(tracker, "s-", 5)
    if tracker.mode.delivers:
        assert d.flush(20).complete
    stats = d.stats()
    assert set(stats) == {"example"}
    assert set(stats["example"]) >= STATS_KEYS
    assert stats["example"]["tracked"] == 5  # tracked here, wherever it is delivered
    assert stats["example"]["delivered"] == (5 if tracker.mode.delivers else 0)


def test_stop_leaves_nothing_running(tracker: Tracker) -> None:
    d = tracker.deliverer
    threads_before = set(threading.enumerate())
    children_before = set(_delivery_children())
    _track(tracker, "x-", 3)
    if tracker.mode.delivers:
        assert d.flush(20).complete
    d.start()
    assert d.ready(20)
    d.stop(5)
    assert _wait_for(lambda: _delivery_threads(since=threads_before) == [])
    assert _wait_for(lambda: _delivery_children(since=children_before) == [])


def test_flush_own_is_a_bool(tracker: Tracker) -> None:
    _track(tracker, "o-", 2)
    own = tracker.deliverer.flush_own(5)
    if tracker.mode is DeliveryMode.THREADS:
        # True once the deliverer took this process's events; False when this process is the
        # deliverer itself (then the exit hook's wait is flush()).
        assert isinstance(own, bool)
        assert not own or tracker.queue.waiting_here() in (0, None)
    else:  # only lanes in this process can tell when its own events were taken
        assert own is False


def test_a_forked_child_delivers_on_its_own(tracker: Tracker, sandbox: Sandbox) -> None:
    d = tracker.deliverer
    _track(tracker, "parent-", 1)
    if tracker.mode.delivers:
        assert d.flush(20).complete
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the fork: nothing of the parent's delivery survived, it starts its own
        code = 1
        try:
            os.close(read)
            tracker.track("sign_up", user={"email": "fork@x.co"}, event_id="fork-0")
            report = tracker.deliverer.flush(20 if tracker.mode.delivers else 0.3)
            os.write(write, f"{report.complete} {report['example'].pending}".encode())
            tracker.close(timeout=5)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 64).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    if tracker.mode.delivers:
        assert answer == "True 0"
        assert _received(sandbox) == {"parent-0", "fork-0"}
        # The parent's own delivery was left alone by the fork.
        _track(tracker, "after-", 1)
        assert d.flush(20).complete
        assert _received(sandbox) == {"parent-0", "fork-0", "after-0"}
    else:
        assert answer == "False 2"
        assert _received(sandbox) == set()


def test_a_memory_queue_forked_with_events_waiting_sends_each_once(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    """Events waiting in a ``memory://`` queue when the process forks are the parent's: the
    forked child delivers only its own (it used to deliver the parent's too, each event then
    arriving once per process)."""
    from collections import Counter

    from postback.sandbox import Fault

    tracker = make_tracker(queue="memory://", core={"workers": True})
    sandbox.faults["example"] = Fault(latency=0.2)  # the parent's events are still waiting
    _track(tracker, "parent-", 5)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            tracker.track("sign_up", user={"email": "fork@x.co"}, event_id="fork-0")
            code = 0 if tracker.close(timeout=10).complete else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tracker.flush(timeout=20).complete
    sent = Counter(r["event_id"] for r in sandbox.received("example"))
    assert sent == Counter({"parent-0": 1, "parent-1": 1, "parent-2": 1, "parent-3": 1,
                            "parent-4": 1, "fork-0": 1})  # fmt: skip


def test_an_enqueue_only_tracker_on_a_private_queue_says_nothing_will_send_it(
    make_tracker: Callable[..., Tracker], caplog: pytest.LogCaptureFixture
) -> None:
    """``memory://`` with ``workers = false`` is allowed (a test that only checks what is
    tracked), but said at start-up: no process can ever deliver those events."""
    import logging

    with caplog.at_level(logging.WARNING, logger="postback"):
        make_tracker(queue="memory://", core={"workers": False})
    warned = [r.getMessage() for r in caplog.records if "nothing in this process" in r.getMessage()]
    assert len(warned) == 1 and "memory://" in warned[0] and "workers = true" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="postback"):
        make_tracker(core={"workers": False})  # sqlite://: a `postback worker` delivers
    assert not [r for r in caplog.records if "nothing in this process" in r.getMessage()]


def _one_at_a_time(queue: str, answer_after: float = 0.0) -> Tracker:
    """The example vendor, one event per request and one request at a time, delivered on
    threads to an ``httpx.MockTransport`` that accepts every event after ``answer_after`` s."""

    def vendor(request: httpx.Request) -> httpx.Response:
        time.sleep(answer_after)
        ids = [e["id"] for e in json.loads(request.content)["events"]]
        return httpx.Response(200, json={"results": [{"id": i, "status": "ok"} for i in ids]})

    return Tracker.from_config(
        {
            "postback": {"queue": queue, "workers": True},
            "vendors": {
                "example": {
                    "base_url": "http://127.0.0.1:9",
                    "api_key": "k",
                    "batch_size": 1,
                    "concurrency": 1,
                    "linger": 0,
                    "rate_limit": False,
                }
            },
        },
        plugins=[example],
        load_entry_points=False,
        transport=httpx.MockTransport(vendor),
    )


def test_flush_counts_the_queue_at_a_bounded_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting what is left (a query and a read of the spool) is not redone each time a
    request settles: one request at a time, a count per settle took as much CPU as the
    deliveries themselves. ``flush()`` still returns once all is delivered."""

    t = _one_at_a_time(f"sqlite:///{tmp_path}/q.db")
    counts = 0
    depth = t.engine.queue.depth

    def counted(*args: Any) -> Any:
        nonlocal counts
        counts += 1
        return depth(*args)

    monkeypatch.setattr(t.engine.queue, "depth", counted)
    try:
        ids = _track(t, "r-", 1000)
        started = time.monotonic()
        report = t.flush(60)
        took = time.monotonic() - started
    finally:
        t.close(timeout=1)
    assert report.complete and report["example"].delivered == len(ids)
    assert counts <= took / timing.FLUSH_RECOUNT_MIN + 3, (counts, took)


def test_a_flush_without_timeout_returns_when_the_tracker_closes_meanwhile() -> None:
    """A thread waits in ``flush()`` (no timeout) while another closes the tracker: once the
    lanes have stopped nothing here delivers what is left, so the flush returns (incomplete)
    rather than counting the queue forever."""

    # Slow: events are still queued when close() gives up.
    t = _one_at_a_time("memory://", answer_after=0.1)
    _track(t, "c-", 50)
    reports: list[Any] = []
    waiter = threading.Thread(target=lambda: reports.append(t.flush()), daemon=True)
    waiter.start()
    time.sleep(0.3)
    t.close(timeout=0.3)
    waiter.join(5)
    assert not waiter.is_alive(), "flush() still waits after close()"
    assert reports and not reports[0].complete


def test_an_aborted_flush_stops_waiting(tracker: Tracker, sandbox: Sandbox) -> None:
    """``flush(timeout, abort=event)``: setting ``event`` from another thread ends the wait
    soon (what ``AsyncTracker.flush()`` does when its caller is cancelled); the report says
    what is left. With a delivery child, the child's own wait ends too: the next request is
    answered at once, not after the aborted flush's timeout."""
    # The vendor takes 3 s to answer: flush waits. (A 503 was retried and dead-lettered within
    # the test's fast retry policy, 5 attempts in about 0.15 s, ending the flush before the
    # abort now and then.)
    sandbox.set_fault("example", latency=3.0)
    _track(tracker, "a-", 1)
    assert tracker.deliverer.ready(60)
    abort = threading.Event()
    timer = threading.Timer(0.2, abort.set)
    timer.start()
    started = time.monotonic()
    report = tracker.flush(10, abort=abort)
    took = time.monotonic() - started - 0.2
    assert not report.complete and report["example"].pending == 1
    assert took < 0.5, f"flush() went on for {took:.2f} s after the abort"
    started = time.monotonic()
    assert tracker.stats()["example"]["queue_depth"] == 1
    assert time.monotonic() - started < 0.5  # the child is not flushing any more

"""``workers = "process"``: delivery from a child process the tracker starts, restarts, stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from postback import ConfigError, Tracker
from postback.delivery import timing
from postback.delivery.deliverer import ProcessDeliverer
from postback.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        with open(f"/proc/{pid}/stat") as f:
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


def test_a_child_process_delivers_and_reports(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(core={"workers": "process"})
    assert (
        isinstance(t.deliverer, ProcessDeliverer) and t.deliverer.process.pid is None
    )  # started lazily
    started = time.monotonic()
    t.track("sign_up", user={"email": "first@x.co"}, event_id="first")
    assert time.monotonic() - started < 0.1  # the first track() does not wait for the child
    assert _wait_for(lambda: t.deliverer.process.running)
    for i in range(300):
        t.track("sign_up", user={"email": f"u{i}@x.co"}, event_id=f"p-{i}")
    child = t.deliverer.process.pid
    assert child is not None and child != os.getpid() and _alive(child)
    # It runs below the app's CPU priority (process_nice, default 10).
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert _wait_for(lambda: os.getpriority(os.PRIO_PROCESS, child) == min(ours + 10, 19))
    report = t.flush(timeout=20)
    assert report.complete and report["example"].delivered == 301
    want = {"first", *(f"p-{i}" for i in range(300))}
    assert {r["event_id"] for r in sandbox.received("example")} == want
    stats = t.stats()["example"]
    assert stats["tracked"] == 301 and stats["delivered"] == 301 and stats["queue_depth"] == 0
    # No delivery thread in this process: only the watcher that waits on the child.
    names = {th.name for th in threading.enumerate()}
    assert not any(n.startswith(("postback-lane", "postback-coordinator")) for n in names)
    t.close(timeout=5)
    assert not _alive(child)


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_a_child_that_dies_is_replaced_and_nothing_is_lost(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(core={"workers": "process"})
    t.track("sign_up", user={"email": "a@x.co"}, event_id="before")
    assert t.flush(timeout=20).complete
    assert isinstance(t.deliverer, ProcessDeliverer)
    first = t.deliverer.process.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    for i in range(50):  # accepted while no child is running
        t.track("sign_up", user={"email": f"u{i}@x.co"}, event_id=f"after-{i}")
    assert _wait_for(lambda: t.deliverer.process.pid not in (None, first))
    report = t.flush(timeout=20)
    assert report.complete
    got = {r["event_id"] for r in sandbox.received("example")}
    assert got >= {"before", *(f"after-{i}" for i in range(50))}


def test_a_reply_that_came_too_late_is_not_taken_for_the_next_one(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush that stopped waiting still gets its reply from the child, later: the next
    request must skip it and read its own (the replies come in order on one connection)."""
    monkeypatch.setattr(timing, "REPLY_GRACE", 0.2)  # how long past its timeout a reply may take
    t = make_tracker(core={"workers": "process"})
    for i in range(3):
        t.track("sign_up", user={"email": f"u{i}@x.co"}, event_id=f"early-{i}")
    assert t.flush(timeout=20).complete
    assert isinstance(t.deliverer, ProcessDeliverer)
    child = t.deliverer.process.pid
    assert child is not None
    os.kill(child, signal.SIGSTOP)  # a child too busy to answer in time
    try:
        t.track("sign_up", user={"email": "late@x.co"}, event_id="late")
        assert not t.flush(timeout=0.1).complete  # gave up waiting: its reply comes later
    finally:
        os.kill(child, signal.SIGCONT)
    report = t.flush(timeout=20)
    assert report.complete
    # Delivered in the late flush's time or this one's, it is counted here, once.
    assert report["example"].delivered == 1
    assert t.stats()["example"]["delivered"] == 4  # the child's counters, not this process's
    assert t.stats()["example"]["delivered"] == 4
    assert t.deliverer.process.pid == child  # the same child answered throughout
    assert {r["event_id"] for r in sandbox.received("example")} == {
        "late",
        *(f"early-{i}" for i in range(3)),
    }


def test_a_flush_the_child_cannot_answer_reports_the_halt_it_last_reported(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child halted the vendor (its key refused) and logged it; a flush it did not answer
    in time (busy, being replaced) reported this process's own lanes: ``halted=None`` with
    the events pending, as if nothing held them. It reports the halt the child last gave."""
    monkeypatch.setattr(timing, "REPLY_GRACE", 0.2)
    t = make_tracker(core={"workers": "process"}, vendor={"api_key": "a-wrong-key"})
    for i in range(3):
        t.track("sign_up", user={"email": f"u{i}@x.co"}, event_id=f"h-{i}")
    report = t.flush(timeout=None)  # the child's flush ends once every vendor is halted
    halted = report["example"].halted
    assert halted is not None and "API key refused" in halted and report["example"].pending == 3
    assert isinstance(t.deliverer, ProcessDeliverer)
    child = t.deliverer.process.pid
    assert child is not None
    os.kill(child, signal.SIGSTOP)  # a child too busy to answer in time
    try:
        late = t.flush(timeout=0.1)
        assert late["example"].pending == 3 and late["example"].halted == halted, late
    finally:
        os.kill(child, signal.SIGCONT)
    assert t.flush(timeout=None)["example"].halted == halted  # the child's own word again


def test_an_aborted_flush_does_not_wait_behind_another_request(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request at a time goes to the child: a flush whose abort is set while another
    request holds the connection gives up its place within a fraction of a second."""
    monkeypatch.setattr(timing, "REPLY_GRACE", 0.5)
    t = make_tracker(core={"workers": "process"})
    t.track("sign_up", user={"email": "a@x.co"}, event_id="first")
    assert t.flush(timeout=20).complete
    assert isinstance(t.deliverer, ProcessDeliverer)
    child = t.deliverer.process.pid
    assert child is not None
    os.kill(child, signal.SIGSTOP)  # the first flush below holds the connection ~3.5 s
    try:
        t.track("sign_up", user={"email": "b@x.co"}, event_id="second")
        first = threading.Thread(target=t.flush, kwargs={"timeout": 3})
        first.start()
        time.sleep(0.2)
        abort = threading.Event()
        took: list[float] = []

        def second() -> None:
            started = time.monotonic()
            t.flush(timeout=30, abort=abort)
            took.append(time.monotonic() - started)

        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.2)
        abort.set()
        waiter.join(10)
        assert took and took[0] < 1.0, took  # 0.2 s waiting, then the abort within ~0.1 s
    finally:
        os.kill(child, signal.SIGCONT)
    first.join(10)
    assert t.flush(timeout=20).complete
    assert t.stats()["example"]["delivered"] == 2


def _stopped_child(t: Tracker) -> int:
    t.track("sign_up", user={"email": "a@x.co"}, event_id="first")
    assert t.flush(timeout=20).complete
    assert isinstance(t.deliverer, ProcessDeliverer)
    child = t.deliverer.process.pid
    assert child is not None
    os.kill(child, signal.SIGSTOP)  # a child that cannot answer at all
    return child


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_a_flush_past_its_timeout_returns_within_a_second_of_it(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    """Whatever the child is doing, flush(timeout) returns within timeout + REPLY_GRACE."""
    t = make_tracker(core={"workers": "process"})
    child = _stopped_child(t)
    try:
        t.track("sign_up", user={"email": "b@x.co"}, event_id="second")
        started = time.monotonic()
        report = t.flush(timeout=2)
        took = time.monotonic() - started
        assert not report.complete and report["example"].pending == 1
        assert took < 5.0, took  # 2 s + the 1 s grace (it was 2 s + 5 s)
    finally:
        os.kill(child, signal.SIGCONT)
    assert t.flush(timeout=20).complete


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_an_aborted_flush_returns_within_a_second_whatever_the_child_does(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    """Once abort is set, the child is asked to stop its flush; a child that cannot answer
    does not hold the call for more than REPLY_GRACE beyond that."""
    t = make_tracker(core={"workers": "process"})
    child = _stopped_child(t)
    try:
        t.track("sign_up", user={"email": "b@x.co"}, event_id="second")
        abort = threading.Event()
        threading.Timer(0.5, abort.set).start()
        started = time.monotonic()
        report = t.flush(timeout=60, abort=abort)
        took = time.monotonic() - started
        assert not report.complete
        assert took < 4.0, took  # 0.5 s, then the abort and the 1 s grace (it was 0.5 + 5 s)
    finally:
        os.kill(child, signal.SIGCONT)
    assert t.flush(timeout=20).complete
    assert t.stats()["example"]["delivered"] == 2


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_closing_with_a_child_that_cannot_answer_waits_once_then_kills_it(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    """close(timeout): the flush's timeout and 1 s, then one wait for the child to stop (its
    own 1 s stop, the settle wait, timing.STOP_REPLY_GRACE), not one for its reply and
    another for its exit."""
    t = make_tracker(core={"workers": "process"})
    child = _stopped_child(t)
    t.track("sign_up", user={"email": "b@x.co"}, event_id="second")
    started = time.monotonic()
    report = t.close(timeout=1)
    took = time.monotonic() - started
    assert report is not None and not report.complete
    assert took < 12.0, took  # 1 + 1, then 1 + 5 (it was 1 + 5, then 6 and 6 again)
    assert _wait_for(lambda: not _alive(child), 5)


_ORPHAN = """
import sys, time
import postback.testing.example as example
from postback import Tracker
t = Tracker.from_config(
    {"postback": {"queue": sys.argv[1], "workers": "process", "exit_timeout": 1},
     "vendors": {"example": {"api_key": "sandbox-example-key", "base_url": sys.argv[2]}}},
    plugins=[example], load_entry_points=False)
for i in range(200):
    t.track("sign_up", user={"email": f"u{i}@x.co"}, event_id=f"o-{i}")
while not t.deliverer.process.running:
    time.sleep(0.01)
print(t.deliverer.process.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_the_child_ends_when_the_tracking_process_is_killed(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN, f"sqlite:///{tmp_path}/q.db", sandbox.base_url("example")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _wait_for(lambda: not _alive(child)), "the delivery process outlived its tracker"
    # Its last flush delivered what the tracker had accepted, or left it queued.
    assert _wait_for(lambda: len({r["event_id"] for r in sandbox.received("example")}) == 200)


def test_process_mode_refuses_what_a_child_cannot_have(
    tmp_path: Path, sandbox: Sandbox, make_tracker: Callable[..., Tracker]
) -> None:
    with pytest.raises(ConfigError, match="cannot read a memory:// queue"):
        make_tracker(queue="memory://", core={"workers": "process"})

    class HoldsALock:
        def __init__(self) -> None:
            self.lock = threading.Lock()

    with pytest.raises(ConfigError, match="in-process plugins, and one cannot be sent"):
        make_tracker(core={"workers": "process"}, plugins=[HoldsALock()])
    with pytest.raises(ConfigError, match=r"must be .auto. \(the default\)"):
        make_tracker(core={"workers": "processes"})
    import postback.testing.example as example

    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/t.db", "workers": "process"},
        "vendors": {"example": sandbox.vendor_config("example")},
    }
    with pytest.raises(ConfigError, match="cannot use a transport"):
        Tracker.from_config(
            cfg, plugins=[example], load_entry_points=False, transport=sandbox.transport()
        )


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_exit_without_flush_delivers_through_the_child_and_leaves_no_process(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.procs.track_loop",
            f"sqlite:///{tmp_path}/q.db",
            sandbox.base_url("example"),
            "300",
            "exit",
            "process",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    lines = out.split("\n")
    child = int(lines[0].removeprefix("CHILD "))
    returned = {x for x in lines[1:] if x and x != "DONE"}
    assert len(returned) == 300
    # The exit hook flushed through the child (within exit_timeout), then stopped it.
    assert {r["event_id"] for r in sandbox.received("example")} == returned
    assert not _alive(child)


def test_a_forked_child_starts_its_own_delivery_process(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(core={"workers": "process"})
    t.track("sign_up", user={"email": "parent@x.co"}, event_id="from-parent")
    assert t.flush(timeout=20).complete
    assert isinstance(t.deliverer, ProcessDeliverer)
    parent_child = t.deliverer.process.pid
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the fork: its tracker must not talk to the parent's delivery process
        code = 1
        try:
            os.close(read)
            t.track("sign_up", user={"email": "child@x.co"}, event_id="from-fork")
            ok = t.flush(timeout=20).complete
            os.write(write, str(t.deliverer.process.pid).encode())
            t.close(timeout=5)
            code = 0 if ok else 2
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    fork_child = int(os.read(read, 64) or 0)
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert fork_child not in (0, parent_child)
    assert t.deliverer.process.pid == parent_child and _alive(parent_child)
    got = {r["event_id"] for r in sandbox.received("example")}
    assert got == {"from-parent", "from-fork"}


def test_closing_while_the_child_starts_leaves_no_process(
    make_tracker: Callable[..., Tracker],
) -> None:
    t = make_tracker(core={"workers": "process"})
    t.track("sign_up", user={"email": "a@x.co"}, event_id="early")  # starts the child
    assert isinstance(t.deliverer, ProcessDeliverer)
    assert _wait_for(lambda: t.deliverer.process._supervisor is not None)
    started = time.monotonic()
    t.close(timeout=0)  # no flush: straight to stopping the child, which is still starting
    assert time.monotonic() - started < 5
    children = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "postback.delivery.process"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert [pid for pid in children if _alive(int(pid))] == []


def test_the_child_builds_from_a_picklable_spec(make_tracker: Callable[..., Tracker]) -> None:
    import pickle

    import postback.testing.example as example
    from postback.delivery.mode import DeliveryMode
    from postback.delivery.spec import TrackerSpec, tracker_spec

    t = make_tracker(core={"workers": "process", "exit_timeout": 0.5})
    spec = tracker_spec(t.config, t.queue.url, t.host)
    assert isinstance(spec, TrackerSpec)
    sent = pickle.loads(pickle.dumps(spec))
    assert sent == spec and sent.plugins == (("module", example.__name__),)
    # The child's build path is the one from_config takes, with delivery on its threads.
    child = Tracker.from_raw(sent.raw, **sent.build_args())
    try:
        assert child.mode is DeliveryMode.THREADS
        assert child.queue.url == t.queue.url
        assert sorted(child.destinations) == sorted(t.destinations)
        assert child.config.core.exit_timeout == 0.5
    finally:
        child.close(timeout=0)


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "postback.delivery.child"], capture_output=True, text=True
    ).stdout.split()
    return [int(p) for p in out if _alive(int(p))]


@pytest.mark.parametrize("vendors", ["none", "disabled"])
def test_with_no_vendor_to_deliver_to_start_is_ready_at_once(
    tmp_path: Path, sandbox: Sandbox, vendors: str
) -> None:
    import postback.testing.example as example

    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db", "workers": "process"},
        "vendors": {}
        if vendors == "none"
        else {"example": {**sandbox.vendor_config("example"), "enabled": False}},
    }
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        assert isinstance(t.deliverer, ProcessDeliverer)
        # Nothing to deliver, so nothing to wait for: it used to wait the whole timeout for a
        # child that was never started, then say False.
        assert t.start(timeout=0) is True
        t.track("sign_up", user={"email": "a@x.co"}, event_id="nowhere")  # routed to no one
        assert t.flush(timeout=5).complete and t.stats() == {}
        assert t.deliverer.process.pid is None and _children_of(os.getpid()) == []
    finally:
        t.close(timeout=1)


_NO_VENDORS = """
import sys
from postback import Tracker
t = Tracker.from_config({"postback": {"queue": sys.argv[1]}}, load_entry_points=False)
print(t.mode.name, flush=True)
print(t.start(timeout=float(sys.argv[2])), flush=True)
t.track("sign_up", user={"email": "a@x.co"})
print(t.flush(timeout=5).complete, t.deliverer.process.pid, flush=True)
t.close(timeout=5)
"""


def test_an_app_with_no_vendors_yet_starts_without_waiting(tmp_path: Path) -> None:
    """A real app process (no pytest in it: ``workers = "auto"`` means a delivery child) with
    no vendor configured yet: ``start()`` answers True at once and no child is left."""
    proc = subprocess.run(
        [sys.executable, "-c", _NO_VENDORS, f"sqlite:///{tmp_path}/q.db", "600"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,  # before the fix: start() waited its whole 600 s
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["PROCESS", "True", "True", "None"]


def test_the_delivery_process_exits_quietly_when_its_tracker_is_gone_before_it_starts() -> None:
    """A web worker killed right after its first track() (a timeout, the OOM killer) leaves its
    delivery process without a spec to read: it ends at once, without a traceback on stderr
    that operators would read as postback crashing."""
    import socket

    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "postback.delivery.child", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        stderr=subprocess.PIPE,
        text=True,
    )
    theirs.close()
    ours.close()  # the tracking process is gone
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err

"""The one worker loop (postback.delivery.worker): ``postback worker`` and the delivery child.

It runs here on a thread, over a real socket pair where the child would have its tracking
process at the other end, against the example vendor's sandbox.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

import postback.testing.example as example
from postback import Tracker
from postback.delivery.spec import load_message
from postback.delivery.stats import FlushReport
from postback.delivery.worker import run_worker_loop, stop_on_signals
from postback.sandbox import Sandbox

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]


def _pair() -> tuple[Connection, Connection]:
    ours, theirs = socket.socketpair()
    return Connection(ours.detach()), Connection(theirs.detach())


def _ask(conn: Connection, *message: object) -> object:
    conn.send_bytes(pickle.dumps(message))
    assert conn.poll(30), f"no reply to {message!r}"
    return load_message(conn.recv_bytes())


def _track(t: Tracker, n: int) -> set[str]:
    ids = {f"w-{i}" for i in range(n)}
    for event_id in sorted(ids):
        t.track("sign_up", user={"email": f"{event_id}@x.co"}, event_id=event_id)
    return ids


def test_it_answers_its_tracking_process_and_stops_when_asked(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker()
    ids = _track(t, 10)
    ours, theirs = _pair()
    loop = threading.Thread(
        target=run_worker_loop, args=(t, threading.Event()), kwargs={"requests": theirs}
    )
    loop.start()
    ours.send_bytes(pickle.dumps(("nudge",)))  # no reply
    kind, report = _ask(ours, "flush", 20)  # type: ignore[misc]
    assert kind == "report" and isinstance(report, FlushReport) and report.complete
    assert {r["event_id"] for r in sandbox.received("example")} == ids
    kind, stats = _ask(ours, "stats")  # type: ignore[misc]
    assert kind == "stats" and stats["example"]["delivered"] == 10
    kind, closing = _ask(ours, "stop", 5)  # type: ignore[misc]
    assert kind == "stopped" and (closing is None or isinstance(closing, FlushReport))
    loop.join(10)
    assert not loop.is_alive() and t.closed


def test_it_closes_with_the_exit_timeout_when_its_tracking_process_is_gone(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(core={"exit_timeout": 5})
    ours, theirs = _pair()
    loop = threading.Thread(
        target=run_worker_loop, args=(t, threading.Event()), kwargs={"requests": theirs}
    )
    loop.start()
    ids = _track(t, 5)
    ours.close()  # end of file: its last flush delivers what it can within exit_timeout
    loop.join(20)
    assert not loop.is_alive() and t.closed
    assert {r["event_id"] for r in sandbox.received("example")} == ids


def test_a_tracking_process_gone_mid_flush_still_gets_the_exit_flush(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    """End of file during a flush (the tracking process died waiting for its reply): the
    flush stops, the reply cannot be sent, and the loop closes the tracker with its
    exit_timeout as for any end of file, without an exception escaping."""
    t = make_tracker(core={"exit_timeout": 10})
    sandbox.set_fault("example", latency=0.3)
    ours, theirs = _pair()
    escaped: list[BaseException] = []

    def loop_body() -> None:
        try:
            run_worker_loop(t, threading.Event(), requests=theirs)
        except BaseException as exc:  # what the test looks for
            escaped.append(exc)

    loop = threading.Thread(target=loop_body)
    loop.start()
    ids = _track(t, 5)
    ours.send_bytes(pickle.dumps(("flush", 20)))
    time.sleep(0.1)  # the flush waits on the slow vendor
    ours.close()
    loop.join(30)
    assert not loop.is_alive() and t.closed
    assert escaped == []
    assert {r["event_id"] for r in sandbox.received("example")} == ids


def test_it_stops_when_told_and_ticks_meanwhile(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker()
    stop = threading.Event()
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(t.stats()["example"]["delivered"])
        if t.stats()["example"]["delivered"] == 3:
            stop.set()

    _track(t, 3)
    loop = threading.Thread(
        target=run_worker_loop, args=(t, stop), kwargs={"every": 0.1, "tick": tick}
    )
    loop.start()
    loop.join(30)
    assert not loop.is_alive() and t.closed and ticks and ticks[-1] == 3
    assert len(sandbox.received("example")) == 3


def test_signals_set_stop_and_are_given_back() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    with stop_on_signals(stop, (signal.SIGTERM,), ignore=(signal.SIGINT,)):
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


_WORKER = """
import sys
import postback.testing.example as example
from postback import Tracker
from postback.integrations import run_worker
t = Tracker.from_config(
    {"postback": {"queue": sys.argv[1], "workers": True},
     "vendors": {"example": {"api_key": "sandbox-example-key", "base_url": sys.argv[2]}}},
    plugins=[example], load_entry_points=False)
run_worker(t, write=lambda line: print(line, flush=True), tune_gc=False)
"""


def test_run_worker_delivers_until_sigterm(tmp_path: Path, sandbox: Sandbox) -> None:
    queue = f"sqlite:///{tmp_path}/q.db"
    cfg = {
        "postback": {"queue": queue, "workers": False},
        "vendors": {"example": sandbox.vendor_config("example")},
    }
    app = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    ids = _track(app, 5)
    app.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, queue, sandbox.base_url("example")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("postback worker: delivering from")
    end = time.monotonic() + 30
    while {r["event_id"] for r in sandbox.received("example")} != ids:
        assert time.monotonic() < end, "the worker did not deliver"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "postback worker: stopped" in out


def test_the_worker_waits_for_requests_in_flight_once_when_stopped(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``postback worker`` stopped its deliverer, then closed the tracker, which stopped it
    again: with a request still in flight (abandoned: the example vendor takes a repeat), it
    waited for it once more (another second) before saying "stopped"."""
    from postback.delivery import worker
    from postback.integrations import run_worker

    monkeypatch.setattr(worker, "FINISH_IN_FLIGHT", 0.2)
    t = make_tracker(core={"workers": True})
    sandbox.set_fault("example", latency=6.0, count=1)
    _track(t, 1)
    stop = threading.Event()
    lines: list[str] = []
    loop = threading.Thread(
        target=run_worker,
        args=(t,),
        kwargs={"stop": stop, "write": lines.append, "handle_signals": False, "tune_gc": False},
    )
    loop.start()
    deadline = time.monotonic() + 30
    while sandbox.faults["example"].count != 0:  # taken when the request arrives
        assert time.monotonic() < deadline, "the request never reached the sandbox"
        time.sleep(0.02)
    stopped_at = time.monotonic()
    stop.set()
    loop.join(30)
    took = time.monotonic() - stopped_at
    assert not loop.is_alive() and t.closed and lines[-1] == "postback worker: stopped"
    # 0.2 s for the request in flight, not the second stop's 1 s more.
    assert took < 0.9, took

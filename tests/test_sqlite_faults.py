"""The fault suite for ``sqlite://``: forks, a deleted spool, a full disk, a damaged file.

Each test counts, by event id at a loopback sink (the sandbox), what ``track()`` accepted,
what was delivered, lost (accepted, never delivered) and re-sent (delivered more than once).
docs/explanation/guarantees.md ("Under each fault") names these tests.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import postback.testing.example as example
from postback import QueueCorrupt, QueueDiskFull, QueueError, Tracker
from postback.delivery.queue import Settlement
from postback.delivery.spool import SegmentReader
from postback.delivery.spool import segments as _segments
from postback.delivery.sqlite import SQLiteQueue
from postback.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
USER = {"email": "u@x.co"}


def _tracker(sandbox: Sandbox, path: Path, **core: object) -> Tracker:
    cfg = {
        "postback": {"queue": f"sqlite:///{path}", **core},
        "vendors": {
            "example": {
                **sandbox.vendor_config("example"),
                "retry": {"initial_backoff": 0.05, "max_backoff": 0.2, "max_attempts": 10000},
            }
        },
    }
    return Tracker.from_config(cfg, plugins=[example], load_entry_points=False)


def spool_segments(q: SQLiteQueue) -> list[Path]:
    return list(_segments(q.spool_dir))


def _count(sandbox: Sandbox, accepted: list[str]) -> dict[str, int]:
    got = Counter(r["event_id"] for r in sandbox.received("example"))
    return {
        "accepted": len(accepted),
        "delivered": sum(1 for e in set(accepted) if got[e]),
        "lost": sum(1 for e in set(accepted) if not got[e]),
        "re-sent": sum(n - 1 for n in got.values() if n > 1),
    }


def _wait_delivered(sandbox: Sandbox, accepted: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts = _count(sandbox, accepted)
    while counts["lost"] and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = _count(sandbox, accepted)
    return counts


# --- owner-only files ------------------------------------------------------------------------


def test_queue_files_are_created_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask would make them world-readable
    try:
        q = SQLiteQueue(tmp_path / "data" / "q.db")
        assert q.acquire_delivery()
        q.put("e1", "x", 1, ["a"], b'{"email": "u@x.co"}')
        q._spool.prepare()
        q.poll()
        q.claim("a", 10, 1)
    finally:
        os.umask(old)
    made = [p for p in (tmp_path / "data").rglob("*")]
    files = [p for p in made if p.is_file()]
    dirs = [p for p in made if p.is_dir()] + [tmp_path / "data"]
    names = {p.name for p in files}
    assert {"q.db", "q.db-wal", "q.db-shm", "q.db.init.lock", "q.db.deliver.lock"} <= names
    assert any(n.endswith(".spool") for n in names)
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for d in dirs:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    q.close()


# --- forks -----------------------------------------------------------------------------------


def test_fork_storm_loses_nothing_and_leaves_no_phantom_pending(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    # 20 storms of 4 forks each from a tracker that is delivering at the time.
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.procs.fork_storm",
            f"sqlite:///{tmp_path}/q.db",
            sandbox.base_url("example"),
            "20",
            "4",
            "20",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.splitlines()[-1])
    accepted = result["accepted"]
    assert len(accepted) == 20 * 20 + 20 * 4 * 20
    assert all(code == 0 for code, _ in result["exits"]), result["exits"]
    assert result["complete"] and not any(result["pending"].values())  # no phantom pending
    counts = _wait_delivered(sandbox, accepted, 10)
    assert counts["lost"] == 0, counts
    # Each child waited at exit for its own events only, never its whole exit_timeout of 2 s
    # per storm (the parent delivers them within a few polls).
    assert time.monotonic() - started < 60
    assert "error re-initialising" not in out.stderr and "Traceback" not in out.stderr


def test_a_child_waits_at_exit_only_for_its_own_events(tmp_path: Path) -> None:
    # Two processes' writers on one file (two queue objects, each with its spool segment).
    mine = SQLiteQueue(tmp_path / "q.db")
    other = SQLiteQueue(tmp_path / "q.db")
    for i in range(3):
        mine.put(f"m{i}", "x", 1, ["a"], b"{}")
    for i in range(5):
        other.put(f"o{i}", "x", 1, ["a"], b"{}")
    assert (mine.waiting_here(), other.waiting_here()) == (3, 5)
    deliverer = SQLiteQueue(tmp_path / "q.db")
    assert deliverer.acquire_delivery()
    assert deliverer.waiting_here() is None  # the deliverer answers for the whole queue
    deliverer._intake.ingest(
        hold=False
    )  # into the log: durable, no longer this process's to wait for
    assert (mine.waiting_here(), other.waiting_here()) == (0, 0)
    for q in (mine, other, deliverer):
        q.close()


def test_after_fork_fails_closed_when_the_queue_was_busy(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    assert q.acquire_delivery()
    q.put("e1", "x", 1, ["a"], b"{}")
    q.poll()
    q._fork_held = (False, False)  # as if fork() came while another thread held the queue
    lock_fd = q._file.lock_fd
    q.after_fork()
    assert q._file.lock_fd is None and not q.acquire_delivery()  # never the deliverer
    q.put("e2", "x", 1, ["a"], b"{}")  # can still enqueue
    with pytest.raises(QueueError, match="forked while the queue was busy"):
        q.depth(["a"], 1)
    assert lock_fd is not None
    os.close(lock_fd)  # (the "parent's" descriptor, in this one process)


def test_after_fork_never_closes_a_descriptor_number_reused_meanwhile(tmp_path: Path) -> None:
    # The window issue 23 found: a spool reader closed but still listed when fork() came, its
    # number reused by another file. The child must not close that file, and must finish.
    q = SQLiteQueue(tmp_path / "q.db")
    q.put("e1", "x", 1, ["a"], b"{}")
    q._spool.prepare()
    q.close()  # the writer let go: its segment can be read
    q = SQLiteQueue(tmp_path / "q.db")
    assert q.acquire_delivery()
    (segment,) = spool_segments(q)
    reader = SegmentReader(segment)
    q._intake.readers[segment.name] = reader
    os.close(reader.fd)  # closed, not yet forgotten ...
    other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT, 0o600)  # ... number reused
    assert other == reader.fd
    q._fork_held = (True, True)
    q.after_fork()
    # Still open, and still that file (a closed number would be reused by the next open).
    assert os.fstat(other).st_ino == (tmp_path / "other").stat().st_ino
    assert q._intake.readers == {} and q._file.lock_fd is None
    os.close(other)


# --- a deleted spool directory ---------------------------------------------------------------


@pytest.mark.parametrize("mapped", [True, False])
def test_a_deleted_spool_directory_is_made_again_and_nothing_is_lost(
    tmp_path: Path, sandbox: Sandbox, mapped: bool
) -> None:
    t = _tracker(sandbox, tmp_path / "q.db")
    t.queue._spool.mapped = mapped  # type: ignore[attr-defined]
    accepted = [t.track("sign_up", user=USER, event_id=f"a{i}") for i in range(100)]
    assert t.flush(timeout=10).complete
    spool_dir = t.queue.spool_dir  # type: ignore[attr-defined]
    shutil.rmtree(spool_dir)
    accepted += [t.track("sign_up", user=USER, event_id=f"b{i}") for i in range(100)]
    time.sleep(0.1)
    accepted += [t.track("sign_up", user=USER, event_id=f"c{i}") for i in range(100)]
    assert spool_dir.is_dir()
    report = t.flush(timeout=15)
    counts = _wait_delivered(sandbox, accepted, 10)
    assert counts["lost"] == 0, counts
    assert report.complete
    t.close(timeout=5)


def test_a_spool_directory_that_cannot_be_made_again_refuses_track(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    q.put("e1", "x", 1, ["a"], b"{}")
    shutil.rmtree(q.spool_dir)
    q.spool_dir.write_bytes(b"")  # a file where the directory was: it cannot be made again
    time.sleep(0.06)  # past the writer's check interval
    with pytest.raises(QueueError, match="spool directory"):
        q.put("e2", "x", 1, ["a"], b"{}")
    q.close()


# --- a full disk, then space again -----------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs of its own (root only): a disk that really fills up."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    where = tmp_path / "small"
    where.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(where: Path) -> Path:
    filler = where / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_then_space_again_recovers_without_restart(
    small_fs: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    t = _tracker(sandbox, small_fs / "q.db")
    accepted = [t.track("sign_up", user=USER, event_id=f"a{i}") for i in range(50)]
    assert t.flush(timeout=10).complete
    sandbox.set_fault("example", status=503)  # retries must be written to the log
    filler = _fill(small_fs)
    caplog.set_level(logging.DEBUG, logger="postback")
    refused = 0
    for i in range(300):
        try:
            accepted.append(t.track("sign_up", user=USER, event_id=f"b{i}"))
        except QueueDiskFull:
            refused += 1
    time.sleep(1.5)  # the lane fails to record its retries, again and again
    try:
        t.flush(timeout=0.5)
    except QueueError as exc:  # allowed: a documented subclass, never sqlite3's own
        assert type(exc) is not QueueError or "queue" in str(exc)
    filler.unlink()  # space again
    sandbox.clear_faults()
    report = t.flush(timeout=20)
    counts = _wait_delivered(sandbox, accepted, 10)
    assert counts["lost"] == 0, counts
    assert report.complete, report  # nothing stuck in flight: no restart needed
    # Each kind of failure logged when it starts and when it ends, not on every retry.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 10, warnings
    t.close(timeout=5)


def test_close_on_a_full_disk_raises_only_queue_errors(small_fs: Path) -> None:
    q = SQLiteQueue(small_fs / "q.db")
    q.serve(["a"])
    assert q.acquire_delivery()
    for i in range(200):
        q.put(f"e{i}", "x", 1, ["a"], b"x" * 1000)
    q.poll()  # held in memory: close() writes them into the log
    filler = _fill(small_fs)
    try:
        q.close()  # logs what it could not save; the spool keeps the events
    except QueueError:
        pass
    filler.unlink()
    again = SQLiteQueue(small_fs / "q.db")
    assert again.acquire_delivery()
    got = {c.event_id for c in again.claim("a", 1000, 1)}
    assert got == {f"e{i}" for i in range(200)}
    again.close()


# --- a damaged queue file --------------------------------------------------------------------


def test_a_corrupted_queue_file_is_refused_clearly_and_the_spool_survives(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    path = tmp_path / "q.db"
    sandbox.set_fault("example", status=503)  # not delivered before the file is damaged
    first = _tracker(sandbox, path)
    accepted = [first.track("sign_up", user=USER, event_id="e1")]
    first.close(timeout=0)
    sandbox.clear_faults()
    with open(path, "r+b") as f:  # the header and the first pages overwritten
        f.write(b"\xde\xad" * 4096)
    with pytest.raises(QueueCorrupt, match="damaged or is not a SQLite database"):
        SQLiteQueue(path)
    # Moved aside as the message says: a new file, and the spool's events are delivered.
    path.rename(tmp_path / "q.db.damaged")
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)
    t = _tracker(sandbox, path)
    t.deliverer.start()
    counts = _wait_delivered(sandbox, accepted, 10)
    assert counts["lost"] == 0 and counts["delivered"] == 1, counts
    t.close(timeout=5)


# --- SIGKILL: what a new deliverer sends again ----------------------------------------------


def _die(q: SQLiteQueue) -> None:
    """The deliverer dies (SIGKILL): its lock goes, nothing is written back."""
    assert q._file.lock_fd is not None
    os.close(q._file.lock_fd)
    q._file.lock_fd = None


def test_after_a_crash_a_vendor_is_sent_again_only_what_it_had_in_flight(
    tmp_path: Path,
) -> None:
    writer = SQLiteQueue(tmp_path / "q.db")
    for i in range(1000):
        writer.put(f"e{i}", "x", 1, ["fast", "slow"], b"{}")
    q = SQLiteQueue(tmp_path / "q.db")
    q.serve(["fast", "slow"])
    assert q.acquire_delivery()
    fast = q.claim("fast", 1000, 1)
    assert len(fast) == 1000
    in_flight = fast[990:]  # "fast" delivered 990, has 10 in flight
    q.settle("fast", [Settlement(c, "done") for c in fast[:990]], 1)
    slow = q.claim("slow", 50, 1)  # "slow" has 50 in flight, delivered none
    q._intake.persist_cursors()
    _die(q)
    again = SQLiteQueue(tmp_path / "q.db")
    again.serve(["fast", "slow"])
    assert again.acquire_delivery()
    again.recover()
    resent = [c.event_id for c in again.claim("fast", 2000, 2)]
    assert resent == [c.event_id for c in in_flight]  # not the 990 it had delivered
    assert len(again.claim("slow", 2000, 2)) == 1000  # nothing of "slow" was settled
    assert len(slow) == 50
    for x in (writer, again):
        x.close()


def test_a_lasting_failure_is_logged_once_per_change(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postback.delivery import timing
    from postback.delivery.faultlog import FaultLog

    monkeypatch.setattr(timing, "FAULT_SETTLED", 0.0)  # over at the first success
    faults = FaultLog(logging.getLogger("postback.test"))
    caplog.set_level(logging.WARNING, logger="postback.test")
    for _ in range(1000):
        faults.failed("saving progress", QueueDiskFull("disk full"))
    faults.failed("saving progress", QueueError("locked"))  # another kind: logged
    faults.ok("saving progress")
    faults.ok("saving progress")
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "saving progress failed",
        "saving progress failed",
        "saving progress works again",
    ]


def test_a_fault_that_flaps_is_one_outage_until_it_has_settled(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nearly full disk, or a lane's request threads retrying the same settle, make an
    operation fail and work by turns: one outage (a start and an end), not one per flap."""
    from postback.delivery import timing
    from postback.delivery.faultlog import FaultLog

    monkeypatch.setattr(timing, "FAULT_SETTLED", 0.2)
    faults = FaultLog(logging.getLogger("postback.test"))
    caplog.set_level(logging.WARNING, logger="postback.test")
    for _ in range(100):  # fails, works, fails, ...: never settled
        faults.failed("recording outcomes", QueueDiskFull("disk full"))
        faults.ok("recording outcomes")
    assert faults.failing() == {"recording outcomes": "QueueDiskFull"}
    time.sleep(0.25)  # it has worked, without failing, for longer than FAULT_SETTLED
    faults.ok("recording outcomes")
    assert faults.failing() == {}
    faults.ok("recording outcomes")  # working already: nothing to say
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "recording outcomes failed",
        "recording outcomes works again",
    ]

"""The SQLite queue: durability across crashes and restarts, sharing, and clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

import postback.testing.example as example
from postback import QueueCorrupt, QueueError, Tracker
from postback.delivery import spool, sqlite_ingest, timing
from postback.delivery.queue import Claimed, Settlement, sqlite_path
from postback.delivery.registry import open_queue
from postback.delivery.sqlite import SQLiteQueue
from postback.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]


def test_urls_resolve_paths(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///var/lib/app/q.db") == Path("/var/lib/app/q.db")
    assert sqlite_path("sqlite://data/q.db", tmp_path) == tmp_path / "data/q.db"
    assert sqlite_path("sqlite://", tmp_path) == tmp_path / "postback.db"
    with pytest.raises(ValueError, match="not a queue URL of an installed backend"):
        open_queue("kafka://x")


def test_log_cursor_retry_dead_and_gc(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    q.serve(["a", "b"])
    assert q.acquire_delivery()
    for i in range(5):
        q.put(f"e{i}", "sign_up", 1000 + i, ["a", "b"] if i % 2 == 0 else ["a"], b"{}")
    got = q.claim("a", 3, 10_000)
    assert [c.event_id for c in got] == ["e0", "e1", "e2"]
    q.settle(
        "a",
        [
            Settlement(got[0], "done"),
            Settlement(got[1], "retry", due_ms=20_000, error="503", attempts=1),
            Settlement(got[2], "dead", error="refused", attempts=1),
        ],
        10_000,
    )
    depth = q.depth(["a", "b"], 10_000)
    assert depth["a"].ready == 2 and depth["a"].retrying == 1 and depth["a"].dead == 1
    assert depth["b"].ready == 3
    assert q.next_due_ms("a") == 20_000
    rest = q.claim("a", 10, 30_000)  # the retry is due now, then the two new events
    assert [(c.event_id, c.attempts) for c in rest] == [("e1", 1), ("e3", 0), ("e4", 0)]
    q.settle("a", [Settlement(c, "done") for c in rest], 30_000)
    b = q.claim("b", 10, 30_000)
    assert [c.event_id for c in b] == ["e0", "e2", "e4"]
    q.settle("b", [Settlement(c, "done") for c in b], 30_000)
    q.maintenance()
    remaining = q._file.work.execute("SELECT count(*) FROM events").fetchone()[0]
    assert remaining == 1  # only the newest row is kept (it pins the sequence)
    (dead,) = q.dead_letters()
    assert (dead.event_id, dead.reason, dead.vendor) == ("e2", "refused", "a")
    q.requeue_dead(ids=[dead.id])
    assert [c.event_id for c in q.claim("a", 10, 40_000)] == ["e2"]
    assert q.remember("a", "k") and not q.remember("a", "k")
    q.forget("a", "k")
    assert q.remember("a", "k")
    for key in ("p/1", "p/2", "p%/_3", "p", "q/1"):
        q.remember("b", key)
    q.forget_prefix("b", "p/")  # literally: no LIKE wildcards
    q.forget_prefix("b", "p%/")
    assert [k for k in ("p/1", "p/2", "p%/_3", "p", "q/1") if q.remember("b", k)] == [
        "p/1",
        "p/2",
        "p%/_3",
    ]
    assert not q.remember("a", "k")  # another vendor's keys stay
    q.close()


def test_a_crashed_deliverer_is_recovered(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    q.acquire_delivery()
    for i in range(4):
        q.put(f"e{i}", "x", 1, ["a"], b"{}")
    first = q.claim("a", 2, 1)
    q.settle("a", [Settlement(first[0], "done")], 1)  # e1 claimed but never settled
    q.close()  # the deliverer "dies"
    q2 = SQLiteQueue(tmp_path / "q.db")
    assert q2.acquire_delivery()
    q2.recover()
    assert [c.event_id for c in q2.claim("a", 10, 1)] == ["e1", "e2", "e3"]
    q2.close()


def test_one_deliverer_per_file(tmp_path: Path) -> None:
    a, b = SQLiteQueue(tmp_path / "q.db"), SQLiteQueue(tmp_path / "q.db")
    assert a.acquire_delivery()
    assert not b.acquire_delivery()
    a.release_delivery()
    assert b.acquire_delivery()
    a.close()
    b.close()


def test_corrupt_file_and_foreign_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(QueueCorrupt, match="damaged or is not a SQLite database"):
        SQLiteQueue(bad)
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users(id)")
    with pytest.raises(QueueCorrupt, match="not a postback queue"):
        SQLiteQueue(other)


def test_unusable_location(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(QueueError, match="cannot create the directory"):
        SQLiteQueue(tmp_path / "afile" / "q.db")


_FILL_UNTIL_FULL = """
import resource, signal, sys
from postback.delivery import spool
from postback.delivery.sqlite import SQLiteQueue
from postback.errors import QueueError
spool.SpoolWriter.mapped = sys.argv[2] == "mapped"
spool.SEGMENT_BYTES = 16_384
q = SQLiteQueue(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
accepted = 0
try:
    for i in range(1000):
        # The 11th record does not fit in what a segment may hold: mapped, allocating its
        # segment fails; with write(), the kernel writes part of it and then refuses.
        q.put(f"e{i}", "x", 1, ",a,", b"x" * (700 if i < 10 else 30_000))
        accepted += 1
except QueueError as exc:
    print(accepted)
    print(exc)
# Space again: the next events are accepted and readable after the refused one.
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
q.put("after-1", "x", 1, ",a,", b"{}")
q.put("after-2", "x", 1, ",a,", b"{}")
q.close()
"""


@pytest.mark.parametrize("how", ["mapped", "write"])
def test_full_disk_is_a_clear_error_and_nothing_is_half_accepted(tmp_path: Path, how: str) -> None:
    # A real failure to write: the child's file-size limit stands in for a full disk.
    out = subprocess.run(
        [sys.executable, "-c", _FILL_UNTIL_FULL, str(tmp_path / "q.db"), how],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    accepted, message = int(out[0]), out[1]
    assert accepted == 10
    assert "cannot write to the queue's spool directory" in message
    assert "free disk space" in message and "the event was not accepted" in message
    q = SQLiteQueue(tmp_path / "q.db")
    assert q.acquire_delivery()
    got = q.claim("a", 2000, 1)
    assert [c.event_id for c in got] == [f"e{i}" for i in range(accepted)] + ["after-1", "after-2"]
    assert list(q.spool_dir.iterdir()) == []  # ingested to the end, writer gone: deleted
    q.close()


def test_a_full_database_keeps_events_in_the_spool(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    assert q.acquire_delivery()
    pages = q._file.work.execute("PRAGMA page_count").fetchone()[0]
    q._file.work.execute(f"PRAGMA max_page_count={pages}")
    for i in range(50):
        q.put(f"e{i}", "x", 1, ["a"], b"x" * 2000)  # track() does not touch the database
    with pytest.raises(QueueError, match="cannot grow"):
        q.claim("a", 100, 1)
    q._file.work.execute("PRAGMA max_page_count=1073741823")
    assert [c.event_id for c in q.claim("a", 100, 1)] == [f"e{i}" for i in range(50)]
    q.close()


@pytest.mark.parametrize("mapped", [True, False])
def test_spool_segments_rotate_and_are_ingested_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapped: bool
) -> None:
    monkeypatch.setattr(spool, "SEGMENT_BYTES", 1000)
    monkeypatch.setattr(spool.SpoolWriter, "mapped", mapped)
    monkeypatch.setattr(timing, "INGEST_POLL", 0.0)  # look at other processes' spools every time
    writer = SQLiteQueue(tmp_path / "q.db")
    for i in range(40):
        writer.put(f"e{i}", "x", 1, ["a"], b"y" * 100)
    segments = sorted(writer.spool_dir.iterdir())
    assert len(segments) > 3
    deliverer = SQLiteQueue(tmp_path / "q.db")
    assert deliverer.acquire_delivery()
    assert deliverer.depth(["a"], 1)["a"].ready == 40
    # Rotated-away segments are deleted once ingested; the writer's open one stays.
    assert sorted(writer.spool_dir.iterdir()) == [writer._spool.segment]
    writer.put("e40", "x", 1, ["a"], b"{}")
    got = deliverer.claim("a", 100, 1)
    assert [c.event_id for c in got] == [f"e{i}" for i in range(41)]
    writer.close()
    deliverer.poll()
    deliverer.maintenance()
    assert list(writer.spool_dir.iterdir()) == []
    deliverer.close()


def test_a_record_half_copied_waits_and_a_torn_one_is_skipped_once_its_writer_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mapped segment, as a reader on another core may see it mid-copy.
    monkeypatch.setattr(timing, "INGEST_POLL", 0.0)
    writer = SQLiteQueue(tmp_path / "q.db")
    writer.put("e0", "x", 1, ["a"], b"{}")
    w = writer._spool
    assert w._map is not None and w.segment is not None
    segment = w.segment
    whole = spool.encode("e1", "x", 1, ",a,", b"{}")
    at = w._size
    w._map[at : at + 12] = whole[:12]  # the header and a little of the body, so far
    deliverer = SQLiteQueue(tmp_path / "q.db")
    assert deliverer.acquire_delivery()
    assert [c.event_id for c in deliverer.claim("a", 10, 1)] == ["e0"]  # waits for the rest
    w._map[at : at + len(whole)] = whole
    w._size += len(whole)
    deliverer.poll()
    assert [c.event_id for c in deliverer.claim("a", 10, 1)] == ["e1"]
    torn = spool.encode("e2", "x", 1, ",a,", b"{}")
    w._map[w._size : w._size + 20] = torn[:20]
    w._map.close()  # the writer dies here: no truncation, its lock goes with its descriptor
    w._map = None
    assert w._fd is not None
    os.close(w._fd)
    w._fd = None
    deliverer.maintenance()
    assert deliverer.claim("a", 10, 1) == []
    assert "damaged record at offset" in caplog.text
    assert not segment.exists()
    deliverer.close()
    writer.close()


def test_write_path_a_record_cut_short_is_skipped_only_once_its_writer_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Filesystems that cannot allocate ahead get one write() per record instead.
    monkeypatch.setattr(timing, "INGEST_POLL", 0.0)
    monkeypatch.setattr(spool.SpoolWriter, "mapped", False)
    writer = SQLiteQueue(tmp_path / "q.db")
    writer.put("e0", "x", 1, ["a"], b"{}")
    segment = writer._spool.segment
    assert segment is not None
    whole = spool.encode("e1", "x", 1, ",a,", b"{}")
    with open(segment, "ab") as f:  # the first half of a record: a write in progress
        f.write(whole[:10])
    deliverer = SQLiteQueue(tmp_path / "q.db")
    assert deliverer.acquire_delivery()
    assert [c.event_id for c in deliverer.claim("a", 10, 1)] == ["e0"]
    with open(segment, "ab") as f:  # the writer finishes it
        f.write(whole[10:])
    deliverer.poll()
    assert [c.event_id for c in deliverer.claim("a", 10, 1)] == ["e1"]
    with open(segment, "ab") as f:  # a torn record, and then the writer dies
        f.write(whole[:20])
    writer._spool.close()
    deliverer.maintenance()
    assert deliverer.claim("a", 10, 1) == []
    assert "damaged record at offset" in caplog.text
    assert not segment.exists()
    deliverer.close()
    writer.close()


def _framed(body: bytes) -> bytes:
    """A record with a valid checksum around any body (what no postback writer makes)."""
    return spool.HEADER.pack(len(body), zlib.crc32(body)) + body


def test_parse_records_reads_a_payload_holding_newlines_and_stops_at_a_malformed_header() -> None:
    # A sealed payload is binary: only the first newline ends the header.
    sealed = b"\x00PB1\n\x9c\nmore\n"
    good = spool.encode("e1", "x", 7, ",a,", sealed)
    ends: list[int] = []
    rows, used, damaged = spool.parse_records(good + good, ends)
    assert rows == [("e1", "x", 7, ",a,", sealed)] * 2
    assert (used, damaged, ends) == (2 * len(good), False, [len(good), 2 * len(good)])
    # Checksums that match but headers that are not [id, name, created_ms, vendors]: damage
    # where they start (a JSON number used to raise TypeError out of the reader).
    for body in (b"5\n{}", b"[1,2]\n{}", b'["e", "x", 1, ",a,"]', b"not json\n{}"):
        rows, used, damaged = spool.parse_records(good + _framed(body) + good)
        assert (rows, used, damaged) == ([("e1", "x", 7, ",a,", sealed)], len(good), True), body


@pytest.mark.parametrize("mapped", [True, False])
@pytest.mark.parametrize("split", range(1, 9))
def test_a_chunk_ending_inside_a_record_header_is_read_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapped: bool, split: int
) -> None:
    # The reader goes through a segment a chunk at a time; where a chunk ends inside the next
    # record's 8-byte header, that is not the end of the segment (it used to be taken for
    # it, and a released segment was deleted with the rest of its records).
    monkeypatch.setattr(spool.SpoolWriter, "mapped", mapped)
    size = len(spool.encode("e00", "x", 1, ",a,", b"{}"))
    monkeypatch.setattr(sqlite_ingest, "INGEST_CHUNK", 3 * size + split)
    writer = SQLiteQueue(tmp_path / "q.db")
    for i in range(20):
        writer.put(f"e{i:02d}", "x", 1, ["a"], b"{}")
    writer.close()  # the writer lets go: what the reader calls the end is final
    deliverer = SQLiteQueue(tmp_path / "q.db")
    assert deliverer.acquire_delivery()
    assert [c.event_id for c in deliverer.claim("a", 100, 1)] == [f"e{i:02d}" for i in range(20)]
    deliverer.close()


def test_a_process_that_does_not_deliver_counts_the_spool(tmp_path: Path) -> None:
    writer = SQLiteQueue(tmp_path / "q.db")
    observer = SQLiteQueue(tmp_path / "q.db")
    for i in range(5):
        writer.put(f"e{i}", "x", 1, ["a", "b"] if i % 2 else ["a"], b"{}")
    assert observer.depth(["a", "b"], 1)["a"].ready == 5
    for i in range(5, 8):
        writer.put(f"e{i}", "x", 1, ["a"], b"{}")
    depth = observer.depth(["a", "b"], 1)  # only the three new records are read
    assert (depth["a"].ready, depth["b"].ready) == (8, 2)
    deliverer = SQLiteQueue(tmp_path / "q.db")
    assert deliverer.acquire_delivery()
    deliverer.poll()  # ingested: counted from the log now, not twice
    depth = observer.depth(["a", "b"], 1)
    assert (depth["a"].ready, depth["b"].ready) == (8, 2)
    writer.put("e8", "x", 1, ["b"], b"{}")
    assert observer.depth(["a", "b"], 1)["b"].ready == 3
    for q in (deliverer, observer, writer):
        q.close()


def test_track_never_waits_for_the_database_lock(tmp_path: Path) -> None:
    import sqlite3

    q = SQLiteQueue(tmp_path / "q.db")
    other = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in a long write transaction
    started = time.monotonic()
    q.put("e1", "x", 1, ["a"], b"{}")
    assert time.monotonic() - started < 0.5
    assert q.depth(["a"], 1)["a"].ready == 1  # counted from the spool
    other.execute("COMMIT")
    other.close()
    q.close()


def _spawn(queue: str, base: str, count: int, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.procs.track_loop", queue, base, str(count), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def _drain(sandbox: Sandbox, tmp_path: Path, expect: set[str]) -> set[str]:
    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db"},
        "vendors": {"example": sandbox.vendor_config("example")},
    }
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    t.deliverer.start()
    deadline = time.monotonic() + 30
    got: set[str] = set()
    while time.monotonic() < deadline:
        got = {r["event_id"] for r in sandbox.received("example")}
        if expect <= got:
            break
        time.sleep(0.05)
    t.close(timeout=5)
    return got


@pytest.mark.slow
def test_sigkill_in_a_tight_track_loop_loses_nothing(tmp_path: Path, sandbox: Sandbox) -> None:
    sandbox.set_fault("example", status=503)  # the vendor is down: everything stays queued
    proc = _spawn(f"sqlite:///{tmp_path}/q.db", sandbox.base_url("example"), 100_000, "loop")
    assert proc.stdout is not None
    returned: list[str] = []
    for line in proc.stdout:
        returned.append(line.strip())
        if len(returned) >= 3000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rest = proc.stdout.read().split()
    returned += [r for r in rest if r != "DONE"]
    sandbox.clear_faults()
    got = _drain(sandbox, tmp_path, set(returned))
    assert set(returned) <= got
    assert len(returned) >= 3000


@pytest.mark.slow
def test_exit_without_flush_loses_nothing(tmp_path: Path, sandbox: Sandbox) -> None:
    sandbox.set_fault("example", latency=0.05)  # slower than the exit hook's 0.5 s budget
    proc = _spawn(f"sqlite:///{tmp_path}/q.db", sandbox.base_url("example"), 400, "exit")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    returned = {x for x in out.split() if x != "DONE"}
    assert len(returned) == 400
    sandbox.clear_faults()
    got = _drain(sandbox, tmp_path, returned)
    assert returned <= got


@pytest.mark.slow
def test_processes_share_one_file_and_one_deliverer(tmp_path: Path, sandbox: Sandbox) -> None:
    procs = [
        _spawn(f"sqlite:///{tmp_path}/q.db", sandbox.base_url("example"), 200, "loop")
        for _ in range(2)
    ]
    ids: list[str] = []
    for p in procs:
        assert p.stdout is not None
        for line in p.stdout:
            if line.strip() == "DONE":
                break
            ids.append(line.strip())
    deadline = time.monotonic() + 30
    while len(sandbox.received("example")) < 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait()
    received = [r["event_id"] for r in sandbox.received("example")]
    # Both processes used event ids evt-0..evt-199, so each id arrives twice: once per track().
    assert sorted(received) == sorted(ids)
    assert len(received) == 400


def test_fork_child_delivers_its_own_events(tmp_path: Path, sandbox: Sandbox) -> None:
    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db"},
        "vendors": {"example": sandbox.vendor_config("example")},
    }
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    t.track("sign_up", user={"email": "parent@x.co"}, event_id="from-parent")
    t.flush(timeout=5)
    pid = os.fork()
    if pid == 0:  # child: the parent's threads did not survive the fork
        code = 1
        try:
            t.track("sign_up", user={"email": "child@x.co"}, event_id="from-child")
            t.close(timeout=5)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    t.close(timeout=5)
    received = {r["event_id"] for r in sandbox.received("example")}
    assert received == {"from-parent", "from-child"}


def test_claimed_dataclass_is_slotted() -> None:
    c = Claimed(1, "e", b"{}", 0, 1)
    with pytest.raises(AttributeError):
        c.extra = 1  # type: ignore[attr-defined]


@pytest.mark.slow
def test_the_exit_hook_delivers_within_its_budget(tmp_path: Path, sandbox: Sandbox) -> None:
    # No fault: within exit_timeout (0.5 s in the child) everything is delivered before the
    # process ends, with no restart needed.
    proc = _spawn(f"sqlite:///{tmp_path}/q.db", sandbox.base_url("example"), 300, "exit")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    returned = {x for x in out.split() if x != "DONE"}
    assert len(returned) == 300
    assert {r["event_id"] for r in sandbox.received("example")} == returned


def test_ingest_waits_for_another_process_then_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    q = SQLiteQueue(tmp_path / "q.db", busy_timeout=0.1)
    assert q.acquire_delivery()
    q.put("e1", "x", 1, ["a"], b"{}")
    other = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(QueueError, match=r"another process kept the queue file .* locked"):
        q.claim("a", 10, 1)
    other.execute("COMMIT")
    other.close()
    assert [c.event_id for c in q.claim("a", 10, 1)] == ["e1"]  # nothing was lost
    q.close()


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_processes_opening_a_new_file_at_once_all_start(tmp_path: Path) -> None:
    # Each child opens the same not-yet-existing queue file at the same moment.
    code = (
        "import sys, time; from postback.delivery.sqlite import SQLiteQueue; "
        "t = float(sys.argv[2]); time.sleep(max(0, t - time.time())); "
        "q = SQLiteQueue(sys.argv[1]); q.put('e', 'x', 1, ['a'], b'{}'); q.close()"
    )
    start = str(time.time() + 1.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "new.db"), start],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    q = SQLiteQueue(tmp_path / "new.db")
    assert q.depth(["a"], 1)["a"].ready == 6
    q.close()


@pytest.mark.parametrize("there", ["replay", "discard"])
def test_a_replay_racing_another_process_replay_or_discard_queues_once_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, there: str
) -> None:
    # Two processes (two dashboard workers, the CLI and the dashboard) replay the same dead
    # letter: the second one's read of the dead letters must not be taken before the first
    # one's replay is written, or the event is queued (and sent) twice. Or one discards it
    # (by hand, or erase() for a person): it must not come back.
    q = SQLiteQueue(tmp_path / "q.db")
    q.serve(["a"])
    assert q.acquire_delivery()
    q.put("e0", "sign_up", 1000, ["a"], b"{}")
    (got,) = q.claim("a", 1, 10_000)
    q.settle("a", [Settlement(got, "dead", error="refused", attempts=1)], 10_000)
    (dead,) = q.dead_letters()
    other = SQLiteQueue(tmp_path / "q.db", busy_timeout=10.0)  # the other process
    replayed_there: list[list[str]] = []
    there = threading.Thread(
        target=lambda: replayed_there.append(
            [
                d.event_id
                for d in (other.requeue_dead if there == "replay" else other.discard_dead)(
                    ids=[dead.id]
                )
            ]
        )
    )
    read = type(q._log).dead_rows

    def read_then_other_replays(self, *args):  # type: ignore[no-untyped-def]
        rows = read(self, *args)
        if self is q._log and not there.is_alive():
            there.start()
            there.join(0.5)  # done at once unless our replay holds the write lock
        return rows

    monkeypatch.setattr(type(q._log), "dead_rows", read_then_other_replays)
    replayed_here = [d.event_id for d in q.requeue_dead(ids=[dead.id])]
    there.join()
    assert sorted(replayed_here + replayed_there[0]) == ["e0"]
    queued = [c.event_id for c in q.claim("a", 10, 20_000)]
    assert queued == (["e0"] if replayed_here or there == "replay" else [])
    other.close()
    q.close()


def test_a_failed_remember_of_a_second_window_forgets_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Vendors with two different dedupe windows: the first window's keys are remembered, then
    # remembering the second fails (the dedupe file is locked or the disk full) and track()
    # raises. The app's retry of the event must not be dropped as a duplicate for the first.
    q = SQLiteQueue(tmp_path / "q.db")
    remember = SQLiteQueue.remember_for
    calls: list[list[str]] = []

    def second_fails(self, vendors, key, window_ms):  # type: ignore[no-untyped-def]
        calls.append(list(vendors))
        if len(calls) == 2:
            raise QueueError("dedupe file: database is locked")
        return remember(self, vendors, key, window_ms)

    monkeypatch.setattr(SQLiteQueue, "remember_for", second_fails)
    windows = {"a": 60_000, "b": 120_000}
    with pytest.raises(QueueError):
        q.put_unique("e1", "purchase", 1_000, ["a", "b"], b"{}", windows)
    monkeypatch.undo()
    assert q.put_unique("e1", "purchase", 1_000, ["a", "b"], b"{}", windows) == []
    q.close()

"""The SQLite deliverer's fast path: fresh events handed to the lanes straight from the spool.

What must hold: an event leaves the spool's keeping (its segment's saved offset moves past it)
only once every vendor it is for has either had it delivered or has it written in the log (a
retry row or a dead letter); events that wait too long, and events for vendors served
elsewhere, go to the log; a deliverer that stops writes back what it held; one that dies
leaves it in the spool for the next (at least once, never lost).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from postback import Tracker
from postback.delivery import spool, sqlite_ingest, timing
from postback.delivery.held import HeldClaim
from postback.delivery.queue import Settlement
from postback.delivery.sqlite import SQLiteQueue
from postback.sandbox import Sandbox


def deliverer(path: Path, vendors: list[str]) -> SQLiteQueue:
    q = SQLiteQueue(path)
    assert q.acquire_delivery()
    q.serve(vendors)
    q.recover()
    return q


def logged(q: SQLiteQueue) -> list[tuple[str, str]]:
    return q._file.work.execute("SELECT event_id, vendors FROM events ORDER BY seq").fetchall()


def saved_offsets(q: SQLiteQueue) -> dict[str, int]:
    q.poll()  # progress is saved every few milliseconds, and on every poll
    return dict(q._file.work.execute("SELECT segment, offset FROM spool"))


def die(q: SQLiteQueue) -> None:
    """The deliverer process dies: its lock goes, nothing of what it held is written."""
    assert q._file.lock_fd is not None
    os.close(q._file.lock_fd)
    q._file.lock_fd = None


@pytest.fixture(autouse=True)
def _look_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "INGEST_POLL", 0.0)
    monkeypatch.setattr(timing, "HOT_LOOK", 0.0)


def test_delivered_events_never_touch_the_log(tmp_path: Path) -> None:
    q = deliverer(tmp_path / "q.db", ["a"])
    for i in range(250):
        q.put(f"e{i}", "x", 1, ["a"], b"{}")
    got: list[str] = []
    while batch := q.claim("a", 100, 1):
        assert all(isinstance(c, HeldClaim) for c in batch)  # held from the spool, not the log
        got += [c.event_id for c in batch]
        q.settle("a", [Settlement(c, "done") for c in batch], 1)
    assert got == [f"e{i}" for i in range(250)]
    assert logged(q) == []
    segment = q._spool.segment
    assert segment is not None
    assert saved_offsets(q) == {segment.name: q._spool._size}
    assert q.depth(["a"], 1)["a"].pending == 0
    q.close()


def test_the_offset_moves_only_past_settled_chunks_and_a_crash_redelivers(
    tmp_path: Path,
) -> None:
    q = deliverer(tmp_path / "q.db", ["a"])
    for i in range(3):
        q.put(f"e{i}", "x", 1, ["a"], b"{}")
    first = q.claim("a", 10, 1)  # the first chunk: e0-e2
    for i in range(3, 6):
        q.put(f"e{i}", "x", 1, ["a"], b"{}")
    second = q.claim("a", 10, 1)  # the second chunk: e3-e5
    assert [c.event_id for c in first + second] == [f"e{i}" for i in range(6)]
    q.settle("a", [Settlement(c, "done") for c in second], 1)
    assert saved_offsets(q) == {}  # the first chunk is still open: nothing can be let go
    q.settle("a", [Settlement(first[0], "done")], 1)
    assert saved_offsets(q) == {}
    assert q.depth(["a"], 1)["a"].inflight == 2

    die(q)  # with e1 and e2 in flight
    q2 = deliverer(tmp_path / "q.db", ["a"])
    again = [c.event_id for c in q2.claim("a", 10, 1)]
    # At least once: the unsettled ones come back (with the chunk after them), none is lost.
    assert {"e1", "e2"} <= set(again) and again == sorted(again, key=lambda e: int(e[1:]))
    q2.settle("a", [Settlement(c, "done") for c in q2.claim("a", 10, 1)], 1)
    q2.close()
    q._spool.close()


def test_failures_are_written_to_the_log_before_the_spool_lets_go(tmp_path: Path) -> None:
    q = deliverer(tmp_path / "q.db", ["a"])
    for i in range(3):
        q.put(f"e{i}", "x", 1, ["a"], b'{"n": %d}' % i)
    e0, e1, e2 = q.claim("a", 10, 1_000)
    q.settle(
        "a",
        [
            Settlement(e0, "done"),
            Settlement(e1, "retry", due_ms=5_000, error="HTTP 503", attempts=1),
            Settlement(e2, "dead", error="refused: bad email", attempts=1),
        ],
        1_000,
    )
    # The retry is a log row no vendor reads as new, with its pending row; the dead letter
    # keeps its own copy of the event.
    assert logged(q) == [("e1", ",")]
    assert q.depth(["a"], 1_000)["a"].retrying == 1
    (dead,) = q.dead_letters()
    assert (dead.event_id, dead.reason, dead.payload) == ("e2", "refused: bad email", b'{"n": 2}')
    segment = q._spool.segment
    assert segment is not None
    assert saved_offsets(q) == {segment.name: q._spool._size}  # all settled: let go
    assert q.claim("a", 10, 2_000) == []  # not due yet
    (retry,) = q.claim("a", 10, 5_000)
    assert (retry.event_id, retry.attempts, retry.payload) == ("e1", 1, b'{"n": 1}')
    q.settle("a", [Settlement(retry, "done")], 5_000)
    assert q.depth(["a"], 5_000)["a"].pending == 0
    q.close()


def test_released_events_are_held_again(tmp_path: Path) -> None:
    q = deliverer(tmp_path / "q.db", ["a"])
    for i in range(3):
        q.put(f"e{i}", "x", 1, ["a"], b"{}")
    claimed = q.claim("a", 2, 1)
    q.settle("a", [Settlement(c, "release") for c in claimed], 1)
    assert q.depth(["a"], 1)["a"].ready == 3
    assert [c.event_id for c in q.claim("a", 10, 1)] == ["e0", "e1", "e2"]
    assert logged(q) == []
    q.close()


def test_events_for_a_vendor_served_elsewhere_go_to_the_log(tmp_path: Path) -> None:
    q = deliverer(tmp_path / "q.db", ["a"])
    q.put("e0", "x", 1, ["a", "c"], b"{}")
    q.put("e1", "x", 1, ["c"], b"{}")
    (held,) = q.claim("a", 10, 1)
    assert held.event_id == "e0" and isinstance(held, HeldClaim)
    assert logged(q) == [("e0", ",c,"), ("e1", ",c,")]
    q.settle("a", [Settlement(held, "done")], 1)
    q.close()


def test_held_events_that_wait_too_long_are_written_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = deliverer(tmp_path / "q.db", ["a", "b"])
    for i in range(4):
        q.put(f"e{i}", "x", 1, ["a", "b"], b"{}")
    inflight = q.claim("a", 2, 1)  # e0, e1 in flight for a; b is down and claims nothing
    monkeypatch.setattr(timing, "HOT_STALE", 0.0)
    q.poll()
    # For b every event is new in the log; for a, e0 and e1 are leased retries (their
    # requests are still out) and e2, e3 are new.
    assert logged(q) == [("e0", ",b,"), ("e1", ",b,"), ("e2", ",a,b,"), ("e3", ",a,b,")]
    segment = q._spool.segment
    assert segment is not None
    assert saved_offsets(q) == {segment.name: q._spool._size}
    depth = q.depth(["a", "b"], 1)
    assert (depth["a"].inflight, depth["a"].ready, depth["b"].ready) == (2, 2, 4)
    # The requests in flight settle against their log rows.
    q.settle(
        "a",
        [
            Settlement(inflight[0], "done"),
            Settlement(inflight[1], "retry", due_ms=1, error="503", attempts=1),
        ],
        1,
    )
    rest = q.claim("a", 10, 2)
    assert [(c.event_id, c.attempts) for c in rest] == [("e1", 1), ("e2", 0), ("e3", 0)]
    q.settle("a", [Settlement(c, "done") for c in rest], 2)
    b = q.claim("b", 10, 2)
    assert [c.event_id for c in b] == ["e0", "e1", "e2", "e3"]
    q.settle("b", [Settlement(c, "done") for c in b], 2)
    depth = q.depth(["a", "b"], 2)
    assert depth["a"].pending == depth["b"].pending == 0
    q.close()


def test_stopping_writes_back_what_was_held(tmp_path: Path) -> None:
    q = deliverer(tmp_path / "q.db", ["a"])
    for i in range(5):
        q.put(f"e{i}", "x", 1, ["a"], b"{}")
    e0, _ = q.claim("a", 2, 1)
    q.settle("a", [Settlement(e0, "done")], 1)  # e1 stays in flight: the stop cut it off
    q.close()
    q2 = deliverer(tmp_path / "q.db", ["a"])
    again = q2.claim("a", 10, 1)
    # e0 is not sent twice; e1 comes back as a retry, e2-e4 as new events.
    assert sorted(c.event_id for c in again) == ["e1", "e2", "e3", "e4"]
    q2.settle("a", [Settlement(c, "done") for c in again], 1)
    assert q2.depth(["a"], 1)["a"].pending == 0
    q2.close()


def test_the_held_set_is_bounded_and_the_rest_waits_in_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_ingest, "HOT_LIMIT", 5)
    monkeypatch.setattr(sqlite_ingest, "HOLD_CHUNK", 1)  # one record per chunk
    q = deliverer(tmp_path / "q.db", ["a"])
    for i in range(20):
        q.put(f"e{i}", "x", 1, ["a"], b"{}")
    assert q.depth(["a"], 1)["a"].ready == 20
    assert q._held.held_count == 5
    got = q.claim("a", 3, 1)
    assert q.depth(["a"], 1)["a"].ready == 17 and q.depth(["a"], 1)["a"].inflight == 3
    seen = [c.event_id for c in got]
    q.settle("a", [Settlement(c, "done") for c in got], 1)
    while batch := q.claim("a", 4, 1):
        seen += [c.event_id for c in batch]
        assert q._held.held_count <= 5 + 1
        q.settle("a", [Settlement(c, "done") for c in batch], 1)
    assert seen == [f"e{i}" for i in range(20)]
    assert logged(q) == []
    q.close()


def test_the_next_segment_is_prepared_off_the_track_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "SEGMENT_BYTES", 1000)
    q = deliverer(tmp_path / "q.db", ["a"])
    writer = q._spool
    writer.prepare()
    assert writer._next is None  # not a quarter full yet
    for i in range(6):
        q.put(f"e{i}", "x", 1, ["a"], b"y" * 100)
    first = writer.segment
    q.poll()  # the coordinator's poll: prepares the next segment
    assert writer._next is not None
    prepared = writer._next[2]
    for i in range(6, 12):
        q.put(f"e{i}", "x", 1, ["a"], b"y" * 100)
    assert writer.segment == prepared  # track() switched to it without creating one
    assert first is not None and spool.SegmentReader(first).writer_gone() is False
    q.poll()  # lets go of the old segment
    reader = spool.SegmentReader(first)
    assert reader.writer_gone()
    reader.close()
    got: list[str] = []
    while batch := q.claim("a", 100, 1):
        got += [c.event_id for c in batch]
        q.settle("a", [Settlement(c, "done") for c in batch], 1)
    q.poll()
    assert got == [f"e{i}" for i in range(12)]
    assert not first.exists()  # read to its end, its writer gone: deleted
    q.close()
    assert list(q.spool_dir.iterdir()) == []


def test_track_starts_a_small_segment_and_prepare_a_full_prefaulted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment track() has to start itself costs it a page fault per 4 KiB as it fills, so
    it is small; the one prepare() makes (off the track() path) is full size, and its pages
    are written with zeros first (still reads as nothing written)."""
    monkeypatch.setattr(spool, "FIRST_SEGMENT_BYTES", 4096)
    monkeypatch.setattr(spool, "SEGMENT_BYTES", 64 * 1024)
    monkeypatch.setattr(spool, "PREFAULT_CHUNK", 5000)  # chunks that do not divide the size
    prefaulted: list[int] = []
    real_prefault = spool._prefault

    def prefault(fd: int, size: int) -> None:
        prefaulted.append(size)
        real_prefault(fd, size)

    monkeypatch.setattr(spool, "_prefault", prefault)
    q = deliverer(tmp_path / "q.db", ["a"])
    writer = q._spool
    for i in range(20):  # over a quarter of 4 KiB
        q.put(f"e{i}", "x", 1, ["a"], b"y" * 50)
    first = writer.segment
    assert first is not None and first.stat().st_size == 4096
    assert prefaulted == []
    q.poll()
    assert prefaulted == [64 * 1024]
    assert writer._next is not None
    prepared = writer._next[2]
    assert prepared.read_bytes() == bytes(64 * 1024)
    for i in range(20, 60):
        q.put(f"e{i}", "x", 1, ["a"], b"y" * 50)
    assert writer.segment == prepared
    q.poll()
    got: list[str] = []
    while batch := q.claim("a", 100, 1):
        got += [c.event_id for c in batch]
        q.settle("a", [Settlement(c, "done") for c in batch], 1)
    assert got == [f"e{i}" for i in range(60)]
    q.close()


def test_the_depth_counts_each_event_once_while_lanes_read_the_spool(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vendor answering 503: lanes keep reading the spool, failing and writing retries
    while stats() counts; every count is exactly what was tracked (none twice, none lost)."""
    monkeypatch.setattr(
        sqlite_ingest, "HOLD_CHUNK", 2_000
    )  # many small reads: many chances to race
    monkeypatch.setattr(sqlite_ingest, "HOT_LIMIT", 40)  # and the lanes read on as they fail
    sandbox.set_fault("example", status=503)
    t = make_tracker(
        vendor={"retry": {"max_attempts": 1000, "max_age": "1h"}, "concurrency": 4, "linger": 0}
    )
    n = 3_000
    for i in range(n):
        t.track("sign_up", user={"email": f"u{i}@x.co"}, event_id=f"d-{i}")
    counts = [t.stats()["example"]["queue_depth"] for _ in range(40)]
    assert counts == [n] * 40
    sandbox.clear_faults()
    assert t.flush(timeout=30).complete
    assert {r["event_id"] for r in sandbox.received("example")} == {f"d-{i}" for i in range(n)}


def test_a_slow_vendor_does_not_hold_up_another_when_the_held_set_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b takes nothing (down, paused, slow): its share fills the held set. a, which keeps
    taking, must not wait HOT_STALE for the set to be written back."""
    monkeypatch.setattr(sqlite_ingest, "HOT_LIMIT", 6)
    monkeypatch.setattr(sqlite_ingest, "HOLD_CHUNK", 1)  # one record per chunk
    monkeypatch.setattr(timing, "HOT_STALE", 3600.0)
    q = deliverer(tmp_path / "q.db", ["a", "b"])
    for i in range(30):
        q.put(f"e{i}", "x", 1, ["a", "b"], b"{}")
    got: list[str] = []
    for _ in range(40):
        batch = q.claim("a", 2, 1)
        got += [c.event_id for c in batch]
        q.settle("a", [Settlement(c, "done") for c in batch], 1)
    assert got == [f"e{i}" for i in range(30)]
    # What b did not take went to the log, with the offsets past it: nothing is lost for b.
    b = q.claim("b", 100, 1)
    assert sorted(c.event_id for c in b) == sorted(f"e{i}" for i in range(30))
    q.settle("b", [Settlement(c, "done") for c in b], 1)
    assert q.depth(["a", "b"], 1)["b"].pending == 0
    q.close()

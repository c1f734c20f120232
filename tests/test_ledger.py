"""The delivery ledger: ``tracker.status()`` and ``postback status`` over a real SQLite file (and
memory://), across processes; retention and the size cap; notes stored without secrets or PII."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from postback import Tracker
from postback.delivery.deliverer import ProcessDeliverer
from postback.delivery.ledger_sqlite import SQLiteLedger
from postback.delivery.ledgers import open_ledger
from postback.delivery.queue import Claimed, Settlement
from postback.delivery.settle import Verdict
from postback.destination import Delivered
from postback.ledger import (
    BUSY_ROWS,
    FLUSH_BUSY,
    FLUSH_EVERY,
    Ledger,
    LedgerEntry,
    LedgerWriter,
    MemoryLedger,
    read_status,
    safe_note,
)
from postback.sandbox import Sandbox
from tests.redis.support import Workers, write_config

pytestmark = pytest.mark.timeout(120)


def _wait_for(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _track_three(t: Tracker, prefix: str = "") -> None:
    t.track(
        "purchase",
        user={"email": "ann@example.com"},
        value=5,
        currency="USD",
        event_id=f"{prefix}ok",
        vendors={"example": {"click_id": "c9"}},
    )
    t.track(
        "purchase",
        user={"email": "ann@example.com"},
        value=-5,
        currency="USD",
        event_id=f"{prefix}bad",
    )
    t.track("purchase", user={}, value=5, currency="USD", event_id=f"{prefix}skip")


def test_status_per_outcome_on_sqlite(make_tracker: Callable[..., Tracker], tmp_path: Path) -> None:
    t = make_tracker(core={"workers": True})
    _track_three(t)
    assert t.flush(10).complete
    ok = t.status("ok")
    assert ok.name == "purchase" and ok.queued_ms is not None
    v = ok.vendors["example"]
    assert v.state == "delivered" and v.vendor_ref == "campaign=cmp-c9"
    assert [(a.number, a.outcome) for a in v.attempts] == [(1, "delivered")]
    assert v.delivered_ms is not None and v.delivered_ms >= v.queued_ms  # type: ignore[operator]
    bad = t.status("bad").vendors["example"]
    assert bad.state == "dead-lettered" and bad.dead_reason == "negative value"
    skip = t.status("skip").vendors["example"]
    assert skip.state == "skipped" and skip.skipped_reason == "no user id"
    assert not t.status("never-tracked").found
    path = tmp_path / "queue.db.ledger"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_attempts_with_times_and_notes(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", status=503, count=2)
    t = make_tracker(core={"workers": True})
    t.track("sign_up", user={"email": "ann@example.com"}, event_id="flaky")
    assert t.flush(10).complete
    v = t.status("flaky").vendors["example"]
    assert v.state == "delivered"
    assert [(a.number, a.outcome, a.note) for a in v.attempts] == [
        (1, "retry", "HTTP 503"),
        (2, "retry", "HTTP 503"),
        (3, "delivered", ""),
    ]
    times = [a.at_ms for a in v.attempts]
    assert times == sorted(times)


def test_queued_is_derived_from_the_queue_not_written(
    make_tracker: Callable[..., Tracker], tmp_path: Path
) -> None:
    t = make_tracker(core={"workers": False})
    t.track("sign_up", user={"email": "ann@example.com"}, event_id="waiting")
    t.queue.maintenance()  # ingest this process's spool into the queue file
    st = t.status("waiting")
    assert st.vendors["example"].state == "queued" and st.queued_ms is not None
    assert st.vendors["example"].attempts == ()
    ledger = SQLiteLedger(tmp_path / "queue.db")
    assert ledger.read("waiting") == []  # nothing was written for it
    ledger.close()


def test_a_delivery_child_writes_and_the_app_reads(make_tracker: Callable[..., Tracker]) -> None:
    t = make_tracker(core={"workers": "process"})
    _track_three(t, "p-")
    assert t.flush(30).complete
    assert isinstance(t.deliverer, ProcessDeliverer)
    child = t.deliverer.process.pid
    assert child is not None and child != os.getpid()
    assert t.engine.lanes["example"].stats.delivered == 0  # this process delivered nothing
    assert t.status("p-ok").vendors["example"].state == "delivered"
    assert t.status("p-bad").vendors["example"].state == "dead-lettered"
    assert t.status("p-skip").vendors["example"].state == "skipped"  # written by the app


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_postback_status_in_another_process(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, tmp_path: Path
) -> None:
    t = make_tracker(core={"workers": True})
    _track_three(t, "c-")
    assert t.flush(10).complete
    config = write_config(
        tmp_path / "postback.toml",
        {
            "postback": {"queue": f"sqlite:///{tmp_path}/queue.db", "workers": False},
            "vendors": {"example": sandbox.vendor_config("example")},
        },
    )
    env = Workers(tmp_path / "shim").env

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "postback", "status", *args, "-c", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = status("c-ok", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["vendors"]["example"]["state"] == "delivered"
    assert data["vendors"]["example"]["attempts"][0]["number"] == 1
    text = status("c-bad")
    assert text.returncode == 0 and "dead-lettered: negative value" in text.stdout
    missing = status("no-such-event")
    assert missing.returncode == 1 and "no record" in missing.stdout


def _rows(n: int, at_ms: int, event: str = "e") -> list[LedgerEntry]:
    return [LedgerEntry(f"{event}{i}", "example", at_ms + i, "delivered", 1) for i in range(n)]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_retention_and_size_cap(kind: str, tmp_path: Path) -> None:
    def make(retention: float, cap: int) -> Ledger:
        if kind == "sqlite":
            return SQLiteLedger(tmp_path / "q.db", retention=retention, max_entries=cap)
        return MemoryLedger(retention=retention, max_entries=cap)

    now = int(time.time() * 1000)
    ledger = make(retention=1.0, cap=1000)
    ledger.write(_rows(3, now - 5000, "old") + _rows(2, now, "new"))
    assert ledger.prune(now) == 3
    assert ledger.read("old0") == [] and len(ledger.read("new1")) == 1
    ledger.close()
    capped = make(retention=3600.0, cap=4)
    capped.write(_rows(10, now, "c"))
    capped.prune(now)
    kept = [e for e in (f"c{i}" for i in range(10)) if capped.read(e)]
    assert kept == ["c6", "c7", "c8", "c9"]  # the newest rows
    capped.close()


def test_the_writer_prunes_with_the_configured_retention(
    make_tracker: Callable[..., Tracker], tmp_path: Path
) -> None:
    t = make_tracker(core={"workers": True, "ledger_retention": "1s", "ledger_max_entries": 3})
    ledger = t.ledger.ledger
    assert isinstance(ledger, SQLiteLedger)
    assert ledger.retention == 1.0 and ledger.max_entries == 3
    for i in range(5):
        t.track("sign_up", user={"email": "ann@example.com"}, event_id=f"r{i}")
    assert t.flush(10).complete
    t.ledger._next_prune = 0.0  # prune on the next write rather than a minute from now
    t.ledger.flush()
    assert [i for i in range(5) if t.status(f"r{i}").found] == [2, 3, 4]


class CountingLedger(MemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, entries: Sequence[LedgerEntry]) -> None:
        self.writes += 1
        super().write(entries)


def test_outcomes_are_written_in_batches_not_per_event(sandbox: Sandbox) -> None:
    import postback.testing.example as example

    counting = CountingLedger()
    cfg = {
        "postback": {"queue": "memory://", "workers": True},
        "vendors": {"example": {**sandbox.vendor_config("example"), "linger": 0.01}},
    }
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        t.ledger.ledger = counting
        counting.queue = t.queue
        for i in range(500):
            t.track("sign_up", user={"email": f"u{i}@example.com"}, event_id=f"b{i}")
        assert t.flush(20).complete
        assert all(t.status(f"b{i}").vendors["example"].state == "delivered" for i in (0, 499))
        # 500 events in batches of up to 50: a write per flush window, never one per event.
        assert 1 <= counting.writes <= 20
    finally:
        t.close()


def test_memory_queue_status_and_queued(sandbox: Sandbox) -> None:
    import postback.testing.example as example

    cfg = {
        "postback": {"queue": "memory://", "workers": False},
        "vendors": {"example": sandbox.vendor_config("example")},
    }
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        assert isinstance(open_ledger(t.queue), MemoryLedger)
        t.track("sign_up", user={"email": "ann@example.com"}, event_id="m1")
        assert t.status("m1").vendors["example"].state == "queued"
    finally:
        t.close(timeout=0)


def test_notes_are_stored_without_secrets_or_personal_data(
    make_tracker: Callable[..., Tracker],
) -> None:
    t = make_tracker()
    dest = t.destinations["example"]
    note = safe_note("refused ann@example.com with key sandbox-example-key from 203.0.113.9", dest)
    assert "ann@example.com" not in note and "sandbox-example-key" not in note
    assert "203.0.113.9" not in note and note.startswith("refused ")


def test_a_backend_that_fails_keeps_rows_for_the_next_write() -> None:
    class Flaky(MemoryLedger):
        fail = True

        def write(self, entries: Sequence[LedgerEntry]) -> None:
            if self.fail:
                raise OSError("disk full")
            super().write(entries)

    flaky = Flaky()
    writer = LedgerWriter(flaky)
    writer.skipped("s1", "purchase", "example", "no user id")
    writer.flush()
    assert flaky.read("s1") == []
    flaky.fail = False
    writer.flush()
    assert [r.kind for r in flaky.read("s1")] == ["skipped"]
    writer.close()


def test_consent_and_duplicate_decisions_reach_the_ledger(sandbox: Sandbox) -> None:
    """A vendor left out by the user's consent, or by its dedupe window, shows as skipped with
    that reason in ``status()``, as any routing skip does."""
    import postback.testing.example as example

    cfg = {
        "postback": {"queue": "memory://", "workers": False},
        "vendors": {"example": {**sandbox.vendor_config("example"), "dedupe_window": "1h"}},
    }
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        user = {"email": "ann@example.com"}
        t.track("sign_up", user=user, event_id="c1", consent={"ads": False})
        t.track("sign_up", user=user, event_id="d1")
        t.track("sign_up", user=user, event_id="d1")  # the same id again: a duplicate
        denied = t.status("c1").vendors["example"]
        assert denied.state == "skipped" and denied.skipped_reason == "consent"
        first = t.status("d1").vendors["example"]  # the first d1 is waiting: a repeat is no news
        assert first.state == "queued" and first.skipped_reason is None
        assert t.stats()["example"]["skips"] == {"consent": 1, "duplicate": 1}
    finally:
        t.close(timeout=0)


def test_one_row_holds_every_skip_of_a_track_call() -> None:
    """Two vendors skipping the same event cost one stored row, and status() shows each with
    its own reason (a web purchase skipped by two app-only vendors is the common case)."""
    ledger = MemoryLedger()
    writer = LedgerWriter(ledger)
    writer._thread = threading.current_thread()  # write only when told, in this test
    writer.skipped("w1", "purchase", "x", "no device id")
    writer.skipped("w1", "purchase", "mobana", "no install id")
    writer.skipped("w2", "purchase", "x", "no device id")
    writer.flush()
    assert [(r.event_id, r.vendor) for r in ledger.read("w1")] == [("w1", "*")]
    status = read_status(ledger, "w1")
    assert {v: s.skipped_reason for v, s in status.vendors.items()} == {
        "x": "no device id",
        "mobana": "no install id",
    }
    assert list(read_status(ledger, "w2").vendors) == ["x"]


def _previous_layout(path: Path, rows: list[LedgerEntry], *, time_index: bool = False) -> None:
    """A ``<queue>.ledger`` as an earlier version wrote it: one ``entries`` row per outcome,
    indexed by event id (and, before that, by time)."""
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(
        "CREATE TABLE entries(id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, vendor TEXT NOT "
        "NULL, at_ms INTEGER NOT NULL, kind TEXT NOT NULL, attempt INTEGER NOT NULL, note TEXT "
        "NOT NULL, ref TEXT NOT NULL, name TEXT NOT NULL, queued_ms INTEGER NOT NULL, due_ms "
        "INTEGER NOT NULL);"
        "CREATE INDEX entries_by_event ON entries(event_id);"
        + ("CREATE INDEX entries_by_time ON entries(at_ms);" if time_index else "")
    )
    old.executemany(
        "INSERT INTO entries(event_id, vendor, at_ms, kind, attempt, note, ref, name, "
        "queued_ms, due_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [tuple(e) for e in rows],
    )
    old.close()


def test_a_ledger_of_the_previous_layout_is_converted_when_opened(tmp_path: Path) -> None:
    """A ``<queue>.ledger`` written with an index on ``at_ms``: its rows stay readable, and it
    ends with the index on the event id only (the one lookups use)."""
    path = tmp_path / "q.db.ledger"
    _previous_layout(path, _rows(3, 1000, "old"), time_index=True)
    ledger = SQLiteLedger(tmp_path / "q.db")
    assert [e.event_id for e in ledger.read("old1")] == ["old1"]
    ledger.write(_rows(1, 2000, "new"))
    assert [e.at_ms for e in ledger.read("new0")] == [2000]
    ledger.close()
    check = sqlite3.connect(path)
    indexes = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    plan = check.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM entries WHERE event_id=?", ("x",)
    ).fetchall()
    check.close()
    assert indexes == {"entries_by_event"}
    assert "entries_by_event" in str(plan)


def test_a_ledger_of_the_previous_layout_is_pruned_and_kept_for_its_writers(
    tmp_path: Path,
) -> None:
    """The previous layout's ``entries`` rows count for the retention like new ones. Pruned
    empty, the table stays: a process of the previous version, still running during a rolling
    deploy, writes its outcomes there, and they are read and pruned like the others."""
    path = tmp_path / "q.db.ledger"
    now = int(time.time() * 1000)
    _previous_layout(path, _rows(2, now - 5000, "old") + _rows(1, now, "kept"))
    ledger = SQLiteLedger(tmp_path / "q.db", retention=1.0)
    other = SQLiteLedger(tmp_path / "q.db", retention=1.0)  # another process's, say
    assert len(other.read("old0")) == 1
    ledger.write(_rows(1, now, "new"))
    assert ledger.prune(now) == 2
    assert ledger.read("old0") == [] and len(ledger.read("kept0")) == 1
    assert ledger.prune(now + 10_000) == 2  # kept0 and new0
    old_version = sqlite3.connect(path)  # a process of the previous version writes on
    old_version.execute(
        "INSERT INTO entries(event_id, vendor, at_ms, kind, attempt, note, ref, name, "
        "queued_ms, due_ms) VALUES ('late0', 'example', ?, 'delivered', 1, '', '', "
        "'purchase', ?, 0)",
        (now + 10_000, now + 9_000),
    )
    old_version.commit()
    old_version.close()
    assert [(e.event_id, e.kind) for e in ledger.read("late0")] == [("late0", "delivered")]
    assert [e.event_id for e in other.read("late0")] == ["late0"]
    ledger.write(_rows(1, now, "later"))
    assert [e.event_id for e in other.read("later0")] == ["later0"]
    assert other.prune(now + 20_000) == 2  # late0 (entries) and later0 (outcomes)
    assert ledger.read("late0") == []
    ledger.close()
    other.close()


def test_a_requests_outcomes_are_one_row_and_each_event_is_found(tmp_path: Path) -> None:
    """Outcomes that share all but the event (a request's) are stored as one row; a lookup
    finds each event's own entry (its own queued time), and never another event whose id
    contains it or is contained in it."""
    ledger = SQLiteLedger(tmp_path / "q.db")
    ids = ["e1", "e10", "xe1", 'q"uote', "é", "e1"]  # e1 twice: two events, the same id
    entries = [
        LedgerEntry(e, "example", 1000, "delivered", 1, "", "", "purchase", 500 + i)
        for i, e in enumerate(ids)
    ]
    entries.append(LedgerEntry("e1", "example", 1000, "retry", 1, "HTTP 503", "", "", 7, 9000))
    ledger.write(entries)
    check = sqlite3.connect(tmp_path / "q.db.ledger")
    rows = check.execute("SELECT events, queued, total FROM outcomes ORDER BY id").fetchall()
    check.close()
    assert [(json.loads(e), json.loads(q), t) for e, q, t in rows] == [
        (ids, [500, 501, 502, 503, 504, 505], 6),
        (["e1"], [7], 7),
    ]
    assert ledger.read("e1") == [entries[0], entries[5], entries[6]]
    for i, e in enumerate(ids[1:5], start=1):
        assert ledger.read(e) == [entries[i]], e
    assert ledger.read("e") == [] and ledger.read("1") == []
    ledger.close()


def test_the_size_cap_falls_within_a_row(tmp_path: Path) -> None:
    """The cap counts outcomes, not rows: a row straddling it keeps only its newest ones."""
    now = int(time.time() * 1000)
    ledger = SQLiteLedger(tmp_path / "q.db", max_entries=4)
    ledger.write([LedgerEntry(f"c{i}", "example", now, "delivered", 1) for i in range(6)])
    ledger.write([LedgerEntry("d0", "example", now + 1, "delivered", 1)])
    assert ledger.prune(now) == 3
    assert [e for e in ("c0", "c1", "c2", "c3", "c4", "c5", "d0") if ledger.read(e)] == [
        "c3",
        "c4",
        "c5",
        "d0",
    ]
    assert ledger.prune(now) == 0
    ledger.close()


def test_prune_never_removes_a_row_within_the_retention(tmp_path: Path) -> None:
    """Rows out of time order (a process's rows written late) are kept while they are within
    the retention; older ones go, at this prune or a later one."""
    now = int(time.time() * 1000)
    ledger = SQLiteLedger(tmp_path / "q.db", retention=1.0)
    ledger.write(_rows(3, now - 9000, "a") + _rows(3, now, "b") + _rows(3, now - 8000, "c"))
    ledger.write(_rows(3, now - 7000, "d") + _rows(2, now + 10, "e"))
    ledger.prune(now)
    for event in ("b0", "b1", "b2", "e0", "e1"):
        assert len(ledger.read(event)) == 1, event
    assert all(not ledger.read(f"a{i}") for i in range(3))
    ledger.prune(now + 10_000)  # everything is older than the retention now
    assert all(not ledger.read(f"{x}{i}") for x in "bcd" for i in range(2))
    ledger.close()


def test_the_writer_gathers_longer_while_outcomes_come_fast() -> None:
    """Larger transactions while rows come fast (a write of BUSY_ROWS or more), back to the
    short window once they slow down; status() never waits for either."""
    ledger = MemoryLedger()
    writer = LedgerWriter(ledger)
    for i in range(BUSY_ROWS):
        writer.skipped(f"e{i}", "purchase", "x", "no device id")
    writer.flush()
    assert writer._window == FLUSH_BUSY
    writer.skipped("late", "purchase", "x", "no device id")
    assert writer.status("late").vendors["x"].state == "skipped"  # written first
    assert writer._window == FLUSH_EVERY
    writer.close()


def test_recorded_outcomes_do_not_keep_the_decoded_events_alive() -> None:
    """The buffer holds rows, not the lanes' verdicts: a decoded event kept for a write window
    would outlive the young garbage collections (in an app's process, on threads)."""

    class Decoded:
        name = "purchase"

    class Dest:
        name = "example"

        def redact(self, text: str) -> str:
            return text

    writer = LedgerWriter(MemoryLedger())
    event = Decoded()
    alive = weakref.ref(event)
    now = int(time.time() * 1000)
    claimed = Claimed(1, "e1", b"{}", 0, now)
    verdict = Verdict(Settlement(claimed, "done"), event, Delivered(), 1)  # type: ignore[arg-type]
    writer.record(Dest(), [verdict], now)  # type: ignore[arg-type]
    del verdict, event
    assert alive() is None
    assert writer.status("e1").vendors["example"].state == "delivered"
    writer.close()

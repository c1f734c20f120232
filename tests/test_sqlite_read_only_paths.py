"""The read-only connections to a ``sqlite://`` queue file (the dashboard's view, the delivery
ledger's look at what waits, erasure's scan of stored events) open that file whatever its
path holds: a ``#``, ``?`` or ``%`` in a directory name (``~/C#/shop``) is part of the path,
not of the SQLite URI they are opened by."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from postback import Tracker
from postback.dashboard.sqlite_view import SQLiteView
from postback.delivery.ledgers import open_ledger
from postback.delivery.sqlite import SQLiteQueue

DIRS = ["C#", "50% off", "why?", "a%23b"]


def _nothing_beside(folder: Path) -> None:
    """No file was made beside ``folder`` (at its path cut short by a URI)."""
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


@pytest.fixture(params=DIRS)
def weird(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    folder = tmp_path / "projects" / request.param
    folder.mkdir(parents=True)
    return folder


def _tracker(make_tracker: Callable[..., Tracker], folder: Path, **core: object) -> Tracker:
    return make_tracker(queue=f"sqlite:///{folder}/queue.db", core=core)


def test_the_dashboard_reads_the_queue_it_names(
    make_tracker: Callable[..., Tracker], weird: Path
) -> None:
    t = _tracker(make_tracker, weird, workers=True)
    view = SQLiteView.of(t.queue)
    assert view is not None
    assert view.oldest_ms(["example"]) == {"example": None}  # was: "no such table: cursors"
    assert view.dead_letter_ids("nope") == []
    _nothing_beside(weird)  # was: an empty file at the cut path


def test_the_ledger_sees_the_events_waiting_in_the_queue_it_names(
    make_tracker: Callable[..., Tracker], weird: Path
) -> None:
    t = _tracker(make_tracker, weird, workers=False)
    t.track("purchase", user={"email": "a@b.co"}, value=1, currency="USD", event_id="w-1")
    t.close(timeout=0)
    queue = SQLiteQueue(weird / "queue.db")
    assert queue.acquire_delivery()
    queue.close()  # the deliverer writes the spool into the log
    queue = SQLiteQueue(weird / "queue.db")
    ledger = open_ledger(queue)
    try:
        waiting = ledger.waiting("w-1")  # type: ignore[attr-defined]
    finally:
        ledger.close()
        queue.close()
    assert [(e.vendor, e.event_id) for e in waiting] == [("example", "w-1")]
    _nothing_beside(weird)


def test_erase_finds_the_persons_events_in_the_queue_it_names(
    make_tracker: Callable[..., Tracker], weird: Path
) -> None:
    t = _tracker(make_tracker, weird, workers=False)
    t.track("purchase", user={"email": "a@b.co"}, value=1, currency="USD", event_id="e-1")
    t.track("purchase", user={"email": "c@d.co"}, value=1, currency="USD", event_id="e-2")
    report = t.erase(email="a@b.co")
    assert report.pending == 1, report  # was 0: another (empty) file was scanned
    _nothing_beside(weird)

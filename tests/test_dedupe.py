"""Local dedupe: an event_id tracked again within a vendor's window is not sent to a vendor
without a dedupe key; the second ``track()`` is a skip with reason ``"duplicate"``.

``devices`` stands for X, Mobana or Ton AI (``dedupe_window`` set in its table); ``example``
dedupes by itself. Real loopback HTTP, a real SQLite file (shared by two trackers), a real
memory queue; the Redis case is in tests/redis/test_dedupe.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import postback.testing.example as example
from postback import QueueFull, Tracker
from postback.plugins import PluginHost
from postback.sandbox import Sandbox
from postback.testing.example import ExampleEmulator
from tests.test_routing import DevicesEmulator, DevicesPlugin

APP_PURCHASE: dict[str, Any] = {
    "user": {"email": "ada@example.com", "ifa": "EA7583CD-A667-48BC-B806-42ECB2B48606"},
    "value": 49.99,
    "currency": "USD",
}


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox([ExampleEmulator(), DevicesEmulator()]) as sandbox:
        yield sandbox


@pytest.fixture
def make(tmp_path: Path, box: Sandbox) -> Iterator[Callable[..., Tracker]]:
    made: list[Tracker] = []

    def build(
        *, core: dict[str, Any] | None = None, window: object = "24h", example_too: bool = True
    ) -> Tracker:
        vendors: dict[str, Any] = {
            "devices": {**box.vendor_config("devices"), "linger": 0, "dedupe_window": window}
        }
        if example_too:
            vendors["example"] = {**box.vendor_config("example"), "linger": 0}
        config = {
            "postback": {"queue": f"sqlite:///{tmp_path}/queue.db", **(core or {})},
            "vendors": vendors,
        }
        tracker = Tracker.from_config(
            config, plugins=[example, DevicesPlugin()], load_entry_points=False
        )
        made.append(tracker)
        return tracker

    yield build
    for tracker in made:
        tracker.close(timeout=1)


def received(box: Sandbox, vendor: str) -> list[str]:
    return [e["event_id"] for e in box.received(vendor)]


def test_an_event_id_tracked_twice_reaches_a_vendor_without_a_dedupe_key_once(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make()
    tracker.track("purchase", **APP_PURCHASE, event_id="order-1042")
    tracker.track("purchase", **APP_PURCHASE, event_id="order-1042")
    assert tracker.flush(timeout=10).complete
    assert received(box, "devices") == ["order-1042"]
    assert received(box, "example") == ["order-1042", "order-1042"], "it dedupes by itself"
    stats = tracker.stats()
    assert stats["devices"]["skips"] == {"duplicate": 1} and stats["devices"]["tracked"] == 1
    assert stats["example"]["skips"] == {}


def test_generated_ids_and_a_window_of_zero_are_never_duplicates(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make(window=0)
    tracker.track("purchase", **APP_PURCHASE)
    tracker.track("purchase", **APP_PURCHASE)
    tracker.track("purchase", **APP_PURCHASE, event_id="same")
    tracker.track("purchase", **APP_PURCHASE, event_id="same")
    assert tracker.flush(timeout=10).complete
    assert len(received(box, "devices")) == 4
    assert tracker.dedupe is None


def test_an_id_is_sent_again_once_its_window_ran_out(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    tracker = make(window="100ms", example_too=False)
    tracker.track("purchase", **APP_PURCHASE, event_id="order-7")
    time.sleep(0.3)
    tracker.track("purchase", **APP_PURCHASE, event_id="order-7")
    assert tracker.flush(timeout=10).complete
    assert received(box, "devices") == ["order-7", "order-7"]


def test_two_trackers_on_one_sqlite_file_send_an_id_once(
    make: Callable[..., Tracker], box: Sandbox
) -> None:
    first = make(example_too=False)
    second = make(example_too=False, core={"workers": False})
    first.track("purchase", **APP_PURCHASE, event_id="order-1")
    second.track("purchase", **APP_PURCHASE, event_id="order-1")
    assert first.flush(timeout=10).complete
    assert received(box, "devices") == ["order-1"]
    assert second.stats()["devices"]["skips"] == {"duplicate": 1}
    assert first.stats()["devices"]["skips"] == {}


def test_an_event_that_could_not_be_queued_is_not_a_duplicate_when_tracked_again(
    box: Sandbox,
) -> None:
    config = {
        "postback": {"queue": "memory://", "max_queue_size": 1, "workers": False},
        "vendors": {"devices": {**box.vendor_config("devices"), "dedupe_window": "1h"}},
    }
    tracker = Tracker.from_config(
        config, plugins=[example, DevicesPlugin()], load_entry_points=False
    )
    try:
        tracker.track("purchase", **APP_PURCHASE, event_id="fills-the-queue")
        with pytest.raises(QueueFull):
            tracker.track("purchase", **APP_PURCHASE, event_id="order-9")
        assert tracker.queue.remember_for(["devices"], "order-9", 1000) == ["devices"], (
            "the id was forgotten, so the app's retry is queued"
        )
    finally:
        tracker.close(timeout=0)


def test_the_vendors_without_a_dedupe_key_dedupe_for_24_hours_by_default() -> None:
    host = PluginHost()
    windows = {n: host.destinations[n].default_dedupe_window for n in host.destinations}
    assert {
        n: w for n, w in windows.items() if n in ("x", "mobana", "tonai", "whop", "applovin")
    } == {
        "x": 86_400.0,
        "mobana": 86_400.0,
        "tonai": 86_400.0,
        "whop": None,
        "applovin": None,
    }


def test_the_sqlite_dedupe_file_is_owner_only_and_works_in_a_forked_child(tmp_path: Path) -> None:
    import os
    import stat

    from postback.delivery.sqlite import SQLiteQueue

    queue = SQLiteQueue(tmp_path / "q.db")
    try:
        assert queue.remember_for(["x"], "before-fork", 60_000) == ["x"]
        recent = tmp_path / "q.db.recent"
        assert stat.S_IMODE(recent.stat().st_mode) == 0o600
        pid = os.fork()
        if pid == 0:  # the child: its own connection, the parent's keys visible
            ok = queue.remember_for(["x"], "before-fork", 60_000) == []
            ok = ok and queue.remember_for(["x"], "in-child", 60_000) == ["x"]
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert queue.remember_for(["x"], "in-child", 60_000) == [], "the parent sees the child's"
    finally:
        queue.close()


def test_the_dedupe_files_checkpoints_run_off_the_track_path_and_keep_its_wal_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint syncs the file (10-30 ms here): run by the connection ``track()`` commits
    on, it stalled one ``track()`` (or an event loop) every few thousand. The calling thread's
    connection never checkpoints; a thread of the dedupe file's own does, so the WAL still
    stays near its bound."""
    import sqlite3

    import postback.delivery.recent as recent_module
    from postback.delivery.sqlite import SQLiteQueue

    monkeypatch.setattr(recent_module, "CHECKPOINT_PAGES", 200)
    monkeypatch.setattr(recent_module, "CHECKPOINT_EVERY", 50)
    queue = SQLiteQueue(tmp_path / "q.db")
    try:
        queue.remember_for(["x"], "first", 60_000)
        recent = queue._recent_file()
        conn: sqlite3.Connection = recent._conn
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        wal = tmp_path / "q.db.recent-wal"
        for i in range(3000):
            queue.remember_for(["x", "y"], f"key-{i}", 60_000)
        deadline = time.monotonic() + 10
        while wal.stat().st_size > 400 * 1024 and time.monotonic() < deadline:
            queue.remember_for(["x"], f"more-{time.monotonic()}", 60_000)
            time.sleep(0.05)
        assert wal.stat().st_size <= 400 * 1024, wal.stat().st_size
        assert queue.remember_for(["x"], "key-7", 60_000) == []  # still remembered
    finally:
        queue.close()
    assert not [t for t in threading.enumerate() if t.name == "postback-recent-checkpoint"]

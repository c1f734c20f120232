"""Local dedupe across hosts: trackers sharing one Redis send an event_id once per window,
even when they track it at the same moment (``SET NX PX`` decides; a real redis-server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import postback.testing.example as example
from postback import Tracker
from postback.sandbox import Sandbox
from tests.test_routing import DevicesEmulator, DevicesPlugin

APP_PURCHASE: dict[str, Any] = {
    "user": {"email": "ada@example.com", "ifa": "EA7583CD-A667-48BC-B806-42ECB2B48606"},
}


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox([DevicesEmulator()]) as sandbox:
        yield sandbox


def test_trackers_sharing_a_redis_send_an_id_once(redis_url: str, box: Sandbox) -> None:
    config = {
        "postback": {"queue": redis_url},
        "vendors": {"devices": {**box.vendor_config("devices"), "linger": 0}},
    }
    config["vendors"]["devices"]["dedupe_window"] = "1h"
    trackers = [
        Tracker.from_config(config, plugins=[example, DevicesPlugin()], load_entry_points=False)
        for _ in range(4)
    ]
    try:
        start = threading.Barrier(len(trackers))

        def track(t: Tracker) -> None:
            start.wait()
            t.track("sign_up", **APP_PURCHASE, event_id="signup-77")

        threads = [threading.Thread(target=track, args=(t,)) for t in trackers]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for t in trackers:
            assert t.flush(timeout=10).complete
        assert [e["event_id"] for e in box.received("devices")] == ["signup-77"]
        dups = sum(t.stats()["devices"]["skips"].get("duplicate", 0) for t in trackers)
        assert dups == len(trackers) - 1
    finally:
        for t in trackers:
            t.close(timeout=1)

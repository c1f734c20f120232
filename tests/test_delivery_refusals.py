"""A batched vendor that refuses every request the same way (a wrong setting, not bad events):
the lane halts with a reason naming the likely setting, keeps every event, and resumes once
the vendor takes them; bisection still isolates a real poison event.

The vendor here is a recording HTTP server on loopback that answers every request with the
status it is told to, and remembers each request's body.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import postback.testing.example as example
from postback import Tracker
from postback.delivery.settle import SYSTEMATIC_SINGLES
from postback.destination import Outcome, RejectedBatch
from postback.testing.example import ExampleDestination


class RecordingServer:
    """Answers ``status`` (with ``body``) to every POST and records each request's events."""

    def __init__(self) -> None:
        self.status = 400
        self.body = {"error": "body must be a JSON array"}
        self.too_large_over: int | None = None  # answer 413 to batches larger than this
        self.batches: list[list[dict[str, Any]]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with server.lock:
                    server.batches.append(json.loads(raw)["events"])
                    status, body = server.status, server.body
                    if server.too_large_over is not None:
                        big = len(server.batches[-1]) > server.too_large_over
                        status, body = (413, {"error": "too large"}) if big else (200, {})
                if status == 200:
                    events = server.batches[-1]
                    body = {"results": [{"id": e["id"], "status": "ok"} for e in events]}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def events_sent(self) -> int:
        with self.lock:
            return sum(len(b) for b in self.batches)


class SettingBlamed(ExampleDestination):
    """The example vendor, naming the setting a refusal of every batch points to."""

    def parse_response(self, batch: Any, response: httpx.Response) -> Outcome | list[Outcome] | Any:
        if response.status_code == 413:
            return RejectedBatch("HTTP 413: too large", 413, likely_setting="batch_size")
        outcome = super().parse_response(batch, response)
        if isinstance(outcome, RejectedBatch):
            return RejectedBatch(outcome.reason, outcome.status, likely_setting="body_format")
        return outcome


class SettingBlamedPlugin:
    @staticmethod
    @example.hookimpl
    def postback_register_destinations(register: Callable[[type], None]) -> None:
        register(SettingBlamed)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    s = RecordingServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def tracker_for(tmp_path: Path) -> Iterator[Callable[..., Tracker]]:
    made: list[Tracker] = []

    def make(server: RecordingServer, plugins: Any = (example,), **vendor: Any) -> Tracker:
        cfg = {
            "postback": {"queue": f"sqlite:///{tmp_path}/queue.db"},
            "vendors": {
                "example": {
                    "api_key": "sandbox-example-key",
                    "base_url": server.url,
                    "retry": {"initial_backoff": 0.01, "max_backoff": 0.05, "max_attempts": 5},
                    "linger": 0.5,
                    **vendor,
                }
            },
        }
        t = Tracker.from_config(cfg, plugins=list(plugins), load_entry_points=False)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close(timeout=0)


def _track(t: Tracker, n: int) -> list[str]:
    return [t.track("sign_up", user={"email": f"u{i}@x.co"}) for i in range(n)]


def test_every_batch_refused_halts_after_one_split_and_keeps_the_events(
    server: RecordingServer, tracker_for: Callable[..., Tracker], caplog: pytest.LogCaptureFixture
) -> None:
    t = tracker_for(server, batch_size=50)
    ids = _track(t, 40)
    with caplog.at_level(logging.ERROR, logger="postback"):
        report = t.flush(timeout=3)
    # One batch, then its two halves: not 79 requests and 40 dead letters.
    assert [len(b) for b in server.batches] == [40, 20, 20]
    assert report["example"].dead == 0 and report["example"].pending == 40
    halted = report["example"].halted
    assert halted and "refused a batch of 40 and both its halves the same way" in halted
    assert "check the [vendors.example] settings" in halted
    assert "every event kept" in halted and "restart" in halted
    assert "delivery halted" in caplog.text
    assert t.queue.dead_letters() == []
    # The events are kept: a restart once the vendor takes them delivers every one.
    t.close(timeout=0)
    server.status = 200
    t2 = tracker_for(server, batch_size=50)
    assert t2.flush(timeout=10).complete
    assert sorted(e["id"] for e in server.batches[-1]) == sorted(ids)


def test_the_halt_names_the_setting_the_vendor_points_to(
    server: RecordingServer, tmp_path: Path
) -> None:
    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/queue.db"},
        "vendors": {
            "example": {"api_key": "k", "base_url": server.url, "linger": 0.5, "batch_size": 50}
        },
    }
    t = Tracker.from_config(cfg, plugins=[SettingBlamedPlugin], load_entry_points=False)
    try:
        _track(t, 8)
        report = t.flush(timeout=3)
    finally:
        t.close(timeout=0)
    assert len(server.batches) == 3
    assert "check body_format in [vendors.example]" in (report["example"].halted or "")


def test_too_large_halves_are_split_again_not_halted(
    server: RecordingServer, tracker_for: Callable[..., Tracker]
) -> None:
    """A 413 refuses the size, not a setting: halves still too large are split again."""
    server.too_large_over = 10
    t = tracker_for(server, plugins=[SettingBlamedPlugin], batch_size=50)
    ids = _track(t, 40)
    report = t.flush(timeout=10)
    assert report.complete and report["example"].halted is None
    assert [len(b) for b in server.batches] == [40, 20, 20, 10, 10, 10, 10]
    assert sorted(e["id"] for b in server.batches[3:] for e in b) == sorted(ids)


def test_single_events_refused_in_a_row_halt_the_lane(
    server: RecordingServer, tracker_for: Callable[..., Tracker]
) -> None:
    t = tracker_for(server, batch_size=1, concurrency=1)
    _track(t, SYSTEMATIC_SINGLES + 5)
    report = t.flush(timeout=3)
    assert len(server.batches) == SYSTEMATIC_SINGLES
    assert report["example"].dead == SYSTEMATIC_SINGLES - 1  # then the rule was clear
    assert report["example"].pending == 6
    assert "single events in a row" in (report["example"].halted or "")


def test_a_poison_event_among_good_ones_is_still_isolated(
    tracker_for: Callable[..., Tracker], tmp_path: Path
) -> None:
    from postback.sandbox import Sandbox
    from postback.testing.example import ExampleEmulator

    with Sandbox([ExampleEmulator()]) as box:
        cfg = {
            "postback": {"queue": f"sqlite:///{tmp_path}/poison.db"},
            "vendors": {
                "example": {
                    **box.vendor_config("example"),
                    "event_map": {"poison": "poison"},
                    "linger": 0.5,
                }
            },
        }
        t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
        try:
            good = [t.track("sign_up", user={"email": f"u{i}@x.co"}) for i in range(15)]
            bad = t.track("poison", user={"email": "p@x.co"})
            report = t.flush(timeout=10)
            assert report.complete and report["example"].halted is None
            assert sorted(r["event_id"] for r in box.received("example")) == sorted(good)
            assert [d.event_id for d in t.queue.dead_letters()] == [bad]
        finally:
            t.close(timeout=0)

"""Fixtures for the Whop plugin's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from postback import Tracker
from postback.config import build_config
from postback.events import Event, make_event
from postback.fields import FieldSet
from postback.sandbox import Sandbox
from postback_whop import WhopDestination, WhopEmulator

#: The event fields the plugin declares, as a tracker with it installed accepts them.
FIELDS = FieldSet.of([WhopDestination])

#: Fake credentials: never real secrets.
TEST_KEY = "whop_test_key_5b1e0c9a77d2"
TEST_ACCOUNT = "biz_TestAcct0001"


@pytest.fixture
def make_dest() -> Callable[..., WhopDestination]:
    """Build a destination from a raw ``[vendors.whop]`` table, through the config loader."""

    def make(**table: Any) -> WhopDestination:
        raw = {"api_key": TEST_KEY, "account_id": TEST_ACCOUNT, **table}
        cfg = build_config({"vendors": {"whop": raw}}, {"whop": WhopDestination})
        dest = cfg.vendors["whop"].make_destination(WhopDestination)
        assert isinstance(dest, WhopDestination)
        return dest

    return make


@pytest.fixture
def dest(make_dest: Callable[..., WhopDestination]) -> WhopDestination:
    return make_dest()


@pytest.fixture
def event() -> Callable[..., Event]:
    """``event("lead", user=...)``: a normalised canonical event with a fixed time and id."""

    def make(name: str = "lead", **kw: Any) -> Event:
        kw.setdefault("event_id", "evt-1")
        kw.setdefault("timestamp", "2026-11-24T10:00:00.000Z")
        return make_event(name, fields=FIELDS, **kw)

    return make


@pytest.fixture
def emulator() -> WhopEmulator:
    return WhopEmulator({"api_key": TEST_KEY, "account_id": TEST_ACCOUNT, "api": "events"})


@pytest.fixture
def mock_client(emulator: WhopEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(emulator.handle)) as client:
        yield client


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox([WhopEmulator()]).start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def make_tracker(tmp_path: Path, sandbox: Sandbox) -> Iterator[Callable[..., Tracker]]:
    """Trackers pointed at the loopback sandbox (SQLite queue in tmp_path); closed at the end."""
    made: list[Tracker] = []

    def make(**table: Any) -> Tracker:
        vendor = {
            **sandbox.vendor_config("whop"),
            "retry": {"initial_backoff": 0.01, "max_backoff": 0.05},
            **table,
        }
        tracker = Tracker.from_config(
            {
                "postback": {"queue": f"sqlite:///{tmp_path}/q{len(made)}.db"},
                "vendors": {"whop": vendor},
            }
        )
        made.append(tracker)
        return tracker

    yield make
    for t in made:
        t.close(timeout=2)

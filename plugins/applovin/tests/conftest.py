"""Shared fixtures for the postback-applovin tests (no network: loopback only)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from postback.config import build_config
from postback.events import Event, make_event
from postback.fields import FieldSet
from postback.sandbox import Sandbox
from postback.tracker import Tracker
from postback_applovin import AppLovinDestination, AppLovinEmulator

#: The event fields the plugin declares, as a tracker with it installed accepts them.
FIELDS = FieldSet.of([AppLovinDestination])

API_KEY = "test-axon-api-key-NOT-REAL"
PIXEL_ID = "test-pixel-7d41"


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def pixel_id() -> str:
    return PIXEL_ID


@pytest.fixture
def make_destination() -> Callable[..., AppLovinDestination]:
    """Build the destination the way a tracker does: raw settings -> build_config -> class."""

    def make(**overrides: Any) -> AppLovinDestination:
        raw = {"api_key": API_KEY, "pixel_id": PIXEL_ID, **overrides}
        cfg = build_config({"vendors": {"applovin": raw}}, {"applovin": AppLovinDestination})
        dest = cfg.vendors["applovin"].make_destination(AppLovinDestination)
        assert isinstance(dest, AppLovinDestination)
        return dest

    return make


@pytest.fixture
def destination(make_destination: Callable[..., AppLovinDestination]) -> AppLovinDestination:
    return make_destination()


@pytest.fixture
def emulator() -> AppLovinEmulator:
    return AppLovinEmulator({"api_key": API_KEY, "pixel_id": PIXEL_ID})


BASE_PURCHASE: dict[str, Any] = {
    "name": "purchase",
    "event_id": "order-1-purchase",
    "timestamp": 1764000000000,
    "value": 49.99,
    "currency": "USD",
    "user": {
        "email": "jane@example.com",
        "ip_address": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
    },
    "context": {"url": "https://shop.example.com/thanks"},
    "properties": {
        "transaction_id": "1",
        "items": [{"item_id": "SKU-1", "price": 49.99, "quantity": 1}],
    },
}


@pytest.fixture
def purchase_kwargs() -> dict[str, Any]:
    """A valid purchase as track() keywords (a fresh deep copy per test)."""
    return copy.deepcopy(BASE_PURCHASE)


@pytest.fixture
def event_from() -> Callable[[dict[str, Any]], Event]:
    def build(kwargs: dict[str, Any]) -> Event:
        kw = dict(kwargs)
        return make_event(kw.pop("name"), fields=FIELDS, **kw)

    return build


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox([AppLovinEmulator()]).start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def make_tracker(tmp_path: Any) -> Iterator[Callable[..., Tracker]]:
    """Trackers on a SQLite queue in tmp_path, closed at the end of the test."""
    made: list[Tracker] = []

    def make(vendor: dict[str, Any], **core: Any) -> Tracker:
        config = {
            "postback": {"queue": f"sqlite:///{tmp_path}/q.db", **core},
            "vendors": {"applovin": vendor},
        }
        tracker = Tracker.from_config(config)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close(timeout=0)

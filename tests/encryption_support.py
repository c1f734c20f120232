"""Shared by the encryption tests on each backend: keys, and the end-to-end check."""

from __future__ import annotations

import base64
import os

import pytest

from postback import Tracker
from postback.sandbox import Sandbox
from tests.privacy_support import wait

EMAIL = "secret.person@example.com"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def use_keys(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("POSTBACK_ENCRYPTION_KEYS", value)


def check_sealed_delivery(tracker: Tracker, sandbox: Sandbox, raw: bytes | None = None) -> None:
    """An event and a dead letter of one person: stored sealed, delivered plain, the dead letter
    readable by postback, and erasable by email."""
    tracker.track("purchase", user={"email": EMAIL}, value=5, currency="USD", event_id="p-1")
    tracker.track("sign_up", user={"email": EMAIL}, value=-1, currency="USD", event_id="d-1")
    tracker.flush(timeout=10)
    wait(lambda: "p-1" in {r["event_id"] for r in sandbox.received("example")}, "delivery")
    [got] = [r for r in sandbox.received("example") if r["event_id"] == "p-1"]
    assert got["user"] == EMAIL  # the vendor got the plain event
    wait(lambda: len(tracker.queue.dead_letters()) == 1, "the dead letter")
    [dead] = tracker.queue.dead_letters()
    assert dead.payload.startswith(b"~e1:") and EMAIL.encode() not in dead.payload
    assert tracker.erase(email=EMAIL).dead_letters == 1

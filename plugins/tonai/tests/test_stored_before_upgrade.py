"""Events queued before ``telegram_user_id`` moved out of the core model (postback 0.1's
stored shape) still read back and deliver: plain and sealed (POSTBACK_ENCRYPTION_KEYS)."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import orjson
import pytest

from postback import Tracker
from postback.delivery.sqlite import SQLiteQueue
from postback.encryption import keyring_from_env
from postback_tonai import TonAIEmulator

from .conftest import FAST_RETRY

#: What dumps_event wrote before this release for a sign-up with a Telegram id, a Mobana
#: install id and an AppLovin click id, all three then core fields.
OLD_SHAPE = {
    "name": "sign_up",
    "event_id": "queued-before-upgrade",
    "timestamp_ms": 1_764_000_000_000,
    "user": {
        "email": "a@b.co",
        "telegram_user_id": "1728125519",
        "install_id": "00000000-0000-4000-8000-000000000001",
    },
    "context": {"url": "https://shop.example/", "aleid": "ALE-1"},
}


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "encrypted"])
def test_an_event_stored_in_the_old_shape_is_delivered(
    sandbox: object,
    emulator: TonAIEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sealed: bool,
) -> None:
    payload = orjson.dumps(OLD_SHAPE)
    if sealed:
        key = base64.b64encode(os.urandom(32)).decode()
        monkeypatch.setenv("POSTBACK_ENCRYPTION_KEYS", f"k1:{key}")
        ring = keyring_from_env()
        assert ring is not None
        payload = ring.seal(payload)
    # The queue file as the previous version left it, before this process starts a tracker.
    queue = SQLiteQueue(tmp_path / "q.db")
    queue.put(OLD_SHAPE["event_id"], "sign_up", int(time.time() * 1000), ["tonai"], payload)
    queue.close()

    table = {**sandbox.vendor_config("tonai"), "retry": dict(FAST_RETRY)}  # type: ignore[attr-defined]
    tracker = Tracker.from_config(
        {"postback": {"queue": f"sqlite:///{tmp_path}/q.db"}, "vendors": {"tonai": table}}
    )
    try:
        report = tracker.flush(timeout=10)
        assert report.complete and report["tonai"].delivered == 1
    finally:
        tracker.close(timeout=0)
    assert [r["telegram_user_id"] for r in emulator.received] == ["1728125519"]
    assert emulator.received[0]["body"]["eventData"] == {"telegramUserId": "1728125519"}

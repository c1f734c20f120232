"""An event queued on Redis before ``telegram_user_id`` and ``aleid`` left the core model (the
old stored shape), plain and encrypted, still reads back and delivers after the upgrade, its
declared fields intact."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import orjson
import pytest

import postback.testing.example as example
from postback import Tracker, hookimpl
from postback.destination import Destination
from postback.encryption import keyring_from_env
from postback.events import Event
from tests.encryption_support import new_key, use_keys
from tests.redis.support import RecordingSandbox, example_config

postback_tonai = pytest.importorskip("postback_tonai")

OLD_SHAPE = {
    "name": "purchase",
    "event_id": "queued-before-upgrade",
    "timestamp_ms": 1_764_000_000_000,
    "user": {"email": "a@b.co", "telegram_user_id": "1728125519"},
    "value_micros": 5_000_000,
    "currency": "USD",
    "context": {"aleid": "ALE-1", "url": "https://shop.example/"},
}


class EchoDeclared:
    """Copies the declared fields the delivered event carries into the example wire record."""

    @hookimpl(wrapper=True)
    def postback_transform(
        self, event: Event, destination: Destination
    ) -> Generator[None, Any, Any]:
        record = yield
        return {
            **record,
            "tg": event.user.get("telegram_user_id"),
            "aleid": event.context.get("aleid"),
        }


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "encrypted"])
def test_an_old_shape_event_on_redis_is_delivered(
    redis_url: str, sink: RecordingSandbox, monkeypatch: pytest.MonkeyPatch, sealed: bool
) -> None:
    payload = orjson.dumps(OLD_SHAPE)
    if sealed:
        use_keys(monkeypatch, f"k1:{new_key()}")
        ring = keyring_from_env()
        assert ring is not None
        payload = ring.seal(payload)
    cfg = example_config(redis_url, sink)
    cfg["postback"]["workers"] = "thread"
    # Ton AI installed (it declares telegram_user_id), only the example vendor configured.
    t = Tracker.from_config(
        cfg, plugins=[example, postback_tonai, EchoDeclared()], load_entry_points=False
    )
    try:
        t.queue.put(
            OLD_SHAPE["event_id"], "purchase", int(time.time() * 1000), ["example"], payload
        )
        assert t.flush(timeout=10)["example"].delivered == 1
    finally:
        t.close(timeout=1)
    [got] = sink.received("example")
    assert (got["event_id"], got["user"], got["tg"]) == (
        "queued-before-upgrade",
        "a@b.co",
        "1728125519",
    )
    assert got["aleid"] == "ALE-1"  # AppLovin is not installed: kept as stored all the same

"""Privacy at rest on a real Redis server: dead letters expire after dead_letter_retention."""

from __future__ import annotations

import pytest

import postback.testing.example as example
from postback import Tracker
from tests.encryption_support import EMAIL, check_sealed_delivery, new_key, use_keys
from tests.privacy_support import ERASE_RETRY, check_erase, check_retention, check_second_erase
from tests.redis.support import RecordingSandbox, example_config


def test_dead_letters_expire(
    redis_url: str, sink: RecordingSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = example_config(redis_url, sink, retry={"initial_backoff": 0.01, "max_attempts": 2})
    cfg["postback"]["dead_letter_retention"] = "1h"
    cfg["postback"]["workers"] = "thread"
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        check_retention(t, monkeypatch)
    finally:
        t.close(timeout=1)


def test_erase_a_person_while_the_vendor_is_down(redis_url: str, sink: RecordingSandbox) -> None:
    cfg = example_config(redis_url, sink, retry=ERASE_RETRY)
    cfg["postback"]["workers"] = "thread"
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        check_erase(t, sink)
    finally:
        t.close(timeout=1)


def test_a_second_erase_counts_the_events_the_first_dropped_apart(
    redis_url: str, sink: RecordingSandbox
) -> None:
    cfg = example_config(redis_url, sink)
    cfg["postback"]["workers"] = False
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        check_second_erase(t)
    finally:
        t.close(timeout=1)


def test_encrypted_events_on_redis(
    redis_url: str, sink: RecordingSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keys(monkeypatch, f"k1:{new_key()}")
    cfg = example_config(redis_url, sink, retry={"initial_backoff": 0.01, "max_attempts": 2})
    cfg["postback"]["workers"] = "thread"
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        check_sealed_delivery(t, sink)
        entries = t.queue._client.xrange(t.queue.stream_key)  # type: ignore[attr-defined]
        assert entries and all(EMAIL.encode() not in f[b"payload"] for _, f in entries)
    finally:
        t.close(timeout=1)

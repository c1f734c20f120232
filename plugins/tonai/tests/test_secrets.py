"""The App Key never shows up in reprs, errors, dead letters or logs."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from postback import ConfigError, Tracker
from postback.sandbox import Sandbox
from postback_tonai import TonAIEmulator

from .conftest import TEST_KEY, make_destination

MakeTracker = Callable[..., Tracker]


def test_reprs_hide_the_key() -> None:
    dest = make_destination()
    for text in (repr(dest.settings), str(dest.settings), repr(dest), repr(dest.settings.api_key)):
        assert TEST_KEY not in text
    assert "Secret('***')" in repr(dest.settings)


def test_config_errors_hide_the_key() -> None:
    for table in (
        {"api_key": TEST_KEY, "product": "adx", "environment": "prod", "oops": 1},
        {"api_key": TEST_KEY + "\n"},
    ):
        with pytest.raises(ConfigError) as info:
            Tracker.from_config({"postback": {"queue": "memory://"}, "vendors": {"tonai": table}})
        assert TEST_KEY not in str(info.value)
        assert TEST_KEY not in repr(info.value.problems)


def test_logs_and_dead_letters_hide_the_key(
    make_tracker: MakeTracker,
    sandbox: Sandbox,
    emulator: TonAIEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = emulator.settings["api_key"]
    caplog.set_level(logging.DEBUG)
    # A vendor error body that echoes the key must be redacted too.
    sandbox.set_fault("tonai", status=400, count=1, body=f'{{"message": "bad key {key}"}}')
    good = make_tracker(db="good.db", concurrency=1)  # the fault hits the first event
    good.track("sign_up", user={"telegram_user_id": "1728125519"})  # refused (fault)
    good.track("sign_up", user={"telegram_user_id": "9990000503"})  # retried, then dead
    good.track("sign_up", user={"telegram_user_id": "5123456789"})  # delivered
    assert good.flush(timeout=10).complete
    dead = good.queue.dead_letters("tonai")
    assert len(dead) == 2
    assert any("***" in d.reason for d in dead)

    wrong = "wrong-key-that-must-not-leak-42"
    bad = make_tracker(db="bad.db", api_key=wrong)
    bad.track("sign_up", user={"telegram_user_id": "1728125519"})
    bad.flush(timeout=1)
    assert bad.stats()["tonai"]["halted"]

    text = caplog.text + repr(good.stats()) + repr(bad.stats()) + repr(good) + repr(bad)
    text += "".join(d.reason for d in dead) + repr(good.config)
    assert "refused the API key" in caplog.text  # the halt was logged...
    assert key not in text and wrong not in text  # ...without the key

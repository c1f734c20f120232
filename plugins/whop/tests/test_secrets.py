"""The API key never shows up in reprs, error messages, outcomes, dead letters or logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from postback import ConfigError, InvalidEvent, Tracker
from postback.config import build_config
from postback.sandbox import Sandbox
from postback_whop import WhopDestination, WhopEmulator

from .conftest import TEST_ACCOUNT

SECRET = "whop_live_SECRET_9f8e7d6c5b4a"


def test_settings_and_destination_reprs(make_dest: Callable[..., WhopDestination]) -> None:
    dest = make_dest(api_key=SECRET)
    for text in (repr(dest.settings), str(dest.settings), repr(dest), str(dest)):
        assert SECRET not in text
    assert "***" in repr(dest.settings)
    assert dest.credential_id() != "-" and SECRET not in dest.credential_id()


def test_config_errors_do_not_show_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(
            {
                "vendors": {
                    "whop": {
                        "api_key": SECRET,
                        "account_id": TEST_ACCOUNT,
                        "api": "nope",
                        "bogus": SECRET[:5],
                    }
                }
            },
            {"whop": WhopDestination},
        )
    assert SECRET not in str(info.value)


def test_invalid_event_does_not_show_the_key(tmp_path: Path) -> None:
    tracker = Tracker.from_config(
        {
            "postback": {"queue": f"sqlite:///{tmp_path}/q.db"},
            "vendors": {"whop": {"api_key": SECRET, "account_id": TEST_ACCOUNT}},
        }
    )
    try:
        with pytest.raises(InvalidEvent) as info:
            tracker.track(
                "lead",
                user={
                    "gender": "x",
                    "email": "jane.doe-at-example",
                    "phone": "5550199",
                    "birthdate": "01/02/1990",
                },
            )
        assert SECRET not in str(info.value)
        # Personal data is not echoed into the error (it may end up in logs).
        for pii in ("jane.doe-at-example", "5550199", "01/02/1990"):
            assert pii not in str(info.value)
    finally:
        tracker.close(timeout=0)


def test_logs_and_dead_letters_do_not_show_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = WhopEmulator({"api_key": SECRET, "account_id": TEST_ACCOUNT})
    with Sandbox([emulator]) as sandbox:
        good = Tracker.from_config(
            {
                "postback": {"queue": f"sqlite:///{tmp_path}/good.db"},
                "vendors": {"whop": sandbox.vendor_config("whop")},
            }
        )
        bad = Tracker.from_config(
            {
                "postback": {"queue": f"sqlite:///{tmp_path}/bad.db"},
                "vendors": {"whop": {**sandbox.vendor_config("whop"), "api_key": SECRET + "x"}},
            }
        )
        try:
            good.track("lead", event_id="whop-422-s")
            good.track("lead", event_id="ok-s")
            assert good.flush(timeout=10).complete
            bad.track("lead", event_id="halt-s")
            assert not bad.flush(timeout=0.5).complete
            reasons = [d.reason for d in good.queue.dead_letters(vendor="whop")]
            assert len(reasons) == 1
            halted = bad.stats()["whop"]["halted"]
            assert halted is not None
        finally:
            good.close(timeout=1)
            bad.close(timeout=0)
    assert caplog.records, "expected delivery logs"
    texts = [r.getMessage() for r in caplog.records] + reasons + [halted]
    assert not [t for t in texts if SECRET in t]

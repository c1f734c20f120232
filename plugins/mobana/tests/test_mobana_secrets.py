"""The app key never shows outside the X-App-Key header."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from postback import ConfigError, Prepared, Tracker
from postback.config import build_config
from postback.events import Event
from postback.sandbox import Sandbox
from postback_mobana import MobanaDestination, MobanaEmulator

Ev = Callable[..., Event]


def test_repr_of_settings_and_destination(dest: MobanaDestination, key: str) -> None:
    assert key not in repr(dest.settings)
    assert "Secret('***')" in repr(dest.settings)
    assert key not in repr(dest)
    assert key not in str(dest.settings.app_key)


def test_config_errors_do_not_show_the_key(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(
            {"vendors": {"mobana": {"app_id": "bad id", "app_key": key, "currency": key}}},
            {"mobana": MobanaDestination},
        )
    assert "vendors.mobana.currency" in str(info.value)
    # The key was (wrongly) used as a currency: shown there, as the user wrote it, but never
    # because it is the app_key.
    assert str(info.value).count(key) <= 1


def test_outcomes_and_exceptions_are_redacted(
    dest: MobanaDestination, make_event_: Ev, key: str
) -> None:
    ev = make_event_()
    batch = [Prepared(ev, dest.transform(ev))]
    for status in (200, 400, 401, 500):
        result = dest.parse_response(batch, httpx.Response(status, text=f"echo {key}"))
        assert key not in repr(result)
    assert key not in repr(dest.classify_exception(httpx.ReadTimeout(f"timeout with {key}")))
    assert key not in repr(dest.classify_exception(httpx.ConnectError(f"refused {key}")))
    assert key not in repr(dest.classify_exception(RuntimeError(f"odd {key}")))


def test_the_key_is_only_in_the_header(dest: MobanaDestination, make_event_: Ev, key: str) -> None:
    ev = make_event_()
    record = dest.transform(ev)
    assert key not in repr(record)
    request = dest.build_request([Prepared(ev, record)])
    assert request.headers["x-app-key"] == key
    assert key.encode() not in request.content
    assert key not in str(request.url)


def test_logs_of_a_whole_delivery_never_show_the_key(
    tracker_config: Callable[..., dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sandbox-only-secret-key-0042"
    emulator = MobanaEmulator({"app_id": "a1b2c3d4", "app_key": secret})
    with Sandbox([emulator]) as box:
        box.set_fault("mobana", status=500, body=f'{{"error": "echo {secret}"}}', count=1)
        tracker = Tracker.from_config(tracker_config(box.vendor_config("mobana")))
        try:
            with caplog.at_level(logging.DEBUG):
                tracker.track("purchase", user={"install_id": "abc-123"}, value=1, currency="USD")
                tracker.track(
                    "purchase", user={"install_id": "00000000-0000-0000-0000-000000000401"}
                )
                tracker.flush(timeout=1)
                assert repr(tracker)
        finally:
            tracker.close(timeout=0)
    assert caplog.records, "expected delivery logs"
    assert secret not in caplog.text

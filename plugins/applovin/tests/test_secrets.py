"""The Conversion API key never shows: not in reprs, error messages, reasons or logs."""

from __future__ import annotations

import logging

import pytest

from postback.destination import Prepared
from postback.errors import ConfigError, InvalidEvent
from postback.tracker import Tracker

KEY = "axon-secret-key-9f8e7d6c5b4a"


def test_settings_and_destination_reprs(make_destination) -> None:
    dest = make_destination(api_key=KEY)
    for text in (
        repr(dest.settings),
        str(dest.settings),
        repr(dest),
        str(dest),
        repr(dest.settings.api_key),
        f"{dest.settings.api_key}",
    ):
        assert KEY not in text
    assert "***" in repr(dest.settings)
    assert dest.redact(f"x {KEY} y") == "x *** y"


def test_config_errors_do_not_show_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        Tracker.from_config(
            {
                "postback": {"queue": "memory://", "workers": False},
                "vendors": {
                    "applovin": {
                        "api_key": KEY,
                        "pixel_id": "bad pixel",
                        "payload_format": "xml",
                        "unknown": 1,
                    }
                },
            }
        )
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value.problems)


def test_invalid_event_errors_do_not_show_the_key() -> None:
    tracker = Tracker.from_config(
        {
            "postback": {"queue": "memory://", "workers": False},
            "vendors": {"applovin": {"api_key": KEY, "pixel_id": "p"}},
        }
    )
    try:
        with pytest.raises(InvalidEvent) as info:
            tracker.track("purchase", user={"email": "x"})
        assert KEY not in str(info.value)
    finally:
        tracker.close(timeout=0)


def test_the_key_only_goes_in_the_authorization_header(
    make_destination, event_from, purchase_kwargs
) -> None:
    dest = make_destination(api_key=KEY)
    event = event_from(purchase_kwargs)
    request = dest.build_request([Prepared(event, dest.transform(event))])
    assert request.headers["authorization"] == KEY
    assert KEY not in str(request.url)
    assert KEY.encode() not in request.content


def test_delivery_logs_never_show_the_key(sandbox, make_tracker, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for key in (sandbox.emulators["applovin"].settings["api_key"], KEY):  # good, then refused
        tracker = make_tracker({**sandbox.vendor_config("applovin"), "api_key": key})
        tracker.track(
            "purchase",
            value=1,
            currency="USD",
            user={"email": "a@b.co", "ip_address": "203.0.113.1", "user_agent": "UA"},
            context={"url": "https://a.example/"},
            properties={"transaction_id": "9", "items": [{"item_id": "a"}]},
        )
        report = tracker.flush(timeout=1)
        stats = tracker.stats()
        tracker.close(timeout=0)
        assert key not in caplog.text
        assert key not in repr(report)
        assert key not in repr(stats)
    assert stats["applovin"]["halted"]  # the second key was refused

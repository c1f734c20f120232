"""Secrets never show: not in reprs, error messages, outcomes, or logs (oauthlib's included)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import postback
from postback.config import build_config
from postback.sandbox import Sandbox
from postback_x import XDestination, XEmulator
from postback_x.emulator import DEMO_IFA_X_CLICK

SECRET_KEYS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret",
               "hmac_key", "hmac_key_development")  # fmt: skip


def secret_values(settings: dict[str, Any]) -> list[str]:
    return [str(settings[k]) for k in SECRET_KEYS if k in settings]


def assert_clean(text: str, settings: dict[str, Any]) -> None:
    for value in secret_values(settings):
        assert value not in text


def test_reprs_hide_every_secret(kit: Any, dest: XDestination) -> None:
    settings = kit.settings()
    assert_clean(repr(dest.settings), settings)
    assert_clean(str(dest.settings), settings)
    assert_clean(repr(dest), settings)
    assert "Secret('***')" in repr(dest.settings)


def test_config_errors_do_not_echo_secrets(kit: Any) -> None:
    settings = kit.settings(hmac_key="c2VjcmV0!!not-base64", os_type="windows")
    with pytest.raises(postback.ConfigError) as info:
        build_config({"vendors": {"x": settings}}, {"x": XDestination})
    assert_clean(str(info.value), settings)
    assert "c2VjcmV0" not in str(info.value)


def test_outcomes_do_not_echo_secrets(kit: Any, dest: XDestination) -> None:
    settings = kit.settings()
    batch = kit.prepared(dest, kit.event())
    # A (hypothetical) error body that quotes our consumer key back is redacted.
    body = {"errors": [{"code": "UNAUTHORIZED_ACCESS",
                        "message": f"bad key {settings['consumer_key']}"}]}  # fmt: skip
    out = dest.parse_response(batch, httpx.Response(401, json=body))
    assert_clean(repr(out), settings)
    out = dest.parse_response(batch, httpx.Response(400, json=body))
    assert_clean(repr(out), settings)


def test_validation_messages_do_not_echo_secrets(kit: Any, dest: XDestination) -> None:
    ev = kit.event(user={"ifa": "bad"}, vendors={"x": {"app_id": "x", "click_window": 2}})
    assert_clean(repr(list(dest.validate(ev))), kit.settings())


def test_signing_logs_nothing_secret_even_at_debug(
    kit: Any, dest: XDestination, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dest.build_request(kit.prepared(dest, kit.event()))
    assert_clean(caplog.text, kit.settings())
    # Our filter is scoped to our own signing: oauthlib still logs for other callers.
    import oauthlib.oauth1

    oauthlib.oauth1.Client("someone-else", client_secret="s").sign("https://example.invalid/")
    assert "someone-else" in caplog.text


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox([XEmulator()]).start()
    try:
        yield sb
    finally:
        sb.stop()


def test_delivery_logs_nothing_secret(
    sandbox: Sandbox, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = sandbox.vendor_config("x")
    good = postback.Tracker.from_config(
        {"postback": {"queue": f"sqlite:///{tmp_path}/a.db"}, "vendors": {"x": settings}}
    )
    try:
        good.track("purchase", user={"ifa": DEMO_IFA_X_CLICK}, value=9.99, currency="USD")
        good.track("install", user={"ifa": DEMO_IFA_X_CLICK}, vendors={"x": {"app_id": "1"}})
        assert good.flush(timeout=10).complete
    finally:
        good.close(timeout=1)
    bad_settings = {**settings, "access_token_secret": "wrong-token-secret-value"}
    bad = postback.Tracker.from_config(
        {"postback": {"queue": f"sqlite:///{tmp_path}/b.db"}, "vendors": {"x": bad_settings}}
    )
    try:
        bad.track("purchase", user={"ifa": DEMO_IFA_X_CLICK}, value=9.99, currency="USD")
        assert not bad.flush(timeout=1).complete
        assert_clean(repr(bad.stats()), bad_settings)
        assert_clean(repr(bad.destinations["x"]), bad_settings)
    finally:
        bad.close(timeout=0.2)
    assert "rejected" in caplog.text and "refused our credentials" in caplog.text
    assert_clean(caplog.text, settings)
    assert_clean(caplog.text, bad_settings)

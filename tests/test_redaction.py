"""The shared redaction helper (issue 23 item 5): every encoded form, redacted before cutting."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from postback import Tracker
from postback.redaction import MASK, Redactor
from postback.single_event import request_lines

SECRET = 'k+ey/with=sp ecial"chars'


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe="~"),
        quote(SECRET, safe="~").lower(),
        quote(SECRET, safe=""),
        "k%2Bey%2Fwith%3Dsp+ecial%22chars",  # form-encoded
        json.dumps(SECRET)[1:-1],
        base64.b64encode(SECRET.encode()).decode(),
    ],
)
def test_every_form_is_masked(form: str) -> None:
    text = f"before {form} after"
    assert Redactor([SECRET]).redact(text) == f"before {MASK} after"


@pytest.mark.parametrize("trailer", ["", "...", "…", " ..."])
def test_a_trailing_prefix_of_a_secret_is_masked(trailer: str) -> None:
    assert Redactor([SECRET]).redact(f"body: {SECRET[:9]}{trailer}") == f"body: {MASK}{trailer}"


def test_echoed_authorization_credentials_are_masked_whatever_they_are() -> None:
    r = Redactor([])
    assert r.redact("Authorization: Bearer abc.def-123") == f"Authorization: Bearer {MASK}"
    assert r.redact("authorization: Basic dXNlcjpwYXNz") == f"authorization: Basic {MASK}"


def test_snippet_redacts_before_cutting() -> None:
    text = "x" * 495 + SECRET
    assert SECRET[:5] not in Redactor([SECRET]).snippet(text, 500)
    assert Redactor([SECRET]).snippet(text, 500) == "x" * 495 + MASK


def test_send_dry_run_masks_x_secrets_with_plus_slash_and_equals() -> None:
    from postback.plugins import PluginHost

    host = PluginHost()
    if "x" not in host.emulators:
        pytest.skip("postback-x is not installed")
    settings = dict(host.emulators["x"].demo_settings())
    settings["consumer_key"] = "ck+with/slash=="
    settings["access_token"] = "12345-at+with/slash="
    tracker = Tracker.from_config(
        {"postback": {"queue": "memory://", "workers": False}, "vendors": {"x": settings}}
    )
    try:
        from postback_x.emulator import DEMO_IFA_X_CLICK

        event, dests = tracker.prepare(
            "purchase", user={"ifa": DEMO_IFA_X_CLICK}, value=1, currency="USD"
        )
        text = request_lines(tracker, dests[0], event)
    finally:
        tracker.close(timeout=0)
    assert "oauth_consumer_key" in text
    for secret in (settings["consumer_key"], settings["access_token"]):
        assert quote(secret, safe="~") not in text and secret not in text
        assert quote(secret, safe="~")[:8] not in text

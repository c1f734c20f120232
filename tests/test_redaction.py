"""The shared redaction helper (issue 23 item 5): every encoded form, redacted before cutting."""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote

import pytest

from postback import Tracker
from postback.redaction import MASK, Redactor, secret_forms
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


# --- a vendor's echo escaping the secret its own way (PHP, Gson, Go, HTML) -------------------

PHP_KEY = "mb_live/Q2x1ZS9zZWNyZXQ+a2V5"
GSON_KEY = "Q2x1ZXNlY3JldGtleQ=="
GO_KEY = "sk_a&b<c>d_9f8e7d6c5b4a"
HTML_KEY = """k&y<e>"s'1=Zx9"""


@pytest.mark.parametrize(
    ("secret", "echoed"),
    [
        (PHP_KEY, "mb_live\\/Q2x1ZS9zZWNyZXQ+a2V5"),  # PHP json_encode: / as \/
        (PHP_KEY, "mb_live\\\\\\/Q2x1ZS9zZWNyZXQ+a2V5"),  # ... in a JSON string again
        (GSON_KEY, "Q2x1ZXNlY3JldGtleQ\\u003d\\u003d"),  # Gson: = as \u003d
        (GSON_KEY, "Q2x1ZXNlY3JldGtleQ\\u003D\\u003D"),  # upper-case hex
        (GSON_KEY, "Q2x1ZXNlY3JldGtleQ\\u003d="),  # one escaped, one not
        (GO_KEY, "sk_a\\u0026b\\u003cc\\u003ed_9f8e7d6c5b4a"),  # Go: & < > as \u00XX
        (GO_KEY, "sk_a\\u0026b\\u003Cc\\u003Ed_9f8e7d6c5b4a"),
        (HTML_KEY, html.escape(HTML_KEY)),  # &amp; &lt; &gt; &quot; &#x27;
        (HTML_KEY, "k&amp;y&lt;e&gt;&quot;s&#39;1=Zx9"),
        (HTML_KEY, "k&#38;y&#60;e&#62;&#34;s&#39;1&#61;Zx9"),  # numeric entities
        (HTML_KEY, "k&#x26;y&#X3C;e&#x3e;&#x22;s&#x27;1&#x3D;Zx9"),
        (HTML_KEY, "k&amp;amp;y&amp;lt;e&amp;gt;&amp;quot;s&amp;#39;1=Zx9"),  # escaped twice
        (GSON_KEY, "Q2x1ZXNlY3JldGtleQ&#61;&#61;"),
        (PHP_KEY, "mb_live&#x2F;Q2x1ZS9zZWNyZXQ&#43;a2V5"),
        (PHP_KEY, "mb_live&sol;Q2x1ZS9zZWNyZXQ&plus;a2V5"),  # HTML5 named entities
        (HTML_KEY, "k&amp;y&lt;e&gt;\\&quot;s&#39;1=Zx9"),  # JSON, then HTML
        (GO_KEY, "sk_a\\u0026amp;b\\u0026lt;c\\u0026gt;d_9f8e7d6c5b4a"),  # HTML, then Go
    ],
)
def test_every_escaped_echo_of_a_secret_is_masked(secret: str, echoed: str) -> None:
    text = f'{{"error": "bad request", "headers": {{"x-api-key": "{echoed}"}}, "n": 1}}'
    shown = Redactor([secret]).redact(text)
    assert shown == text.replace(echoed, MASK)


def test_every_form_secret_forms_lists_is_masked() -> None:
    assert "mb_live\\/Q2x1ZS9zZWNyZXQ+a2V5" in secret_forms(PHP_KEY)
    assert "Q2x1ZXNlY3JldGtleQ\\u003D\\u003D" in secret_forms(GSON_KEY)
    assert "k&amp;y&lt;e&gt;&quot;s&#39;1=Zx9" in secret_forms(HTML_KEY)
    for secret in (SECRET, PHP_KEY, GSON_KEY, GO_KEY, HTML_KEY):
        for form in secret_forms(secret):
            assert Redactor([secret]).redact(f"<{form}>") == f"<{MASK}>", form


def test_the_php_repro_and_an_echoed_bearer_with_escapes() -> None:
    r = Redactor([GSON_KEY])
    assert r.redact('{"key":"Q2x1ZXNlY3JldGtleQ\\u003d\\u003d"}') == '{"key":"***"}'
    shown = Redactor([]).redact('{"authorization":"Bearer mb_live\\/Q2x1ZS9zZWNyZXQ+a2V5"}')
    assert shown == '{"authorization":"Bearer ***"}'


@pytest.mark.parametrize(
    "cut",
    [
        "mb_live\\/Q2x1ZS9z",  # cut after an escape
        "mb_live\\/Q2x1ZS9zZWNyZXQ\\u002",  # cut inside one
        "mb_live\\",
        "mb_live&#x2F;Q2x",
        "mb_live&#x2",
    ],
)
@pytest.mark.parametrize("trailer", ["", "...", "…"])
def test_a_trailing_prefix_of_an_escaped_secret_is_masked(cut: str, trailer: str) -> None:
    shown = Redactor([PHP_KEY]).redact(f"HTTP 400: {cut}{trailer}")
    assert shown == f"HTTP 400: {MASK}{trailer}"


@pytest.mark.parametrize(
    "text",
    [
        "HTTP 500",
        'HTTP 400: {"path": "\\/v1\\/events", "q": "a=1&b=2 &amp; &lt;x&gt; \\u003d"}',
        "a lone \\ and & and &#; and &nosuchentity; and \\u12",
    ],
)
def test_a_text_with_escapes_but_no_secret_is_unchanged(text: str) -> None:
    r = Redactor([PHP_KEY, GSON_KEY, HTML_KEY])
    other = f"echo {PHP_KEY}"
    assert r.redact(text) == text
    assert MASK in r.redact(other)  # another text in between: the kept answer is not reused
    assert r.redact(text) == text
    assert r.redact(text) == text  # (the second time in a row from the kept last answer)


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


@pytest.mark.parametrize(
    ("secret", "text", "token"),
    [
        ("my/Bearer", "echo: my\\/Bearer tok3nVALUE9999", "tok3nVALUE9999"),
        ("some-other-secret", "x \\& Bearer \\/basic =7QGtokenX", "7QGtokenX"),
    ],
)
def test_an_echoed_credential_is_masked_even_beside_escapes_and_masks(
    secret: str, text: str, token: str
) -> None:
    """A mask over a secret that ends with the keyword, or a keyword right after another, does
    not hide the credential that follows (found by comparing with the previous redactor)."""
    assert token not in Redactor([secret]).redact(text)


# --- percent-encoded again: a URL echoed inside a URL, an OAuth 1.0a signature base string ----


def _pct(text: str, times: int) -> str:
    for _ in range(times):
        text = quote(text, safe="")
    return text


@pytest.mark.parametrize("times", [2, 3])
@pytest.mark.parametrize("secret", [SECRET, PHP_KEY, GSON_KEY, "Gaz0c80lGj+4Aga1daQ0/x4bpyD="])
def test_a_secret_percent_encoded_again_is_masked(secret: str, times: int) -> None:
    """OAuth 1.0a's signature base string percent-encodes the encoded parameters again (a 401
    quoting it is common), and a vendor echoing the request URL in a link encodes it again:
    ``%2B`` as ``%252B``."""
    echoed = _pct(secret, times)
    text = f'{{"error": "signature_invalid", "base_string": "POST&x&oauth_token%3D{echoed}"}}'
    assert Redactor([secret]).redact(text) == text.replace(echoed, MASK)
    assert Redactor([secret]).redact(text.lower()) == text.lower().replace(echoed.lower(), MASK)


@pytest.mark.parametrize("cut", [12, 13, 14, 15, 16])
def test_a_trailing_prefix_of_a_secret_percent_encoded_again_is_masked(cut: str) -> None:
    echoed = _pct("Gaz0c80lGj+4Aga1daQ0/x4bpyD=", 2)[:cut]
    shown = Redactor(["Gaz0c80lGj+4Aga1daQ0/x4bpyD="]).redact(f"HTTP 400: {echoed}...")
    assert shown == f"HTTP 400: {MASK}..."


def test_percent_escapes_without_a_secret_are_unchanged() -> None:
    text = "HTTP 400: /v1/events?q=a%2Bb%252F%25%zz%2 and 100% sure"
    assert Redactor([PHP_KEY, GSON_KEY, "Gaz0c80lGj+4Aga1daQ0/x4bpyD="]).redact(text) == text

"""Golden payloads: realistic events -> the exact parameters and the exact signed request.

Each ``golden/*.json`` holds the ``track()`` keywords, the settings that differ from the
sandbox ones, and the expected wire record and request (fixed OAuth nonce and timestamp; the
credentials are the emulator's fake sandbox values). Beyond the exact comparison, every case is
checked independently: the hash with the standard library, the query string against RFC 3986,
and the OAuth signature with oauthlib's RFC 5849 functions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from oauthlib.oauth1.rfc5849 import signature as rfc5849
from oauthlib.oauth1.rfc5849 import utils as oauth_utils

from postback.events import make_event
from postback_x.destination import is_hashed_device_id, oauth1_authorization, rfc3986_query

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def build(kit: Any, case: dict[str, Any]) -> tuple[Any, Any, httpx.Request]:
    dest = kit.destination(
        case.get("base_url", "http://x.test"), case.get("event_map"), **case.get("settings", {})
    )
    track = dict(case["track"])
    ev = make_event(track.pop("name"), **track)
    assert list(dest.validate(ev)) == []
    batch = kit.prepared(dest, ev)
    return dest, batch[0].record, dest.build_request(batch)


def test_there_are_enough_golden_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_record_and_request(kit: Any, path: Path) -> None:
    case = load(path)
    _, record, request = build(kit, case)
    expected = case["expected"]
    # Exact, in X's documented parameter order.
    assert list(record.items()) == list(expected["params"].items())
    assert request.method == expected["request"]["method"]
    assert str(request.url) == expected["request"]["url"]
    assert dict(request.headers) == expected["request"]["headers"]
    assert request.content.decode() == expected["request"]["body"]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_wire_query_is_rfc3986_and_decodes_to_the_record(kit: Any, path: Path) -> None:
    case = load(path)
    _, record, request = build(kit, case)
    query = request.url.query.decode("ascii")
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        # Only unreserved characters and %XX escapes: ':' ',' '+' '/' '=' never go raw.
        assert all(c.isalnum() or c in "-._~%" for c in name + value), pair
    assert dict(parse_qsl(query, keep_blank_values=True)) == record


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_hashed_device_id_is_hmac_sha256_of_the_normalised_ifa(kit: Any, path: Path) -> None:
    case = load(path)
    _, record, _ = build(kit, case)
    ifa = case["track"]["user"]["ifa"]
    if is_hashed_device_id(ifa):
        assert record["hashed_device_id"] == ifa
        return
    settings = kit.settings(**case.get("settings", {}))
    env = settings.get("hmac_environment", "production")
    key = base64.b64decode(
        settings["hmac_key_development"] if env == "development" else settings["hmac_key"]
    )
    norm = settings.get("device_id_normalization", "lowercase")
    text = ifa.upper() if norm == "uppercase" else ifa.lower() if norm == "lowercase" else ifa
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    assert record["hashed_device_id"] == base64.b64encode(digest).decode()
    assert len(record["hashed_device_id"]) == 44


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_signature_verifies_over_the_bytes_sent(kit: Any, path: Path) -> None:
    """Rebuild the RFC 5849 base string from the request as it goes on the wire, with
    oauthlib's signature functions (not the client that signed it), and check the HMAC."""
    case = load(path)
    _, _, request = build(kit, case)
    settings = kit.settings(**case.get("settings", {}))
    auth = request.headers["authorization"]
    oauth = {k: oauth_utils.unescape(v) for k, v in oauth_utils.parse_authorization_header(auth)}
    assert oauth["oauth_signature_method"] == "HMAC-SHA1"
    assert oauth["oauth_version"] == "1.0"
    assert oauth["oauth_consumer_key"] == settings["consumer_key"]
    assert oauth["oauth_token"] == settings["access_token"]
    assert oauth["oauth_nonce"] == kit.NONCE
    assert oauth["oauth_timestamp"] == str(kit.OAUTH_TS)
    params = rfc5849.collect_parameters(
        uri_query=request.url.query.decode(), headers={"Authorization": auth}
    )
    base = rfc5849.signature_base_string(
        "POST",
        rfc5849.base_string_uri(str(request.url.copy_with(query=None))),
        rfc5849.normalize_parameters(params),
    )
    secrets = SimpleNamespace(
        client_secret=settings["consumer_secret"],
        resource_owner_secret=settings["access_token_secret"],
    )
    expected = rfc5849.sign_hmac_sha1_with_client(base, secrets)
    assert oauth["oauth_signature"] == expected
    # And a tampered query no longer verifies.
    tampered = rfc5849.signature_base_string(
        "POST",
        rfc5849.base_string_uri(str(request.url.copy_with(query=None))),
        rfc5849.normalize_parameters([*params, ("click_window", "1")]),
    )
    assert rfc5849.sign_hmac_sha1_with_client(tampered, secrets) != expected


def test_signing_matches_the_reference_example_of_x_docs() -> None:
    """X's "Creating a signature" walkthrough (public example credentials): percent-encoding of
    spaces, '+', ',' and '!' and the resulting HMAC-SHA1 signature, with all parameters in the
    query string (the base string is the same as with a form body)."""
    query = rfc3986_query(
        [
            ("include_entities", "true"),
            ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
        ]
    )
    assert query == (
        "include_entities=true&status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth"
        "%20request%21"
    )
    auth = oauth1_authorization(
        "https://api.twitter.com/1.1/statuses/update.json?" + query,
        consumer_key="xvz1evFS4wEEPTGEFPHBog",
        consumer_secret="kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        access_token="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        access_token_secret="LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        timestamp=1318622958,
    )
    oauth = dict(oauth_utils.parse_authorization_header(auth))
    assert oauth_utils.unescape(oauth["oauth_signature"]) == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_requests_are_accepted_by_the_emulator(kit: Any, path: Path) -> None:
    from postback_x import XEmulator

    case = load(path)
    _, record, request = build(kit, case)
    emu = XEmulator()
    response = emu.handle(request)
    assert response.status_code == 200, response.text
    assert emu.received[0]["name"] == record["conversion_type"]
    assert {k: emu.received[0][k] for k in record} == record


def test_each_request_gets_a_fresh_nonce(kit: Any) -> None:
    dest = kit.destination(fixed=False)
    ev = kit.event()
    a = dest.build_request(kit.prepared(dest, ev)).headers["authorization"]
    b = dest.build_request(kit.prepared(dest, ev)).headers["authorization"]
    nonce = lambda h: dict(oauth_utils.parse_authorization_header(h))["oauth_nonce"]  # noqa: E731
    assert nonce(a) != nonce(b)

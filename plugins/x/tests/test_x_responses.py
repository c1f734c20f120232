"""Every documented X status code and error body -> the right outcome; the emulator's answers."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from postback.destination import Delivered, Halt, RateHint, Rejected, Retry
from postback_x import XDestination, XEmulator
from postback_x.emulator import (
    DEMO_IFA_BOTH,
    DEMO_IFA_NONE,
    DEMO_IFA_TPN,
    DEMO_IFA_X_CLICK,
    DEMO_IFA_X_VIEW,
)

X_NODE = {
    "country_code": "US",
    "engagement_time": "2017-01-21T01:13:00.602Z",
    "engagement_type": "CLICK",
    "attribution_type": "PROMOTED",
    "promoted_properties": {
        "campaign_id": "4ns44",
        "line_item_id": "3x44d",
        "publisher_app_id": "333903271",
        "account_id": "18ce11e3egb",
        "line_item_objective": "APP_INSTALLS",
        "campaign_name": None,
    },
    "tweet_id": "11434635565377600",
}
TPN_NODE = {
    "country": "DE",
    "engagement_time": "2017-01-21T01:13:30.000Z",
    "engagement_type": "VIEW",
    "attribution_type": "PROMOTED",
    "promoted_properties": {
        "campaign_id": "8fgzf",
        "line_item_id": "9hks2",
        "publisher_app_id": "512939461",
        "account_id": "18ce11e3egb",
        "line_item_objective": "APP_INSTALLS",
        "campaign_name": "tap campaign",
    },
}


def ok(**data: Any) -> httpx.Response:
    return httpx.Response(200, json={"data": {"conversion_type": "INSTALL", **data}, "request": {}})


def err(status: int, code: str, message: str = "msg", parameter: str | None = None,
        **headers: str) -> httpx.Response:  # fmt: skip
    e = {"code": code, "message": message}
    if parameter:
        e["parameter"] = parameter
    return httpx.Response(status, json={"errors": [e], "request": {"params": {}}}, headers=headers)


@pytest.fixture
def batch(kit: Any, dest: XDestination) -> Any:
    return kit.prepared(dest, kit.event("install", event_id="evt-1"))


# --- 200 and attribution ------------------------------------------------------------------


def test_x_attribution_from_the_documented_example(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, ok(twitter_attribution=X_NODE, tpn_attribution=None))
    assert isinstance(out, Delivered)
    a = out.attribution
    assert a is not None
    assert (a.vendor, a.event_id, a.network) == ("x", "evt-1", "x")
    assert a.campaign_id == "4ns44"
    assert a.campaign_name is None
    assert a.ad_group_id == "3x44d"
    assert a.account_id == "18ce11e3egb"
    assert a.creative_id == "11434635565377600"
    assert a.objective == "APP_INSTALLS"
    assert a.publisher_app_id == "333903271"
    assert (a.engagement_type, a.attribution_type, a.country_code) == ("CLICK", "PROMOTED", "US")
    assert a.engagement_time == datetime(2017, 1, 21, 1, 13, 0, 602000, tzinfo=UTC)
    assert a.raw["twitter_attribution"] == X_NODE


def test_tpn_attribution_reads_country(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, ok(twitter_attribution=None, tpn_attribution=TPN_NODE))
    assert isinstance(out, Delivered) and out.attribution is not None
    assert out.attribution.network == "tpn"
    assert out.attribution.country_code == "DE"
    assert out.attribution.creative_id is None
    assert out.attribution.engagement_type == "VIEW"


def test_both_networks_claiming_keeps_the_last_touch(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, ok(twitter_attribution=X_NODE, tpn_attribution=TPN_NODE))
    assert isinstance(out, Delivered) and out.attribution is not None
    assert out.attribution.network == "tpn"  # 01:13:30 is after 01:13:00
    later_x = {**X_NODE, "engagement_time": "2017-01-21T01:14:00.000Z"}
    out = dest.parse_response(batch, ok(twitter_attribution=later_x, tpn_attribution=TPN_NODE))
    assert isinstance(out, Delivered) and out.attribution is not None
    assert out.attribution.network == "x"
    assert out.attribution.raw["tpn_attribution"] == TPN_NODE


@pytest.mark.parametrize(
    "data",
    [
        {"twitter_attribution": None, "tpn_attribution": None},
        {"twitter_attribution": None},
        {},
        {"twitter_attribution": {}, "tpn_attribution": "n/a"},
    ],
)
def test_no_attribution_object_when_nothing_is_claimed(
    dest: XDestination, batch: Any, data: dict[str, Any]
) -> None:
    assert dest.parse_response(batch, ok(**data)) == Delivered(attribution=None)


def test_attribution_tolerates_odd_fields(dest: XDestination, batch: Any) -> None:
    node = {"engagement_time": "not a time", "promoted_properties": None, "tweet_id": 123}
    out = dest.parse_response(batch, ok(twitter_attribution=node))
    assert isinstance(out, Delivered) and out.attribution is not None
    assert out.attribution.engagement_time is None
    assert out.attribution.creative_id == "123"
    assert out.attribution.campaign_id is None


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>hello</html>"),
        httpx.Response(200, json={"errors": []}),
        httpx.Response(200, json=["data"]),
        httpx.Response(200, content=b""),
    ],
)
def test_a_200_without_x_envelope_is_delivered_with_a_note_never_resent(
    dest: XDestination, batch: Any, response: httpx.Response
) -> None:
    out = dest.parse_response(batch, response)
    assert isinstance(out, Delivered) and out.attribution is None
    assert out.note and "without its data envelope" in out.note


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["INVALID_PARAMETER", "MISSING_PARAMETER", "EXCLUSIVE_PARAMETERS"])
def test_400_is_rejected_with_x_code_and_parameter(
    dest: XDestination, batch: Any, code: str
) -> None:
    out = dest.parse_response(batch, err(400, code, "Expected enum value", "conversion_type"))
    assert isinstance(out, Rejected)
    assert out.status == 400
    assert code in out.reason and "Expected enum value" in out.reason
    assert out.detail == "conversion_type: Expected enum value"


def test_400_with_several_errors_lists_them_all(dest: XDestination, batch: Any) -> None:
    body = {"errors": [
        {"code": "MISSING_PARAMETER", "message": '"app_id" is missing', "parameter": "app_id"},
        {"code": "INVALID_PARAMETER", "message": "bad", "parameter": "os_type"},
    ]}  # fmt: skip
    out = dest.parse_response(batch, httpx.Response(400, json=body))
    assert isinstance(out, Rejected)
    assert "MISSING_PARAMETER" in out.reason and "INVALID_PARAMETER" in out.reason
    assert out.detail is not None and "app_id" in out.detail and "os_type" in out.detail


def test_401_halts(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, err(401, "UNAUTHORIZED_ACCESS", "not authenticated"))
    assert isinstance(out, Halt)
    assert out.status == 401
    assert "UNAUTHORIZED_ACCESS" in out.reason and "consumer_key" in out.reason


@pytest.mark.parametrize("code", ["UNAUTHORIZED_CLIENT_APPLICATION", "READONLY_CLIENT_APPLICATION"])
def test_403_for_the_client_application_halts_all_of_x(
    dest: XDestination, batch: Any, code: str
) -> None:
    out = dest.parse_response(batch, err(403, code))
    assert isinstance(out, Halt) and out.scope is None
    assert out.status == 403 and code in out.reason


@pytest.mark.parametrize("code", ["ACCOUNT_LOCKED_OUT", "SOMETHING_NEW"])
def test_403_for_one_account_halts_only_its_app(dest: XDestination, batch: Any, code: str) -> None:
    out = dest.parse_response(batch, err(403, code))
    app = dest.halt_scope(batch[0])
    assert app and app.startswith("app ")
    assert isinstance(out, Halt) and out.scope == app
    assert out.status == 403 and code in out.reason and app in out.reason


@pytest.mark.parametrize(
    "code", ["MACT_APP_NOT_FOUND", "INVALID_APP_ID", "INVALID_APP_STORE", "ROUTE_NOT_FOUND",
             "APP_EVENT_TAG_NOT_FOUND"]
)  # fmt: skip
def test_404_is_rejected(dest: XDestination, batch: Any, code: str) -> None:
    out = dest.parse_response(batch, err(404, code, "not found", "app_id"))
    assert isinstance(out, Rejected)
    assert out.status == 404 and code in out.reason


def test_404_no_provider_for_the_client_application_halts(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, err(404, "NO_PROVIDER_AVAILABLE_FOR_THIS_CLIENT_APPLICATION"))
    assert isinstance(out, Halt)
    assert "onboarding" in out.reason


def test_non_json_error_body_uses_the_status(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, httpx.Response(404, content=b"<html>Not Found</html>"))
    assert isinstance(out, Rejected)
    assert out.status == 404 and "HTTP 404" in out.reason and "Not Found" in out.reason
    out = dest.parse_response(batch, httpx.Response(503, content=b"\xff\xfe garbage"))
    assert isinstance(out, Retry)


@pytest.mark.parametrize(
    ("status", "code"),
    [(408, "CANCELLED_REQUEST"), (423, "LOCK_ACQUISITION_TIMEOUT"), (500, "INTERNAL_ERROR"),
     (503, "SERVICE_UNAVAILABLE"), (503, "OVER_CAPACITY"), (502, "BAD_GATEWAY"),
     (504, "GATEWAY_TIMEOUT")],
)  # fmt: skip
def test_transient_errors_are_retried(
    dest: XDestination, batch: Any, status: int, code: str
) -> None:
    out = dest.parse_response(batch, err(status, code))
    assert isinstance(out, Retry)
    assert code in out.reason and out.after is None


def test_503_honours_retry_after(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, err(503, "SERVICE_UNAVAILABLE", **{"retry-after": "7"}))
    assert out == Retry(out.reason, 7.0)  # type: ignore[union-attr]


def test_429_waits_until_the_rate_limit_reset(dest: XDestination, batch: Any) -> None:
    reset = str(int(time.time()) + 120)
    out = dest.parse_response(
        batch, err(429, "TOO_MANY_REQUESTS", **{"x-rate-limit-remaining": "0",
                                                "x-rate-limit-reset": reset})
    )  # fmt: skip
    assert isinstance(out, Retry) and out.after is not None
    assert 100 < out.after <= 120


def test_429_prefers_retry_after(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, err(429, "TOO_MANY_REQUESTS", **{"retry-after": "3"}))
    assert isinstance(out, Retry) and out.after == 3.0


def test_429_without_hints_backs_off(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, err(429, "TOO_MANY_REQUESTS"))
    assert isinstance(out, Retry) and out.after is None


def test_other_4xx_are_rejected(dest: XDestination, batch: Any) -> None:
    out = dest.parse_response(batch, httpx.Response(413, content=b"too large"))
    assert isinstance(out, Rejected) and out.status == 413


# --- rate hints -----------------------------------------------------------------------------


def test_rate_hint_from_x_rate_limit_headers(dest: XDestination) -> None:
    r = httpx.Response(200, headers={"x-rate-limit-limit": "60000",
                                     "x-rate-limit-remaining": "42",
                                     "x-rate-limit-reset": "1800000000"})  # fmt: skip
    assert dest.rate_hint(r) == RateHint(42, 1800000000.0)


def test_rate_hint_takes_the_tighter_of_app_and_account_limits(dest: XDestination) -> None:
    r = httpx.Response(200, headers={"x-rate-limit-remaining": "500",
                                     "x-rate-limit-reset": "1800000000",
                                     "x-account-rate-limit-remaining": "3",
                                     "x-account-rate-limit-reset": "1800000060"})  # fmt: skip
    assert dest.rate_hint(r) == RateHint(3, 1800000060.0)


def test_no_rate_hint_without_headers_or_with_garbage(dest: XDestination) -> None:
    assert dest.rate_hint(httpx.Response(200)) is None
    r = httpx.Response(200, headers={"x-rate-limit-remaining": "lots", "x-rate-limit-reset": "1"})
    assert dest.rate_hint(r) is None


def test_default_rate_limit_is_60000_per_15_minutes() -> None:
    assert XDestination.default_rate_limit is not None
    assert (XDestination.default_rate_limit.requests,
            XDestination.default_rate_limit.per_seconds) == (60_000, 900)  # fmt: skip
    assert XDestination.max_batch_size == 1


# --- the emulator answers as X does ---------------------------------------------------------


def send(kit: Any, emu: XEmulator, dest: XDestination, **event: Any) -> httpx.Response:
    ev = kit.event(**event)
    batch = kit.prepared(dest, ev)
    client = httpx.Client(transport=httpx.MockTransport(emu.handle))
    return client.send(dest.build_request(batch))


@pytest.mark.parametrize(
    ("app_id", "status", "code", "outcome"),
    [
        ("403403403", 403, "UNAUTHORIZED_CLIENT_APPLICATION", Halt),
        ("403000403", 403, "ACCOUNT_LOCKED_OUT", Halt),
        ("404404404", 404, "NO_PROVIDER_AVAILABLE_FOR_THIS_CLIENT_APPLICATION", Halt),
        ("408408408", 408, "CANCELLED_REQUEST", Retry),
        ("423423423", 423, "LOCK_ACQUISITION_TIMEOUT", Retry),
        ("429429429", 429, "TOO_MANY_REQUESTS", Retry),
        ("500500500", 500, "INTERNAL_ERROR", Retry),
        ("503503503", 503, "SERVICE_UNAVAILABLE", Retry),
        ("999999999", 404, "MACT_APP_NOT_FOUND", Rejected),
    ],
)
def test_emulator_error_triggers(
    kit: Any, emulator: XEmulator, dest: XDestination, app_id: str, status: int, code: str,
    outcome: type,
) -> None:  # fmt: skip
    r = send(kit, emulator, dest, vendors={"x": {"app_id": app_id}})
    assert r.status_code == status
    assert r.json()["errors"][0]["code"] == code
    out = dest.parse_response(kit.prepared(dest, kit.event()), r)
    assert isinstance(out, outcome)
    assert emulator.received == []
    if status == 503:
        assert isinstance(out, Retry) and out.after == 1.0


def test_emulator_refuses_a_bad_signature(kit: Any, emulator: XEmulator) -> None:
    dest = kit.destination(consumer_secret="not-the-sandbox-secret")
    r = send(kit, emulator, dest)
    assert r.status_code == 401
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED_ACCESS"
    assert isinstance(dest.parse_response([], r), Halt)


def test_emulator_refuses_an_unknown_access_token(kit: Any, emulator: XEmulator) -> None:
    r = send(kit, emulator, kit.destination(access_token="1-unknown"))
    assert r.status_code == 401 and "access token" in r.json()["errors"][0]["message"]


def test_emulator_refuses_a_tampered_query(
    kit: Any, emulator: XEmulator, dest: XDestination
) -> None:
    request = dest.build_request(kit.prepared(dest, kit.event()))
    tampered = httpx.Request(
        "POST", str(request.url).replace("click_window=14", "click_window=30"),
        headers=request.headers,
    )  # fmt: skip
    assert emulator.handle(tampered).status_code == 401


def test_emulator_refuses_no_auth_header(emulator: XEmulator) -> None:
    r = emulator.handle(httpx.Request("POST", "http://x.test/12/conversion_event?app_id=1"))
    assert r.status_code == 401


def test_emulator_routes(kit: Any, emulator: XEmulator, dest: XDestination) -> None:
    request = dest.build_request(kit.prepared(dest, kit.event()))
    get = httpx.Request("GET", request.url, headers=request.headers)
    assert emulator.handle(get).status_code == 404
    other = httpx.Request("POST", "http://x.test/12/conversion_events", headers=request.headers)
    assert emulator.handle(other).json()["errors"][0]["code"] == "ROUTE_NOT_FOUND"


def test_emulator_warns_about_api_version_11(kit: Any, emulator: XEmulator) -> None:
    r = send(kit, emulator, kit.destination(api_version="11"))
    assert r.status_code == 200
    assert r.headers["x-current-api-version"] == "12"
    assert "deprecated" in r.headers["x-api-warn"]
    r = send(kit, emulator, kit.destination(api_version="10"))
    assert r.status_code == 404


def test_emulator_reports_every_missing_and_invalid_parameter(
    kit: Any, emulator: XEmulator
) -> None:
    dest = kit.destination()
    record = {"os_type": "BLACKBERRY", "conversion_time": "2014-05-22T02:38:28Z",
              "click_window": "7", "view_through_window": "14", "hashed_device_id": "abc",
              "price_currency": "usd", "device_ip_address": "1.2.3", "level": "x",
              "user_payment_info": "yes", "non_twitter_engagement_type": "TAP"}  # fmt: skip
    from postback.destination import Prepared

    r = emulator.handle(dest.build_request([Prepared(kit.event(), record)]))
    assert r.status_code == 400
    errors = {(e["code"], e["parameter"]) for e in r.json()["errors"]}
    assert {("MISSING_PARAMETER", p) for p in ("app_id", "conversion_type")} <= errors
    assert {("INVALID_PARAMETER", p) for p in (
        "os_type", "conversion_time", "hashed_device_id", "click_window", "price_currency",
        "device_ip_address", "level", "user_payment_info", "non_twitter_engagement_type",
    )} <= errors  # fmt: skip
    out = dest.parse_response([], r)
    assert isinstance(out, Rejected) and out.status == 400


def test_emulator_catches_an_unencoded_plus_in_the_hash(
    kit: Any, emulator: XEmulator, dest: XDestination
) -> None:
    """A raw '+' decodes as a space server-side: that is why the plugin percent-encodes it."""
    hashed = "lke1GZa3AseB343ZcCQq7svfHzLfuSqyYnE+Rf49MOI="  # X's sample: has a '+'
    request = dest.build_request(kit.prepared(dest, kit.event(user={"ifa": hashed})))
    raw = str(request.url).replace("%2B", "+")
    assert raw != str(request.url)
    r = emulator.handle(httpx.Request("POST", raw, headers=request.headers))
    assert r.status_code in (400, 401)


@pytest.mark.parametrize(
    ("ifa", "network", "engagement"),
    [(DEMO_IFA_X_CLICK, "x", "CLICK"), (DEMO_IFA_X_VIEW, "x", "VIEW"),
     (DEMO_IFA_TPN, "tpn", "CLICK"), (DEMO_IFA_BOTH, "tpn", "CLICK"),
     (DEMO_IFA_NONE, None, None), (DEMO_IFA_X_CLICK.upper(), "x", "CLICK")],
)  # fmt: skip
def test_emulator_attribution_is_deterministic(
    kit: Any, emulator: XEmulator, dest: XDestination, ifa: str, network: str | None,
    engagement: str | None,
) -> None:  # fmt: skip
    ev = kit.event("install", user={"ifa": ifa})
    batch = kit.prepared(dest, ev)
    r = emulator.handle(dest.build_request(batch))
    assert r.status_code == 200
    body = r.json()
    assert "twitter_attribution" in body["data"]
    out = dest.parse_response(batch, r)
    assert isinstance(out, Delivered)
    if network is None:
        assert out.attribution is None
    else:
        assert out.attribution is not None
        assert (out.attribution.network, out.attribution.engagement_type) == (network, engagement)
        assert out.attribution.objective == "APP_INSTALLS"
        assert out.attribution.engagement_time is not None
        assert out.attribution.engagement_time < ev.timestamp
    assert emulator.received[-1]["name"] == "INSTALL"


def test_emulator_view_attribution_needs_a_view_window(
    kit: Any, emulator: XEmulator, dest: XDestination
) -> None:
    r = send(kit, emulator, dest, user={"ifa": DEMO_IFA_X_VIEW},
             vendors={"x": {"view_through_window": 0}})  # fmt: skip
    assert r.status_code == 200 and r.json()["data"]["twitter_attribution"] is None


def test_emulator_development_key_devices_are_known(kit: Any, emulator: XEmulator) -> None:
    dest = kit.destination(hmac_environment="development")
    r = send(kit, emulator, dest, user={"ifa": DEMO_IFA_X_CLICK})
    assert r.json()["data"]["twitter_attribution"]["engagement_type"] == "CLICK"


def test_emulator_rate_limit_headers_and_429(
    kit: Any, emulator: XEmulator, dest: XDestination
) -> None:
    emulator.rate_limit = 2
    emulator.clock = lambda: 1_800_000_000.0
    first = send(kit, emulator, dest)
    assert first.headers["x-rate-limit-limit"] == "2"
    assert first.headers["x-rate-limit-remaining"] == "1"
    assert first.headers["x-rate-limit-reset"] == "1800000900"
    assert dest.rate_hint(first) == RateHint(1, 1_800_000_900.0)
    assert send(kit, emulator, dest).status_code == 200
    third = send(kit, emulator, dest)
    assert third.status_code == 429
    assert third.json()["errors"][0]["code"] == "TOO_MANY_REQUESTS"
    assert third.headers["x-rate-limit-remaining"] == "0"
    assert isinstance(dest.parse_response([], third), Retry)
    emulator.clock = lambda: 1_800_000_900.0  # the window has passed
    assert send(kit, emulator, dest).status_code == 200
    assert len(emulator.received) == 3


def test_emulator_received_records(kit: Any, emulator: XEmulator, dest: XDestination) -> None:
    send(kit, emulator, dest, value=49.99, currency="USD")
    got = emulator.received[0]
    assert got["event_id"] is None
    assert got["name"] == "PURCHASE"
    assert got["price_micro"] == "49990000"
    assert got["app_id"] == "333903271"


# --- unconfirmed failures: sent, but no answer ------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("closed without a response")],
)
def test_no_answer_is_retried_unless_retry_unconfirmed_is_off(kit: Any, exc: Exception) -> None:
    assert isinstance(kit.destination().classify_exception(exc), Retry)
    got = kit.destination(retry_unconfirmed=False).classify_exception(exc)
    assert isinstance(got, Rejected) and "retry_unconfirmed = false" in got.reason


def test_nothing_sent_is_retried_even_at_most_once(kit: Any) -> None:
    dest = kit.destination(retry_unconfirmed=False)
    for exc in (httpx.ConnectError("refused"), httpx.ConnectTimeout("slow to connect")):
        assert isinstance(dest.classify_exception(exc), Retry)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_is_unconfirmed(kit: Any, batch: Any, status: int) -> None:
    assert isinstance(kit.destination().parse_response(batch, err(status, "INTERNAL_ERROR")), Retry)
    got = kit.destination(retry_unconfirmed=False).parse_response(batch, err(status, "X"))
    assert isinstance(got, Rejected) and got.status == status
    at_most_once = kit.destination(retry_unconfirmed=False)
    assert isinstance(at_most_once.parse_response(batch, err(503, "OVER_CAPACITY")), Retry)

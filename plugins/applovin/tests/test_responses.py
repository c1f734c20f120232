"""Every documented status code (and the undocumented ones a client still meets) -> outcome.

AppLovin documents 200 (all events processed), 400 (error: this batch was dropped) and 401
(authentication failed), and no body. Only 200 is success.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from postback.destination import Delivered, Halt, Prepared, Rejected, RejectedBatch, Retry


@pytest.fixture
def batch(destination, event_from, purchase_kwargs) -> list[Prepared]:
    out = []
    for i in range(3):
        kw = {**purchase_kwargs, "event_id": f"order-{i}"}
        event = event_from(kw)
        out.append(Prepared(event, destination.transform(event)))
    return out


def _response(status: int, body: Any = b"", headers: dict[str, str] | None = None):
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.Response(status, content=content, headers=headers or {})


def test_200_is_delivered(destination, batch) -> None:
    assert destination.parse_response(batch, _response(200)) == Delivered()
    # No body is documented: whatever comes back with a 200 is fine, and never raises.
    assert destination.parse_response(batch, _response(200, b"<html>ok")) == Delivered()
    assert destination.parse_response(batch, _response(200, b"\xff\xfe\x00")) == Delivered()


def test_400_refuses_the_whole_batch_with_the_vendors_reason(destination, batch) -> None:
    body = {"status": 400, "message": "There is an error with your request."}
    outcome = destination.parse_response(batch, _response(400, body))
    assert isinstance(outcome, RejectedBatch)
    assert outcome.status == 400
    assert "the batch was dropped" in outcome.reason
    assert "There is an error with your request." in outcome.reason


def test_400_with_unreadable_body_is_still_classified(destination, batch) -> None:
    outcome = destination.parse_response(batch, _response(400, b"\x00\xff" * 2000))
    assert isinstance(outcome, RejectedBatch)
    assert len(outcome.reason) < 700


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_halts_the_lane(destination, batch, status) -> None:
    outcome = destination.parse_response(
        batch, _response(status, {"message": "Authentication failed."})
    )
    assert isinstance(outcome, Halt)
    assert outcome.status == status
    assert "api_key" in outcome.reason and "pixel_id" in outcome.reason
    assert "Authentication failed." in outcome.reason


def test_a_body_echoing_the_key_is_redacted(destination, batch, api_key) -> None:
    outcome = destination.parse_response(batch, _response(401, f"bad key {api_key}".encode()))
    assert isinstance(outcome, Halt)
    assert api_key not in outcome.reason
    assert "***" in outcome.reason


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (404, {}),
        (405, {}),
        (301, {"location": "https://b.applovin.com/v1/event"}),
        (308, {}),
    ],
)
def test_wrong_endpoint_halts_instead_of_dropping(destination, batch, status, headers) -> None:
    outcome = destination.parse_response(batch, _response(status, b"", headers))
    assert isinstance(outcome, Halt)
    assert "base_url" in outcome.reason


def test_413_splits_the_batch(destination, batch) -> None:
    outcome = destination.parse_response(batch, _response(413, b"too large"))
    assert isinstance(outcome, RejectedBatch)
    assert outcome.status == 413


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_errors_are_retried(destination, batch, status) -> None:
    outcome = destination.parse_response(batch, _response(status, b"busy"))
    assert isinstance(outcome, Retry)
    assert str(status) in outcome.reason
    assert outcome.after is None


def test_retry_after_is_honoured(destination, batch) -> None:
    outcome = destination.parse_response(batch, _response(429, b"", {"retry-after": "7"}))
    assert outcome == Retry("HTTP 429", 7.0)
    outcome = destination.parse_response(batch, _response(503, b"", {"retry-after-ms": "1500"}))
    assert isinstance(outcome, Retry) and outcome.after == 1.5


@pytest.mark.parametrize("status", [201, 202, 204])
def test_another_2xx_is_delivered_with_a_note_never_resent(destination, batch, status) -> None:
    outcome = destination.parse_response(batch, _response(status))
    assert isinstance(outcome, Delivered)
    assert outcome.note and "only 200 is documented" in outcome.note


@pytest.mark.parametrize("status", [409, 415, 422])
def test_other_client_errors_are_rejected(destination, batch, status) -> None:
    outcome = destination.parse_response(batch, _response(status, {"error": "nope"}))
    assert isinstance(outcome, Rejected)
    assert outcome.status == status
    assert outcome.detail == '{"error":"nope"}'


def test_network_errors_are_retried(destination) -> None:
    request = httpx.Request("POST", "https://b.applovin.com/v1/event")
    for exc in (
        httpx.ConnectError("refused", request=request),
        httpx.ReadTimeout("slow", request=request),
        httpx.RemoteProtocolError("closed without a response", request=request),
    ):
        assert isinstance(destination.classify_exception(exc), Retry)


# --- through the emulator (httpx.MockTransport) --------------------------------------------------


def _send(emulator, request: httpx.Request) -> httpx.Response:
    with httpx.Client(transport=httpx.MockTransport(emulator.handle)) as client:
        return client.send(request)


def test_emulator_accepts_a_valid_batch(destination, emulator, batch) -> None:
    response = _send(emulator, destination.build_request(batch))
    assert response.status_code == 200
    assert destination.parse_response(batch, response) == Delivered()
    assert [r["event_id"] for r in emulator.received] == ["order-0", "order-1", "order-2"]
    assert {r["name"] for r in emulator.received} == {"purchase"}


def test_emulator_accepts_the_bare_array(
    make_destination, emulator, event_from, purchase_kwargs
) -> None:
    dest = make_destination(payload_format="array")
    event = event_from(purchase_kwargs)
    request = dest.build_request([Prepared(event, dest.transform(event))])
    assert orjson.loads(request.content)[0]["name"] == "purchase"
    assert _send(emulator, request).status_code == 200


def test_emulator_refuses_a_wrong_key(make_destination, emulator, batch) -> None:
    dest = make_destination(api_key="not-the-key")
    response = _send(emulator, dest.build_request(batch))
    assert response.status_code == 401
    assert response.json()["message"] == "Authentication failed."
    assert isinstance(dest.parse_response(batch, response), Halt)
    assert emulator.received == []


def test_emulator_refuses_a_bearer_key(destination, emulator, batch, api_key) -> None:
    request = destination.build_request(batch)
    request.headers["authorization"] = f"Bearer {api_key}"
    response = _send(emulator, request)
    assert response.status_code == 401
    assert "without 'Bearer '" in response.json()["errors"][0]


def test_emulator_refuses_an_unknown_pixel(make_destination, emulator, batch) -> None:
    dest = make_destination(pixel_id="someone-elses-pixel")
    response = _send(emulator, dest.build_request(batch))
    assert response.status_code == 401
    assert isinstance(dest.parse_response(batch, response), Halt)


def _raw(
    emulator,
    body: Any,
    *,
    api_key: str,
    pixel: str | None = "test-pixel-7d41",
    method: str = "POST",
    path: str = "/v1/event",
    content_type: str = "application/json",
) -> httpx.Response:
    params = {"pixel_id": pixel} if pixel else {}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    request = httpx.Request(
        method,
        f"http://emu{path}",
        params=params,
        content=content,
        headers={"authorization": api_key, "content-type": content_type},
    )
    return emulator.handle(request)


def test_emulator_request_errors(destination, emulator, batch, api_key) -> None:
    good = {"events": [p.record for p in batch]}
    assert _raw(emulator, good, api_key=api_key, pixel=None).status_code == 400
    assert _raw(emulator, good, api_key=api_key, method="GET").status_code == 405
    assert _raw(emulator, good, api_key=api_key, path="/v2/event").status_code == 404
    assert _raw(emulator, good, api_key=api_key, content_type="text/plain").status_code == 400
    assert _raw(emulator, b"{not json", api_key=api_key).status_code == 400
    assert _raw(emulator, {"event": good["events"]}, api_key=api_key).status_code == 400
    assert _raw(emulator, {"events": []}, api_key=api_key).status_code == 400
    too_many = {"events": [batch[0].record] * 101}
    response = _raw(emulator, too_many, api_key=api_key)
    assert response.status_code == 400
    assert "at most 100" in response.json()["errors"][0]
    assert _raw(emulator, {"events": [batch[0].record] * 100}, api_key=api_key).status_code == 200
    assert isinstance(
        destination.parse_response(batch, _raw(emulator, {"events": []}, api_key=api_key)),
        RejectedBatch,
    )


def _event() -> dict[str, Any]:
    return {
        "name": "purchase",
        "event_time": 1764000000000,
        "event_source_url": "https://shop.example.com/",
        "dedupe_id": "o-1",
        "user_data": {
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "UA",
            "esi": "web",
            "client_id": "c-1",
        },
        "data": {
            "currency": "USD",
            "value": 10,
            "transaction_id": "1",
            "items": [{"item_id": "a", "quantity": 1}],
        },
    }


def _without(d: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    del node[last]
    return d


def _with(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    node[last] = value
    return d


EMULATOR_REFUSES = [
    ("name", lambda e: _with(e, "name", "add_to_wishlist"), "name"),
    ("event_time-seconds", lambda e: _with(e, "event_time", 1764000000), "event_time"),
    ("event_time-float", lambda e: _with(e, "event_time", 1764000000000.5), "event_time"),
    ("url", lambda e: _with(e, "event_source_url", "/checkout"), "event_source_url"),
    ("ip", lambda e: _without(e, "user_data.client_ip_address"), "client_ip_address"),
    ("ua", lambda e: _without(e, "user_data.client_user_agent"), "client_user_agent"),
    ("esi", lambda e: _with(e, "user_data.esi", "tv"), "esi"),
    (
        "identifier",
        lambda e: _with(_without(e, "user_data.client_id"), "user_data.aleid", "A"),
        "at least one of",
    ),
    ("os", lambda e: _with(e, "user_data.os", "macos"), "os"),
    ("country", lambda e: _with(e, "user_data.country_code", "USA"), "country_code"),
    (
        "us-zip",
        lambda e: _with(_with(e, "user_data.country_code", "US"), "user_data.zip", "94105-1234"),
        "zip",
    ),
    ("unknown-user-field", lambda e: _with(e, "user_data.gclid", "x"), "unknown field"),
    ("data-missing", lambda e: _without(e, "data"), "data: required"),
    ("data-null", lambda e: _with(e, "data", None), "data: required for purchase"),
    ("currency", lambda e: _without(e, "data.currency"), "data.currency"),
    ("currency-code", lambda e: _with(e, "data.currency", "usd"), "data.currency"),
    ("value", lambda e: _with(e, "data.value", "10"), "data.value"),
    ("transaction", lambda e: _without(e, "data.transaction_id"), "data.transaction_id"),
    ("items", lambda e: _with(e, "data.items", []), "data.items"),
    ("item-id", lambda e: _with(e, "data.items", [{"quantity": 1}]), "item_id"),
    ("quantity", lambda e: _with(e, "data.items", [{"item_id": "a"}]), "quantity"),
    (
        "price",
        lambda e: _with(e, "data.items", [{"item_id": "a", "quantity": 1, "price": "1"}]),
        "price",
    ),
    (
        "lead",
        lambda e: _with(e, "name", "generate_lead") and _with(e, "data", {"currency": "USD"}),
        "data.value: required for generate_lead",
    ),
    ("search", lambda e: _with(e, "name", "search") and _with(e, "data", {}), "data.search_term"),
    ("app_open-data", lambda e: _with(e, "name", "app_open"), "app_open takes no data"),
    (
        "mpd",
        lambda e: _with(e, "measurement_partner_data", {"is_claimable": True}),
        "attribution_model: required",
    ),
    (
        "mpd-share",
        lambda e: _with(
            e,
            "measurement_partner_data",
            {
                "is_claimable": True,
                "attribution_model": "LAST_CLICK",
                "attribution_share": 2,
                "accounting_mode": "CASH",
            },
        ),
        "attribution_share",
    ),
    ("trigger-dedupe", lambda e: _with(e, "dedupe_id", "emulator-invalid-1"), "trigger"),
    (
        "trigger-transaction",
        lambda e: _with(e, "data.transaction_id", "emulator-invalid"),
        "trigger",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragment"), [r[1:] for r in EMULATOR_REFUSES], ids=[r[0] for r in EMULATOR_REFUSES]
)
def test_emulator_drops_the_batch_for_one_invalid_event(
    emulator, api_key, mutate, fragment
) -> None:
    assert _raw(emulator, {"events": [_event()]}, api_key=api_key).status_code == 200
    emulator.received.clear()
    bad = mutate(_event())
    response = _raw(emulator, {"events": [_event(), bad, _event()]}, api_key=api_key)
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == (
        "There is an error with your request. This batch of events was dropped."
    )
    assert any(e.startswith("events[1].") and fragment in e for e in body["errors"]), body
    assert not any(e.startswith(("events[0]", "events[2]")) for e in body["errors"])
    assert emulator.received == []


def test_emulator_page_view_with_null_data(emulator, api_key) -> None:
    page_view = _with(_event(), "name", "page_view")
    page_view["data"] = None
    assert _raw(emulator, [page_view], api_key=api_key).status_code == 200
    assert emulator.received[0]["name"] == "page_view"
    assert emulator.received[0]["pixel_id"] == "test-pixel-7d41"

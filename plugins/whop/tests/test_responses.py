"""Every documented status code and error body -> the right outcome.

First with hand-made ``httpx.Response`` objects (the exact bodies Whop documents), then end to
end through ``httpx.MockTransport(emulator.handle)`` with the emulator's triggers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from postback.destination import Delivered, Halt, Outcome, Prepared, Rejected, Retry
from postback.events import Event
from postback_whop import WhopDestination, WhopEmulator

Ev = Callable[..., Event]


def parse(
    dest: WhopDestination,
    event: Ev,
    status: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> Outcome:
    ev = event()
    batch = [Prepared(ev, dest.transform(ev))]
    if content is not None:
        response = httpx.Response(status, content=content, headers=headers)
    elif body is None:
        response = httpx.Response(status, headers=headers)
    else:
        response = httpx.Response(status, json=body, headers=headers)
    outcome = dest.parse_response(batch, response)
    assert not isinstance(outcome, list)
    return outcome  # type: ignore[return-value]


def err(etype: str, message: str, **extra: str) -> dict[str, Any]:
    return {"error": {"type": etype, "message": message, **extra}}


# --- success ---------------------------------------------------------------------------------


def test_200_with_id_is_delivered(dest: WhopDestination, event: Ev) -> None:
    assert parse(dest, event, 200, {"id": "evnt_abc123"}) == Delivered(vendor_ref="evnt_abc123")


def test_200_without_id_or_body_is_delivered(dest: WhopDestination, event: Ev) -> None:
    assert parse(dest, event, 200, {}) == Delivered()
    assert parse(dest, event, 204) == Delivered()


def test_200_with_unreadable_body_is_delivered_with_a_note(
    dest: WhopDestination, event: Ev
) -> None:
    out = parse(dest, event, 200, content=b"<html>captive portal</html>")
    assert isinstance(out, Delivered)
    assert out.note and "unreadable body" in out.note and "captive portal" in out.note


# --- credentials: halt -----------------------------------------------------------------------


def test_401_halts(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 401, err("unauthorized", "Invalid or missing API key"))
    assert isinstance(out, Halt) and out.status == 401
    assert "Invalid or missing API key" in out.reason and "api_key" in out.reason


def test_403_halts(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 403, err("forbidden", "Missing permission event:create"))
    assert isinstance(out, Halt) and out.status == 403
    assert "event:create" in out.reason


def test_401_ignores_x_should_retry(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 401, err("unauthorized", "no"), headers={"x-should-retry": "false"})
    assert isinstance(out, Halt)


# --- permanent refusals ----------------------------------------------------------------------


def test_400_is_rejected_with_message_code_and_param(dest: WhopDestination, event: Ev) -> None:
    body = err(
        "bad_request",
        "Missing required parameter: account_id",
        code="parameter_missing",
        param="account_id",
    )
    out = parse(dest, event, 400, body)
    assert isinstance(out, Rejected) and out.status == 400
    assert out.reason == (
        "Whop 400 bad_request parameter_missing: Missing required parameter: "
        "account_id (param: account_id)"
    )
    assert out.detail is not None and "parameter_missing" in out.detail


def test_400_invalid_json(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 400, err("bad_request", "Body is not JSON", code="invalid_json"))
    assert isinstance(out, Rejected) and "invalid_json" in out.reason


def test_404_with_param_is_rejected(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 404, err("not_found", "Plan not found", param="plan_id"))
    assert isinstance(out, Rejected) and out.status == 404
    assert "Plan not found (param: plan_id)" in out.reason
    assert "endpoint" not in out.reason


def test_404_without_whop_body_hints_at_the_endpoint(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 404, content=b"Not Found")
    assert isinstance(out, Rejected)
    assert "not a Whop error body" in out.reason and "check base_url" in out.reason


def test_422_is_rejected(dest: WhopDestination, event: Ev) -> None:
    out = parse(
        dest,
        event,
        422,
        err("unprocessable_entity", "Event time is in the future", param="event_time"),
    )
    assert isinstance(out, Rejected) and out.status == 422
    assert "Event time is in the future (param: event_time)" in out.reason


@pytest.mark.parametrize("status", [405, 410, 413, 415])
def test_other_4xx_are_rejected(dest: WhopDestination, event: Ev, status: int) -> None:
    assert isinstance(parse(dest, event, status, err("x", "no")), Rejected)


# --- transient: retry --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504])
def test_transient_statuses_are_retried(dest: WhopDestination, event: Ev, status: int) -> None:
    out = parse(dest, event, status, err("server_error", "Something went wrong"))
    assert isinstance(out, Retry) and out.after is None
    assert f"Whop {status}" in out.reason and "Something went wrong" in out.reason


def test_409_conflict_is_retried(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 409, err("conflict", "Idempotency key in use"))
    assert isinstance(out, Retry)


def test_429_try_again_message_is_honoured(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 429, err("rate_limit_exceeded", "Try again in 12 seconds."))
    assert out == Retry("Whop 429 rate_limit_exceeded: Try again in 12 seconds.", 12.0)


def test_429_retry_after_headers(dest: WhopDestination, event: Ev) -> None:
    out = parse(
        dest, event, 429, err("rate_limit_exceeded", "Slow down"), headers={"retry-after": "7"}
    )
    assert isinstance(out, Retry) and out.after == 7.0
    out = parse(
        dest,
        event,
        429,
        err("rate_limit_exceeded", "Slow down"),
        headers={"retry-after-ms": "1500"},
    )
    assert isinstance(out, Retry) and out.after == 1.5


def test_429_takes_the_longest_wait(dest: WhopDestination, event: Ev) -> None:
    out = parse(
        dest,
        event,
        429,
        err("rate_limit_exceeded", "Try again in 3 seconds."),
        headers={"retry-after": "9"},
    )
    assert isinstance(out, Retry) and out.after == 9.0


def test_429_without_hint(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 429, content=b"")
    assert isinstance(out, Retry) and out.after is None
    assert "empty body" in out.reason


def test_5xx_with_html_body_is_retried(dest: WhopDestination, event: Ev) -> None:
    out = parse(dest, event, 502, content=b"<html><body>Bad   gateway</body></html>")
    assert isinstance(out, Retry)
    assert "not a Whop error body" in out.reason and "Bad gateway" in out.reason


def test_x_should_retry_true_retries_a_4xx(dest: WhopDestination, event: Ev) -> None:
    out = parse(
        dest, event, 400, err("bad_request", "temporary"), headers={"x-should-retry": "true"}
    )
    assert isinstance(out, Retry)


def test_x_should_retry_false_stops_a_5xx(dest: WhopDestination, event: Ev) -> None:
    out = parse(
        dest, event, 503, err("server_error", "gone for good"), headers={"x-should-retry": "false"}
    )
    assert isinstance(out, Rejected) and out.status == 503


def test_network_errors_are_retried(dest: WhopDestination) -> None:
    request = httpx.Request("POST", "https://api.whop.com/api/v1/events")
    for exc in (
        httpx.ConnectError("refused", request=request),
        httpx.ReadTimeout("timed out", request=request),
        httpx.RemoteProtocolError("closed without a response", request=request),
    ):
        assert isinstance(dest.classify_exception(exc), Retry)


def test_reasons_never_carry_the_key(make_dest: Callable[..., WhopDestination], event: Ev) -> None:
    dest = make_dest(api_key="sk_leaky_123456")
    out = parse(dest, event, 400, err("bad_request", "bad key sk_leaky_123456"))
    assert isinstance(out, Rejected)
    assert "sk_leaky_123456" not in out.reason and "sk_leaky_123456" not in (out.detail or "")


# --- end to end with the emulator (MockTransport) -----------------------------------------------


def send(dest: WhopDestination, client: httpx.Client, ev: Event) -> Outcome:
    batch = [Prepared(ev, dest.transform(ev))]
    response = client.send(dest.build_request(batch))
    outcome = dest.parse_response(batch, response)
    assert not isinstance(outcome, list)
    return outcome  # type: ignore[return-value]


def test_emulator_accepts_and_returns_an_id(
    dest: WhopDestination, mock_client: httpx.Client, emulator: WhopEmulator, event: Ev
) -> None:
    out = send(dest, mock_client, event("lead", event_id="e-ok"))
    assert isinstance(out, Delivered) and out.vendor_ref is not None
    assert out.vendor_ref.startswith("evnt_")
    assert [r["event_id"] for r in emulator.received] == ["e-ok"]


def test_emulator_401(
    make_dest: Callable[..., WhopDestination], mock_client: httpx.Client, event: Ev
) -> None:
    out = send(make_dest(api_key="whop_wrong_key"), mock_client, event())
    assert isinstance(out, Halt) and out.status == 401
    assert "unauthorized: Invalid or missing API key" in out.reason


def test_emulator_403_other_account(
    make_dest: Callable[..., WhopDestination], mock_client: httpx.Client, event: Ev
) -> None:
    out = send(make_dest(account_id="biz_SomeoneElse"), mock_client, event())
    assert isinstance(out, Halt) and out.status == 403


def test_emulator_404_unknown_plan(
    dest: WhopDestination, mock_client: httpx.Client, event: Ev
) -> None:
    out = send(dest, mock_client, event(properties={"plan_id": "plan_missing_1"}))
    assert isinstance(out, Rejected) and out.status == 404
    assert "(param: plan_id)" in out.reason


def test_emulator_422(dest: WhopDestination, mock_client: httpx.Client, event: Ev) -> None:
    out = send(dest, mock_client, event(event_id="whop-422-a"))
    assert isinstance(out, Rejected) and out.status == 422
    assert "unprocessable_entity" in out.reason


def test_emulator_429_then_ok(dest: WhopDestination, mock_client: httpx.Client, event: Ev) -> None:
    ev = event(event_id="whop-429-a")
    out = send(dest, mock_client, ev)
    assert isinstance(out, Retry) and out.after == WhopEmulator.retry_seconds
    assert "Try again in" in out.reason
    assert isinstance(send(dest, mock_client, ev), Delivered)


@pytest.mark.parametrize("prefix", ["whop-409", "whop-500"])
def test_emulator_transient_once(
    dest: WhopDestination, mock_client: httpx.Client, event: Ev, prefix: str
) -> None:
    ev = event(event_id=f"{prefix}-x")
    assert isinstance(send(dest, mock_client, ev), Retry)
    assert isinstance(send(dest, mock_client, ev), Delivered)


def test_conversions_shape_end_to_end(
    make_dest: Callable[..., WhopDestination],
    mock_client: httpx.Client,
    emulator: WhopEmulator,
    event: Ev,
) -> None:
    dest = make_dest(api="conversions")
    ev = event(
        "purchase",
        value=19.99,
        currency="USD",
        context={"fbc": "dropped", "gclid": "g"},
        vendors={"whop": {}},
    )
    assert isinstance(send(dest, mock_client, ev), Delivered)
    got = emulator.received[-1]
    assert got["api"] == "conversions" and got["name"] == "custom"
    assert got["custom_name"] == "purchase"
    assert got["body"]["context"] == {"gclid": "g"}

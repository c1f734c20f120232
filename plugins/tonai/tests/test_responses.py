"""Every documented (and every undocumented but plausible) answer -> the right outcome."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from postback.destination import Delivered, Halt, Rejected, Retry
from postback_tonai import TonAIDestination, TonAIEmulator
from postback_tonai.emulator import MAGIC_USER_IDS

from .conftest import TEST_KEY, event, make_destination, prepared


@pytest.fixture
def dest() -> TonAIDestination:
    return make_destination()


def outcome(dest: TonAIDestination, status: int, **kwargs: Any) -> Any:
    batch = prepared(dest, event())
    request = dest.build_request(batch)
    response = httpx.Response(status, request=request, **kwargs)
    result = dest.parse_response(batch, response)
    assert not isinstance(result, list)
    return result


# --- 2xx -------------------------------------------------------------------------------------


def test_documented_success(dest: TonAIDestination) -> None:
    assert outcome(dest, 200, json={"status": "success"}) == Delivered()


def test_success_is_read_case_insensitively(dest: TonAIDestination) -> None:
    assert outcome(dest, 200, json={"status": "SUCCESS", "data": None}) == Delivered()


def test_200_with_another_status_is_rejected_with_the_body(dest: TonAIDestination) -> None:
    got = outcome(dest, 200, json={"status": "fail", "message": "duplicate conversion"})
    assert isinstance(got, Rejected)
    assert got.status == 200
    assert "duplicate conversion" in got.reason and "'fail'" in got.reason
    assert got.detail is not None and '"status":"fail"' in got.detail


def test_200_json_without_status_is_rejected(dest: TonAIDestination) -> None:
    got = outcome(dest, 200, json={"code": 1, "msg": "telegramUserId not found"})
    assert isinstance(got, Rejected)
    assert "telegramUserId not found" in got.reason


@pytest.mark.parametrize(
    "content", [b"<html><body>Bad gateway</body></html>", b"", b"[1, 2]", b"\xff\xfe\x00"]
)
def test_200_with_an_unreadable_body_is_delivered_with_a_note(
    dest: TonAIDestination, content: bytes
) -> None:
    got = outcome(dest, 200, content=content)
    assert isinstance(got, Delivered)
    assert got.note and "HTTP 200 without a JSON body" in got.note


# --- credentials: halt, nothing dropped ----------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_halts_the_lane(dest: TonAIDestination, status: int) -> None:
    got = outcome(dest, status, json={"message": "invalid api key"})
    assert isinstance(got, Halt)
    assert got.status == status
    assert "api_key" in got.reason and "invalid api key" in got.reason


# --- transient: bounded retries --------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retried(dest: TonAIDestination, status: int) -> None:
    got = outcome(dest, status, text="upstream failed")
    assert isinstance(got, Retry)
    assert got.reason.startswith(f"HTTP {status}")
    assert got.after is None


def test_429_is_retried_honouring_retry_after(dest: TonAIDestination) -> None:
    got = outcome(dest, 429, headers={"retry-after": "7"}, json={"message": "slow down"})
    assert got == Retry("HTTP 429: slow down", 7.0)


def test_429_without_retry_after_uses_backoff(dest: TonAIDestination) -> None:
    got = outcome(dest, 429)
    assert isinstance(got, Retry) and got.after is None


def test_503_retry_after_ms(dest: TonAIDestination) -> None:
    got = outcome(dest, 503, headers={"retry-after-ms": "1500"})
    assert isinstance(got, Retry) and got.after == 1.5


def test_network_errors_are_retried(dest: TonAIDestination) -> None:
    got = dest.classify_exception(httpx.ConnectError("connection refused"))
    assert isinstance(got, Retry) and "ConnectError" in got.reason


# --- permanent: rejected with the vendor's reason ---------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 409, 410, 413, 415, 422])
def test_other_4xx_are_rejected_with_the_body(dest: TonAIDestination, status: int) -> None:
    got = outcome(dest, status, json={"status": "error", "message": "telegramUserId invalid"})
    assert isinstance(got, Rejected)
    assert got.status == status
    assert "telegramUserId invalid" in got.reason
    assert got.detail is not None and "telegramUserId invalid" in got.detail


def test_4xx_with_a_text_body(dest: TonAIDestination) -> None:
    got = outcome(dest, 400, text="Bad Request: eventData is required")
    assert isinstance(got, Rejected)
    assert "eventData is required" in got.reason


def test_4xx_with_undecodable_bytes_does_not_raise(dest: TonAIDestination) -> None:
    got = outcome(dest, 400, content=b"\xff\xfe\xfa" * 10)
    assert isinstance(got, Rejected)


def test_4xx_with_an_empty_body(dest: TonAIDestination) -> None:
    got = outcome(dest, 400)
    assert isinstance(got, Rejected) and "(empty body)" in got.reason


def test_long_bodies_are_shortened(dest: TonAIDestination) -> None:
    got = outcome(dest, 400, text="x" * 5000)
    assert isinstance(got, Rejected)
    assert len(got.reason) < 500 and got.detail is not None and len(got.detail) < 400


def test_a_body_echoing_the_key_is_redacted(dest: TonAIDestination) -> None:
    got = outcome(dest, 400, json={"message": f"bad request for key {TEST_KEY}"})
    assert isinstance(got, Rejected)
    assert TEST_KEY not in got.reason and TEST_KEY not in (got.detail or "")
    assert "***" in got.reason


def test_redirects_are_rejected_with_a_hint(dest: TonAIDestination) -> None:
    got = outcome(dest, 301, headers={"location": "https://ton.ai/"})
    assert isinstance(got, Rejected)
    assert "https://ton.ai/" in got.reason and "base_url" in got.reason


# --- against the emulator (httpx.MockTransport) ------------------------------------------------------


def send_via_emulator(telegram_id: str, **settings: Any) -> Any:
    emu = TonAIEmulator({"api_key": TEST_KEY})
    dest = make_destination(**settings)
    batch = prepared(dest, event(telegram_user_id=telegram_id))
    with httpx.Client(transport=httpx.MockTransport(emu.handle)) as client:
        response = client.send(dest.build_request(batch))
    return dest.parse_response(batch, response), emu


@pytest.mark.parametrize("product", ["exchange", "ad"])
def test_emulator_accepts_both_products(product: str) -> None:
    got, emu = send_via_emulator("1728125519", product=product)
    assert got == Delivered()
    assert emu.received[0]["product"] == product
    assert emu.received[0]["telegram_user_id"] == "1728125519"


@pytest.mark.parametrize(
    ("telegram_id", "kind", "status"),
    [
        ("9990000200", Rejected, 200),
        ("9990000400", Rejected, 400),
        ("9990000403", Halt, 403),
        ("9990000429", Retry, None),
        ("9990000500", Retry, None),
        ("9990000503", Retry, None),
    ],
)
def test_emulator_errors_map_to_outcomes(telegram_id: str, kind: type, status: int | None) -> None:
    got, emu = send_via_emulator(telegram_id)
    assert isinstance(got, kind)
    if status is not None:
        assert got.status == status
    assert MAGIC_USER_IDS[telegram_id][2] in got.reason
    assert emu.received == []


def test_emulator_429_says_when() -> None:
    got, _ = send_via_emulator("9990000429")
    assert got.after == 1.0


def test_emulator_refuses_a_wrong_key() -> None:
    emu = TonAIEmulator({"api_key": "another-key"})
    dest = make_destination()
    batch = prepared(dest, event())
    with httpx.Client(transport=httpx.MockTransport(emu.handle)) as client:
        got = dest.parse_response(batch, client.send(dest.build_request(batch)))
    assert isinstance(got, Halt) and got.status == 401


# --- unconfirmed failures: sent, but no answer ------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("closed without a response")],
)
def test_no_answer_is_retried_unless_retry_unconfirmed_is_off(exc: Exception) -> None:
    assert isinstance(make_destination().classify_exception(exc), Retry)
    got = make_destination(retry_unconfirmed=False).classify_exception(exc)
    assert isinstance(got, Rejected) and "retry_unconfirmed = false" in got.reason


def test_nothing_sent_is_retried_even_at_most_once() -> None:
    dest = make_destination(retry_unconfirmed=False)
    assert isinstance(dest.classify_exception(httpx.ConnectError("refused")), Retry)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_is_unconfirmed(status: int) -> None:
    assert isinstance(outcome(make_destination(), status), Retry)
    got = outcome(make_destination(retry_unconfirmed=False), status)
    assert isinstance(got, Rejected) and got.status == status
    assert isinstance(outcome(make_destination(retry_unconfirmed=False), 503), Retry)

"""Every documented (and assumed) Mobana answer -> the right outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from postback import Delivered, Halt, Prepared, Rejected, Retry
from postback.events import Event
from postback_mobana import MobanaDestination, MobanaEmulator

Dest = Callable[..., MobanaDestination]
Ev = Callable[..., Event]


@pytest.fixture
def batch(dest: MobanaDestination, make_event_: Ev) -> list[Prepared]:
    ev = make_event_(value=49.99, currency="USD")
    return [Prepared(ev, dest.transform(ev))]


def answer(status: int, body: Any = None, **kw: Any) -> httpx.Response:
    if isinstance(body, (dict, list)):
        return httpx.Response(status, json=body, **kw)
    return httpx.Response(status, content=(body or "").encode(), **kw)


def outcome(dest: MobanaDestination, batch: list[Prepared], response: httpx.Response) -> Any:
    result = dest.parse_response(batch, response)
    assert not isinstance(result, list)
    return result


# --- success -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202])
def test_success_true_is_delivered(
    dest: MobanaDestination, batch: list[Prepared], status: int
) -> None:
    assert outcome(dest, batch, answer(status, {"success": True})) == Delivered()


@pytest.mark.parametrize(
    "body",
    [
        {"success": False},
        {"success": "true"},
        {"ok": True},
        [True],
        "<html>proxy</html>",
        "",
        "null",
    ],
)
def test_2xx_without_success_true_is_delivered_with_a_note_never_resent(
    dest: MobanaDestination, batch: list[Prepared], body: Any
) -> None:
    result = outcome(dest, batch, answer(200, body))
    assert isinstance(result, Delivered)
    assert result.note and 'without {"success": true}' in result.note


def test_undecodable_2xx_body_does_not_raise(
    dest: MobanaDestination, batch: list[Prepared]
) -> None:
    response = httpx.Response(
        200, content=b"\xff\xfe\x00garbage", headers={"content-type": "text/plain; charset=utf-8"}
    )
    assert isinstance(outcome(dest, batch, response), Delivered)


def test_2xx_without_success_is_delivered_whatever_retry_unconfirmed_says(
    make_dest: Dest, batch: list[Prepared]
) -> None:
    dest = make_dest(retry_unconfirmed=False)
    result = outcome(dest, batch, answer(200, "<html>"))
    assert isinstance(result, Delivered) and result.note


# --- credentials -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_bad_key_halts(dest: MobanaDestination, batch: list[Prepared], status: int) -> None:
    result = outcome(
        dest,
        batch,
        answer(
            status,
            {
                "success": False,
                "error": "Unauthorized",
                "message": "Invalid or missing X-App-Key header",
            },
        ),
    )
    assert isinstance(result, Halt)
    assert result.status == status
    assert "Invalid or missing X-App-Key header" in result.reason
    assert "app_key" in result.reason


def test_halt_reason_never_echoes_the_key(
    dest: MobanaDestination, batch: list[Prepared], key: str
) -> None:
    result = outcome(dest, batch, answer(401, {"error": f"bad key {key}"}))
    assert isinstance(result, Halt)
    assert key not in result.reason
    assert "***" in result.reason


# --- transient ---------------------------------------------------------------------------------


def test_429_is_retried_after_retry_after(dest: MobanaDestination, batch: list[Prepared]) -> None:
    result = outcome(
        dest, batch, answer(429, {"error": "Too Many Requests"}, headers={"retry-after": "7"})
    )
    assert result == Retry("Mobana is rate limiting (HTTP 429: Too Many Requests)", 7.0)


def test_429_without_retry_after_uses_backoff(
    dest: MobanaDestination, batch: list[Prepared]
) -> None:
    result = outcome(dest, batch, answer(429, ""))
    assert isinstance(result, Retry) and result.after is None


def test_503_is_retried_even_at_most_once(make_dest: Dest, batch: list[Prepared]) -> None:
    """A 503 means the conversion was not recorded: retrying cannot double count."""
    for dest in (make_dest(), make_dest(retry_unconfirmed=False)):
        result = outcome(dest, batch, answer(503, "down", headers={"retry-after": "2"}))
        assert isinstance(result, Retry) and result.after == 2.0


@pytest.mark.parametrize("status", [500, 502, 504, 408, 599])
def test_other_5xx_and_408_are_retried(
    dest: MobanaDestination, batch: list[Prepared], status: int
) -> None:
    result = outcome(dest, batch, answer(status, {"error": "boom"}))
    assert isinstance(result, Retry)
    assert f"HTTP {status}" in result.reason


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_unconfirmed_failures_are_dead_lettered_at_most_once(
    make_dest: Dest, batch: list[Prepared], status: int
) -> None:
    result = outcome(make_dest(retry_unconfirmed=False), batch, answer(status, "boom"))
    assert isinstance(result, Rejected) and result.status == status


# --- permanent ---------------------------------------------------------------------------------


def test_400_is_rejected_with_mobanas_reason(
    dest: MobanaDestination, batch: list[Prepared]
) -> None:
    body = {"success": False, "error": "Bad Request", "message": "installId is required"}
    result = outcome(dest, batch, answer(400, body))
    assert isinstance(result, Rejected)
    assert result.status == 400
    assert "Bad Request: installId is required" in result.reason
    assert result.detail is not None and "installId is required" in result.detail


@pytest.mark.parametrize("status", [404, 405, 410, 413, 415, 422])
def test_other_4xx_are_rejected(
    dest: MobanaDestination, batch: list[Prepared], status: int
) -> None:
    result = outcome(dest, batch, answer(status, "nope"))
    assert isinstance(result, Rejected)
    assert result.status == status
    assert result.detail == "nope"


def test_404_hints_at_app_id_and_base_url(dest: MobanaDestination, batch: list[Prepared]) -> None:
    result = outcome(dest, batch, answer(404, ""))
    assert isinstance(result, Rejected)
    assert "app_id" in result.reason and "base_url" in result.reason
    assert result.detail is None


def test_redirect_is_rejected_with_its_location(
    dest: MobanaDestination, batch: list[Prepared]
) -> None:
    result = outcome(dest, batch, answer(301, "", headers={"location": "https://x.example/c"}))
    assert isinstance(result, Rejected)
    assert "https://x.example/c" in result.reason


def test_long_bodies_are_shortened(dest: MobanaDestination, batch: list[Prepared]) -> None:
    result = outcome(dest, batch, answer(400, "x" * 5000))
    assert isinstance(result, Rejected)
    assert len(result.reason) < 400
    assert result.detail is not None and len(result.detail) == 1000


# --- transport errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("pool")]
)
def test_never_sent_is_always_retried(make_dest: Dest, exc: Exception) -> None:
    for dest in (make_dest(), make_dest(retry_unconfirmed=False)):
        result = dest.classify_exception(exc)
        assert isinstance(result, Retry)
        assert "could not reach Mobana" in result.reason


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("eof"),
        httpx.ReadError("reset"),
        httpx.WriteTimeout("slow"),
    ],
)
def test_sent_but_unanswered(make_dest: Dest, exc: Exception) -> None:
    assert isinstance(make_dest().classify_exception(exc), Retry)
    result = make_dest(retry_unconfirmed=False).classify_exception(exc)
    assert isinstance(result, Rejected)
    assert "Mobana may have recorded it" in result.reason


def test_rate_hint_is_none(dest: MobanaDestination) -> None:
    assert dest.rate_hint(httpx.Response(200)) is None


# --- against the emulator ----------------------------------------------------------------------


def send(dest: MobanaDestination, emulator: MobanaEmulator, ev: Event) -> Any:
    prepared = [Prepared(ev, dest.transform(ev))]
    with httpx.Client(transport=httpx.MockTransport(emulator.handle)) as client:
        response = client.send(dest.build_request(prepared))
    return dest.parse_response(prepared, response)


def test_emulator_delivery(
    dest: MobanaDestination, emulator: MobanaEmulator, make_event_: Ev
) -> None:
    assert send(dest, emulator, make_event_(value=9.99, currency="USD")) == Delivered()
    assert emulator.received[0]["value"] == 9.99


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (200, Delivered),  # a 2xx without {"success": true}: delivered with a note, not resent
        (400, Rejected),
        (401, Halt),
        (403, Halt),
        (404, Rejected),
        (408, Retry),
        (422, Rejected),
        (429, Retry),
        (500, Retry),
        (502, Retry),
        (503, Retry),
        (504, Retry),
    ],
)
def test_emulator_error_triggers(
    dest: MobanaDestination, emulator: MobanaEmulator, make_event_: Ev, code: int, kind: type
) -> None:
    install_id = f"00000000-0000-0000-0000-000000000{code}"
    result = send(dest, emulator, make_event_(user={"install_id": install_id}))
    assert isinstance(result, kind)
    if code in (429, 503):
        assert result.after == 1.0
    assert emulator.received == []


def test_emulator_refuses_a_wrong_key(
    make_dest: Dest, emulator: MobanaEmulator, make_event_: Ev
) -> None:
    result = send(make_dest(app_key="wrong"), emulator, make_event_())
    assert isinstance(result, Halt) and result.status == 401

"""The sandbox emulator checks requests as Ton AI documents them."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from postback_tonai import TonAIEmulator

KEY = TonAIEmulator.demo_settings()["api_key"]
URL = "http://tonai.test/api/v2/openapi/exchange/event/report/conversion"
GOOD = {"eventType": "conversion", "eventData": {"telegramUserId": "1728125519"}}
HEADERS = {"x-api-key": KEY, "content-type": "application/json", "accept": "application/json"}


def call(
    body: Any = GOOD,
    *,
    url: str = URL,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[httpx.Response, TonAIEmulator]:
    emu = TonAIEmulator()
    content = raw if raw is not None else orjson.dumps(body)
    request = httpx.Request(
        method, url, headers=HEADERS if headers is None else headers, content=content
    )
    return emu.handle(request), emu


def test_demo_settings_are_sandbox_only() -> None:
    settings = TonAIEmulator.demo_settings()
    assert settings["api_key"].startswith("sandbox-")
    assert settings["product"] == "exchange"


def test_accepts_the_documented_request() -> None:
    response, emu = call()
    assert response.status_code == 200
    assert response.json() == {"status": "success"}
    assert emu.received == [
        {
            "event_id": None,
            "name": "conversion",
            "telegram_user_id": "1728125519",
            "product": "exchange",
            "body": GOOD,
        }
    ]


def test_accepts_the_ad_product_and_repeats() -> None:
    emu = TonAIEmulator()
    for _ in range(2):
        request = httpx.Request(
            "POST", URL.replace("/exchange/", "/ad/"), headers=HEADERS, content=orjson.dumps(GOOD)
        )
        assert emu.handle(request).status_code == 200
    assert [r["product"] for r in emu.received] == ["ad", "ad"]


def error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"status", "code", "message"}
    return response.status_code, body["code"]


@pytest.mark.parametrize(
    "url",
    [
        "http://tonai.test/api/v2/openapi/publisher/event/report/conversion",
        "http://tonai.test/api/v2/openapi/exchange/event/report",
        "http://tonai.test/api/v1/openapi/exchange/event/report/conversion",
    ],
)
def test_unknown_paths_are_404(url: str) -> None:
    response, _ = call(url=url)
    assert error(response) == (404, "NOT_FOUND")


def test_only_post() -> None:
    response, _ = call(method="GET", raw=b"")
    assert error(response) == (405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
def test_api_key_is_checked(key: str | None) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "x-api-key"}
    if key is not None:
        headers["x-api-key"] = key
    response, emu = call(headers=headers)
    assert error(response) == (401, "UNAUTHORIZED")
    assert emu.received == []


def test_the_key_is_never_echoed() -> None:
    response, _ = call(headers={**HEADERS, "x-api-key": "my-secret-guess"})
    assert b"my-secret-guess" not in response.content


def test_content_type_must_be_json() -> None:
    response, _ = call(headers={**HEADERS, "content-type": "text/plain"})
    assert error(response) == (415, "UNSUPPORTED_MEDIA_TYPE")


def test_json_with_charset_is_fine() -> None:
    response, _ = call(headers={**HEADERS, "content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200


def test_invalid_json() -> None:
    response, _ = call(raw=b"{not json")
    assert error(response) == (400, "INVALID_JSON")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([GOOD], "JSON object"),
        ({"eventData": GOOD["eventData"]}, "missing field(s) eventType"),
        ({**GOOD, "value": 49.99}, "unexpected field(s) value"),
        ({"eventType": "click", "eventData": GOOD["eventData"]}, 'eventType must be "conversion"'),
        ({"eventType": "conversion", "eventData": "1728125519"}, "eventData must be an object"),
        ({"eventType": "conversion", "eventData": {}}, "missing field(s) telegramUserId"),
        (
            {
                "eventType": "conversion",
                "eventData": {"telegramUserId": "1728125519", "email": "a@b.co"},
            },
            "unexpected field(s) email",
        ),
        ({"eventType": "conversion", "eventData": {"telegramUserId": 1728125519}}, "string"),
        ({"eventType": "conversion", "eventData": {"telegramUserId": "@alice"}}, "digits"),
        ({"eventType": "conversion", "eventData": {"telegramUserId": ""}}, "digits"),
    ],
)
def test_body_shape_is_exact(body: Any, says: str) -> None:
    response, emu = call(body)
    assert error(response) == (400, "INVALID_EVENT")
    assert says in response.json()["message"]
    assert emu.received == []


def test_magic_ids() -> None:
    for telegram_id, (status, code, _) in {
        "9990000200": (200, "DUPLICATE_CONVERSION", ""),
        "9990000400": (400, "USER_NOT_ATTRIBUTED", ""),
        "9990000403": (403, "FORBIDDEN", ""),
        "9990000429": (429, "RATE_LIMITED", ""),
        "9990000500": (500, "INTERNAL_ERROR", ""),
        "9990000503": (503, "SERVICE_UNAVAILABLE", ""),
    }.items():
        response, emu = call(
            {"eventType": "conversion", "eventData": {"telegramUserId": telegram_id}}
        )
        assert error(response) == (status, code)
        assert emu.received == []
        if status == 200:
            assert response.json()["status"] == "fail"
        if status == 429:
            assert response.headers["retry-after"] == "1"

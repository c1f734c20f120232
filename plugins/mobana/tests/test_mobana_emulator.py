"""The sandbox emulation of Mobana's /conversion endpoint."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from postback_mobana import MobanaEmulator
from postback_mobana.emulator import DEMO_APP_KEY

KEY = "test-mobana-key-not-real"
URL = "http://sandbox.local/conversion"
BODY = {
    "installId": "520e8400-c466-a554-40e0-0",
    "name": "purchase",
    "value": 49.99,
    "flowSessionId": "abc123-session-id",
    "timestamp": 1706745600000,
}


def post(
    emulator: MobanaEmulator,
    body: Any = BODY,
    *,
    key: str | None = KEY,
    ctype: str = "application/json",
    method: str = "POST",
    url: str = URL,
    raw: bytes | None = None,
) -> httpx.Response:
    headers = {"content-type": ctype}
    if key is not None:
        headers["x-app-key"] = key
    content = raw if raw is not None else orjson.dumps(body)
    return emulator.handle(httpx.Request(method, url, headers=headers, content=content))


def test_accepts_the_docs_example(emulator: MobanaEmulator) -> None:
    response = post(emulator)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert emulator.received == [
        {
            "event_id": None,
            "name": "purchase",
            "install_id": "520e8400-c466-a554-40e0-0",
            "value": 49.99,
            "flow_session_id": "abc123-session-id",
            "timestamp": 1706745600000,
            "configured": True,
            "counted": True,
        }
    ]


def test_minimal_body(emulator: MobanaEmulator) -> None:
    assert post(emulator, {"installId": "abc", "name": "signup"}).status_code == 200
    assert emulator.received[0]["value"] is None


def test_unknown_names_succeed_silently_and_are_recorded(emulator: MobanaEmulator) -> None:
    response = post(emulator, {**BODY, "name": "not_configured_anywhere"})
    assert response.json() == {"success": True}
    assert emulator.received[0]["configured"] is False
    assert emulator.received[0]["counted"] is False


def test_non_repeatable_types_count_once_per_install(emulator: MobanaEmulator) -> None:
    for _ in range(2):
        post(emulator, {"installId": "aa", "name": "signup"})
    post(emulator, {"installId": "bb", "name": "signup"})
    for _ in range(2):
        post(emulator, {"installId": "aa", "name": "purchase"})
    assert [r["counted"] for r in emulator.received] == [True, False, True, True, True]


@pytest.mark.parametrize("key", [None, "", "wrong", KEY.upper()])
def test_missing_or_wrong_key_is_401(emulator: MobanaEmulator, key: str | None) -> None:
    response = post(emulator, key=key)
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "error": "Unauthorized",
        "message": "Invalid or missing X-App-Key header",
    }
    assert emulator.received == []


def test_path_and_method(emulator: MobanaEmulator) -> None:
    assert post(emulator, url="http://sandbox.local/find").status_code == 404
    response = post(emulator, method="GET")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_content_type_must_be_json(emulator: MobanaEmulator) -> None:
    assert post(emulator, ctype="text/plain").status_code == 415
    assert post(emulator, ctype="application/json; charset=utf-8").status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "body must be a JSON object"),
        ([BODY], "body must be a JSON object"),
        ({"name": "purchase"}, "installId is required"),
        ({**BODY, "installId": ""}, "installId must be"),
        ({**BODY, "installId": 42}, "installId must be"),
        ({**BODY, "installId": "a" * 37}, "installId must be"),
        ({"installId": "abc"}, "name is required"),
        ({**BODY, "name": " "}, "name must be a non-empty string"),
        ({**BODY, "value": "49.99"}, "value must be a number"),
        ({**BODY, "value": True}, "value must be a number"),
        ({**BODY, "flowSessionId": 5}, "flowSessionId must be"),
        ({**BODY, "timestamp": "2024-02-01"}, "timestamp must be a whole number"),
        ({**BODY, "timestamp": 1706745600.5}, "timestamp must be a whole number"),
        ({**BODY, "timestamp": 1706745600}, "looks like seconds"),
        ({**BODY, "currency": "USD"}, "unknown field(s): currency"),
    ],
)
def test_malformed_bodies_are_400(emulator: MobanaEmulator, body: Any, message: str) -> None:
    response = post(emulator, body)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert message in response.json()["message"]
    assert emulator.received == []


def test_invalid_json_is_400(emulator: MobanaEmulator) -> None:
    response = post(emulator, raw=b"{not json")
    assert response.status_code == 400
    assert response.json()["message"] == "body is not valid JSON"


def test_special_install_ids(emulator: MobanaEmulator) -> None:
    for code in (400, 401, 403, 404, 408, 422, 429, 500, 502, 503, 504):
        response = post(emulator, {**BODY, "installId": f"00000000-0000-0000-0000-000000000{code}"})
        assert response.status_code == code
        assert response.json()["success"] is False
        assert ("retry-after" in response.headers) == (code in (429, 503))
    odd = post(emulator, {**BODY, "installId": "00000000-0000-0000-0000-000000000200"})
    assert odd.status_code == 200 and "success" not in odd.json()
    # Other ids with that prefix are ordinary installs.
    assert post(emulator, {**BODY, "installId": "00000000-0000-0000-0000-000000000123"}).json() == {
        "success": True
    }
    assert len(emulator.received) == 1


def test_demo_settings_are_sandbox_only() -> None:
    demo = MobanaEmulator.demo_settings()
    assert demo["app_key"] == DEMO_APP_KEY
    assert "sandbox" in demo["app_key"]
    assert MobanaEmulator().settings == demo


def test_custom_conversion_types() -> None:
    emulator = MobanaEmulator(
        {"app_id": "x1", "app_key": KEY}, conversions={"purchase"}, non_repeatable=()
    )
    post(emulator, {"installId": "aa", "name": "signup"})
    post(emulator, {"installId": "aa", "name": "purchase"})
    assert [r["configured"] for r in emulator.received] == [False, True]

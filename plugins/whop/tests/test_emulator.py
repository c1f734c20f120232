"""The Whop emulator answers as Whop does: auth, paths, required fields, enums, idempotency."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from postback_whop import WhopEmulator

from .conftest import TEST_ACCOUNT, TEST_KEY

BASE = "http://whop.test"


def post(
    emulator: WhopEmulator,
    body: Any,
    path: str = "/api/v1/events",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    hdrs = {
        "authorization": f"Bearer {TEST_KEY}",
        "content-type": "application/json",
        **(headers or {}),
    }
    content = raw if raw is not None else orjson.dumps(body)
    return emulator.handle(httpx.Request("POST", BASE + path, headers=hdrs, content=content))


def event_body(**extra: Any) -> dict[str, Any]:
    return {"account_id": TEST_ACCOUNT, "event_name": "lead", "event_id": "e1", **extra}


def conv_body(**extra: Any) -> dict[str, Any]:
    return {"company_id": TEST_ACCOUNT, "event_name": "lead", "event_id": "c1", **extra}


def error_of(response: httpx.Response) -> dict[str, Any]:
    err = response.json()["error"]
    assert set(err) <= {"type", "message", "code", "param"}
    return err  # type: ignore[no-any-return]


def test_demo_settings_are_valid_sandbox_values() -> None:
    s = WhopEmulator.demo_settings()
    assert s["account_id"].startswith("biz_") and s["api"] == "events"
    assert "sandbox" in s["api_key"]


def test_accepts_both_paths(emulator: WhopEmulator) -> None:
    r1 = post(emulator, event_body())
    r2 = post(emulator, conv_body(), path="/api/v1/conversions")
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["id"].startswith("evnt_")
    assert [(r["api"], r["event_id"], r["name"]) for r in emulator.received] == [
        ("events", "e1", "lead"),
        ("conversions", "c1", "lead"),
    ]


def test_unknown_path_and_method(emulator: WhopEmulator) -> None:
    assert post(emulator, event_body(), path="/api/v1/conversion").status_code == 404
    r = emulator.handle(httpx.Request("GET", BASE + "/api/v1/events"))
    assert r.status_code == 404 and error_of(r)["type"] == "not_found"


@pytest.mark.parametrize("auth", [None, "Bearer nope", TEST_KEY, f"Basic {TEST_KEY}"])
def test_401_for_a_bad_or_missing_key(emulator: WhopEmulator, auth: str | None) -> None:
    headers = {"content-type": "application/json"}
    if auth is not None:
        headers["authorization"] = auth
    r = emulator.handle(
        httpx.Request(
            "POST", BASE + "/api/v1/events", headers=headers, content=orjson.dumps(event_body())
        )
    )
    assert r.status_code == 401
    assert r.json() == {"error": {"type": "unauthorized", "message": "Invalid or missing API key"}}
    assert emulator.received == []


def test_403_for_another_account(emulator: WhopEmulator) -> None:
    r = post(emulator, event_body(account_id="biz_other"))
    assert r.status_code == 403 and error_of(r)["type"] == "forbidden"


def test_required_fields(emulator: WhopEmulator) -> None:
    r = post(emulator, {"event_name": "lead"})
    assert r.status_code == 400
    assert error_of(r) == {
        "type": "bad_request",
        "code": "parameter_missing",
        "param": "account_id",
        "message": "Missing required parameter: account_id",
    }
    r = post(emulator, {"company_id": TEST_ACCOUNT}, path="/api/v1/conversions")
    assert error_of(r)["param"] == "event_name"
    # events takes account_id, conversions company_id
    r = post(emulator, conv_body())
    assert error_of(r)["param"] == "account_id"


def test_invalid_json_and_content_type(emulator: WhopEmulator) -> None:
    r = post(emulator, None, raw=b"{not json")
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_json"
    r = post(emulator, None, raw=b"[1, 2]")
    assert error_of(r)["code"] == "invalid_json"
    r = post(emulator, event_body(), headers={"content-type": "text/plain"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (event_body(nickname="x"), "nickname"),
        (event_body(action_source="web"), "action_source"),
        (event_body(currency="USD"), "currency"),
        (event_body(currency="afn"), "currency"),
        (event_body(value="49.99"), "value"),
        (event_body(value=True), "value"),
        (event_body(event_time="yesterday"), "event_time"),
        (event_body(event_time="2026-11-24"), "event_time"),
        (event_body(plan_id=5), "plan_id"),
        (event_body(event_name="custom"), "custom_name"),
        (event_body(event_name="custom", custom_name="c" * 36), "custom_name"),
        (event_body(context={"session_id": "s"}), "context.session_id"),
        (event_body(context={"gclid": 5}), "context.gclid"),
        (event_body(context={"fingerprint_confidence": 2}), "context.fingerprint_confidence"),
        (event_body(user={"gender": "other"}), "user.gender"),
        (event_body(user={"birthdate": "15/01/1990"}), "user.birthdate"),
        (event_body(user={"zip": "94107"}), "user.zip"),
        (event_body(duration="5"), "duration"),
        (event_body(resumed="yes"), "resumed"),
    ],
)
def test_events_body_checks(emulator: WhopEmulator, body: dict[str, Any], param: str) -> None:
    r = post(emulator, body)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["param"] == param and err["code"] in ("parameter_invalid", "parameter_missing")
    assert emulator.received == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (conv_body(event_name="view_content"), "event_name"),
        (conv_body(event_name="purchase"), "event_name"),
        (conv_body(app_id="app_1"), "app_id"),
        (conv_body(account_id=TEST_ACCOUNT), "account_id"),
        (conv_body(currency="awg"), "currency"),
        (conv_body(context={"fbc": "x"}), "context.fbc"),
        (conv_body(user={"linked_wuid": "x"}), "user.linked_wuid"),
    ],
)
def test_conversions_body_checks(emulator: WhopEmulator, body: dict[str, Any], param: str) -> None:
    r = post(emulator, body, path="/api/v1/conversions")
    assert r.status_code == 400, r.text
    assert error_of(r)["param"] == param


def test_accepts_every_documented_field(emulator: WhopEmulator) -> None:
    body = event_body(
        action_source="website",
        currency="whop_usd",
        value=6.9,
        custom_name=None,
        event_time="2023-12-01T05:00:00.401Z",
        plan_id="plan_x",
        product_id="prod_x",
        url="https://a.example",
        referrer_url="https://b.example",
        app_id="app_x",
        app_build_id="apbu_x",
        duration=1200,
        resumed=False,
        title="Pricing",
        source="form",
        context={"fingerprint_confidence": 0.5, "wbraid": "w", "user_agent": "UA"},
        user={
            "gender": "female",
            "birthdate": "1990-01-15",
            "linked_anonymous_id": "a",
            "postal_code": "1",
        },
    )
    assert post(emulator, body).status_code == 200


def test_custom_event_in_conversions(emulator: WhopEmulator) -> None:
    r = post(
        emulator, conv_body(event_name="custom", custom_name="c" * 35), path="/api/v1/conversions"
    )
    assert r.status_code == 200
    assert emulator.received[0]["custom_name"] == "c" * 35


def test_idempotency_key_replays_without_recording_twice(emulator: WhopEmulator) -> None:
    first = post(emulator, event_body(event_id="a"), headers={"idempotency-key": "k-1"})
    again = post(emulator, event_body(event_id="b"), headers={"idempotency-key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert [r["event_id"] for r in emulator.received] == ["a"]


def test_failed_requests_are_not_stored_for_idempotency(emulator: WhopEmulator) -> None:
    r = post(emulator, event_body(event_id="whop-500-z"), headers={"idempotency-key": "k-2"})
    assert r.status_code == 500
    r = post(emulator, event_body(event_id="whop-500-z"), headers={"idempotency-key": "k-2"})
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    assert len(emulator.received) == 1


def test_event_id_dedupe(emulator: WhopEmulator) -> None:
    a = post(emulator, event_body(event_id="same"))
    b = post(emulator, event_body(event_id="same"))
    assert a.json() == b.json()
    assert len(emulator.received) == 1


def test_idempotency_key_length(emulator: WhopEmulator) -> None:
    r = post(emulator, event_body(), headers={"idempotency-key": "k" * 256})
    assert r.status_code == 400 and error_of(r)["param"] == "Idempotency-Key"


def test_api_version_date_header(emulator: WhopEmulator) -> None:
    r = post(emulator, event_body(), headers={"api-version-date": "25.09.2026"})
    assert r.status_code == 400 and error_of(r)["param"] == "Api-Version-Date"
    assert post(emulator, event_body(), headers={"api-version-date": "2026-09-25"}).is_success


def test_triggers(emulator: WhopEmulator) -> None:
    r = post(emulator, event_body(event_id="whop-429-q"))
    assert r.status_code == 429
    assert r.json() == {
        "error": {"type": "rate_limit_exceeded", "message": "Try again in 1 seconds."}
    }
    assert post(emulator, event_body(event_id="whop-429-q")).status_code == 200
    for _ in range(2):
        r = post(emulator, event_body(event_id="whop-422-q"))
        assert r.status_code == 422 and error_of(r)["type"] == "unprocessable_entity"
    r = post(emulator, event_body(event_id="p", product_id="prod_missing"))
    assert r.status_code == 404 and error_of(r)["param"] == "product_id"
    assert [r["event_id"] for r in emulator.received] == ["whop-429-q"]


def test_ids_are_deterministic() -> None:
    ids = []
    for _ in range(2):
        emu = WhopEmulator({"api_key": TEST_KEY, "account_id": TEST_ACCOUNT})
        ids.append(post(emu, event_body(event_id="det")).json()["id"])
    assert ids[0] == ids[1]

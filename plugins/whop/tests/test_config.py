"""Settings: defaults, and every settings error as a ConfigError with its key path."""

from __future__ import annotations

from typing import Any

import pytest

from postback import ConfigError, Secret, Tracker
from postback.config import build_config
from postback_whop import WhopDestination, WhopSettings

from .conftest import TEST_ACCOUNT, TEST_KEY


def load(table: dict[str, Any]) -> Any:
    return build_config({"vendors": {"whop": table}}, {"whop": WhopDestination})


def problems(table: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(table)
    return {p.path: p.message for p in info.value.problems}


def test_defaults() -> None:
    cfg = load({"api_key": TEST_KEY, "account_id": TEST_ACCOUNT})
    s = cfg.vendors["whop"].settings
    assert isinstance(s, WhopSettings) and isinstance(s.api_key, Secret)
    assert (s.api, s.environment, s.api_version_date, s.action_source) == (
        "events",
        "production",
        None,
        None,
    )
    assert (s.custom_event_format, s.send_custom_events, s.user_id_as, s.phone_region) == (
        "name",
        False,
        "auto",
        None,
    )
    dest = cfg.vendors["whop"].make_destination(WhopDestination)
    assert dest.url("/api/v1/events") == "https://api.whop.com/api/v1/events"


def test_the_plugin_is_found_through_its_entry_point() -> None:
    tracker = Tracker.from_config(
        {
            "postback": {"queue": "memory://"},
            "vendors": {"whop": {"api_key": TEST_KEY, "account_id": TEST_ACCOUNT}},
        }
    )
    try:
        assert isinstance(tracker.destinations["whop"], WhopDestination)
        assert "whop" in tracker.host.emulators
    finally:
        tracker.close(timeout=0)


def test_environment_and_base_url() -> None:
    sandbox = (
        load(
            {
                "api_key": TEST_KEY,
                "account_id": TEST_ACCOUNT,
                "environment": "sandbox",
                "api": "conversions",
            }
        )
        .vendors["whop"]
        .make_destination(WhopDestination)
    )
    assert sandbox.url("/x") == "https://sandbox-api.whop.com/x"
    proxied = load(
        {
            "api_key": TEST_KEY,
            "account_id": TEST_ACCOUNT,
            "environment": "sandbox",
            "base_url": "http://127.0.0.1:8090/",
        }
    ).vendors["whop"]
    dest = proxied.make_destination(WhopDestination)
    assert dest.url("/api/v1/events") == "http://127.0.0.1:8090/api/v1/events"


def test_missing_api_key() -> None:
    got = problems({"account_id": TEST_ACCOUNT})
    assert got == {"vendors.whop.api_key": "required setting is missing"}


def test_missing_account_id() -> None:
    got = problems({"api_key": TEST_KEY})
    assert got == {"vendors.whop.account_id": "required setting is missing"}


def test_missing_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHOP_API_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        load({"api_key": "${WHOP_API_KEY}", "account_id": TEST_ACCOUNT})
    messages = [p.message for p in info.value.problems if p.path == "vendors.whop.api_key"]
    assert any("WHOP_API_KEY is not set" in m for m in messages)


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHOP_API_KEY", "whop_env_key_1")
    cfg = load({"api_key": "${WHOP_API_KEY}", "account_id": TEST_ACCOUNT})
    assert cfg.vendors["whop"].settings.api_key.reveal() == "whop_env_key_1"


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("api", "graphql", "conversions"),
        ("environment", "staging", "sandbox"),
        ("action_source", "web", "physical_store"),
        ("custom_event_format", "free", "custom"),
        ("user_id_as", "email", "external_id"),
    ],
)
def test_bad_enum_settings(key: str, value: str, allowed: str) -> None:
    got = problems({"api_key": TEST_KEY, "account_id": TEST_ACCOUNT, key: value})
    assert list(got) == [f"vendors.whop.{key}"]
    assert value in got[f"vendors.whop.{key}"] and allowed in got[f"vendors.whop.{key}"]


def test_several_setting_problems_at_once() -> None:
    got = problems({"api": "x", "environment": "y", "unknown_thing": 1})
    assert set(got) == {
        "vendors.whop.api",
        "vendors.whop.environment",
        "vendors.whop.unknown_thing",
        "vendors.whop.api_key",
        "vendors.whop.account_id",
    }


def test_unknown_setting_suggests() -> None:
    got = problems({"api_key": TEST_KEY, "account_id": TEST_ACCOUNT, "company_id": "biz_1"})
    assert "unknown setting for whop" in got["vendors.whop.company_id"]


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("api_version_date", "2026/09/25", "api_version_date: must be a date"),
        ("api_version_date", "2026-02-30", "api_version_date: must be a date"),
        ("phone_region", "USA", "phone_region: must be an ISO 3166-1"),
        ("account_id", "biz 1", "account_id: must be your Whop account"),
        ("account_id", "", "account_id: must be your Whop account"),
    ],
)
def test_bad_formatted_settings(key: str, value: str, needle: str) -> None:
    # The core reports attrs-validator errors at the table's path, with our message
    # (see the README: a core change would put them at vendors.whop.<key>).
    got = problems({"api_key": TEST_KEY, "account_id": TEST_ACCOUNT, key: value})
    ((path, message),) = got.items()
    assert path in ("vendors.whop", f"vendors.whop.{key}")
    assert needle in message


def test_wrong_types() -> None:
    got = problems({"api_key": 5, "account_id": TEST_ACCOUNT, "send_custom_events": "yes"})
    assert set(got) == {"vendors.whop.api_key", "vendors.whop.send_custom_events"}


def test_batch_size_above_one_is_refused() -> None:
    got = problems({"api_key": TEST_KEY, "account_id": TEST_ACCOUNT, "batch_size": 10})
    assert "at most 1 event" in got["vendors.whop.batch_size"]


def test_events_filter_accepts_custom_events() -> None:
    cfg = load(
        {
            "api_key": TEST_KEY,
            "account_id": TEST_ACCOUNT,
            "events": ["purchase", "lead", "my_custom_thing"],
        }
    )
    assert cfg.vendors["whop"].events == {"purchase", "lead", "my_custom_thing"}


def test_rate_limit_and_retry_defaults() -> None:
    assert WhopDestination.default_rate_limit is not None
    assert (
        WhopDestination.default_rate_limit.requests,
        WhopDestination.default_rate_limit.per_seconds,
    ) == (600, 60)
    assert WhopDestination.retry_policy.max_age < 24 * 3600  # inside Whop's idempotency window

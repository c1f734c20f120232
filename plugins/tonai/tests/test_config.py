"""Settings: defaults, and every configuration error with its key path."""

from __future__ import annotations

from typing import Any

import pytest

from postback import ConfigError, Tracker
from postback.config import build_config, settings_help
from postback_tonai import TonAIDestination, TonAISettings

from .conftest import TEST_KEY, make_destination


def config_error(table: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Tracker.from_config({"postback": {"queue": "memory://"}, "vendors": {"tonai": table}})
    return info.value


def paths(err: ConfigError) -> dict[str, str]:
    return {p.path: p.message for p in err.problems}


def test_defaults() -> None:
    dest = make_destination()
    assert dest.settings.product == "exchange"
    assert dest.settings.environment == "production"
    assert dest.settings.once_per_user is True  # Ton AI counts new users
    assert dest.origin() == "https://app.ton.ai"
    assert dest.max_batch_size == 1
    policy = TonAIDestination.retry_policy
    assert (policy.max_attempts, policy.max_age) == (5, 600.0)
    assert (policy.initial_backoff, policy.max_backoff) == (5.0, 60.0)


def test_environment_picks_the_host_and_base_url_overrides_it() -> None:
    assert make_destination(environment="staging").origin() == "https://staging.ton.ai"
    dest = make_destination(environment="staging", base_url="http://127.0.0.1:9/tonai")
    assert dest.origin() == "http://127.0.0.1:9/tonai"


def test_every_setting_is_documented() -> None:
    rows = {
        name: (help_, secret, default)
        for name, help_, secret, default in settings_help(TonAISettings)
    }
    assert set(rows) == {"api_key", "product", "environment", "once_per_user", "retry_unconfirmed"}
    assert rows["api_key"][1] is True and rows["api_key"][2] == "required"
    assert all(help_ for help_, _, _ in rows.values())


def test_missing_api_key() -> None:
    got = paths(config_error({"product": "ad"}))
    assert got == {"vendors.tonai.api_key": "required setting is missing"}


def test_api_key_from_an_unset_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TONAI_API_KEY_FOR_TEST", raising=False)
    err = config_error({"api_key": "${TONAI_API_KEY_FOR_TEST}"})
    messages = [p.message for p in err.problems if p.path == "vendors.tonai.api_key"]
    assert any("TONAI_API_KEY_FOR_TEST is not set" in m for m in messages)


def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONAI_API_KEY_FOR_TEST", TEST_KEY)
    cfg = build_config(
        {"vendors": {"tonai": {"api_key": "${TONAI_API_KEY_FOR_TEST}"}}},
        {"tonai": TonAIDestination},
    )
    assert cfg.vendors["tonai"].settings.api_key.reveal() == TEST_KEY


@pytest.mark.parametrize("key", [TEST_KEY + "\n", " " + TEST_KEY, "abc def"])
def test_api_key_with_whitespace_is_refused(key: str) -> None:
    err = config_error({"api_key": key})
    assert list(paths(err)) == ["vendors.tonai.api_key"]
    assert "line breaks" in str(err)
    assert key.strip() not in str(err)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("product", "adx"),
        ("product", "Exchange"),
        ("environment", "prod"),
        ("environment", "sandbox"),
        ("once_per_user", "yes"),
        ("product", 1),
    ],
)
def test_bad_values_are_reported_at_their_path(key: str, value: object) -> None:
    got = paths(config_error({"api_key": TEST_KEY, key: value}))
    assert list(got) == [f"vendors.tonai.{key}"]


def test_several_problems_at_once() -> None:
    got = paths(config_error({"product": "adx", "environment": "prod", "apikey": "x"}))
    assert {
        "vendors.tonai.product",
        "vendors.tonai.environment",
        "vendors.tonai.apikey",
        "vendors.tonai.api_key",
    } <= set(got)
    assert "did you mean 'api_key'" in got["vendors.tonai.apikey"]


def test_events_may_only_name_mappable_events() -> None:
    got = paths(config_error({"api_key": TEST_KEY, "events": ["first_deposit"]}))
    assert "vendors.tonai.events" in got
    assert "event_map" in got["vendors.tonai.events"]


def test_batch_size_is_one() -> None:
    got = paths(config_error({"api_key": TEST_KEY, "batch_size": 10}))
    assert "at most 1" in got["vendors.tonai.batch_size"]


def test_retry_can_be_tuned() -> None:
    cfg = build_config(
        {"vendors": {"tonai": {"api_key": TEST_KEY, "retry": {"max_attempts": 3}}}},
        {"tonai": TonAIDestination},
    )
    retry = cfg.vendors["tonai"].retry
    assert retry is not None
    assert (retry.max_attempts, retry.max_age, retry.initial_backoff) == (3, 600.0, 5.0)

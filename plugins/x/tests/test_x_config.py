"""Settings: errors name their key path and say how to fix them; defaults are X's."""

from __future__ import annotations

import base64
from typing import Any

import pytest

import postback
from postback.config import build_config, settings_help
from postback_x import XDestination, XSettings


def problems(table: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(postback.ConfigError) as info:
        build_config({"vendors": {"x": table}}, {"x": XDestination})
    return {p.path: p.message for p in info.value.problems}


def test_demo_settings_are_valid(kit: Any) -> None:
    cfg = build_config({"vendors": {"x": kit.settings()}}, {"x": XDestination})
    s = cfg.vendors["x"].settings
    assert isinstance(s, XSettings)
    assert (s.api_version, s.click_window, s.view_through_window) == ("12", 14, 1)
    assert (s.hmac_environment, s.device_id_normalization) == ("production", "lowercase")


def test_missing_secrets_are_reported_each_with_its_path() -> None:
    found = problems({"app_id": "333903271"})
    for name in ("consumer_key", "consumer_secret", "access_token", "access_token_secret",
                 "hmac_key"):  # fmt: skip
        assert found[f"vendors.x.{name}"] == "required setting is missing"


def test_empty_secret(kit: Any) -> None:
    assert "vendors.x.consumer_secret" in problems(kit.settings(consumer_secret=""))


def test_missing_environment_variable_for_a_secret(kit: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("X_HMAC_KEY", raising=False)
    with pytest.raises(postback.ConfigError) as info:
        build_config(
            {"vendors": {"x": kit.settings(hmac_key="${X_HMAC_KEY}")}}, {"x": XDestination}
        )
    assert any(
        p.path == "vendors.x.hmac_key" and "X_HMAC_KEY" in p.message for p in info.value.problems
    )


def test_secrets_come_from_the_environment(kit: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("X_CONSUMER_SECRET", "from-env-secret")
    cfg = build_config(
        {"vendors": {"x": kit.settings(consumer_secret="${X_CONSUMER_SECRET}")}},
        {"x": XDestination},
    )
    assert cfg.vendors["x"].settings.consumer_secret.reveal() == "from-env-secret"


@pytest.mark.parametrize(
    ("key", "value"),
    [("os_type", "windows"), ("os_type", "ios"), ("click_window", 3),
     ("view_through_window", 2), ("hmac_environment", "staging"),
     ("device_id_normalization", "sha1")],
)  # fmt: skip
def test_bad_enum_names_its_key(kit: Any, key: str, value: Any) -> None:
    found = problems(kit.settings(**{key: value}))
    assert f"vendors.x.{key}" in found
    assert "must be one of" in found[f"vendors.x.{key}"]
    assert repr(value).strip("'") in found[f"vendors.x.{key}"]


def test_several_bad_enums_are_reported_together(kit: Any) -> None:
    found = problems(kit.settings(os_type="windows", click_window=3))
    assert {"vendors.x.os_type", "vendors.x.click_window"} <= set(found)


def test_unknown_setting_suggests_the_right_one(kit: Any) -> None:
    found = problems(kit.settings(click_windw=7))
    assert "did you mean 'click_window'" in found["vendors.x.click_windw"]


def test_hmac_key_must_be_base64_and_the_message_hides_it(kit: Any) -> None:
    bad = "this is not base64 at all!"
    found = problems(kit.settings(hmac_key=bad))
    assert list(found) == ["vendors.x.hmac_key"]
    message = found["vendors.x.hmac_key"]
    assert "base64" in message and "as X delivered it" in message
    assert bad not in message


def test_hmac_key_development_must_be_base64(kit: Any) -> None:
    found = problems(kit.settings(hmac_key_development="%%%"))
    assert "base64" in found["vendors.x.hmac_key_development"]


def test_development_environment_needs_the_development_key(kit: Any) -> None:
    found = problems(kit.settings(hmac_environment="development", hmac_key_development=None))
    assert "hmac_key_development is not set" in found["vendors.x.hmac_environment"]


def test_view_through_window_above_click_window(kit: Any) -> None:
    found = problems(kit.settings(click_window=7, view_through_window=14))
    assert "must not exceed click_window (7)" in found["vendors.x.view_through_window"]


def test_window_must_not_be_a_bool(kit: Any) -> None:
    found = problems(kit.settings(click_window=True))
    assert "number of days" in found["vendors.x.click_window"]


def test_app_id_must_fit_the_os_type(kit: Any) -> None:
    found = problems(kit.settings(app_id="com.example.app"))
    assert "App Store id" in found["vendors.x.app_id"]
    found = problems(kit.settings(os_type="ANDROID", app_id="333903271"))
    assert "package name" in found["vendors.x.app_id"]


def test_platform_app_ids_must_fit_their_platform(kit: Any) -> None:
    found = problems(kit.settings(ios_app_id="com.example.app", android_app_id="333903271"))
    assert "App Store id" in found["vendors.x.ios_app_id"]
    assert "package name" in found["vendors.x.android_app_id"]


def test_api_version_must_be_a_number(kit: Any) -> None:
    found = problems(kit.settings(api_version="v12"))
    assert "version number" in found["vendors.x.api_version"]


def test_every_invalid_setting_is_reported_at_once(kit: Any) -> None:
    found = problems(kit.settings(hmac_key="!", api_version="v1", click_window=7,
                                  view_through_window=14, app_id="com.x.y"))  # fmt: skip
    assert {"vendors.x.hmac_key", "vendors.x.api_version", "vendors.x.view_through_window",
            "vendors.x.app_id"} <= set(found)  # fmt: skip


def test_android_settings(kit: Any) -> None:
    cfg = build_config(
        {"vendors": {"x": kit.settings(os_type="ANDROID", app_id="com.example.postback")}},
        {"x": XDestination},
    )
    assert cfg.vendors["x"].settings.os_type == "ANDROID"


def test_app_id_written_as_a_toml_integer(kit: Any) -> None:
    cfg = build_config({"vendors": {"x": kit.settings(app_id=333903271)}}, {"x": XDestination})
    assert cfg.vendors["x"].settings.app_id == "333903271"


def test_batch_size_above_one_is_refused(kit: Any) -> None:
    found = problems({**kit.settings(), "batch_size": 10})
    assert "at most 1" in found["vendors.x.batch_size"]


def test_rate_limit_override(kit: Any) -> None:
    cfg = build_config(
        {"vendors": {"x": {**kit.settings(), "rate_limit": "450/minute"}}}, {"x": XDestination}
    )
    assert cfg.vendors["x"].rate_limit == postback.RateLimit(450, 60)


def test_every_setting_is_documented() -> None:
    rows = settings_help(XSettings)
    assert all(help_text for _, help_text, _, _ in rows)
    secret = {name for name, _, is_secret, _ in rows if is_secret}
    assert secret == {"consumer_key", "consumer_secret", "access_token", "access_token_secret",
                      "hmac_key", "hmac_key_development"}  # fmt: skip


def test_readme_documents_every_setting_and_option() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name, *_ in settings_help(XSettings):
        assert f"`{name}`" in readme, name
    for option in XDestination.option_keys:
        assert f"`{option}`" in readme, option


def test_demo_hmac_keys_decode() -> None:
    from postback_x import XEmulator

    s = XEmulator.demo_settings()
    assert base64.b64decode(s["hmac_key"]) != base64.b64decode(s["hmac_key_development"])

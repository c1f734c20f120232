"""Configuration: every bad setting is a ConfigError problem with its key path."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from postback import ConfigError, Secret, Tracker
from postback.config import build_config, settings_help
from postback_mobana import MobanaDestination, MobanaSettings
from postback_mobana.destination import SettingError

KEY = "test-mobana-key-not-real"
GOOD = {"app_id": "a1b2c3d4", "app_key": KEY}


def config_problems(table: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        build_config({"vendors": {"mobana": table}}, {"mobana": MobanaDestination})
    return {p.path: p.message for p in info.value.problems}


def test_a_good_table() -> None:
    cfg = build_config(
        {"vendors": {"mobana": {**GOOD, "rates": {"eur": 1.08, "GBP": "1.27"}}}},
        {"mobana": MobanaDestination},
    )
    s = cfg.vendors["mobana"].settings
    assert isinstance(s, MobanaSettings)
    assert s.app_key == Secret(KEY)
    assert s.currency == "USD"
    assert s.rates == {"EUR": Decimal("1.08"), "GBP": Decimal("1.27")}
    assert s.install_id_format == "loose"
    assert s.retry_unconfirmed is True


def test_missing_secret() -> None:
    found = config_problems({"app_id": "a1b2c3d4"})
    assert found == {"vendors.mobana.app_key": "required setting is missing"}


def test_missing_app_id() -> None:
    assert config_problems({"app_key": KEY}) == {
        "vendors.mobana.app_id": "required setting is missing"
    }


def test_secret_from_an_unset_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOBANA_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        build_config(
            {"vendors": {"mobana": {"app_id": "a1b2c3d4", "app_key": "${MOBANA_TEST_UNSET_KEY}"}}},
            {"mobana": MobanaDestination},
        )
    messages = [p.message for p in info.value.problems if p.path == "vendors.mobana.app_key"]
    assert any("MOBANA_TEST_UNSET_KEY is not set" in m for m in messages)


def test_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBANA_TEST_KEY", KEY)
    cfg = build_config(
        {"vendors": {"mobana": {"app_id": "a1", "app_key": "${MOBANA_TEST_KEY}"}}},
        {"mobana": MobanaDestination},
    )
    assert cfg.vendors["mobana"].settings.app_key.reveal() == KEY


@pytest.mark.parametrize("app_id", ["my app", "a1b2.c3", "-a1", "", "a" * 64])
def test_bad_app_id(app_id: Any) -> None:
    found = config_problems({**GOOD, "app_id": app_id})
    assert list(found) == ["vendors.mobana.app_id"]
    assert "Mobana app ID" in found["vendors.mobana.app_id"]
    assert repr(app_id) in found["vendors.mobana.app_id"]


def test_app_id_of_the_wrong_type() -> None:
    found = config_problems({**GOOD, "app_id": 1.5})
    assert found == {"vendors.mobana.app_id": "must be a string, got float"}


def test_app_id_as_a_toml_integer() -> None:
    cfg = build_config(
        {"vendors": {"mobana": {**GOOD, "app_id": 12345}}}, {"mobana": MobanaDestination}
    )
    assert cfg.vendors["mobana"].settings.app_id == "12345"


def test_bad_enum() -> None:
    found = config_problems({**GOOD, "install_id_format": "strict"})
    assert found == {"vendors.mobana.install_id_format": "must be 'loose' or 'uuid'; got 'strict'"}


def test_bad_currency() -> None:
    found = config_problems({**GOOD, "currency": "DOLLAR"})
    assert "ISO 4217" in found["vendors.mobana.currency"]
    assert "'DOLLAR'" in found["vendors.mobana.currency"]


def test_bad_rates_every_entry_reported() -> None:
    found = config_problems(
        {**GOOD, "rates": {"EURO": "1.1", "GBP": -1, "CHF": "abc", "JPY": True, "SEK": "inf"}}
    )
    assert list(found) == ["vendors.mobana.rates"]
    message = found["vendors.mobana.rates"]
    for code in ("EURO", "GBP", "CHF", "JPY", "SEK"):
        assert f"{code}: must be" in message
    assert "EURO: must be an ISO 4217 currency code" in message
    assert "GBP: must be a positive number, what 1 GBP is worth" in message
    assert "got -1" in message


def test_rates_must_be_a_table() -> None:
    found = config_problems({**GOOD, "rates": "EUR=1.08"})
    assert found == {"vendors.mobana.rates": "expected a mapping"}


def test_no_rate_for_the_app_currency() -> None:
    found = config_problems({**GOOD, "currency": "EUR", "rates": {"EUR": "1.1"}})
    assert found == {
        "vendors.mobana.rates": "EUR: is the app currency itself (its rate is always 1): remove it"
    }
    # A rate of exactly 1 is harmless.
    build_config(
        {"vendors": {"mobana": {**GOOD, "rates": {"USD": 1}}}}, {"mobana": MobanaDestination}
    )


def test_bad_bool() -> None:
    found = config_problems({**GOOD, "retry_unconfirmed": "no"})
    assert "true or false" in found["vendors.mobana.retry_unconfirmed"]


def test_unknown_setting_and_several_problems_at_once() -> None:
    found = config_problems(
        {
            "app_id": "bad id",
            "app_key": KEY,
            "apikey": KEY,
            "currency": "XX",
            "rates": {"EUR": 0},
            "install_id_format": "v4",
        }
    )
    assert set(found) == {
        "vendors.mobana.apikey",
        "vendors.mobana.app_id",
        "vendors.mobana.currency",
        "vendors.mobana.rates",
        "vendors.mobana.install_id_format",
    }
    assert "did you mean 'app_key'" in found["vendors.mobana.apikey"]
    assert found["vendors.mobana.currency"].startswith("must be the ISO 4217 code")


def test_a_missing_setting_and_an_unknown_one() -> None:
    found = config_problems({"app_id": "a1b2c3d4", "appkey": KEY})
    assert found["vendors.mobana.app_key"] == "required setting is missing"
    assert "did you mean 'app_key'" in found["vendors.mobana.appkey"]


def test_common_settings_are_the_cores() -> None:
    found = config_problems({**GOOD, "batch_size": 2})
    assert "at most 1 event(s) per request" in found["vendors.mobana.batch_size"]


def test_direct_construction_validates_too() -> None:
    with pytest.raises(SettingError, match="Mobana app ID"):
        MobanaSettings(app_id="no way", app_key=Secret(KEY))
    with pytest.raises(SettingError, match="'loose' or 'uuid'"):
        MobanaSettings(app_id="a1", app_key=Secret(KEY), install_id_format="x")
    with pytest.raises(ValueError, match="USD: is the app currency itself"):
        MobanaSettings(app_id="a1", app_key=Secret(KEY), rates={"usd": "2"})


def test_origin_follows_app_id_and_base_url() -> None:
    dest = MobanaDestination(MobanaSettings(app_id="zz9", app_key=Secret(KEY)))
    assert dest.url("/conversion") == "https://zz9.mobana.ai/conversion"
    proxied = MobanaDestination(
        MobanaSettings(app_id="zz9", app_key=Secret(KEY)), base_url="https://example.com/d/"
    )
    assert proxied.url("/conversion") == "https://example.com/d/conversion"


def test_settings_help_documents_every_setting() -> None:
    rows = {
        name: (help_, secret, default)
        for name, help_, secret, default in settings_help(MobanaSettings)
    }
    assert set(rows) == {
        "app_id",
        "app_key",
        "currency",
        "rates",
        "install_id_format",
        "retry_unconfirmed",
    }
    assert rows["app_key"][1] is True
    assert rows["app_id"][2] == "required"
    assert rows["currency"][2] == "'USD'"
    assert all(h for h, _, _ in rows.values())


def test_the_entry_point_registers_the_vendor() -> None:
    tracker = Tracker.from_config({"postback": {"queue": "memory://"}, "vendors": {"mobana": GOOD}})
    try:
        assert isinstance(tracker.destinations["mobana"], MobanaDestination)
        assert "mobana" in tracker.host.emulators
    finally:
        tracker.close(timeout=0)


def test_readme_documents_every_setting_and_option() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name, *_ in settings_help(MobanaSettings):
        assert f"| `{name}` |" in readme, name
    for option in MobanaDestination.option_keys:
        assert f"| `{option}` |" in readme, option
    assert "pip install postback-mobana" in readme


@pytest.mark.parametrize(
    ("extra", "warned"),
    [
        ("", True),
        ('events = ["purchase"]\n', False),
        ('[vendors.mobana.event_map]\nsign_up = "signup"\n', False),
    ],
)
def test_config_check_warns_when_event_names_are_not_mapped(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, extra: str, warned: bool
) -> None:
    """Mobana answers success for any name and drops unknown ones: `config check` (and
    `doctor`, through postback.destination.config_warnings) warns when nothing maps them."""
    from click.testing import CliRunner

    from postback.cli import main

    monkeypatch.setenv("MOBANA_TEST_KEY", KEY)
    config = tmp_path / "postback.toml"
    config.write_text(
        f'[postback]\nqueue = "sqlite:///{tmp_path}/q.db"\n\n'
        '[vendors.mobana]\napp_id = "a1b2c3d4"\napp_key = "${MOBANA_TEST_KEY}"\n' + extra
    )
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["config", "check", "--config", str(config)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert ("warning: vendors.mobana.event_map" in result.output) is warned
    assert KEY not in result.output

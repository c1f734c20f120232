"""Settings: every mistake is a ConfigError naming the key path and how to fix it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from postback.config import settings_help
from postback.destination import Secret
from postback.errors import ConfigError
from postback.tracker import Tracker
from postback_applovin import AppLovinDestination, AppLovinSettings

GOOD = {"api_key": "k-123", "pixel_id": "pixel-1"}


def _load(vendor: dict[str, Any]) -> Tracker:
    return Tracker.from_config(
        {"postback": {"queue": "memory://", "workers": False}, "vendors": {"applovin": vendor}}
    )


def _problems(vendor: dict[str, Any]) -> dict[str, str]:
    """path -> its messages joined with ' | '."""
    with pytest.raises(ConfigError) as info:
        _load(vendor).close(timeout=0)
    out: dict[str, str] = {}
    for p in info.value.problems:
        out[p.path] = f"{out[p.path]} | {p.message}" if p.path in out else p.message
    return out


def test_good_config_loads_with_defaults() -> None:
    tracker = _load(GOOD)
    try:
        dest = tracker.destinations["applovin"]
        assert isinstance(dest, AppLovinDestination)
        s = dest.settings
        assert (
            s.payload_format,
            s.esi,
            s.hash_pii,
            s.default_phone_region,
            s.event_source_url,
            s.extra_event_names,
        ) == ("object", "auto", True, None, None, ())
        assert dest.url("/v1/event") == "https://b.applovin.com/v1/event"
        assert dest.max_batch_size == 100
    finally:
        tracker.close(timeout=0)


def test_missing_api_key() -> None:
    problems = _problems({"pixel_id": "p"})
    assert problems == {"vendors.applovin.api_key": "required setting is missing"}


def test_missing_pixel_id_and_api_key_both_reported() -> None:
    assert set(_problems({})) == {"vendors.applovin.api_key", "vendors.applovin.pixel_id"}


def test_empty_api_key() -> None:
    assert "vendors.applovin.api_key" in _problems({**GOOD, "api_key": ""})


def test_api_key_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("APPLOVIN_API_KEY", "from-env-key")
    tracker = _load({**GOOD, "api_key": "${APPLOVIN_API_KEY}"})
    try:
        assert tracker.destinations["applovin"].settings.api_key.reveal() == "from-env-key"
    finally:
        tracker.close(timeout=0)


def test_unset_environment_variable(monkeypatch) -> None:
    monkeypatch.delenv("APPLOVIN_API_KEY", raising=False)
    problems = _problems({**GOOD, "api_key": "${APPLOVIN_API_KEY}"})
    assert "APPLOVIN_API_KEY is not set" in problems["vendors.applovin.api_key"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("payload_format", "list"),
        ("esi", "mobile"),
        ("hash_pii", "yes"),
        ("default_phone_region", 44),
    ],
)
def test_bad_typed_setting_names_its_path(key, value) -> None:
    assert f"vendors.applovin.{key}" in _problems({**GOOD, key: value})


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("pixel_id", "my pixel", "Axon Event Key"),
        ("pixel_id", "  ", "Axon Event Key"),
        ("default_phone_region", "XY", "not an ISO 3166 alpha-2"),
        ("event_source_url", "shop.example.com", "complete URL"),
        ("extra_event_names", ["Add To Wishlist"], "snake_case"),
        ("extra_event_names", "add_to_wishlist", "not a string"),
    ],
)
def test_bad_setting_value_names_its_path(key, value, fragment) -> None:
    problems = _problems({**GOOD, key: value})
    assert fragment in problems[f"vendors.applovin.{key}"]


def test_all_setting_problems_are_reported_together() -> None:
    # Type errors first (the core reports them before running validators) ...
    problems = _problems({"pixel_id": "p", "payload_format": "xml", "hash_pii": 1})
    assert set(problems) == {
        "vendors.applovin.api_key",
        "vendors.applovin.payload_format",
        "vendors.applovin.hash_pii",
    }
    assert problems["vendors.applovin.payload_format"].startswith(
        "must be one of 'object', 'array'"
    )
    # ... then every value problem at once.
    problems = _problems(
        {
            "api_key": "k",
            "pixel_id": "a pixel",
            "default_phone_region": "XY",
            "event_source_url": "/relative",
            "extra_event_names": ["Bad Name"],
        }
    )
    assert set(problems) == {
        "vendors.applovin.pixel_id",
        "vendors.applovin.default_phone_region",
        "vendors.applovin.event_source_url",
        "vendors.applovin.extra_event_names",
    }


def test_settings_built_in_code_are_validated_too() -> None:
    with pytest.raises(ValueError, match="ISO 3166"):
        AppLovinSettings(api_key=Secret("k"), pixel_id="p", default_phone_region="XY")


def test_event_map_to_an_unknown_axon_name() -> None:
    problems = _problems({**GOOD, "event_map": {"install": "install", "lead": "generate_lead"}})
    assert list(problems) == ["vendors.applovin.event_map.install"]
    assert "not an Axon event name" in problems["vendors.applovin.event_map.install"]


def test_extra_event_names_allow_a_mapping() -> None:
    tracker = _load(
        {
            **GOOD,
            "extra_event_names": ["add_to_wishlist"],
            "event_map": {"add_to_wishlist": "add_to_wishlist"},
        }
    )
    try:
        assert tracker.destinations["applovin"].supports("add_to_wishlist")
    finally:
        tracker.close(timeout=0)


def test_events_filter_with_an_unmapped_event() -> None:
    problems = _problems({**GOOD, "events": ["purchase", "install"]})
    assert "no event for 'install'" in problems["vendors.applovin.events"]


def test_batch_size_over_100() -> None:
    problems = _problems({**GOOD, "batch_size": 101})
    assert "at most 100" in problems["vendors.applovin.batch_size"]


def test_unknown_setting_suggests_the_right_one() -> None:
    problems = _problems({**GOOD, "pixelid": "x"})
    assert "did you mean 'pixel_id'" in problems["vendors.applovin.pixelid"]


def test_settings_are_documented() -> None:
    rows = {
        name: (help_, secret, default)
        for name, help_, secret, default in settings_help(AppLovinSettings)
    }
    assert set(rows) == {
        "api_key",
        "pixel_id",
        "payload_format",
        "empty_data",
        "esi",
        "event_source_url",
        "hash_pii",
        "default_phone_region",
        "extra_event_names",
    }
    assert rows["api_key"][1] is True
    assert rows["api_key"][2] == "required" and rows["pixel_id"][2] == "required"
    assert all(help_ for help_, _, _ in rows.values())


def test_erase_reads_national_phones_in_the_default_phone_region(
    make_destination: Callable[..., AppLovinDestination],
) -> None:
    # The deliverer's erasure check reads a phone tracked in national form where AppLovin does.
    from postback.delivery.erase import phone_regions

    assert phone_regions([make_destination(default_phone_region=" gb "), object()]) == ("GB",)
    assert phone_regions([make_destination()]) == ()

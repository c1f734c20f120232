"""Shared fixtures for the Mobana plugin's tests (helpers are fixtures: the test modules are
imported in importlib mode, so they cannot import this file)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from postback.config import build_config
from postback.events import Event, make_event
from postback.fields import FieldSet
from postback_mobana import MobanaDestination, MobanaEmulator

#: The event fields the plugin declares, as a tracker with it installed accepts them.
FIELDS = FieldSet.of([MobanaDestination])

KEY = "test-mobana-key-not-real"
INSTALL_ID = "550e8400-e29b-41d4-a716-446655440000"
SETTINGS: dict[str, Any] = {"app_id": "a1b2c3d4", "app_key": KEY}


def _destination(**overrides: Any) -> MobanaDestination:
    """A destination built through the real config loader (own + common settings)."""
    cfg = build_config(
        {"vendors": {"mobana": {**SETTINGS, **overrides}}}, {"mobana": MobanaDestination}
    )
    dest = cfg.vendors["mobana"].make_destination(MobanaDestination)
    assert isinstance(dest, MobanaDestination)
    return dest


def _event(name: str = "purchase", **kwargs: Any) -> Event:
    """A canonical event with a valid install id unless ``user`` says otherwise."""
    kwargs.setdefault("user", {"install_id": INSTALL_ID})
    kwargs.setdefault("timestamp", 1751653800000)
    return make_event(name, fields=FIELDS, **kwargs)


@pytest.fixture
def key() -> str:
    return KEY


@pytest.fixture
def settings() -> dict[str, Any]:
    return dict(SETTINGS)


@pytest.fixture
def make_dest() -> Callable[..., MobanaDestination]:
    return _destination


@pytest.fixture
def make_event_() -> Callable[..., Event]:
    return _event


@pytest.fixture
def dest() -> MobanaDestination:
    return _destination()


@pytest.fixture
def emulator() -> MobanaEmulator:
    return MobanaEmulator(dict(SETTINGS))


@pytest.fixture
def tracker_config(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """A factory: a config dict with a SQLite queue and a fast retry policy for mobana."""

    def make(vendor_table: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "postback": {"queue": f"sqlite:///{tmp_path}/q.db"},
            "vendors": {
                "mobana": {
                    **vendor_table,
                    "retry": {"initial_backoff": 0.01, "max_backoff": 0.05},
                    **extra,
                }
            },
        }

    return make

"""Fixtures for the core's own tests: the example vendor, its sandbox, trackers on real queues."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import postback.testing.example as example
from postback import Tracker
from postback.sandbox import Sandbox
from postback.testing.example import ExampleEmulator
from tests.cli_support import install_example_alone, write_example_config

FAST_RETRY = {"initial_backoff": 0.01, "max_backoff": 0.05, "max_attempts": 5}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox([ExampleEmulator()]) as box:
        yield box


@pytest.fixture
def make_tracker(tmp_path: Path, sandbox: Sandbox) -> Iterator[Callable[..., Tracker]]:
    """Build trackers for the example vendor on a SQLite file (or any queue); closed after."""
    made: list[Tracker] = []

    def make(
        *,
        queue: str | None = None,
        vendor: dict[str, Any] | None = None,
        core: dict[str, Any] | None = None,
        plugins: list[object] | None = None,
    ) -> Tracker:
        cfg = {
            "postback": {"queue": queue or f"sqlite:///{tmp_path}/queue.db", **(core or {})},
            "vendors": {
                "example": {
                    **sandbox.vendor_config("example"),
                    "retry": FAST_RETRY,
                    "linger": 0.01,
                    **(vendor or {}),
                }
            },
        }
        t = Tracker.from_config(cfg, plugins=[example, *(plugins or [])], load_entry_points=False)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close(timeout=1)


@pytest.fixture
def example_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example vendor as an installed entry-point plugin, alone (the five disabled)."""
    install_example_alone(monkeypatch, tmp_path / "site")


@pytest.fixture
def config_file(
    tmp_path: Path, sandbox: Sandbox, example_installed: None, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """postback.toml for the example vendor at the sandbox, as the CLI tests read it."""
    return write_example_config(tmp_path / "postback.toml", sandbox, monkeypatch)

"""``workers = "auto"`` (the default): delivery in a child process where that changes nothing
the app can see, threads otherwise."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import postback.testing.example as example
from postback import hookimpl
from postback.config import CoreSettings, build_config
from postback.destination import Destination
from postback.plugins import PluginHost
from postback.tracker import auto_workers


def resolve(tmp_path: Path, queue: str | None = None, plugins: list[Any] | None = None,
            transport: Any = None) -> bool | str:  # fmt: skip
    host = PluginHost([example, *(plugins or [])], load_entry_points=False)
    cfg = build_config(
        {
            "postback": {"queue": queue or f"sqlite:///{tmp_path}/q.db"},
            "vendors": {"example": {"api_key": "k"}},
        },
        host.destinations,
    )
    assert cfg.core.workers == "auto"
    return auto_workers(cfg, host, transport)


class Listener:
    @hookimpl
    def postback_on_attribution(self, attribution: Any, event: Any) -> None:
        pass


class Enricher:
    @hookimpl(wrapper=True)
    def postback_transform(self, event: Any, destination: Destination) -> Any:
        return (yield)


class Validator:
    """Validation runs in track(), in the app's process in every mode."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # cannot be pickled: it cannot be sent to a child

    @hookimpl
    def postback_validate(self, event: Any, destination: Destination) -> list[Any]:
        return []


class PicklableValidator:
    @hookimpl
    def postback_validate(self, event: Any, destination: Destination) -> list[Any]:
        return []


@pytest.fixture
def outside_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "pytest")


def test_the_default_is_auto() -> None:
    assert CoreSettings().workers == "auto"


def test_a_plain_sqlite_tracker_delivers_from_a_child_process(
    tmp_path: Path, outside_pytest: None
) -> None:
    assert resolve(tmp_path) == "process"
    assert resolve(tmp_path, plugins=[PicklableValidator()]) == "process"


@pytest.mark.parametrize("plugin", [Listener(), Enricher()])
def test_in_process_delivery_hooks_keep_delivery_in_the_app(
    tmp_path: Path, outside_pytest: None, plugin: object
) -> None:
    assert resolve(tmp_path, plugins=[plugin]) is True


def test_what_cannot_reach_a_child_keeps_delivery_in_the_app(
    tmp_path: Path, outside_pytest: None
) -> None:
    assert resolve(tmp_path, plugins=[Validator()]) is True  # cannot be pickled
    assert resolve(tmp_path, transport=httpx.MockTransport(lambda r: httpx.Response(200))) is True
    assert resolve(tmp_path, queue="memory://") is True


def test_under_pytest_delivery_stays_in_the_process(tmp_path: Path) -> None:
    # respx and in-process fixtures must see the deliveries of a test's tracker.
    assert resolve(tmp_path) is True


def test_config_check_shows_auto_and_what_it_chose_here(
    tmp_path: Path, sandbox: Any, example_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``config check`` showed ``workers  thread`` for ``workers = "auto"``: what auto
    resolved to, as if the config had named it. It shows the setting and its resolution."""
    from tests.cli_support import run, write_example_config

    config = write_example_config(tmp_path / "postback.toml", sandbox, monkeypatch)
    code, out = run("config", "check", "--config", str(config))
    assert code == 0, out
    assert "│ workers               │ auto (threads here: running under pytest)" in out, out
    monkeypatch.setenv("POSTBACK_WORKERS", "process")  # named: shown as it is, no reason
    code, out = run("config", "check", "--config", str(config))
    assert code == 0, out
    assert "│ workers               │ process (from POSTBACK_WORKERS)" in out, out
    assert "auto" not in out.split("workers")[1].splitlines()[0], out


@pytest.mark.parametrize(
    ("queue", "why"),
    [
        ("memory://", "the queue is not a sqlite:// file"),
        (None, "a sqlite:// queue and nothing that must run in this process"),
    ],
)
def test_auto_workers_says_why(
    tmp_path: Path, outside_pytest: None, queue: str | None, why: str
) -> None:
    from postback.tracker import auto_workers_why

    host = PluginHost([example, Listener()], load_entry_points=False)
    cfg = build_config(
        {
            "postback": {"queue": queue or f"sqlite:///{tmp_path}/q.db"},
            "vendors": {"example": {"api_key": "k"}},
        },
        host.destinations,
    )
    _, reason = auto_workers_why(cfg, host)
    if queue is None:  # the listener keeps delivery in the app, and says so
        assert reason == "an in-process plugin implements postback_on_attribution"
        _, reason = auto_workers_why(cfg, PluginHost([example], load_entry_points=False))
    assert reason.startswith(why)

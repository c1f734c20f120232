"""What the command-line tests share: the example vendor installed alone, a config file for it
pointing at the sandbox, and :func:`run`, which invokes the CLI as a user would (click's runner,
same process, wide terminal so nothing wraps)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from postback.cli import main
from postback.sandbox import Sandbox
from tests._distributions import add_entry_point_dist

__all__ = ["install_example_alone", "run", "write_example_config"]


def install_example_alone(monkeypatch: pytest.MonkeyPatch, site: Path) -> None:
    """The example vendor as an installed entry-point plugin, and the first-party ones disabled."""
    add_entry_point_dist(
        monkeypatch, site, "postback-example", {"example": "postback.testing.example"}
    )
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "mobana,x,whop,tonai,applovin")


def write_example_config(path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A postback.toml with a sqlite queue and the example vendor at the sandbox (key from env)."""
    monkeypatch.setenv("EXAMPLE_KEY", "sandbox-example-key")
    path.write_text(
        '[postback]\nqueue = "sqlite://queue.db"\n\n[vendors.example]\n'
        'api_key = "${EXAMPLE_KEY}"\n'
        f'base_url = "{sandbox.base_url("example")}"\n'
        "retry = { initial_backoff = 0.01, max_backoff = 0.02, max_attempts = 2 }\n"
    )
    return path


def run(*args: str) -> tuple[int, str]:
    """``postback ARGS...``: its exit code and everything it printed."""
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output

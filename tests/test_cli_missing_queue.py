"""Commands that read or act on stored events refuse a ``sqlite://`` queue file that does not
exist (a mistyped path, the wrong --config) instead of making a new empty queue and reporting
it empty; the commands that track or deliver still create it."""

from __future__ import annotations

from pathlib import Path

import pytest

from postback.delivery.sqlite import SQLiteQueue
from postback.sandbox import Sandbox
from tests.cli_support import run

READERS = [
    ("deadletters", "list"),
    ("deadletters", "show", "1"),
    ("queue", "stats"),
    ("status", "e-1"),
    ("replay",),
    ("erase", "--email", "someone@example.com"),
]


def _config(tmp_path: Path, sandbox: Sandbox, queue: str) -> Path:
    path = tmp_path / "postback.toml"
    path.write_text(
        f'[postback]\nqueue = "{queue}"\n\n[vendors.example]\napi_key = "sandbox-example-key"\n'
        f'base_url = "{sandbox.base_url("example")}"\n'
    )
    return path


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("where", ["nodir/q.db", "q.db"])
def test_a_missing_queue_file_is_an_error_not_a_new_empty_queue(
    tmp_path: Path, sandbox: Sandbox, example_installed: None, args: tuple[str, ...], where: str
) -> None:
    missing = tmp_path / where
    config = _config(tmp_path, sandbox, f"sqlite:///{missing}")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out = run(*args, "--config", str(config))
    assert code == 1, out
    flat = " ".join(out.split())
    assert f"the queue file {missing} does not exist" in flat, out
    assert "[postback] queue" in flat and "--config" in flat, out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no file, no directory


def test_a_relative_queue_path_is_named_as_resolved(
    tmp_path: Path, sandbox: Sandbox, example_installed: None
) -> None:
    config = _config(tmp_path, sandbox, "sqlite://data/queue.db")
    code, out = run("queue", "stats", "--config", str(config))
    assert code == 1, out
    assert str(tmp_path / "data" / "queue.db") in " ".join(out.split()), out


def test_send_still_creates_the_queue_and_the_readers_then_read_it(
    tmp_path: Path, sandbox: Sandbox, example_installed: None
) -> None:
    path = tmp_path / "new" / "q.db"
    config = _config(tmp_path, sandbox, f"sqlite:///{path}")
    code, out = run(
        "send", "purchase", "--value", "5", "--currency", "USD", "--event-id", "e-1",
        "--user", "email=a@example.com", "--config", str(config),
    )  # fmt: skip
    assert code == 0, out
    assert path.exists()
    code, out = run("status", "e-1", "--config", str(config))
    assert code == 0, out
    code, out = run("queue", "stats", "--config", str(config))
    assert code == 0, out


# --- the commands that only check: they report a missing file and create nothing ------------


@pytest.mark.parametrize("where", ["nodir/q.db", "q.db"])
def test_config_check_reports_a_missing_queue_file_and_creates_nothing(
    tmp_path: Path, sandbox: Sandbox, example_installed: None, where: str
) -> None:
    missing = tmp_path / where
    config = _config(tmp_path, sandbox, f"sqlite:///{missing}")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out = run("config", "check", "--config", str(config))
    assert code == 0, out  # a first setup: the app creates the file on its first event
    flat = " ".join(out.split())
    assert f"queue: sqlite:///{missing} (the file does not exist yet" in flat, out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no file, no directory


@pytest.mark.parametrize("where", ["nodir/q.db", "q.db"])
def test_doctor_warns_of_a_missing_queue_file_and_creates_nothing(
    tmp_path: Path, sandbox: Sandbox, example_installed: None, where: str
) -> None:
    missing = tmp_path / where
    config = _config(tmp_path, sandbox, f"sqlite:///{missing}")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out = run("doctor", "--config", str(config))
    flat = " ".join(out.split())
    assert f"warning queue: {missing} does not exist yet" in flat, out
    assert "is reachable" not in flat, out
    assert "GB free where the queue is" in flat, out
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_config_check_and_doctor_read_an_existing_queue(
    tmp_path: Path, sandbox: Sandbox, example_installed: None
) -> None:
    path = tmp_path / "q.db"
    config = _config(tmp_path, sandbox, f"sqlite:///{path}")
    SQLiteQueue(path).close()
    code, out = run("config", "check", "--config", str(config))
    assert code == 0 and "does not exist" not in out, out
    code, out = run("doctor", "--config", str(config))
    assert code == 0 and f"sqlite:///{path} is reachable" in " ".join(out.split()), out


@pytest.mark.parametrize("exists", [True, False])
def test_config_check_names_the_variable_that_set_the_queue_whether_or_not_it_exists(
    tmp_path: Path,
    sandbox: Sandbox,
    example_installed: None,
    monkeypatch: pytest.MonkeyPatch,
    exists: bool,
) -> None:
    """The queue row said ``(from POSTBACK_QUEUE)`` when the file existed and dropped it when
    it did not: the stand-in queue that spares creating the file hid where the setting came
    from, though a mistyped variable is the likeliest cause of a missing file."""
    config = _config(tmp_path, sandbox, f"sqlite:///{tmp_path / 'file.db'}")
    queue = tmp_path / "from-env.db"
    if exists:
        SQLiteQueue(queue).close()
    monkeypatch.setenv("POSTBACK_QUEUE", f"sqlite:///{queue}")
    code, out = run("config", "check", "--config", str(config))
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.startswith("│ queue "))
    assert str(queue) in row and row.rstrip(" │").endswith("(from POSTBACK_QUEUE)"), out
    assert ("does not exist yet" in out) is not exists, out
    assert queue.exists() is exists  # checking created nothing

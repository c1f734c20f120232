"""What a newcomer meets on the command line (issue 19), one regression test per bug: literal
output, the sandbox's pasteable TOML and port errors, did-you-mean for a vendor name, reading
the queue without secrets, and the smaller messages."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from postback import Tracker
from postback.delivery.sqlite import SQLiteQueue
from postback.plugins import PluginHost
from postback.sandbox import Sandbox
from tests.cli_support import run


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_KEY", "sandbox-example-key")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- literal output ------------------------------------------------------------------------------


def test_error_messages_keep_their_brackets(tmp_path: Path, example_installed: None) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[postbak]\n\n[vendors.example]\napi_key = "k"\n')
    code, out = run("config", "check", "--config", str(bad))
    assert code == 2
    assert "a config has [postback], [consent] and [vendors.NAME] tables" in out


def test_config_check_table_titles_keep_their_brackets(config_file: Path) -> None:
    code, out = run("config", "check", "--config", str(config_file))
    assert code == 0, out
    assert "[vendors.example]" in out


def test_send_shows_the_retry_reason_in_the_note_column(
    tmp_path: Path, example_installed: None
) -> None:
    path = tmp_path / "postback.toml"
    path.write_text(
        '[vendors.example]\napi_key = "${EXAMPLE_KEY}"\n'
        f'base_url = "http://127.0.0.1:{free_port()}/example"\n'  # nothing listens there
    )
    code, out = run(
        "send", "sign_up", "--user", "email=a@b.co", "--timeout", "1", "--config", str(path)
    )
    assert code == 1
    [row] = [line for line in out.splitlines() if line.startswith("│ example")]
    assert "pending" in row and "ConnectError" in row and "[Errno" in out


# --- sandbox ------------------------------------------------------------------------------------


def test_every_emulators_sandbox_table_is_valid_toml() -> None:
    host = PluginHost()
    with Sandbox.from_plugins(host.emulators) as box:
        for vendor in box.emulators:
            parsed = tomllib.loads(box.vendor_toml(vendor))
            assert parsed == {"vendors": {vendor: box.vendor_config(vendor)}}, vendor


def test_the_sandbox_command_prints_pasteable_toml_and_logs_each_request(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "postback", "sandbox", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("What each emulator accepted"):
                break
        printed = "".join(lines)
        toml = printed.split("(paste into postback.toml):", 1)[1].rsplit("What each", 1)[0]
        config = tomllib.loads(toml)
        assert config["vendors"], printed
        url = f"http://127.0.0.1:{port}/_sandbox/received"
        assert f"GET {url}" in printed
        assert httpx.get(url, timeout=5).status_code == 200
        assert "GET /_sandbox/received -> 200" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_sandbox_on_a_busy_port_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = run("sandbox", "--port", str(port))
    assert code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in out
    assert "Traceback" not in out


def test_the_sandbox_refuses_a_port_out_of_range() -> None:
    code, out = run("sandbox", "--port", "99999")
    assert code == 2
    assert "99999 is not in the range 0<=x<=65535" in out


# --- vendor names -------------------------------------------------------------------------------


def test_a_misspelled_vendor_gets_did_you_mean_not_a_package_name(
    tmp_path: Path, example_installed: None
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[vendors.exampel]\napi_key = "k"\n')
    code, out = run("config", "check", "--config", str(bad))
    assert code == 2
    assert "did you mean 'example'? Rename the table to [vendors.example]" in out
    assert "postback-exampel" not in out


def test_a_known_event_name_is_not_its_own_suggestion(
    caplog: pytest.LogCaptureFixture, example_installed: None
) -> None:
    tracker = Tracker.from_config(
        {
            "postback": {"queue": "memory://"},
            "vendors": {"example": {"api_key": "k", "events": ["sign_up"]}},
        }
    )
    try:
        with caplog.at_level(logging.WARNING, logger="postback"):
            tracker.track("install", user={"email": "a@b.co"})
    finally:
        tracker.close(timeout=0)
    [message] = [r.getMessage() for r in caplog.records if "'install'" in r.getMessage()]
    assert "Did you mean 'install'" not in message


# --- the queue without secrets ------------------------------------------------------------------


def test_queue_commands_need_no_vendor_secret(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    monkeypatch.delenv("EXAMPLE_KEY")
    code, out = run("queue", "stats", "--config", str(config_file))
    assert code == 0, out
    assert "example" in out
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert code == 0 and "neg-1" in out, out
    code, out = run("deadletters", "show", "1", "--config", str(config_file))
    assert code == 0 and "neg-1" in out, out
    code, out = run("replay", "--vendor", "nobody", "--config", str(config_file))
    assert code == 0 and "nothing to replay" in out, out
    # A vendor the config no longer has is named instead of waiting for nobody to deliver.
    no_example = config_file.parent / "other.toml"
    no_example.write_text('[postback]\nqueue = "sqlite://queue.db"\n')
    code, out = run("replay", "--config", str(no_example))
    assert code == 2 and "dead letters for example but the config has no table" in out, out
    # Replaying to example needs example's key, and says which variable is missing.
    code, out = run("replay", "--vendor", "example", "--config", str(config_file))
    assert code == 2 and "EXAMPLE_KEY" in out


def test_deadletters_list_says_when_there_are_none(config_file: Path) -> None:
    SQLiteQueue(config_file.parent / "queue.db").close()  # the app's queue, never failed
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert code == 0
    assert "no dead letters in sqlite://" in out
    assert "event id" not in out


# --- smaller messages ---------------------------------------------------------------------------


def test_validate_says_a_line_is_not_json(config_file: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("not json\n")
    code, out = run("validate", str(events), "--config", str(config_file))
    assert code == 1
    assert "line 1: not JSON" in out and '{"name": "purchase"' in out
    assert "expected 'null'" not in out.split("(", 1)[0]


def test_worker_stats_are_one_readable_line_per_vendor() -> None:
    from postback.cli.queue import format_stats

    text = format_stats(
        {
            "x": {"delivered": 3, "retried": 1, "dead": 0, "skipped": 2, "requests": 4},
            "applovin": {"delivered": 1, "halted": "key refused", "latency_p50": 0.012},
        }
    )
    assert text.splitlines() == [
        "stats applovin: delivered 1, retried 0, dead 0, skipped 0, requests 0, "
        "latency p50 12 ms p95 0 ms; HALTED: key refused",
        "stats x: delivered 3, retried 1, dead 0, skipped 2, requests 4",
    ]


def test_new_plugin_states_the_name_rule(tmp_path: Path, example_installed: None) -> None:
    code, out = run("new-plugin", "a", "--directory", str(tmp_path))
    assert code == 2
    assert "2 to 31 characters" in out and "starting with a letter" in out


def test_new_plugin_refuses_an_installed_vendors_name(
    tmp_path: Path, example_installed: None
) -> None:
    code, out = run("new-plugin", "example", "--directory", str(tmp_path))
    assert code == 2
    assert "a vendor named 'example' is already installed (postback-example 1.0)" in out
    assert not (tmp_path / "postback-example").exists()


def test_doctor_passes_a_good_setup_and_names_what_to_fix(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Tracker.from_config(config_file).close()  # the app ran: its queue file exists
    code, out = run("doctor", "--config", str(config_file))
    assert code == 0, out
    assert "config: " in out and "is valid" in out
    assert "plugins: postback-example 1.0: example" in out
    assert "is reachable" in out and "GB free" in out
    assert "tls: vendors' certificates are verified against" in out
    assert "routes: sign_up -> example" in out
    assert "no problems found" in out
    queue = config_file.parent / "queue.db"
    queue.chmod(0o644)
    code, out = run("doctor", "--config", str(config_file))
    assert "readable by other users (mode 644)" in out and f"chmod 600 {queue}" in out
    monkeypatch.delenv("EXAMPLE_KEY")
    code, out = run("doctor", "--config", str(config_file))
    assert code == 1
    assert "problem  config:" in out and "EXAMPLE_KEY" in out
    assert "1 problem(s) to fix" in out


def test_replay_refuses_dead_letters_it_cannot_read(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encrypted with a key this process lacks: a plain error naming it, nothing requeued
    (it was a ValueError traceback after the dead letters had been put back)."""
    from tests.encryption_support import new_key, use_keys

    use_keys(monkeypatch, f"old:{new_key()}")
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    use_keys(monkeypatch, f"new:{new_key()}")
    code, out = run("replay", "--vendor", "example", "--config", str(config_file))
    assert code == 1 and "dead letter 1 cannot be read" in out and "'old'" in out, out
    assert "nothing was replayed" in out
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert "neg-1" in out, out


def test_the_readme_names_every_command_postback_help_lists() -> None:
    # Was: the README's list of what `postback --help` shows left out `status` and `erase`.
    import click

    from postback.cli import main

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    listed = readme.split("`.venv/bin/postback --help` lists the commands:", 1)[1]
    listed = listed.split("\n\n", 1)[0]
    assert isinstance(main, click.Group)
    for name in main.commands:
        assert f"`{name}" in listed, f"add `{name}` to the README's list of commands"

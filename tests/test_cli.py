"""The command line, driven as a user would (click's runner, same process)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from postback import Tracker
from postback.sandbox import Sandbox
from tests.cli_support import run


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_KEY", "sandbox-example-key")


def test_plugins_lists_installed_and_enabled(config_file: Path) -> None:
    code, out = run("plugins", "--config", str(config_file))
    assert code == 0
    assert "example" in out and "postback-example" in out and "enabled" in out


def test_plugins_lists_the_fields_each_plugin_declares() -> None:
    pytest.importorskip("postback_tonai")
    code, out = run("plugins")
    assert code == 0, out
    assert "user.telegram_user_id" in out and "context.aleid" in out


def test_config_check_ok_redacts_secrets(config_file: Path) -> None:
    code, out = run("config", "check", "--config", str(config_file))
    assert code == 0, out
    assert "ok" in out and "***" in out and "sandbox-example-key" not in out
    consent = "consent: policy assume_granted; purposes ads, measurement; Sec-GPC opts out of ads"
    assert consent in out
    assert "purposes" in out and "dedupe_window" in out


def test_config_check_lists_every_problem(tmp_path: Path, example_installed: None) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[postback]\nqueue = 3\n\n[vendors.example]\napi_kee = "k"\n\n[vendors.nothere]\nx = 1\n'
    )
    code, out = run("config", "check", "--config", str(bad))
    assert code == 2
    assert "postback.queue: must be a string" in out
    assert "vendors.example.api_kee: unknown setting for example (did you mean 'api_key'?)" in out
    assert "vendors.example.api_key: required setting is missing" in out
    assert "no installed plugin provides vendor 'nothere'" in out
    assert "Installed vendors: example" in out


def test_send_dry_run_prints_the_exact_request_without_secrets(
    config_file: Path, sandbox: Sandbox
) -> None:
    code, out = run(
        "send",
        "purchase",
        "--user",
        "email=Ada@Example.com",
        "--value",
        "49.99",
        "--currency",
        "usd",
        "--event-id",
        "order-1",
        "--vendor-option",
        "example.click_id=c9",
        "--dry-run",
        "--config",
        str(config_file),
    )
    assert code == 0, out
    assert "'purchase': track() would queue it for example" in out
    assert "  example: routed" in out
    assert f"POST {sandbox.base_url('example')}/v1/events" in out
    assert "authorization: Bearer ***" in out
    assert '"value_micros": 49990000' in out and '"click_id": "c9"' in out
    assert "sandbox-example-key" not in out
    assert sandbox.received("example") == []


def test_send_dry_run_says_why_a_vendor_would_skip_it(config_file: Path) -> None:
    code, out = run(
        "send", "purchase", "--user", "email=a@b.co", "--dry-run", "--config", str(config_file)
    )
    assert code == 1, out
    assert "track() would return an id and queue the event for no vendor" in out
    assert "example: skipped: value: purchase without value" in out
    assert "(fix: pass value=49.99 and currency='USD' with every purchase)" in out


def test_send_dry_run_shows_a_consent_skip_and_send_respects_it(
    config_file: Path, sandbox: Sandbox
) -> None:
    args = ("send", "sign_up", "--user", "email=a@b.co", "--consent", "ads=false")
    code, out = run(*args, "--dry-run", "--config", str(config_file))
    assert code == 1, out
    assert "example: skipped: consent.ads: not granted" in out
    code, out = run(*args, "--config", str(config_file))
    assert code == 1 and sandbox.received("example") == [], out
    code, out = run(*args[:-1], "ads=true", "--config", str(config_file))
    assert code == 0 and len(sandbox.received("example")) == 1, out


def test_send_delivers(config_file: Path, sandbox: Sandbox) -> None:
    code, out = run("send", "sign_up", "--user", "email=a@b.co", "--config", str(config_file))
    assert code == 0, out
    assert len(sandbox.received("example")) == 1
    assert "delivered" in out


def test_send_exits_1_when_the_event_goes_nowhere(config_file: Path, sandbox: Sandbox) -> None:
    code, out = run("send", "purchase", "--user", "email=a@b.co", "--config", str(config_file))
    assert code == 1, out
    assert "example: skipped: value: purchase without value" in out
    assert "not delivered: routed nowhere" in out
    assert sandbox.received("example") == []


def test_send_exits_1_when_the_vendor_dead_letters_it(config_file: Path) -> None:
    code, out = run(
        "send", "sign_up", "--user", "email=a@b.co", "--value", "-1", "--currency", "USD",
        "--config", str(config_file),
    )  # fmt: skip
    assert code == 1, out
    assert "not delivered: example: dead-lettered: negative value" in out


def test_send_exits_1_when_the_vendor_halts(config_file: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("EXAMPLE_KEY", "a-wrong-key")
    code, out = run(
        "send", "sign_up", "--user", "email=a@b.co", "--timeout", "2", "--config", str(config_file)
    )
    assert code == 1, out
    assert "not delivered: example: halted: API key refused (401)" in out
    assert "a-wrong-key" not in out


def test_send_exits_1_when_still_pending_at_the_deadline(
    config_file: Path, sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", latency=3.0, count=1)  # answers after the deadline
    code, out = run(
        "send", "sign_up", "--user", "email=a@b.co", "--timeout", "0.5",
        "--config", str(config_file),
    )  # fmt: skip
    assert code == 1, out
    assert "not delivered: example: pending: still queued at the deadline" in out


def test_send_invalid_event_exits_1(config_file: Path) -> None:
    code, out = run("send", "purchase", "--user", "emial=a@b.co", "--config", str(config_file))
    assert code == 1
    assert "user.emial: unknown user field; did you mean 'email'?" in out


def test_validate_jsonl(config_file: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                json.dumps({"name": "sign_up", "user": {"email": "a@b.co"}}),
                json.dumps({"name": "purchase", "user": {"email": "a@b.co"}, "currency": "ZZZ"}),
                "not json",
                json.dumps({"user": {}}),
            ]
        )
        + "\n"
    )
    code, out = run("validate", str(events), "--config", str(config_file))
    assert code == 1
    lines = out.splitlines()
    assert "line 2: currency: 'ZZZ' is not an ISO 4217 currency code (e.g. 'USD', 'EUR')" in lines
    assert any(line.startswith("line 3:") for line in lines)
    assert any(
        line.startswith('line 4: each line must be a JSON object with a "name"') for line in lines
    )
    assert "1 of 4 events valid" in out


def test_validate_notes_the_vendors_that_would_skip(config_file: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"name": "purchase", "user": {"email": "a@b.co"}}) + "\n")
    code, out = run("validate", str(events), "--config", str(config_file))
    assert code == 0, out  # well formed: a skip is a note, not an error
    assert "line 1: note: example would skip it: value: purchase without value" in out
    assert "line 1: note: no configured vendor would get 'purchase'" in out
    assert "1 of 1 events valid" in out


def test_queue_stats_deadletters_and_replay(
    config_file: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.track("sign_up", user={"email": "b@b.co"}, event_id="ok-1")
    t.track("purchase", user={"email": "b@b.co"}, currency="USD")  # skipped: no value
    t.flush(timeout=5)
    t.close()
    code, out = run("queue", "stats", "--config", str(config_file))
    assert code == 0 and "example" in out
    assert "skipped at track(), per reason" in out and "purchase without value" in out
    code, out = run("queue", "stats", "--json", "--config", str(config_file))
    stats = json.loads(out)["vendors"]["example"]
    assert stats["dead"] == 1
    assert stats["skipped"] == {"purchase without value": 1}
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert code == 0 and "neg-1" in out and "negative value" in out
    code, out = run("deadletters", "show", "1", "--config", str(config_file))
    shown = json.loads(out)
    assert shown["event"]["event_id"] == "neg-1" and shown["reason"] == "negative value"
    assert "sandbox-example-key" not in out
    code, out = run("deadletters", "show", "99", "--config", str(config_file))
    assert code == 1
    code, out = run(
        "replay",
        "--vendor",
        "example",
        "--since",
        "1h",
        "--timeout",
        "5",
        "--config",
        str(config_file),
    )
    # The vendor refuses the negative value again: the replay says so and exits non-zero, so
    # that a script (cron, CI) sees that it did not work.
    assert code == 1 and "replaying 1 event(s) to example" in out
    assert "dead-lettered again: example 1" in out, out


def test_demo_runs_with_every_emulated_vendor(example_installed: None) -> None:
    code, out = run("demo", "--events", "20")
    assert code == 0, out
    assert "postback demo: 23 events" in out  # 20 plus 3 with deliberate problems
    assert "(20 ordinary, 3 that a vendor skips or rejects)" in out
    assert "example" in out


def test_demo_exits_1_naming_a_vendor_left_with_pending_events(
    example_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: the demo printed its table and exited 0 whatever was left undelivered, so the
    # `plugins` test environment (which runs it) could only catch a crash.
    import postback.demo

    real = postback.demo.run_demo

    def left_pending(*args: Any, **kwargs: Any) -> dict[str, Any]:
        figures = real(*args, **kwargs)
        figures["example"]["pending"] = 2  # as if its emulation had stopped answering
        return figures

    monkeypatch.setattr(postback.demo, "run_demo", left_pending)
    code, out = run("demo", "--events", "5")
    assert code == 1, out
    assert "still pending after the demo's flush: example 2" in out


def test_since_parsing() -> None:
    from postback.cli import _since

    assert _since(None) is None
    assert _since("2026-01-01T00:00:00Z") == 1767225600000
    with pytest.raises(Exception, match="ISO date"):
        _since("whenever")


def test_demo_with_the_five_plugins_skips_where_a_vendor_cannot_use_an_event() -> None:
    for plugin in ("postback_applovin", "postback_mobana", "postback_tonai", "postback_whop"):
        pytest.importorskip(plugin)
    pytest.importorskip("postback_x")
    import io

    from rich.console import Console

    from postback.demo import run_demo

    out = io.StringIO()
    figures = run_demo(Console(file=out, width=200), n_events=40)
    assert set(figures) >= {"applovin", "mobana", "tonai", "whop", "x"}
    assert all(f["delivered"] > 0 and f["pending"] == 0 for f in figures.values())
    assert figures["x"]["skipped"] > 0 and figures["mobana"]["skipped"] > 0  # web shoppers
    text = out.getvalue()
    assert "skipped at track()" in text and "no device id" in text and "no install id" in text


@pytest.mark.parametrize(
    "args",
    [
        ("deadletters", "list", "--limit", str(2**70)),
        ("deadletters", "show", str(2**70)),
        ("replay", "--id", str(2**70)),
        ("deadletters", "list", "--limit", "0"),
    ],
)
def test_an_out_of_range_dead_letter_id_or_limit_is_a_usage_error(
    config_file: Path, args: tuple[str, ...]
) -> None:
    code, out = run(*args, "--config", str(config_file))
    assert code == 2, out
    assert "Invalid value" in out and "range" in out


def test_validate_reports_a_line_that_is_not_utf8_and_goes_on(
    config_file: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b'{"name": "sign_up", "user": {"email": "caf\xe9@b.co"}}\n'
        b'{"name": "sign_up", "user": {"email": "a@b.co"}}\n'
    )
    code, out = run("validate", str(events), "--config", str(config_file))
    assert code == 1, out
    assert "line 1: not JSON" in out and "UTF-8" in out
    assert "1 of 2 events valid" in out


def test_plugins_with_a_vendors_key_that_is_not_a_table(
    tmp_path: Path, example_installed: None
) -> None:
    config = tmp_path / "postback.toml"
    config.write_text("vendors = 3\n")
    code, out = run("plugins", "--config", str(config))
    assert code == 0, out
    assert "example" in out and "installed (not in config)" in out


@pytest.mark.parametrize("command", [["queue", "stats"], ["send", "sign_up", "--dry-run"]])
def test_a_postback_key_that_is_not_a_table_is_a_config_error(
    tmp_path: Path, example_installed: None, command: list[str]
) -> None:
    config = tmp_path / "postback.toml"
    config.write_text("postback = 3\n")
    code, out = run(*command, "--config", str(config))
    assert code == 2, out
    assert "postback: must be a table" in out


def test_send_with_a_timestamp_of_non_ascii_digits_is_an_event_problem(
    config_file: Path,
) -> None:
    args = ["sign_up", "-u", "email=a@b.co", "--timestamp", "²", "--dry-run"]
    code, out = run("send", *args, "--config", str(config_file))
    assert code == 1, out
    assert "timestamp" in out


def test_queue_commands_with_a_vendor_setting_in_the_environment(
    config_file: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue commands build no vendor (or only those replayed to): a POSTBACK_VENDORS__*
    variable must not make one from itself alone, missing the file's settings."""
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    monkeypatch.setenv("POSTBACK_VENDORS__EXAMPLE__TIMEOUT", "5")
    for command in (["queue", "stats"], ["deadletters", "list"], ["erase", "--email", "x@b.co"]):
        code, out = run(*command, "--config", str(config_file))
        assert code == 0, out
        assert "required setting is missing" not in out
    code, out = run("replay", "--timeout", "5", "--config", str(config_file))
    # Replayed (the vendor built), and refused again by it: exit 1.
    assert code == 1 and "replaying 1 event(s) to example" in out, out
    assert "required setting is missing" not in out


def test_replay_in_a_deployment_configured_by_the_environment_alone(
    tmp_path: Path, sandbox: Sandbox, example_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file: every setting from POSTBACK_* variables (docs/how-to/environment.md)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTBACK_CONFIG", raising=False)
    monkeypatch.setenv("POSTBACK_QUEUE", f"sqlite:///{tmp_path}/q.db")
    monkeypatch.setenv("POSTBACK_VENDORS__EXAMPLE__API_KEY", "sandbox-example-key")
    monkeypatch.setenv("POSTBACK_VENDORS__EXAMPLE__BASE_URL", sandbox.base_url("example"))
    t = Tracker.from_config()
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    code, out = run("queue", "stats")
    assert code == 0 and "example" in out, out
    code, out = run("replay", "--timeout", "5")
    # Replayed (not refused for want of a table), and refused again by the vendor: exit 1.
    assert code == 1 and "replaying 1 event(s) to example" in out, out
    assert "dead-lettered again: example 1" in out, out


def test_what_a_command_fixes_wins_over_the_environment(
    config_file: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/how-to/environment.md: the app has POSTBACK_WORKERS=false and 'postback worker'
    runs with the same variables. The worker (and send) must still deliver, a dry run still
    use no real queue, and the queue commands still deliver nothing."""
    from postback.cli._shared import queue_tracker, tracker_for
    from postback.delivery.mode import DeliveryMode

    monkeypatch.setenv("POSTBACK_WORKERS", "false")
    worker = tracker_for(config_file, workers=True)  # what 'postback worker' builds
    try:
        assert worker.mode is DeliveryMode.THREADS
    finally:
        worker.close(timeout=0)
    args = ["sign_up", "-u", "email=a@b.co", "--timeout", "5"]
    code, out = run("send", *args, "--config", str(config_file))
    assert code == 0, out
    assert len(sandbox.received("example")) == 1
    monkeypatch.setenv("POSTBACK_WORKERS", "true")
    reader, _ = queue_tracker(config_file, workers=False)
    try:
        assert reader.mode is DeliveryMode.ENQUEUE_ONLY
    finally:
        reader.close(timeout=0)
    monkeypatch.setenv("POSTBACK_QUEUE", "sqlite:///never-made.db")
    dry = tracker_for(config_file, queue="memory://")
    try:
        assert dry.queue.url == "memory://"
    finally:
        dry.close(timeout=0)


@pytest.mark.parametrize("workers", ["process", "true", "false"])
def test_dry_run_and_validate_whatever_the_workers_setting(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    """They swap in a memory:// queue, which workers = "process" cannot deliver from: the
    config is valid, and they deliver nothing, so the setting must not make them fail."""
    monkeypatch.setenv("POSTBACK_WORKERS", workers)
    code, out = run(
        "send", "sign_up", "-u", "email=a@b.co", "--dry-run", "--config", str(config_file)
    )
    assert code == 0, out
    events = tmp_path / "events.jsonl"
    events.write_text('{"name": "sign_up", "user": {"email": "a@b.co"}}\n')
    code, out = run("validate", str(events), "--config", str(config_file))
    assert code == 0 and "1 of 1 events valid" in out, out


def test_replay_of_an_id_that_is_no_dead_letter_fails(config_file: Path) -> None:
    """``replay --id 99`` with no dead letter 99 (a typo, or one replayed already) said
    "nothing to replay" and exited 0, so a script took it for done. It names the id and exits
    1, as ``deadletters show 99`` does, and replays none of the others given with it."""
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    code, out = run("replay", "--id", "99", "--config", str(config_file))
    assert code == 1, out
    assert "no dead letter 99" in out and "deadletters list" in out
    code, out = run("replay", "--id", "1", "--id", "99", "--timeout", "5", "-c", str(config_file))
    assert code == 1 and "no dead letter 99" in out and "nothing was replayed" in out, out
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert "neg-1" in out, out


def test_deadletters_list_masks_personal_data_in_reasons(config_file: Path) -> None:
    """A vendor's refusal may quote what it refused (an email, a phone, an IP): ``deadletters
    show`` and the dashboard mask it in the reason; ``deadletters list`` printed it whole."""
    import sqlite3

    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    reason = "invalid email jane.doe@example.com from 203.0.113.7"
    with sqlite3.connect(config_file.parent / "queue.db") as db:
        db.execute("UPDATE dead_letters SET reason = ?", (reason,))
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert code == 0 and "neg-1" in out, out
    assert "jane.doe@example.com" not in out and "203.0.113.7" not in out, out
    code, out = run("deadletters", "show", "1", "--config", str(config_file))
    assert "jane.doe@example.com" not in out, out


def test_deadletters_keep_configured_and_labelled_vendor_ids_in_reasons(
    config_file: Path,
) -> None:
    """``deadletters list`` and ``show`` (and the dashboard) showed ``app_id 9•••••99``: every
    seven digits were masked as a phone number, the vendor's own configured ids too. Those
    are kept; a phone number or email beside them is still masked."""
    import sqlite3

    from postback.dashboard.views import dead_letter_page, dead_letters_page

    config_file.write_text(config_file.read_text() + 'account = "424242424242"\n')
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    reason = (
        "account 424242424242: no app for app_id 987654399; "
        "refused +1 415 555 0100, jane.doe@example.com"
    )
    with sqlite3.connect(config_file.parent / "queue.db") as db:
        db.execute("UPDATE dead_letters SET reason = ?", (reason,))
    try:
        (letter,) = dead_letters_page(t, None)["letters"]
        page = dead_letter_page(t, letter["id"])
        assert page is not None
        shown = [letter["reason"], page["letter"]["reason"]]
    finally:
        t.close()
    for args in (("deadletters", "list"), ("deadletters", "show", "1")):
        code, out = run(*args, "--config", str(config_file))
        assert code == 0, out
        shown.append(" ".join(out.split()))
    for out in shown:
        assert "424242424242" in out and "app_id 987654399" in out, out
        assert "555 0100" not in out and "jane.doe@example.com" not in out, out


def test_status_needs_no_vendor_secret(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``postback status`` reads the delivery ledger only, like ``queue stats`` and
    ``deadletters``: it refused with "environment variable EXAMPLE_KEY is not set" (exit 2) in
    a shell without the vendors' secrets, where an operator looks an event up."""
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, event_id="ok-1")
    t.flush(timeout=5)
    t.close()
    monkeypatch.delenv("EXAMPLE_KEY")
    code, out = run("status", "ok-1", "--config", str(config_file))
    assert code == 0, out
    assert "event ok-1" in out and "example: delivered" in out, out


@pytest.mark.timeout(20)
@pytest.mark.parametrize("value", ["nan", "NaN"])
def test_send_refuses_a_timeout_that_is_not_a_number(config_file: Path, value: str) -> None:
    """``send --timeout nan`` was taken, and a NaN deadline never passes: with the vendor
    unreachable the command waited forever. It is a usage error (exit 2), nothing sent."""
    text = re.sub(r'base_url = ".*"', 'base_url = "http://127.0.0.1:1"', config_file.read_text())
    config_file.write_text(text.replace("max_attempts = 2", "max_attempts = 1000"))
    code, out = run(
        "send", "sign_up", "--user", "email=a@b.co", "--timeout", value,
        "--config", str(config_file),
    )  # fmt: skip
    assert code == 2, out
    assert "--timeout" in out and "tracked" not in out, out


def test_replay_refuses_a_timeout_that_is_not_a_number(config_file: Path) -> None:
    """``replay --timeout nan`` was taken and its wait skipped (NaN compares false): the dead
    letters were requeued and the command said "still pending" at once. A usage error now,
    before anything is requeued."""
    code, out = run("replay", "--timeout", "nan", "--config", str(config_file))
    assert code == 2, out
    assert "--timeout" in out and "replaying" not in out, out


@pytest.mark.timeout(20)
@pytest.mark.parametrize("value", ["nan", "-1"])
def test_worker_refuses_a_stats_interval_that_is_not_a_number_of_seconds(
    config_file: Path, value: str
) -> None:
    """``worker --stats-every nan`` was taken and printed no stats ever (a NaN time never
    comes); ``-1`` printed them twice a second. Both are usage errors, before any delivery."""
    code, out = run("worker", "--stats-every", value, "--config", str(config_file))
    assert code == 2, out
    assert "--stats-every" in out, out


def test_status_with_the_queue_unreachable_exits_1_as_queue_stats_does(
    config_file: Path,
) -> None:
    """A queue that cannot be reached is no config error: ``queue stats`` and ``deadletters``
    exit 1 saying so, ``status`` exited 2 (what a script reads as "fix the config")."""
    pytest.importorskip("redis")
    text = config_file.read_text().replace("sqlite://queue.db", "redis://127.0.0.1:1/0")
    config_file.write_text(text)
    for args in (("queue", "stats"), ("status", "ev-1")):
        code, out = run(*args, "--config", str(config_file))
        assert code == 1, (args, out)
        assert "error: cannot reach Redis" in out, out


def test_replay_to_a_disabled_vendor_is_refused_and_leaves_the_dead_letters(
    config_file: Path,
) -> None:
    """With ``enabled = false`` the replay moved the dead letters back to the queue, showed
    1/1 done and exited 0, but nothing delivers to a disabled vendor: the events sat in the
    queue and were gone from ``deadletters list``. It is refused now, replaying nothing."""
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    config_file.write_text(config_file.read_text() + "enabled = false\n")
    code, out = run("replay", "--timeout", "5", "--config", str(config_file))
    assert code == 2, out
    assert "example is disabled (enabled = false)" in out and "nothing was replayed" in out
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert "neg-1" in out, out
    code, out = run("replay", "--id", "1", "--timeout", "5", "--config", str(config_file))
    assert code == 2 and "example is disabled" in out, out


def test_replay_of_an_id_that_vendor_or_since_leaves_out_fails(config_file: Path) -> None:
    """``replay --id 1 --vendor other`` (or with a ``--since`` after dead letter 1 failed)
    said "nothing to replay" and exited 0, so a script took dead letter 1 for replayed. The
    id and the option that leaves it out are named, exit 1, and nothing is replayed."""
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    code, out = run("replay", "--id", "1", "--vendor", "other", "-c", str(config_file))
    assert code == 1, out
    assert "dead letter 1 is for example, not --vendor other" in out, out
    assert "nothing was replayed" in out
    future = "2099-01-01T00:00Z"
    code, out = run("replay", "--id", "1", "--since", future, "-c", str(config_file))
    assert code == 1, out
    assert "dead letter 1 failed before --since" in out and "nothing was replayed" in out, out
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert "neg-1" in out, out


@pytest.mark.parametrize("how", ["file", "environment"])
def test_replay_delivers_itself_where_the_app_runs_with_workers_false(
    config_file: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """docs/how-to/replay.md: with no worker delivering from the queue, the command delivers
    the dead letters itself. With the deployment's ``workers = false`` (web processes that
    only enqueue) it delivered nothing, waited out ``--timeout`` and said "still pending"."""
    sandbox.set_fault("example", status=503, count=2)  # max_attempts = 2: out of retries
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, event_id="outage-1")
    t.flush(timeout=5)
    t.close()
    if how == "file":
        config_file.write_text(
            config_file.read_text().replace("[postback]\n", "[postback]\nworkers = false\n")
        )
    else:
        monkeypatch.setenv("POSTBACK_WORKERS", "false")
    code, out = run("replay", "--timeout", "10", "--config", str(config_file))
    assert code == 0, out
    assert "replaying 1 event(s) to example" in out
    assert [e["event_id"] for e in sandbox.received("example")] == ["outage-1"]


def test_a_misspelt_canonical_event_in_events_is_a_warning(config_file: Path) -> None:
    """``events = ["purchse"]`` for a vendor that takes custom events passed ``config check``
    and ``doctor`` in silence, and the vendor never got a purchase (with another vendor routing
    purchases, not even the runtime's "no vendor routes" warning said so)."""
    config_file.write_text(config_file.read_text() + 'events = ["purchse", "sign_up"]\n')
    code, out = run("config", "check", "--config", str(config_file))
    assert code == 0, out
    assert "warning: vendors.example.events: 'purchse' is no canonical event" in out, out
    assert "did you mean 'purchase'?" in out
    code, out = run("doctor", "--config", str(config_file))
    assert "'purchse' is no canonical event" in out, out
    config_file.write_text(config_file.read_text().replace('"purchse", ', '"my_promo", '))
    code, out = run("config", "check", "--config", str(config_file))
    assert code == 0 and "no canonical event" not in out, out  # an event of the app's own


def test_replay_leaves_the_events_the_vendor_s_events_filter_no_longer_takes(
    config_file: Path, sandbox: Sandbox
) -> None:
    """``replay`` sent every dead letter, also the events the vendor's ``events`` filter had
    since been changed to leave out: a vendor got what it is no longer configured to receive.
    Those stay dead letters, counted and named; an ``--id`` of one is refused (exit 1)."""
    sandbox.set_fault("example", status=422, count=3)
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, event_id="s-1")
    t.track("sign_up", user={"email": "a@b.co"}, event_id="s-2")
    t.track("purchase", user={"email": "a@b.co"}, value=5, currency="USD", event_id="p-1")
    t.flush(timeout=5)
    dead = {d.event_id: d.id for d in t.queue.dead_letters()}
    t.close()
    assert set(dead) == {"s-1", "s-2", "p-1"}
    sandbox.clear_faults()
    config_file.write_text(config_file.read_text() + 'events = ["purchase"]\n')
    code, out = run("replay", "--id", str(dead["s-1"]), "-c", str(config_file))
    assert code == 1, out
    flat = " ".join(out.split())
    assert f"dead letter {dead['s-1']} is a sign_up event" in flat, out
    assert "[vendors.example] events" in flat and "nothing was replayed" in flat, out
    code, out = run("replay", "--timeout", "5", "--config", str(config_file))
    assert code == 0, out
    flat = " ".join(out.split())
    assert "replaying 1 event(s) to example" in flat, out
    assert "left 2 dead letter(s) that [vendors.example] events no longer takes" in flat, out
    assert "(sign_up 2)" in flat, out
    assert [e.get("event_id") for e in sandbox.received("example")] == ["p-1"]
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert "s-1" in out and "s-2" in out and "p-1" not in out, out
    code, out = run("replay", "--timeout", "5", "--config", str(config_file))
    assert code == 0 and "nothing to replay" in out and "(sign_up 2)" in out, out

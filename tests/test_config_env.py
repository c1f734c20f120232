"""Issue 18 item 3: declarative core settings, limits-parsed rate limits, and POSTBACK_*
environment overrides (typed like the file's values, env over file, errors naming the variable,
secrets never shown)."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from postback import ConfigError
from postback.config import (
    CORE_HELP,
    CoreSettings,
    OnInvalid,
    SqliteSynchronous,
    Workers,
    build_config,
    env_name,
    parse_rate_limit,
)
from postback.delivery.mode import DeliveryMode
from postback.destination import RateLimit
from postback.testing.example import ExampleDestination

DESTS = {"example": ExampleDestination}
FILE = {"postback": {"queue": "memory://"}, "vendors": {"example": {"api_key": "file-key"}}}


def problems(raw: dict, environ: dict[str, str]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        build_config(raw, DESTS, environ=environ)
    return {p.path: p.message for p in info.value.problems}


def test_core_settings_are_enums_and_workers_keeps_its_meaning() -> None:
    core = CoreSettings(workers=True, on_invalid="log", sqlite_synchronous="full")  # type: ignore[arg-type]
    assert core.workers is Workers.THREAD and core.workers == "thread"
    assert core.on_invalid is OnInvalid.LOG and core.sqlite_synchronous is SqliteSynchronous.FULL
    assert CoreSettings(workers=False).workers is Workers.OFF  # type: ignore[arg-type]
    assert CoreSettings(workers="off").workers is Workers.OFF  # type: ignore[arg-type]
    assert attrs.evolve(core, workers="process").workers is Workers.PROCESS  # type: ignore[arg-type]
    assert DeliveryMode.from_workers(Workers.THREAD) is DeliveryMode.THREADS
    assert DeliveryMode.from_workers(Workers.OFF) is DeliveryMode.ENQUEUE_ONLY
    assert DeliveryMode.from_workers(Workers.PROCESS) is DeliveryMode.PROCESS
    with pytest.raises(ValueError, match="must be 'auto'"):
        CoreSettings(workers="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="from 0"):
        CoreSettings(process_nice=40)


def test_every_core_problem_at_once_with_its_key_path() -> None:
    found = problems(
        {
            "postback": {
                "sqlite_synchronous": "fulll",
                "strict": "yes",
                "exit_timeout": "forever",
                "max_queue_size": 0,
                "ledger_retention": -1,
            }
        },
        {},
    )
    assert found == {
        "postback.sqlite_synchronous": "must be 'normal' or 'full' (did you mean 'full'?)",
        "postback.strict": "must be true or false",
        "postback.exit_timeout": (
            "must be a duration such as 30, '500ms', '15m' or '24h', got 'forever'"
        ),
        "postback.max_queue_size": "must be a positive integer",
        "postback.ledger_retention": "must not be negative",
    }


def test_rate_limits_are_read_by_limits() -> None:
    assert parse_rate_limit("600/minute") == RateLimit(600, 60)
    assert parse_rate_limit("10 per 2 seconds") == RateLimit(10, 2)
    assert parse_rate_limit("5/2s") == RateLimit(5, 2)
    assert parse_rate_limit("60000 per 15m") == RateLimit(60000, 900)
    assert parse_rate_limit("100/hour") == RateLimit(100, 3600)
    with pytest.raises(ValueError, match="one limit"):
        parse_rate_limit("600/minute;10/second")
    for bad in ("0/minute", "10/fortnight", "10/500ms", "1/400 days"):
        with pytest.raises(ValueError, match="must look like"):
            parse_rate_limit(bad)


def test_environment_overrides_win_over_the_file_typed_like_it() -> None:
    cfg = build_config(
        FILE,
        DESTS,
        environ={
            "POSTBACK_WORKERS": "false",
            "POSTBACK_EXIT_TIMEOUT": "5s",
            "POSTBACK_MAX_QUEUE_SIZE": "50",
            "POSTBACK_STRICT": "true",
            "POSTBACK_VENDORS__EXAMPLE__API_KEY": "0123",  # a string setting: text as it is
            "POSTBACK_VENDORS__EXAMPLE__ACCOUNT": "007",
            "POSTBACK_VENDORS__EXAMPLE__EVENTS": "purchase, sign_up",
            "POSTBACK_VENDORS__EXAMPLE__RATE_LIMIT": "10/second",
            "POSTBACK_VENDORS__EXAMPLE__RETRY__MAX_AGE": "2h",
            "POSTBACK_CONSENT__POLICY": "require",
        },
    )
    assert cfg.core.workers is Workers.OFF
    assert cfg.core.exit_timeout == 5.0 and cfg.core.max_queue_size == 50 and cfg.core.strict
    assert cfg.core.queue == "memory://"  # from the file: no variable set it
    vc = cfg.vendors["example"]
    assert vc.settings.api_key.reveal() == "0123" and vc.settings.account == "007"
    assert vc.events == frozenset({"purchase", "sign_up"})
    assert vc.rate_limit == RateLimit(10, 1)
    assert vc.retry is not None and vc.retry.max_age == 7200
    assert cfg.consent.policy == "require"
    assert cfg.from_env["postback.workers"] == "POSTBACK_WORKERS"
    assert cfg.from_env["vendors.example.api_key"] == "POSTBACK_VENDORS__EXAMPLE__API_KEY"
    # What a worker process rebuilds from: the overrides laid over the file.
    assert cfg.raw["postback"] == {
        "queue": "memory://",
        "workers": False,
        **{"exit_timeout": "5s", "max_queue_size": 50, "strict": True},
    }
    assert FILE["postback"] == {"queue": "memory://"}  # the caller's mapping is left alone


def test_the_delivery_child_keeps_what_its_parent_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import postback.testing.example as example
    from postback import Tracker
    from postback.delivery.spec import tracker_spec

    raw = {
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db", "workers": True},
        "vendors": {"example": {"api_key": "k", "base_url": "http://127.0.0.1:9"}},
    }
    parent = Tracker.from_raw(
        raw,
        plugins=[example],
        load_entry_points=False,
        environ={"POSTBACK_EXIT_TIMEOUT": "7", "POSTBACK_VENDORS__EXAMPLE__TIMEOUT": "3"},
    )
    try:
        spec = tracker_spec(parent.config, parent.queue.url, parent.host)
    finally:
        parent.close(timeout=0)
    # The child inherits the environment; an override there must not undo what the parent
    # fixed for it (threads in the child, the queue's absolute path).
    monkeypatch.setenv("POSTBACK_WORKERS", "process")
    monkeypatch.setenv("POSTBACK_QUEUE", "memory://")
    child = Tracker.from_raw(spec.raw, **spec.build_args())  # as the child builds itself
    try:
        assert child.mode is DeliveryMode.THREADS
        assert child.config.core.queue == f"sqlite:///{tmp_path}/q.db"
        assert child.config.core.exit_timeout == 7.0  # the parent's overrides hold
        assert child.config.vendors["example"].timeout == 3.0
    finally:
        child.close(timeout=0)


def test_a_vendor_can_come_from_the_environment_alone() -> None:
    cfg = build_config(
        {"postback": {"queue": "memory://"}},
        DESTS,
        environ={
            "POSTBACK_VENDORS__EXAMPLE__API_KEY": "k",
            "POSTBACK_VENDORS__EXAMPLE__EVENTS": '["purchase"]',
        },
    )
    assert cfg.vendors["example"].events == frozenset({"purchase"})


def test_other_postback_variables_are_not_settings() -> None:
    cfg = build_config(
        FILE,
        DESTS,
        environ={
            "POSTBACK_CONFIG": "elsewhere.toml",
            "POSTBACK_DISABLE_PLUGINS": "*",
            "POSTBACK_ENCRYPTION_KEYS": "k1:abc",
            "POSTBACK_HYPOTHESIS_EXAMPLES": "5",
            "POSTBACK_SOMETHING__ELSE": "x",
        },
    )
    assert cfg.from_env == {}
    reserved = {"config", "disable_plugins", "encryption_keys", "plugins", "request_context"}
    assert not reserved & set(CORE_HELP)


def test_a_bad_override_names_its_key_and_its_variable() -> None:
    found = problems(
        FILE,
        {
            "POSTBACK_WORKERS": "sometimes",
            "POSTBACK_VENDORS__EXAMPLE__TIMEOUT": "0",
            "POSTBACK_VENDORS__EXAMPLE__ACOUNT": "a",
            "POSTBACK_VENDORS__EXAMPLE__API_KEY": "line\n",
        },
    )
    assert found["postback.workers"].endswith("(set by POSTBACK_WORKERS)")
    assert "must be 'auto'" in found["postback.workers"]
    assert "more than 0" in found["vendors.example.timeout"]
    assert found["vendors.example.timeout"].endswith("(set by POSTBACK_VENDORS__EXAMPLE__TIMEOUT)")
    assert "did you mean 'account'" in found["vendors.example.acount"]
    assert "POSTBACK_VENDORS__EXAMPLE__API_KEY" in found["vendors.example.api_key"]
    assert "line break" in found["vendors.example.api_key"]


def test_env_name_is_the_variable_of_a_key_path() -> None:
    assert env_name("postback.queue") == "POSTBACK_QUEUE"
    assert env_name("vendors.applovin.api_key") == "POSTBACK_VENDORS__APPLOVIN__API_KEY"
    assert env_name("vendors.example.retry.max_age") == "POSTBACK_VENDORS__EXAMPLE__RETRY__MAX_AGE"


def test_config_check_names_overrides_and_never_shows_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postback.cli import main
    from tests._distributions import add_entry_point_dist

    add_entry_point_dist(
        monkeypatch, tmp_path / "site", "postback-example", {"example": "postback.testing.example"}
    )
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "mobana,x,whop,tonai,applovin")
    path = tmp_path / "postback.toml"
    path.write_text('[postback]\nqueue = "memory://"\n\n[vendors.example]\napi_key = "file-key"\n')
    monkeypatch.setenv("POSTBACK_VENDORS__EXAMPLE__API_KEY", "env-secret-value")
    monkeypatch.setenv("POSTBACK_EXIT_TIMEOUT", "3")
    monkeypatch.setenv("POSTBACK_WORKERS", "true")
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["config", "check", "-c", str(path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "env-secret-value" not in out and "file-key" not in out
    assert "*** (from POSTBACK_VENDORS__EXAMPLE__API_KEY)" in out
    assert "3.0 (from POSTBACK_EXIT_TIMEOUT)" in out
    assert "thread (from POSTBACK_WORKERS)" in out


def test_plugins_counts_a_vendor_the_environment_configures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postback.cli import main
    from tests._distributions import add_entry_point_dist

    add_entry_point_dist(
        monkeypatch, tmp_path / "site", "postback-example", {"example": "postback.testing.example"}
    )
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "mobana,x,whop,tonai,applovin")
    path = tmp_path / "postback.toml"
    path.write_text('[postback]\nqueue = "memory://"\n')
    runner = CliRunner(env={"COLUMNS": "200"})
    out = runner.invoke(main, ["plugins", "-c", str(path)]).output
    assert "installed (not in config)" in out
    monkeypatch.setenv("POSTBACK_VENDORS__EXAMPLE__API_KEY", "k")
    out = runner.invoke(main, ["plugins", "-c", str(path)]).output
    assert "enabled" in out and "not in config" not in out


def test_every_common_vendor_problem_at_once() -> None:
    found = problems(
        {
            "postback": {"queue": "memory://"},
            "vendors": {
                "example": {
                    "api_key": "k",
                    "events": "purchase",
                    "concurrency": 999,
                    "retry": {"max_agee": 1, "max_attempts": 0},
                    "purposes": ["nope"],
                    "batch_size": 500,
                    "rate_limit": "10/500ms",
                }
            },
        },
        {},
    )
    assert list(found) == [
        "vendors.example.events",
        "vendors.example.concurrency",
        "vendors.example.retry.max_agee",
        "vendors.example.retry.max_attempts",
        "vendors.example.purposes",
        "vendors.example.batch_size",
        "vendors.example.rate_limit",
    ]
    assert "did you mean 'max_age'" in found["vendors.example.retry.max_agee"]
    assert "unknown purpose(s) 'nope'" in found["vendors.example.purposes"]
    assert "at most 50" in found["vendors.example.batch_size"]


def _only_env(monkeypatch: pytest.MonkeyPatch, where: Path, **variables: str) -> None:
    """Run in ``where`` (no config file there) with exactly these POSTBACK_* variables."""
    import os

    for var in list(os.environ):
        if var.startswith("POSTBACK_"):
            monkeypatch.delenv(var)
    for var, value in variables.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(where)


def test_the_environment_alone_is_a_whole_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import postback.testing.example as example
    from postback import Tracker
    from postback.config.loading import ENV_SOURCE
    from postback.sandbox import Sandbox
    from postback.testing.example import ExampleEmulator

    with Sandbox([ExampleEmulator()]) as sandbox:
        _only_env(
            monkeypatch,
            tmp_path,
            POSTBACK_QUEUE=f"sqlite:///{tmp_path}/q.db",
            POSTBACK_WORKERS="true",
            POSTBACK_VENDORS__EXAMPLE__API_KEY=sandbox.vendor_config("example")["api_key"],
            POSTBACK_VENDORS__EXAMPLE__BASE_URL=sandbox.base_url("example"),
        )
        assert not list(tmp_path.iterdir())  # no postback.toml, no pyproject.toml
        with Tracker.from_config(plugins=[example], load_entry_points=False) as t:
            assert t.config.source == ENV_SOURCE
            assert t.config.from_env["vendors.example.api_key"] == (
                "POSTBACK_VENDORS__EXAMPLE__API_KEY"
            )
            assert t.queue.url.endswith("q.db") and list(t.destinations) == ["example"]
            t.track("sign_up", user={"email": "a@x.co"}, event_id="from-env")
            assert t.flush(timeout=20).complete
        assert [r["event_id"] for r in sandbox.received("example")] == ["from-env"]


def test_no_file_and_no_settings_in_the_environment_names_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postback import Tracker

    # Variables that are not settings do not make a config.
    _only_env(monkeypatch, tmp_path, POSTBACK_DISABLE_PLUGINS="*", POSTBACK_OTHER_TOOL="1")
    with pytest.raises(ConfigError) as info:
        Tracker.from_config(load_entry_points=False)
    message = str(info.value)
    assert "no configuration found" in message
    assert "POSTBACK_CONFIG" in message and "postback.toml" in message  # a file
    assert "POSTBACK_* environment variables" in message and "POSTBACK_QUEUE" in message
    assert "docs/how-to/environment.md" in message


def test_a_named_file_must_exist_even_with_settings_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postback import Tracker

    missing = tmp_path / "postback.prod.toml"
    _only_env(monkeypatch, tmp_path, POSTBACK_CONFIG=str(missing), POSTBACK_QUEUE="memory://")
    with pytest.raises(ConfigError, match="does not exist"):
        Tracker.from_config(load_entry_points=False)
    with pytest.raises(ConfigError, match="does not exist"):
        Tracker.from_config(missing, load_entry_points=False)


def test_config_check_and_plugins_read_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postback.cli import main
    from tests._distributions import add_entry_point_dist

    add_entry_point_dist(
        monkeypatch, tmp_path / "site", "postback-example", {"example": "postback.testing.example"}
    )
    work = tmp_path / "app"
    work.mkdir()
    _only_env(
        monkeypatch,
        work,
        POSTBACK_DISABLE_PLUGINS="mobana,x,whop,tonai,applovin",
        POSTBACK_QUEUE="memory://",
        POSTBACK_VENDORS__EXAMPLE__API_KEY="env-secret-value",
    )
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(main, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "ok: the environment (POSTBACK_* variables)" in result.output
    assert "*** (from POSTBACK_VENDORS__EXAMPLE__API_KEY)" in result.output
    assert "env-secret-value" not in result.output
    out = runner.invoke(main, ["plugins"]).output
    assert "enabled" in out and "not in config" not in out


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("sk-live-7f3c9e21b4d86a05\u00a0", "U+00A0 NO-BREAK SPACE (at the end)"),
        ("sk-live-7f3c\u200b9e21b4d86a05", "U+200B ZERO WIDTH SPACE (inside it, after 12"),
        ("\ufeffsk-live-7f3c9e21b4d86a05", "U+FEFF ZERO WIDTH NO-BREAK SPACE (at the start)"),
        ("sk-live-7f3c\udca09e21", "a byte that is not UTF-8 text (inside it"),
    ],
)
def test_a_secret_with_an_invisible_or_undecodable_character_is_refused(
    key: str, named: str
) -> None:
    """A key pasted with an invisible character, or read from a variable in another encoding,
    cannot be sent in a header: refused at start-up, naming the character and where it is,
    never the value (it used to be accepted, and every event was dead-lettered)."""
    found = problems(FILE, {"POSTBACK_VENDORS__EXAMPLE__API_KEY": key})
    message = found["vendors.example.api_key"]
    assert named in message and "copy the key again" in message
    assert "(set by POSTBACK_VENDORS__EXAMPLE__API_KEY)" in message
    assert "7f3c" not in message and "e21" not in message


def test_a_secret_from_a_variable_with_bytes_not_utf8_is_refused_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    monkeypatch.setattr(os, "environ", dict(os.environ))  # a private copy to write bytes into
    os.environ["EXAMPLE_KEY"] = b"sk-live-7f3c\xa0".decode("utf-8", "surrogateescape")
    raw = {
        "postback": {"queue": "memory://"},
        "vendors": {"example": {"api_key": "${EXAMPLE_KEY}"}},
    }
    with pytest.raises(ConfigError) as info:
        build_config(raw, DESTS, environ=os.environ)
    assert "not UTF-8 text" in str(info.value) and "7f3c" not in str(info.value)


def test_a_secret_put_by_mistake_in_another_setting_is_not_quoted_in_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``timeout = "${API_KEY}"`` (a line copied from the one above) is refused naming the
    key, without the value the variable holds; a short value (a port) is still quoted."""

    def timeout_problem(value: str) -> str:
        monkeypatch.setenv("EXAMPLE_VALUE", value)
        vendor = {"api_key": "file-key", "timeout": "${EXAMPLE_VALUE}"}
        raw = {"postback": {"queue": "memory://"}, "vendors": {"example": vendor}}
        with pytest.raises(ConfigError) as info:
            build_config(raw, DESTS)
        assert [p.path for p in info.value.problems] == ["vendors.example.timeout"]
        return str(info.value)

    assert "10 sx" in timeout_problem("10 sx")  # short: quoted, as without a variable
    refused = timeout_problem("TOPSECRETvalue987")
    assert "TOPSECRET" not in refused and "value987" not in refused


def test_a_variable_holding_a_dollar_brace_means_the_same_to_the_delivery_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``${NAME}`` is not expanded in a variable's value (docs/reference/config.md), and the
    delivery child is handed the settings its parent resolved: it must not expand it either."""
    monkeypatch.setenv("OTHER", "something-else")
    environ = {
        "POSTBACK_VENDORS__EXAMPLE__API_KEY": "p${OTHER}q",
        "POSTBACK_VENDORS__EXAMPLE__EVENTS": '["purchase", "${OTHER}"]',
        "POSTBACK_VENDORS__EXAMPLE__ACCOUNT": "${UNSET_IN_THIS_TEST}",
    }
    raw = {"postback": {"queue": "memory://"}, "vendors": {"example": {"api_key": "k"}}}
    with pytest.raises(ConfigError) as info:  # "${OTHER}" is no event name, said as such
        build_config(raw, DESTS, environ=environ)
    assert [p.path for p in info.value.problems] == ["vendors.example.events"]
    del environ["POSTBACK_VENDORS__EXAMPLE__EVENTS"]
    parent = build_config(raw, DESTS, environ=environ)
    child = build_config(parent.raw, DESTS, environ={})  # as the delivery child builds it
    for cfg in (parent, child):
        settings = cfg.vendors["example"].settings
        assert settings.api_key.reveal() == "p${OTHER}q"
        assert settings.account == "${UNSET_IN_THIS_TEST}"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POSTBACK_VENDORS__EXAMPLE__TIMEOUT", "TOPSECRETvalue987"),
        ("POSTBACK_VENDORS__EXAMPLE__TIMEOUT", "{ key = 'TOPSECRETvalue987' }"),
        ("POSTBACK_VENDORS__EXAMPLE__RATE_LIMIT", "TOPSECRETvalue987"),
        ("POSTBACK_EXIT_TIMEOUT", "TOPSECRETvalue987"),
        ("POSTBACK_CONSENT__POLICY", "TOPSECRETvalue987"),
        ("POSTBACK_DEFAULT_CURRENCY", "TOPSECRETvalue987"),
    ],
)
def test_a_secret_in_a_postback_variable_is_not_quoted_in_the_error(
    variable: str, value: str
) -> None:
    """A key exported under the wrong variable (the line above copied, or the wrong setting
    name) is refused naming the variable, never quoting its value, as a ``${NAME}``'s value is
    not: the error goes to logs and CI output. A short value is still quoted."""
    found = problems(FILE, {variable: value})
    [message] = found.values()
    assert f"(set by {variable})" in message
    assert "TOPSECRET" not in message and "value987" not in message
    assert "***" in message


def test_a_short_bad_value_of_a_postback_variable_is_still_quoted() -> None:
    found = problems(FILE, {"POSTBACK_VENDORS__EXAMPLE__TIMEOUT": "10 sx"})
    assert "'10 sx'" in found["vendors.example.timeout"]


@pytest.mark.parametrize(
    ("variable", "path"),
    [
        ("POSTBACK_CONSENT__GPC", "consent.gpc"),
        ("POSTBACK_VENDORS__EXAMPLE__PURPOSES", "vendors.example.purposes"),
        ("POSTBACK_VENDORS__EXAMPLE__EVENTS", "vendors.example.events"),
    ],
)
@pytest.mark.parametrize("value", ["", " ", ","])
def test_an_empty_variable_of_a_list_setting_is_refused_not_an_empty_list(
    variable: str, path: str, value: str
) -> None:
    """An empty variable is how a deployment writes one it has no value for (compose's
    ``VAR=${UNSET}``); read as ``[]`` it would turn a safeguard off in silence: Sec-GPC
    ignored, a vendor sent events whatever the consent, or sent none. It is refused, saying
    how to mean none; ``[]`` still does."""
    message = problems(FILE, {variable: value})[path]
    assert f"(set by {variable}; it is empty:" in message and "set it to [] for none" in message
    cfg = build_config(FILE, DESTS, environ={variable: "[]"})
    assert cfg.from_env[path] == variable

"""Configuration: every problem at once, with key paths and a way to fix each."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs
import pytest

import postback.testing.example as example
from postback import ConfigError, Secret, Tracker, setting
from postback.config import (
    Config,
    CoreSettings,
    build_config,
    find_config,
    parse_duration,
    parse_rate_limit,
    read_config,
)
from postback.destination import RateLimit
from postback.testing.example import ExampleDestination

DESTS = {"example": ExampleDestination}


def problems(raw: dict, **kw: object) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        build_config(raw, DESTS, **kw)  # type: ignore[arg-type]
    return [(p.path, p.message) for p in info.value.problems]


def test_a_good_config() -> None:
    cfg = build_config(
        {
            "postback": {"queue": "memory://", "default_currency": "eur", "exit_timeout": "500ms"},
            "vendors": {
                "example": {
                    "api_key": "k",
                    "rate_limit": "600/minute",
                    "events": ["Purchase", "sign_up"],
                    "retry": {"max_age": "2h", "max_attempts": 3},
                }
            },
        },
        DESTS,
    )
    assert cfg.core.default_currency == "EUR"
    assert cfg.core.exit_timeout == 0.5
    vc = cfg.vendors["example"]
    assert isinstance(vc.settings.api_key, Secret)
    assert vc.settings.api_key.reveal() == "k"
    assert vc.rate_limit == RateLimit(600, 60)
    assert vc.events == frozenset({"purchase", "sign_up"})
    assert vc.retry is not None and vc.retry.max_age == 7200 and vc.retry.max_attempts == 3


def test_every_problem_with_its_key_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXAMPLE_KEY", raising=False)
    found = problems(
        {
            "postbak": {},
            "postback": {
                "queue": "ftp://x",
                "on_invalid": "explode",
                "workerz": 1,
                "process_nice": 25,
            },
            "vendors": {
                "example": {
                    "api_key": "${EXAMPLE_KEY}",
                    "acount": "a",
                    "rate_limit": "lots",
                    "batch_size": 500,
                    "base_url": "not a url",
                },
                "applovin": {"api_key": "k"},
            },
        }
    )
    paths = [p for p, _ in found]
    assert paths == [
        "vendors.example.api_key",
        "postbak",
        "postback.queue",
        "postback.on_invalid",
        "postback.workerz",
        "postback.process_nice",
        "vendors.example.acount",
        "vendors.example.rate_limit",
        "vendors.example.batch_size",
        "vendors.example.base_url",
        "vendors.applovin",
    ]
    text = dict(found)
    assert "export EXAMPLE_KEY=" in found[0][1]
    assert "did you mean 'postback'" in text["postbak"]
    assert "did you mean 'workers'" in text["postback.workerz"]
    assert "from 0 (the app's priority) to 19" in text["postback.process_nice"]
    assert "did you mean 'account'" in text["vendors.example.acount"]
    assert "at most 50" in text["vendors.example.batch_size"]
    assert "no installed plugin provides" in text["vendors.applovin"]
    assert "pip install postback-applovin" in text["vendors.applovin"]
    assert "Installed vendors: example" in text["vendors.applovin"]


def test_missing_secret_is_reported() -> None:
    found = problems({"vendors": {"example": {"account": "a"}}})
    assert found == [("vendors.example.api_key", "required setting is missing")]


def test_env_substitution_with_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_KEY", "from-env")
    cfg = build_config(
        {"vendors": {"example": {"api_key": "${EXAMPLE_KEY}", "account": "${ACCOUNT:-acme}"}}},
        DESTS,
    )
    assert cfg.vendors["example"].settings.api_key.reveal() == "from-env"
    assert cfg.vendors["example"].settings.account == "acme"


def test_events_filter_must_be_mappable() -> None:
    class Strict(ExampleDestination):
        accepts_custom_events = False

    with pytest.raises(ConfigError, match="has no event for 'level_achieved'"):
        build_config(
            {"vendors": {"example": {"api_key": "k", "events": ["level_achieved"]}}},
            {"example": Strict},
        )


def test_secrets_never_in_errors_or_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_KEY", "super-secret-value")
    cfg = build_config({"vendors": {"example": {"api_key": "${EXAMPLE_KEY}"}}}, DESTS)
    settings = cfg.vendors["example"].settings
    assert "super-secret-value" not in repr(settings)
    assert "super-secret-value" not in repr(cfg)
    with pytest.raises(ConfigError) as info:
        build_config({"vendors": {"example": {"api_key": "${EXAMPLE_KEY}", "x": 1}}}, DESTS)
    assert "super-secret-value" not in str(info.value)


def test_toml_file_and_pyproject(tmp_path: Path) -> None:
    (tmp_path / "postback.toml").write_text(
        '[postback]\nqueue = "memory://"\n\n[vendors.example]\napi_key = "k"\n'
    )
    raw, _source, base = read_config(tmp_path / "postback.toml")
    assert raw["vendors"]["example"]["api_key"] == "k"
    assert base == tmp_path.resolve()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "app"\n\n[tool.postback]\nqueue = "memory://"\n\n'
        '[tool.postback.vendors.example]\napi_key = "k"\n'
    )
    raw, _, _ = read_config(tmp_path / "pyproject.toml")
    assert raw == {"postback": {"queue": "memory://"}, "vendors": {"example": {"api_key": "k"}}}
    t = Tracker.from_config(tmp_path / "pyproject.toml", plugins=[example], load_entry_points=False)
    assert list(t.destinations) == ["example"]
    t.close()


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "postback.toml"
    bad.write_text("[postback\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(tmp_path / "nope.toml")


def test_a_missing_relative_config_file_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: "config file 'postback.toml' does not exist", without the directory: run from
    # another directory than the file's, a newcomer could not tell why.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        read_config("postback.toml")
    message = str(info.value)
    assert str(tmp_path / "postback.toml") in message
    assert "full path" in message


def test_durations_and_rate_limits() -> None:
    assert parse_duration("15m") == 900
    assert parse_duration(2) == 2.0
    assert parse_rate_limit("60000/15 minutes") == RateLimit(60000, 900)
    assert parse_rate_limit("600 per minute") == RateLimit(600, 60)
    assert parse_rate_limit({"requests": 10, "per": "1s"}) == RateLimit(10, 1)
    with pytest.raises(ValueError):
        parse_rate_limit("fast")
    with pytest.raises(ValueError):
        parse_duration("-1")


def no_spaces(_inst: object, attribute: attrs.Attribute, value: str) -> None:  # type: ignore[type-arg]
    if " " in value:
        raise ValueError("must not contain spaces")


@attrs.frozen
class StrictSettings:
    api_key: Secret = setting(help="key", secret=True)
    mode: Literal["events", "conversions"] = setting(help="api shape", default="events")
    region: str = setting(help="region", default="eu", validator=attrs.validators.in_(["eu", "us"]))
    account: str = setting(help="account", default="a", validator=no_spaces)


class Strict(ExampleDestination):
    settings_class = StrictSettings


def test_vendor_validator_errors_keep_their_path_and_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("UNSET_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        build_config(
            {"vendors": {"example": {"api_key": "${UNSET_KEY}", "mode": "graphql"}}},
            {"example": Strict},
        )
    got = [(p.path, p.message) for p in info.value.problems]
    assert got[0][0] == "vendors.example.api_key" and "UNSET_KEY" in got[0][1]
    assert got[1:] == [
        ("vendors.example.mode", "must be one of 'events', 'conversions' (got 'graphql')")
    ]
    with pytest.raises(ConfigError) as info:
        build_config(
            {"vendors": {"example": {"api_key": "k", "region": "mars", "account": "a b"}}},
            {"example": Strict},
        )
    got = [(p.path, p.message) for p in info.value.problems]
    assert got[0][0] == "vendors.example.region" and "'mars'" in got[0][1]
    assert got[1] == ("vendors.example.account", "must not contain spaces")


def test_vendor_whole_config_checks_and_list_settings() -> None:
    @attrs.frozen
    class ListSettings:
        api_key: Secret = setting(help="key", secret=True)
        tags: list[str] = setting(help="tags", factory=list)

    class Checked(ExampleDestination):
        settings_class = ListSettings

        def check_config(self):  # type: ignore[no-untyped-def]
            for canonical, name in self.event_map.items():
                if name.startswith("bad"):
                    yield f"event_map.{canonical}", f"{name!r} is not an event this vendor knows"

    with pytest.raises(ConfigError) as info:
        build_config(
            {"vendors": {"example": {"api_key": "k", "tags": "abc"}}}, {"example": Checked}
        )
    assert [(p.path, p.message) for p in info.value.problems] == [
        ("vendors.example.tags", 'must be a list of strings, not a string: e.g. ["a", "b"]')
    ]
    with pytest.raises(ConfigError) as info:
        build_config(
            {"vendors": {"example": {"api_key": "k", "event_map": {"lead": "bad_lead"}}}},
            {"example": Checked},
        )
    assert [(p.path, p.message) for p in info.value.problems] == [
        ("vendors.example.event_map.lead", "'bad_lead' is not an event this vendor knows")
    ]


# --- issue 23 item 10: hostile durations, rate limits and paths are ConfigErrors naming the key


def _hostile(core: dict[str, Any] | None = None, vendor: dict[str, Any] | None = None) -> Any:
    cfg = {
        "postback": {"queue": "memory://", "workers": False, **(core or {})},
        "vendors": {
            "example": {"base_url": "http://127.0.0.1:9/example", "api_key": "k", **(vendor or {})}
        },
    }
    return Tracker.from_config(cfg, plugins=[example], load_entry_points=False)


@pytest.mark.parametrize(
    ("core", "vendor", "key"),
    [
        ({"exit_timeout": float("inf")}, None, "postback.exit_timeout"),
        ({"exit_timeout": float("nan")}, None, "postback.exit_timeout"),
        ({"exit_timeout": "9" * 400}, None, "postback.exit_timeout"),
        ({"exit_timeout": 10**400}, None, "postback.exit_timeout"),
        (None, {"timeout": float("nan")}, "vendors.example.timeout"),
        (None, {"timeout": float("inf")}, "vendors.example.timeout"),
        (None, {"timeout": 0}, "vendors.example.timeout"),
        (None, {"timeout": "0s"}, "vendors.example.timeout"),
        (None, {"linger": float("inf")}, "vendors.example.linger"),
        (None, {"rate_limit": {"requests": 1, "per": float("inf")}}, "vendors.example.rate_limit"),
        (None, {"rate_limit": {"requests": 1, "per": 0}}, "vendors.example.rate_limit"),
        (None, {"rate_limit": "1/" + "9" * 400 + " s"}, "vendors.example.rate_limit"),
        (None, {"retry": {"max_age": float("nan")}}, "vendors.example.retry.max_age"),
        (None, {"retry": {"max_backoff": float("inf")}}, "vendors.example.retry.max_backoff"),
        (None, {"retry": {"initial_backoff": 0}}, "vendors.example.retry.initial_backoff"),
        ({"queue": "redisfoo://x"}, None, "postback.queue"),
    ],
)
def test_hostile_values_are_config_errors_naming_the_key(
    core: dict[str, Any] | None, vendor: dict[str, Any] | None, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _hostile(core, vendor)
    assert f"{key}:" in str(info.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:0", "port"),
        ("http://127.0.0.1:http", "port"),
        ("http://user:hunter2-not-shown@127.0.0.1:8080", "user name or password"),
        ("http://127.0.0.1:8080/?a=1", "query"),
        ("http://127.0.0.1:8080/#top", "query"),
        ("ftp://127.0.0.1", "http(s) URL"),
        ("http:///path", "http(s) URL"),
        ("http://127.0.0.1:8080/a b", "whitespace"),
        ("http://[hunter2]:8080", "http(s) URL"),  # urlsplit's own error quotes the host
        ("http://[::1:8080", "http(s) URL"),
    ],
)
def test_a_base_url_that_could_not_work_is_refused_at_start(url: str, says: str) -> None:
    """Found before the first delivery, not as a day of "Connection refused" retries; the
    value is not quoted (a password in it would be shown)."""
    with pytest.raises(ConfigError) as info:
        _hostile(vendor={"base_url": url})
    text = str(info.value)
    assert "vendors.example.base_url:" in text and says in text, text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "https://sandbox.example.com/prefix/",
        "http://[::1]:65535",
        "HTTPS://Sandbox.example.com",
    ],
)
def test_a_good_base_url_is_kept(url: str) -> None:
    t = _hostile(vendor={"base_url": url})
    assert t.engine.lanes["example"].dest.base_url == url.rstrip("/")
    t.close(timeout=0)


def test_sane_durations_are_still_accepted() -> None:
    t = _hostile({"exit_timeout": 0}, {"timeout": "500ms", "rate_limit": {"requests": 5, "per": 1}})
    t.close(timeout=0)


def test_a_directory_as_config_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Tracker.from_config(tmp_path)
    assert "is a directory" in str(info.value)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "postback.toml"
    path.write_bytes(b'[postback]\nqueue = "memory://"\n# caf\xe9 in latin-1\n')
    with pytest.raises(ConfigError) as info:
        read_config(path)
    assert "UTF-8" in str(info.value)
    assert info.value.source == str(path)


@pytest.mark.parametrize("name", ["postback.toml", "pyproject.toml"])
def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path, name: str) -> None:
    """Notepad and PowerShell 5 save UTF-8 with a byte order mark; tomllib refused it with
    "Invalid statement (at line 1, column 1)", which says nothing of the invisible cause.
    The mark is not part of the text: the file is read as without it, found by the search too."""
    table = "[tool.postback]" if name == "pyproject.toml" else "[postback]"
    path = tmp_path / name
    path.write_bytes(f'\ufeff{table}\nqueue = "memory://"\n'.encode())
    raw, source, _ = read_config(path)
    assert raw["postback"] == {"queue": "memory://"} and source == str(path)
    assert find_config(tmp_path) == path


@pytest.mark.parametrize(
    "content", [b"[tool.postback\n", b"[tool.postback]\nx = '\xff'\n"], ids=["toml", "utf8"]
)
def test_an_unreadable_pyproject_found_by_the_search_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    (tmp_path / "pyproject.toml").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTBACK_CONFIG", raising=False)
    with pytest.raises(ConfigError) as info:
        read_config(None)
    assert info.value.source == str(tmp_path / "pyproject.toml")


@pytest.mark.parametrize(
    "content",
    ["tool = 1\n", '[tool]\npostback = "x"\n', '[tool.postback]\nqueue = "memory://"\n'],
    ids=["tool", "postback", "ok"],
)
def test_a_pyproject_tool_postback_that_is_not_a_table_is_a_config_error(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(content)
    if "[tool.postback]" in content:
        assert read_config(path)[0] == {"postback": {"queue": "memory://"}, "vendors": {}}
        return
    with pytest.raises(ConfigError, match="must be a table"):
        read_config(path)


@pytest.mark.parametrize("url", ["redis://u:pw-s3cret@[::1/0", "redis://u:pw-s3cret@h]:6379/0"])
def test_a_redis_queue_url_that_does_not_parse_is_a_config_error(url: str) -> None:
    pytest.importorskip("redis")
    with pytest.raises(ConfigError) as info:
        Tracker.from_config({"postback": {"queue": url}}, load_entry_points=False)
    assert [p.path for p in info.value.problems] == ["postback.queue"]
    assert "pw-s3cret" not in str(info.value)


def test_the_config_repr_does_not_show_a_queue_password() -> None:
    core = CoreSettings(queue="redis://app:pw-s3cret@db:6379/0?sentinel_password=sp-s3cret&x=1")
    shown = repr(Config(core, {}))
    assert "pw-s3cret" not in shown and "sp-s3cret" not in shown
    assert "redis://app:***@db:6379/0?sentinel_password=***&x=1" in shown
    assert "'sqlite:///tmp/q.db'" in repr(CoreSettings(queue="sqlite:///tmp/q.db"))
    assert "pw-s3cret" not in repr(CoreSettings(queue="redis://:pw-s3cret@[::1/0"))


def test_a_rate_limit_table_takes_no_boolean_request_count() -> None:
    with pytest.raises(ValueError, match="must look like"):
        parse_rate_limit({"requests": True, "per": "1s"})
    found = problems(
        {"vendors": {"example": {"api_key": "k", "rate_limit": {"requests": True, "per": 1}}}}
    )
    assert [path for path, _ in found] == ["vendors.example.rate_limit"]


@pytest.mark.parametrize("text", ["1/0s", "10 per 0 seconds", "5/00 minutes"])
def test_a_rate_limit_over_a_zero_window_is_refused(text: str) -> None:
    """The ``limits`` library reads a window of 0 units as 1 unit; {per = 0} is refused."""
    with pytest.raises(ValueError, match="must look like"):
        parse_rate_limit(text)


def test_a_value_from_the_environment_that_is_not_utf8_is_not_quoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret put by mistake in another setting is not quoted (docs/reference/config.md),
    also when a byte of it is not UTF-8 (``os.environ`` keeps it as a lone surrogate)."""
    monkeypatch.setenv("WRONG_KEY", "\udcffsk-live-0123456789")
    found = problems({"vendors": {"example": {"api_key": "k", "timeout": "${WRONG_KEY}"}}})
    assert [path for path, _ in found] == ["vendors.example.timeout"]
    assert "sk-live" not in found[0][1] and "0123456789" not in found[0][1]


def test_a_pyproject_takes_a_consent_table(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(
        '[tool.postback]\nqueue = "memory://"\n\n[tool.postback.consent]\npolicy = "require"\n'
    )
    raw, _, _ = read_config(path)
    assert raw == {
        "postback": {"queue": "memory://"},
        "vendors": {},
        "consent": {"policy": "require"},
    }
    assert build_config(raw, DESTS, environ={}).consent.policy == "require"


def test_a_config_file_over_a_mebibyte_is_refused_naming_it(tmp_path: Path) -> None:
    """A config file is a few hundred bytes: one larger than 1 MiB (a log or a database given
    by mistake) is refused before it is read, naming the path, not parsed into memory."""
    path = tmp_path / "postback.toml"
    path.write_text('[postback]\nqueue = "memory://"\n' + "# padding\n" * 110_000)
    with pytest.raises(ConfigError) as info:
        read_config(path)
    message = str(info.value)
    assert str(path) in message and "larger than 1 MiB" in message


def test_a_large_pyproject_found_by_the_search_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.postback]\nqueue = "memory://"\n' + "# padding\n" * 110_000)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTBACK_CONFIG", raising=False)
    with pytest.raises(ConfigError) as info:
        read_config(None)
    assert str(path) in str(info.value) and "larger than 1 MiB" in str(info.value)


def test_a_config_path_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``POSTBACK_CONFIG=/dev/zero`` read forever, and a named pipe with no writer blocked
    forever: every command hung. Refused at once, exit 2, saying what to give instead. Run in
    a child process with a time and memory limit, so that a regression fails, not hangs."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "postback.toml"
    os.mkfifo(fifo)
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from postback.cli import main; sys.argv = ['postback', 'queue', 'stats']; main()"
    )
    for target in ("/dev/zero", str(fifo)):
        env = {**os.environ, "POSTBACK_CONFIG": target}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr[-2000:]
        assert target in done.stderr and "not a regular file" in done.stderr


@pytest.mark.parametrize(
    ("step", "make"),
    [
        ("__init__", lambda: KeyError("app_id")),
        ("check_config", lambda: RuntimeError("no table")),
        ("check_config", None),  # returns None instead of an iterable
    ],
)
def test_a_plugin_failing_in_its_config_checks_is_a_config_error_naming_it(
    step: str, make: Any
) -> None:
    """A destination raising something other than ValueError/ConfigError in ``__init__``, or
    failing in ``check_config``, is a problem of ``vendors.NAME`` naming the plugin's step, not
    a traceback out of ``build_config`` (``postback config check``, every tracker)."""

    class Broken(ExampleDestination):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if step == "__init__":
                raise make()

        def check_config(self):  # type: ignore[no-untyped-def]
            if make is None:
                return None
            if step == "check_config":
                raise make()
            return ()

    with pytest.raises(ConfigError) as info:
        build_config({"vendors": {"example": {"api_key": "k"}}}, {"example": Broken})
    [problem] = info.value.problems
    assert problem.path == "vendors.example"
    assert f"the example plugin failed in {step}" in problem.message
    assert "a bug in the plugin" in problem.message


def test_secrets_in_a_list_setting_are_redacted_like_a_single_one() -> None:
    """A setting holding several secrets (``spare_keys: list[Secret]``, the plugin host lets
    it through as typed Secret) was masked in reprs but never redacted: a vendor echoing one
    put it in logs and dead letters, and a plugin quoting one put it in a ConfigError."""
    spares = ["spare-key-000A", "spare-key-000B"]

    @attrs.frozen
    class Many:
        api_key: Secret = setting(help="key", secret=True)
        spare_keys: list[Secret] = setting(help="more keys", secret=True, factory=list)

    class Multi(ExampleDestination):
        settings_class = Many

    class Quoting(Multi):
        def check_config(self):  # type: ignore[no-untyped-def]
            yield "spare_keys", f"{self.settings.spare_keys[1].reveal()} is not an Acme key"

    table = {"api_key": "primary-key-0001", "spare_keys": spares}
    cfg = build_config({"vendors": {"example": table}}, {"example": Multi})
    destination = cfg.vendors["example"].make_destination(Multi)
    said = destination.redact(f"echo primary-key-0001 {spares[0]} {spares[1]}")
    assert said == "echo *** *** ***"
    with pytest.raises(ConfigError) as info:
        build_config({"vendors": {"example": table}}, {"example": Quoting})
    assert spares[1] not in str(info.value) and "*** is not an Acme key" in str(info.value)


def test_a_plugin_quoting_a_secret_setting_in_a_config_problem_is_redacted() -> None:
    """A plugin's validator, ``__init__`` (ValueError) or ``check_config`` that quotes a secret
    setting's value (the key whose format it checks) does not put it in the ConfigError, which
    ``postback config check``, Django's checks and the logs show."""
    key = "sk_live_0123456789abcdef"

    def must_be_short(instance: Any, attribute: Any, value: Secret) -> None:
        if len(value.reveal()) > 8:
            raise ValueError(f"{value.reveal()!r} is not an Acme key")

    @attrs.frozen
    class Checked:
        api_key: Secret = setting(help="key", secret=True, validator=must_be_short)

    class ByValidator(ExampleDestination):
        settings_class = Checked

    class ByInit(ExampleDestination):
        def __init__(self, settings: Any, **kwargs: Any) -> None:
            raise ValueError(f"api_key {settings.api_key.reveal()} is not an Acme key")

    class ByCheck(ExampleDestination):
        def check_config(self):  # type: ignore[no-untyped-def]
            yield "api_key", f"{self.settings.api_key.reveal()} is not an Acme key"

    class ByBug(ExampleDestination):
        def check_config(self):  # type: ignore[no-untyped-def]
            raise KeyError(self.settings.api_key.reveal())

    for cls in (ByValidator, ByInit, ByCheck, ByBug):
        with pytest.raises(ConfigError) as info:
            build_config({"vendors": {"example": {"api_key": key}}}, {"example": cls})
        assert key not in str(info.value), cls.__name__
        if cls is not ByBug:  # (a plugin's own failure is said by its type alone)
            assert "***" in str(info.value), cls.__name__


def test_a_plugin_failing_in_config_warnings_is_a_warning_without_its_secrets() -> None:
    """``config check`` and ``doctor`` show a plugin's failing ``config_warnings`` as a
    warning; the exception's text may quote a secret setting, which is masked there."""
    from postback.destination import config_warnings

    key = "sk_live_0123456789abcdef"

    class Warns(ExampleDestination):
        def config_warnings(self, events: frozenset[str] | None) -> Any:
            raise RuntimeError(f"cannot check the account of {self.settings.api_key.reveal()}")

    cfg = build_config({"vendors": {"example": {"api_key": key}}}, {"example": Warns})
    dest = cfg.vendors["example"].make_destination(Warns)
    [(path, message)] = config_warnings({"example": dest}, {"example": None})
    assert path == "vendors.example" and "failed to check its config" in message
    assert key not in message and "***" in message

    class Quotes(ExampleDestination):
        def config_warnings(self, events: frozenset[str] | None) -> Any:
            yield "api_key", f"{self.settings.api_key.reveal()} is a test key"

    dest = cfg.vendors["example"].make_destination(Quotes)
    [(path, message)] = config_warnings({"example": dest}, {"example": None})
    assert path == "vendors.example.api_key" and message == "*** is a test key"


@pytest.mark.parametrize("name", ["", "  "])
def test_an_event_map_entry_naming_no_vendor_event_fails_at_start_up(name: str) -> None:
    """``event_map = { purchase = "" }`` (an unset ``${VAR:-}``, or an attempt to send the
    vendor no purchases) passed ``config check`` and ``doctor``; then every ``track()`` of a
    purchase raised InvalidEvent from the plugin (Whop, X, Ton AI), in the app's request."""
    raw = {
        "postback": {"queue": "memory://"},
        "vendors": {"example": {"api_key": "k", "event_map": {"purchase": name}}},
    }
    with pytest.raises(ConfigError) as info:
        build_config(raw, {"example": ExampleDestination})
    [problem] = info.value.problems
    assert problem.path == "vendors.example.event_map"
    assert "'purchase' is mapped to no event name" in problem.message
    assert "events" in problem.message  # how to send the vendor no purchases instead


@pytest.mark.parametrize(
    ("toml", "written"),
    [("2026-09-25", '"2026-09-25"'), ("2026-09-25T10:00:00Z", '"2026-09-25T10:00:00+00:00"')],
)
def test_a_date_written_without_quotes_for_a_text_setting_says_to_quote_it(
    tmp_path: Path, toml: str, written: str
) -> None:
    """TOML reads ``api_version_date = 2026-09-25`` as a date: the error was "must be a string,
    got date", which does not say that the quotes are what is missing."""
    path = tmp_path / "postback.toml"
    path.write_text(f'[vendors.example]\napi_key = "k"\naccount = {toml}\n')
    raw, _, _ = read_config(path)
    with pytest.raises(ConfigError) as info:
        build_config(raw, {"example": ExampleDestination})
    [problem] = info.value.problems
    assert problem.path == "vendors.example.account"
    assert (
        "TOML reads it as a date" in problem.message and f"date: write {written}" in problem.message
    )


def test_an_events_entry_the_vendor_maps_by_default_is_no_misspelling() -> None:
    """``events = ["view_content"]`` for Whop (which maps view_content itself) was warned of as
    a misspelt ``view_item`` by ``config check`` and ``doctor``: a name in the vendor's own
    default event map is the vendor's event, not a typo."""
    from postback.config.vendors import events_filter_warnings

    class Mapped(ExampleDestination):
        default_event_map = {**ExampleDestination.default_event_map, "view_content": "content"}

    raw = {"api_key": "k", "events": ["view_content", "purchse"]}
    cfg = build_config({"vendors": {"example": raw}}, {"example": Mapped})
    found = events_filter_warnings(cfg.vendors, {"example": Mapped})
    assert [m.split(" ")[0] for _, m in found] == ["'purchse'"], found

"""The plugin contract: hooks documented and tested, exports, loading, third-party plugins."""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import postback
from postback import Emulator, PluginError, hookspecs
from postback.plugins import PluginHost
from postback.sandbox import Sandbox
from tests._distributions import add_entry_point_dist, build_wheel

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [
    n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("postback_")
]


def test_there_are_hooks() -> None:
    assert set(HOOKS) >= {
        "postback_register_destinations",
        "postback_register_emulators",
        "postback_validate",
        "postback_transform",
        "postback_deliver",
        "postback_on_attribution",
        "postback_on_delivery",
    }


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    fn = getattr(hookspecs, hook)
    doc = inspect.getdoc(fn) or ""
    assert len(doc) > 80, f"{hook} needs a docstring saying what it is for"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{hook} must document its parameter {param!r}"
    assert re.search(r"all-run|all run|firstresult|Notification|once", doc), (
        f"{hook} must say its call semantics"
    )
    reference = (ROOT / "docs" / "reference" / "hooks.md").read_text()
    assert "::: postback.hookspecs" in reference or hook in reference


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test(hook: str) -> None:
    tests = "".join(
        p.read_text() for p in (ROOT / "tests").rglob("test_*.py") if p.name != "test_plugins.py"
    )
    assert hook in tests or hook in (ROOT / "src/postback/testing/example.py").read_text()


def test_all_matches_public_names() -> None:
    import __future__

    import types

    # Names are imported on first use (PEP 562): dir() lists loaded and not yet loaded ones.
    public = {
        n
        for n in dir(postback)
        if (v := getattr(postback, n)) is not None
        and not n.startswith(("_", "@"))
        and not isinstance(v, (types.ModuleType, __future__._Feature))  # submodules
    }
    assert set(postback.__all__) == public | {"__version__"}
    for name in postback.__all__:
        assert getattr(postback, name) is not None


def test_a_broken_plugin_is_skipped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_entry_point_dist(
        monkeypatch,
        tmp_path,
        "postback-broken",
        {"broken": "postback_broken_mod"},
        {"postback_broken_mod": "raise ImportError('missing dependency foo')\n"},
    )
    with caplog.at_level(logging.WARNING, logger="postback.plugins"):
        host = PluginHost()
    assert "skipping postback plugin 'broken'" in caplog.text
    assert "missing dependency foo" in caplog.text
    assert host.infos["broken"].error and "foo" in host.infos["broken"].error
    # A config naming the broken vendor says why it is unavailable.
    from postback import ConfigError, Tracker

    with pytest.raises(ConfigError, match="failed to load: ImportError: missing dependency foo"):
        Tracker.from_config({"vendors": {"broken": {}}})


def test_an_entry_point_plugin_with_an_unknown_hook_is_skipped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelled hook in an installed plugin does not take every app down (pluggy's
    check_pending would refuse the whole host): the plugin is skipped, named, as one that
    fails to import; the others load."""
    add_entry_point_dist(
        monkeypatch,
        tmp_path,
        "postback-typo",
        {"typo": "postback_typo_mod", "example": "postback.testing.example"},
        {
            "postback_typo_mod": (
                "from postback.plugin import hookimpl\n"
                "@hookimpl\n"
                "def postback_register_destination(register):\n"
                "    pass\n"
            )
        },
    )
    with caplog.at_level(logging.WARNING, logger="postback.plugins"):
        host = PluginHost()
    assert "skipping postback plugin 'typo'" in caplog.text
    error = host.infos["typo"].error
    assert error and "postback_register_destination" in error
    assert "postback_register_destinations" in error  # what it likely meant
    assert "example" in host.destinations
    assert not host.pm.has_plugin("typo")


def test_an_entry_point_plugin_whose_registration_fails_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin importing its vendor SDK inside its registration hook fails there, not at
    import: it is skipped like a plugin that fails to import, with what it registered."""
    add_entry_point_dist(
        monkeypatch,
        tmp_path,
        "postback-lazy",
        {"lazy": "postback_lazy_mod", "example": "postback.testing.example"},
        {
            "postback_lazy_mod": (
                "from postback.plugin import hookimpl\n"
                "from postback.testing.example import ExampleDestination\n"
                "class Lazy(ExampleDestination):\n"
                "    name = 'lazy'\n"
                "@hookimpl\n"
                "def postback_register_destinations(register):\n"
                "    register(Lazy)\n"
                "@hookimpl\n"
                "def postback_register_emulators(register):\n"
                "    import acme_sdk_not_installed\n"
            )
        },
    )
    with caplog.at_level(logging.WARNING, logger="postback.plugins"):
        host = PluginHost()
    assert "skipping postback plugin 'lazy'" in caplog.text
    error = host.infos["lazy"].error
    assert error and "ModuleNotFoundError" in error and "acme_sdk_not_installed" in error
    assert "lazy" not in host.destinations and "example" in host.destinations
    assert not host.pm.has_plugin("lazy")
    from postback import ConfigError, Tracker

    with pytest.raises(ConfigError, match="failed to load: ModuleNotFoundError"):
        Tracker.from_config({"vendors": {"lazy": {}}})


def test_disable_plugins_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    add_entry_point_dist(
        monkeypatch, tmp_path, "postback-example-ep", {"example": "postback.testing.example"}
    )
    assert "example" in PluginHost().destinations
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "example")
    assert "example" not in PluginHost().destinations
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "*")
    assert PluginHost().destinations == {}


def test_two_plugins_cannot_claim_one_vendor() -> None:
    import postback.testing.example as example

    class Again:
        @postback.hookimpl
        def postback_register_destinations(self, register):  # type: ignore[no-untyped-def]
            class Copy(example.ExampleDestination):
                pass

            register(Copy)

    with pytest.raises(PluginError, match="registered twice"):
        PluginHost([example, Again()], load_entry_points=False)


class _AcmeEmulator(Emulator):
    vendor = "acme"


class _AcmeAgain(Emulator):
    vendor = "acme"


class FirstEmulatorPlugin:
    @postback.hookimpl
    def postback_register_emulators(self, register: Callable[[type[Emulator]], None]) -> None:
        register(_AcmeEmulator)


class SecondEmulatorPlugin:
    @postback.hookimpl
    def postback_register_emulators(self, register: Callable[[type[Emulator]], None]) -> None:
        register(_AcmeAgain)


def test_two_plugins_cannot_register_one_vendor_s_emulator() -> None:
    # Was: the second emulator replaced the first, silently: the sandbox served whichever
    # plugin registered last.
    pattern = (
        r"emulator of vendor 'acme' is registered twice: by 'in-process-0:FirstEmulatorPlugin' "
        r"\(_AcmeEmulator\) and by 'in-process-1:SecondEmulatorPlugin' \(_AcmeAgain\); "
        r"uninstall one or disable it with POSTBACK_DISABLE_PLUGINS"
    )
    with pytest.raises(PluginError, match=pattern):
        PluginHost([FirstEmulatorPlugin(), SecondEmulatorPlugin()], load_entry_points=False)
    again = PluginHost([FirstEmulatorPlugin(), FirstEmulatorPlugin()], load_entry_points=False)
    assert again.emulators == {"acme": _AcmeEmulator}  # the same class twice: no conflict


def test_a_sandbox_refuses_two_emulators_of_one_vendor() -> None:
    with pytest.raises(ValueError, match=r"two emulators of vendor 'acme': _AcmeEmulator and"):
        Sandbox([_AcmeEmulator(), _AcmeAgain()])


def test_a_secret_setting_not_typed_secret_is_refused_naming_the_plugin() -> None:
    """``setting(secret=True)`` on a ``str``: the value stayed a plain string, shown by
    ``repr(config)`` and never redacted from logs or dead letters (the redactor knows
    ``Secret`` values only). The host refuses it at start, naming the plugin and the fix."""
    import attrs

    import postback.testing.example as example

    @attrs.frozen
    class PlainSettings:
        api_key: str = postback.setting(help="key", secret=True)

    class Plain(example.ExampleDestination):
        name = "plain"
        settings_class = PlainSettings

    class Registers:
        @postback.hookimpl
        def postback_register_destinations(self, register):  # type: ignore[no-untyped-def]
            register(Plain)

    with pytest.raises(PluginError, match=r"Registers.*'plain'.*'api_key'.*postback\.Secret"):
        PluginHost([Registers()], load_entry_points=False)


def test_a_hookimpl_with_no_spec_is_refused() -> None:
    class Typo:
        @postback.hookimpl
        def postback_on_atribution(self, attribution):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(Exception, match="postback_on_atribution"):
        PluginHost([Typo()], load_entry_points=False)


THIRD_PARTY = textwrap.dedent('''
    """A third-party vendor plugin, written from the docs alone."""
    import attrs, httpx, orjson
    from postback import Delivered, Destination, Emulator, Secret, hookimpl, setting

    @attrs.frozen
    class AcmeSettings:
        token: Secret = setting(help="Acme token", secret=True)

    class AcmeDestination(Destination):
        name = "acme"
        settings_class = AcmeSettings
        default_origin = "https://acme.invalid"
        default_event_map = {"purchase": "buy"}

        def transform(self, event):
            return {"id": event.event_id, "what": self.vendor_event_name(event.name),
                    "micros": event.value_micros}

        def build_request(self, batch):
            return httpx.Request("POST", self.url("/track"), content=orjson.dumps(batch[0].record),
                                 headers={"x-token": self.settings.token.reveal()})

        def parse_response(self, batch, response):
            return Delivered()

    class AcmeEmulator(Emulator):
        vendor = "acme"

        @classmethod
        def demo_settings(cls):
            return {"token": "t0k"}

        def handle(self, request):
            assert request.headers["x-token"] == "t0k"
            body = orjson.loads(request.content)
            self.received.append({"event_id": body["id"], "name": body["what"], **body})
            return httpx.Response(200, json={"ok": True})

    @hookimpl
    def postback_register_destinations(register):
        register(AcmeDestination)

    @hookimpl
    def postback_register_emulators(register):
        register(AcmeEmulator)
''')

DRIVER = textwrap.dedent("""
    import json, sys
    from postback import Tracker
    from postback.plugins import PluginHost
    from postback.sandbox import Sandbox

    host = PluginHost()
    with Sandbox([host.emulators["acme"]()]) as box:
        t = Tracker.from_config({"postback": {"queue": "memory://"},
                                 "vendors": {"acme": box.vendor_config("acme")}})
        t.track("purchase", value=49.99, currency="USD", event_id="p-1")
        report = t.flush(timeout=10)
        t.close()
        print(json.dumps({"received": box.received("acme"),
                          "delivered": report["acme"].delivered}))
""")


@pytest.mark.slow
def test_a_third_party_distribution_is_installed_discovered_and_receives_events(
    tmp_path: Path,
) -> None:
    wheel = build_wheel(
        tmp_path,
        "postback-acme",
        "0.3.0",
        "postback_acme",
        {"__init__.py": THIRD_PARTY},
        {"acme": "postback_acme"},
    )
    target = tmp_path / "site"
    # A real installer: uv's pip interface (tox-uv environments have no pip), else pip.
    import importlib.util

    installer = (
        ["uv", "pip", "install", "--python", sys.executable]
        if importlib.util.find_spec("uv")
        else ["pip", "install"]
    )
    subprocess.run(
        [sys.executable, "-m", *installer, "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *sys.path])}
    listing = subprocess.run(
        [sys.executable, "-m", "postback", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(r"acme\s.*postback-acme\s.*0\.3\.0", listing)
    out = subprocess.run(
        [sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out)
    assert result["delivered"] == 1
    assert result["received"] == [
        {"event_id": "p-1", "name": "buy", "id": "p-1", "what": "buy", "micros": 49990000}
    ]

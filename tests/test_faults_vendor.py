"""Vendor faults at a loopback server, for every installed plugin (issue 23 items 5 and 7).

Each test tracks events at a hostile loopback "vendor" and counts, by event id, what was
accepted, delivered, dead-lettered and left queued: nothing accepted is lost (every id ends
delivered, dead-lettered or still queued), and nothing of a secret leaks.

* ``test_echoed_secrets_never_leak``: the server echoes the whole request (URL, headers, body:
  so every secret in every form the plugin sends it) in a 2xx, a long 400, a 500, a 401 and a
  response header; no form of any secret, nor its first 8 characters, reaches the log, the
  SQLite file's dead letters, or ``postback deadletters list|show``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from postback import Tracker
from postback.cli import main as cli
from postback.destination import Secret
from postback.plugins import PluginHost
from postback.redaction import secret_forms

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
HOST = PluginHost()
VENDORS = sorted(v for v in HOST.destinations if (PLUGINS / v).is_dir())


def _samples(vendor: str) -> list[dict[str, Any]]:
    """The plugin's own contract samples (events its vendor takes)."""
    path = next((PLUGINS / vendor / "tests").glob("test*contract.py"))
    spec = importlib.util.spec_from_file_location(f"_contract_{vendor}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = next(
        c for n, c in vars(module).items() if n.startswith("Test") and hasattr(c, "sample_events")
    )
    return [dict(s) for s in cls.sample_events]


def _planted(vendor: str, field: str) -> str:
    """A secret with every character OAuth and JSON encode (+, /, =), valid base64."""
    seed = base64.b64encode(hashlib.sha256(f"{vendor}.{field}".encode()).digest()).decode()
    return f"{seed[:10]}+{seed[11:20]}/{seed[21:43]}="


def _settings(vendor: str) -> tuple[dict[str, Any], list[str]]:
    cls = HOST.destinations[vendor]
    settings = dict(HOST.emulators[vendor].demo_settings())
    secrets = []
    for a in attrs.fields(cls.settings_class):
        if a.type in (Secret, "Secret", "Secret | None") or "Secret" in str(a.type):
            settings[a.name] = _planted(vendor, a.name)
            secrets.append(settings[a.name])
    return settings, secrets


MODES = ["200", "200json", "400cut200", "400cut300", "400cut500", "500", "401", "header"]


class _Echo(BaseHTTPRequestHandler):
    mode = "200"
    seen: list[bytes] = []
    secrets: list[str] = []

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        cls = type(self)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        # The credential-bearing parts first, so that a snippet cut short still shows them.
        auth = self.headers.get("authorization", "")
        echo = f"{auth}\n{self.path}\n{self.headers}\n".encode("latin-1") + body
        cls.seen.append(echo)
        text = echo.decode("utf-8", "replace")
        mode = cls.mode
        status = 200 if mode.startswith("200") else 401 if mode == "401" else 400
        status = 500 if mode == "500" else status
        if mode == "200json":
            payload = json.dumps({"echo": text}).encode()
        elif mode.startswith("400cut"):
            # A secret, in the form the plugin sent it, straddles the plugin's snippet cut.
            cut = int(mode[len("400cut") :])
            forms = [f for s in cls.secrets for f in secret_forms(s) if f in text]
            form = forms[len(cls.seen) % len(forms)] if forms else ""
            payload = ("x" * (cut - 10) + form + " " + text).encode()
        elif mode == "header":
            payload = b"bad request"
        else:
            payload = text.encode()
        self.send_response(status)
        if mode == "header":
            self.send_header("x-echo", " ".join(text.split())[:4000])
        self.send_header("content-type", "application/json" if "json" in mode else "text/plain")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[tuple[str, type[_Echo]]]:
    handler = type("Echo", (_Echo,), {"seen": [], "secrets": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join()


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _leaks(text: str, secrets: list[str]) -> list[str]:
    found = []
    for s in secrets:
        for form in secret_forms(s):
            if form in text or (len(form) >= 8 and form[:8] in text):
                found.append(form)
    return found


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("vendor", VENDORS)
def test_echoed_secrets_never_leak(
    vendor: str,
    mode: str,
    echo: tuple[str, type[_Echo]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, handler = echo
    handler.mode = mode
    settings, secrets = _settings(vendor)
    handler.secrets = secrets
    assert secrets, f"{vendor} has no secret setting to plant"
    db = tmp_path / "q.db"
    vendor_cfg = {
        **settings,
        "base_url": f"{url}/{vendor}",
        "retry": {"initial_backoff": 0.01, "max_backoff": 0.02, "max_attempts": 2},
        "linger": 0.01,
    }
    config = {
        "postback": {"queue": f"sqlite:///{db}", "workers": True},
        "vendors": {vendor: vendor_cfg},
    }
    (tmp_path / "postback.toml").write_text(
        f'[postback]\nqueue = "sqlite:///{db}"\n\n[vendors.{vendor}]\n'
        + "".join(f"{k} = {_toml(v)}\n" for k, v in vendor_cfg.items())
    )
    caplog.set_level(logging.DEBUG, logger="postback")
    tracker = Tracker.from_config(config, load_entry_points=True)
    accepted = []
    try:
        for sample in _samples(vendor):
            fields = {k: v for k, v in sample.items() if k not in ("name", "event_id")}
            accepted.append(tracker.track(sample["name"], **fields))
        report = tracker.flush(timeout=0.5 if mode == "401" else 5)
    finally:
        tracker.close(timeout=1)
    assert handler.seen, "the vendor was never called"
    assert any(_leaks(r.decode("utf-8", "replace"), secrets) for r in handler.seen), (
        "the planted secrets are not in the requests: the test would prove nothing"
    )
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, event_id, reason FROM dead_letters").fetchall()
    stored = "\n".join(str(r) for r in rows)
    runner = CliRunner()
    shown = runner.invoke(cli, ["deadletters", "list", "-c", str(tmp_path / "postback.toml")])
    out = shown.output
    for dead_id, *_ in rows:
        one = runner.invoke(
            cli, ["deadletters", "show", str(dead_id), "-c", str(tmp_path / "postback.toml")]
        )
        out += one.output
    assert _leaks(caplog.text, secrets) == []
    assert _leaks(stored, secrets) == []
    assert _leaks(out, secrets) == []
    # Nothing accepted is lost: each id is delivered, dead-lettered or still queued.
    pending = sum(r.pending for r in report.vendors.values()) if report else 0
    dead_ids = {r[1] for r in rows}
    delivered = report[vendor].delivered if report else 0
    assert delivered + len(dead_ids & set(accepted)) + pending >= len(accepted)

"""Vendor faults at a loopback server, for every installed plugin (issue 23 items 5 and 7).

Each test tracks events at a hostile loopback "vendor" and counts, by event id, what was
accepted, delivered, dead-lettered and left queued: nothing accepted is lost (every id ends
delivered, dead-lettered or still queued), and nothing of a secret leaks.

* ``test_echoed_secrets_never_leak``: the server echoes the whole request (URL, headers, body:
  so every secret in every form the plugin sends it) in a 2xx, a long 400, a 500, a 401 and a
  response header; no form of any secret, nor its first 8 characters, reaches the log, the
  SQLite file's dead letters, or ``postback deadletters list|show``.
* ``test_a_hostile_retry_after_never_parks_or_loses_an_event``: ``Retry-After`` of inf, nan,
  -5, three days, 1e308, a year-9999 date or garbage: every event is delivered or dead-lettered
  within its ``max_age``; none is parked, lost or sent twice.
* ``test_a_slow_or_endless_answer_is_cut_and_nothing_is_lost``: a slowloris server (one header
  line at a time) and a 300 MB body: each request ends within the vendor's timeout, the event
  is retried then dead-lettered, ``close()`` returns.
* ``test_process_exit_is_bounded_by_exit_timeout_with_a_slowloris_vendor``: a process with a
  request stuck on the vendor exits (the exit hook waits ``exit_timeout``, not the request).
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.util
import json
import logging
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

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


MODES = ["200", "400cut200", "400cut300", "400cut500", "500", "401", "header"]
MODES += ["400php", "400gson", "400html"]  # the echo escaped as PHP, Gson or an HTML page does
MODES += ["400url"]  # the echo percent-encoded twice (a URL echoed in a URL's query)


def _escaped_echo(text: str, style: str) -> str:
    """``text`` in the error body of a vendor that echoes the request in ``style``."""
    if style == "html":
        return f"<html><body><h1>400 Bad Request</h1><pre>{html.escape(text)}</pre></body></html>"
    body = json.dumps({"error": "bad request", "request": text})
    if style == "php":  # json_encode: "/" as "\/"
        return body.replace("/", "\\/")
    for c in "=&<>'":  # Gson (Go: & < > only)
        body = body.replace(c, f"\\u{ord(c):04x}")
    return body


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
        if mode.startswith("400cut"):
            # A secret, in the form the plugin sent it, straddles the plugin's snippet cut.
            cut = int(mode[len("400cut") :])
            forms = [f for s in cls.secrets for f in secret_forms(s) if f in text]
            form = forms[len(cls.seen) % len(forms)] if forms else ""
            payload = ("x" * (cut - 10) + form + " " + text).encode()
        elif mode == "400url":
            payload = (
                f"see https://status.invalid/?q={quote(quote(text, safe=''), safe='')}".encode()
            )
        elif mode in ("400php", "400gson", "400html"):
            payload = _escaped_echo(text, mode[len("400") :]).encode()
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
    caplog.set_level(logging.DEBUG)  # the root logger: httpx and httpcore log too
    tracker = Tracker.from_config(config, load_entry_points=True)
    accepted = []
    try:
        for sample in _samples(vendor):
            fields = {k: v for k, v in sample.items() if k not in ("name", "event_id")}
            accepted.append(tracker.track(sample["name"], **fields))
        report = tracker.flush(timeout=0.3 if mode == "401" else 5)  # a halt waits 60 s
    finally:
        tracker.close(timeout=0.2)
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
    for dead_id, *_ in rows[:1]:  # every row's reason is in the list; one shown in full
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


@pytest.mark.parametrize("mode", ["400php", "400gson", "400html"])
def test_an_escaped_echo_of_the_key_leaks_nowhere(
    mode: str, echo: tuple[str, type[_Echo]], caplog: pytest.LogCaptureFixture
) -> None:
    """The example vendor answers 400 with the request (its Bearer header first) echoed as PHP
    (``\\/``), Gson (``\\u003d``) or an HTML page (``&#x27;``, ``&quot;``) writes it: the key
    is in none of the dead-letter reason, ``tracker.status()`` and the log, in no form."""
    import postback.testing.example as example

    url, handler = echo
    handler.mode = mode
    key = """mb_live/Q2x1&ZS9zZWNyZXQ=a2V5<Zm9v>"YmFy'"""  # every style escapes some of it
    caplog.set_level(logging.DEBUG)  # the root logger: httpx and httpcore log too
    tracker = Tracker.from_config(
        {
            "postback": {"queue": "memory://"},
            "vendors": {
                "example": {
                    "base_url": url,
                    "api_key": key,
                    "linger": 0.01,
                    "retry": {"initial_backoff": 0.01, "max_backoff": 0.02, "max_attempts": 2},
                }
            },
        },
        plugins=[example],
        load_entry_points=False,
    )
    try:
        event_id = tracker.track("sign_up", user={"user_id": "u1"})
        tracker.flush(timeout=5)
        dead = tracker.queue.dead_letters("example")
        status = repr(tracker.status(event_id))
    finally:
        tracker.close(timeout=1)
    echoed = handler.seen[0].decode("latin-1")
    assert key in echoed  # the vendor did get, and echo, the key
    assert [d.event_id for d in dead] == [event_id]
    reasons = "\n".join(d.reason for d in dead)
    assert "HTTP 400" in reasons and "***" in reasons, reasons
    for where in (reasons, status, caplog.text):
        assert _leaks(where, [key]) == [], where
        for middle in ("ZS9zZWNyZXQ", "a2V5", "YmFy"):  # however the rest is escaped
            assert middle not in where, where


# --- hostile answers at a scripted loopback sink (the example vendor) ------------------------


class _Sink(BaseHTTPRequestHandler):
    """Answers with the scripted responses first, then accepts every event; records ids."""

    protocol_version = "HTTP/1.1"
    script: list[tuple[int, dict[str, str]]] = []
    received: list[str] = []
    accepted_ids: list[str] = []

    def do_POST(self) -> None:
        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        ids = [e["id"] for e in body["events"]]
        cls.received.extend(ids)
        if cls.script:
            status, headers = cls.script.pop(0)
            payload = b'{"error": "later"}'
        else:
            status, headers = 200, {}
            cls.accepted_ids.extend(ids)
            payload = json.dumps({"results": [{"status": "ok"} for _ in ids]}).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[tuple[str, type[_Sink]]]:
    handler = type("Sink", (_Sink,), {"script": [], "received": [], "accepted_ids": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join()


def _example_tracker(url: str, tmp_path: Path, **vendor: Any) -> Tracker:
    import postback.testing.example as example

    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db"},
        "vendors": {
            "example": {
                "base_url": url,
                "api_key": "k",
                "linger": 0.01,
                "retry": {"initial_backoff": 0.01, "max_backoff": 0.05, "max_age": 1.0},
                **vendor,
            }
        },
    }
    return Tracker.from_config(cfg, plugins=[example], load_entry_points=False)


@pytest.mark.parametrize(
    "retry_after",
    [
        "inf",
        "nan",
        "-5",
        "259200",  # three days
        "1e308",
        "99999999999999999999999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "soon",
    ],
)
def test_a_hostile_retry_after_never_parks_or_loses_an_event(
    retry_after: str, sink: tuple[str, type[_Sink]], tmp_path: Path
) -> None:
    """Retry-After is a hint: one not finite, negative or unreadable is ignored; a long one is
    cut to what is left of the event's max_age (1 s here). The events are then delivered."""
    url, handler = sink
    handler.script = [(429, {"retry-after": retry_after}), (503, {"retry-after": retry_after})]
    tracker = _example_tracker(url, tmp_path)
    try:
        accepted = [tracker.track("sign_up", user={"user_id": f"u{i}"}) for i in range(5)]
        report = tracker.flush(timeout=10)
        dead = {d.event_id for d in tracker.queue.dead_letters("example")}
    finally:
        tracker.close(timeout=1)
    assert report.complete, report
    delivered = set(handler.accepted_ids)
    assert set(accepted) <= delivered | dead  # nothing lost
    assert len(handler.accepted_ids) == len(set(handler.accepted_ids))  # none sent twice


class _RawServer:
    """A loopback socket server answering every request with ``respond(conn)``; counts them."""

    def __init__(self, respond: Any) -> None:
        self.respond = respond
        self.requests = 0
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.threads: list[threading.Thread] = []
        self.accept = threading.Thread(target=self._accept, daemon=True)
        self.accept.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                self.requests += 1
                self.respond(conn, self.stop)
            except OSError:
                pass  # the client gave up: what the test expects

    def close(self) -> None:
        self.stop.set()
        self.accept.join()
        for t in self.threads:
            t.join(timeout=5)
        self.sock.close()


def _slowloris(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stop.wait(0.3):  # one header line at a time, never the end of the headers
        conn.sendall(b"x-slow: 1\r\n")


def _endless_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
    conn.sendall(b"content-length: 300000000\r\n\r\n")
    chunk = b" " * 65536
    while not stop.is_set():
        conn.sendall(chunk)


@pytest.fixture
def raw_server() -> Iterator[Any]:
    servers: list[_RawServer] = []

    def make(respond: Any) -> _RawServer:
        servers.append(_RawServer(respond))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.mark.parametrize("respond", [_slowloris, _endless_body], ids=["slowloris", "300MB-body"])
def test_a_slow_or_endless_answer_is_cut_and_nothing_is_lost(
    respond: Any, raw_server: Any, tmp_path: Path
) -> None:
    """The vendor's timeout (1 s) bounds the whole answer, the body is capped: each request
    ends, the event is retried then dead-lettered at max_age, never lost or left hanging."""
    server = raw_server(respond)
    tracker = _example_tracker(server.url, tmp_path, timeout=1)
    closed = threading.Event()
    try:
        accepted = tracker.track("sign_up", user={"user_id": "u1"})
        report = tracker.flush(timeout=6)
        dead = {d.event_id: d.reason for d in tracker.queue.dead_letters("example")}
    finally:
        closer = threading.Thread(target=lambda: (tracker.close(timeout=1), closed.set()))
        closer.start()
        closer.join(timeout=30)
    assert closed.is_set(), "close() did not return: a request thread hung on the vendor"
    assert server.requests >= 2, "the first request was never cut short"
    assert report.complete and accepted in dead, (report, dead)


def test_process_exit_is_bounded_by_exit_timeout_with_a_slowloris_vendor(
    raw_server: Any, tmp_path: Path
) -> None:
    server = raw_server(_slowloris)
    script = f"""
import postback.testing.example as example
from postback import Tracker
t = Tracker.from_config({{
    "postback": {{"queue": "sqlite:///{tmp_path}/q.db", "exit_timeout": 1}},
    "vendors": {{"example": {{"base_url": "{server.url}", "api_key": "k", "timeout": 30,
                            "linger": 0.01}}}},
}}, plugins=[example], load_entry_points=False)
t.track("sign_up", user={{"user_id": "u1"}})
import time
deadline = time.monotonic() + 20  # until the request is in flight, stuck on the vendor
while t.stats()["example"]["requests"] < 1 and time.monotonic() < deadline:
    time.sleep(0.05)
"""
    done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert server.requests >= 1

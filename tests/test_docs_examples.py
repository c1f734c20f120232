"""The docs' code, run as written, with the five vendor plugins installed and the built-in
sandbox serving their emulations on loopback.

Each test takes the fenced blocks from a page (by the file name in their first line, e.g.
``# app.py``), writes them where the page says, and runs them: a page that stops working breaks
the build. Covered: the Flask tutorial (docs/tutorial/flask-app.md) and the FastAPI how-to's
application and test example (docs/how-to/fastapi.md).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postback.plugins import PluginHost
from postback.sandbox import Sandbox

DOCS = Path(__file__).resolve().parent.parent / "docs"
FIVE = ("applovin", "mobana", "tonai", "whop", "x")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.timeout(120)


def blocks(page: str, lang: str | None = None) -> list[str]:
    """The fenced code blocks of a docs page, in order (only ``lang`` ones if given)."""
    text = (DOCS / page).read_text()
    return [body for kind, body in _FENCE.findall(text) if lang is None or kind == lang]


def block(page: str, first_line: str) -> str:
    """The one block of ``page`` whose first line is ``first_line`` (e.g. ``# app.py``)."""
    found = [b for b in blocks(page) if b.splitlines()[0].strip() == first_line]
    assert len(found) == 1, f"{page}: expected one block starting {first_line!r}"
    return found[0]


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    return json.dumps(value)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    host = PluginHost()
    missing = [v for v in FIVE if v not in host.emulators]
    if missing:
        pytest.skip(f"the docs assume the five vendor plugins; not installed: {missing}")
    with Sandbox.from_plugins({v: host.emulators[v] for v in FIVE}) as box:
        yield box


def sandbox_tables(box: Sandbox) -> str:
    """The ``[vendors.NAME]`` tables ``postback sandbox`` prints, one per vendor."""
    out = []
    for vendor in FIVE:
        out.append(f"[vendors.{vendor}]")
        out += [f"{k} = {toml_value(v)}" for k, v in box.vendor_config(vendor).items()]
        out.append("")
    return "\n".join(out)


# --- docs/tutorial/flask-app.md ------------------------------------------------------------------


def test_the_flask_tutorial_runs_as_written(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    page = "tutorial/flask-app.md"
    (tmp_path / "postback.toml").write_text(
        '[postback]\nqueue = "sqlite://postback.db"\n\n' + sandbox_tables(sandbox)
    )
    (tmp_path / "app.py").write_text(block(page, "# app.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "app", raising=False)

    # The curl line of the page, as a Flask test-client request.
    [shell] = [b for b in blocks(page, "sh") if "curl" in b]
    curl = shlex.split(shell.split("curl", 1)[1].replace("\\\n", " ").splitlines()[0])
    url = next(a for a in curl if a.startswith("http"))
    agent = curl[curl.index("-A") + 1]
    cookie_name, _, cookie_value = curl[curl.index("--cookie") + 1].partition("=")
    path = url.removeprefix("http://127.0.0.1:5000")

    with caplog.at_level(logging.WARNING, logger="postback"):
        module = importlib.import_module("app")
        try:
            client = module.app.test_client()
            client.set_cookie(cookie_name, cookie_value)
            response = client.post(path, headers={"User-Agent": agent})
            assert response.status_code == 200, response.text
            assert response.json == {"ok": True}
            with module.app.app_context():
                assert module.postback.flush(timeout=20).complete
                stats = module.postback.stats()
        finally:
            with module.app.app_context():
                module.postback.close(timeout=5)
            sys.modules.pop("app", None)

    [event] = sandbox.received("applovin")
    assert event["dedupe_id"] == "order-1042-purchase"
    assert event["user_data"]["client_user_agent"] == agent
    assert (event["user_data"]["aleid"], event["user_data"]["axwrt"]) == ("abc", "w1")
    assert event["event_source_url"].endswith("/checkout/1042/done?utm_source=x&aleid=abc")
    for vendor in ("x", "mobana", "whop", "tonai"):
        assert sandbox.received(vendor) == [], vendor
    assert stats["x"]["skips"] == {"no device id": 1}
    assert stats["mobana"]["skips"] == {"no install id": 1}
    # The warning the page shows is the one the log has.
    [shown] = [b for b in blocks(page, "text") if "skipped" in b]
    shown = shown.strip().removeprefix("WARNING postback: ").removesuffix("...")
    assert any(r.getMessage().startswith(shown) for r in caplog.records), shown

    # `postback queue stats`, as the page runs it next to postback.toml.
    result = subprocess.run(
        [sys.executable, "-m", "postback", "queue", "stats", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    vendors = json.loads(result.stdout)["vendors"]
    assert vendors["x"]["skipped"] == {"no device id": 1}
    assert vendors["mobana"]["skipped"] == {"no install id": 1}


def test_the_flask_tutorials_explain_example_runs_as_written(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    page = "tutorial/flask-app.md"
    (tmp_path / "postback.toml").write_text(
        '[postback]\nqueue = "memory://"\n\n' + sandbox_tables(sandbox)
    )
    (tmp_path / "app.py").write_text(block(page, "# app.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "app", raising=False)
    [snippet] = [b for b in blocks(page, "python") if "explain" in b]
    module = importlib.import_module("app")
    try:
        with module.app.app_context():  # what `flask shell` provides
            exec(compile(snippet, "flask-app.md", "exec"), {})
            module.postback.close(timeout=0)
    finally:
        sys.modules.pop("app", None)
    out = capsys.readouterr().out
    assert "'purchase': track() would return an id and queue the event for no vendor" in out
    assert "applovin: skipped: user.ip_address: no IP address" in out
    assert "x: skipped: user.ifa: no device id" in out
    assert "whop: not routed" in out


# --- docs/how-to/fastapi.md ----------------------------------------------------------------------


def test_the_fastapi_howtos_app_and_test_example_run_as_written(tmp_path: Path) -> None:
    page = "how-to/fastapi.md"
    if not all(PluginHost().emulators.get(v) for v in FIVE):
        pytest.skip("the docs assume the five vendor plugins")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "main.py").write_text(block(page, "# shop/main.py"))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_checkout.py").write_text(block(page, "# tests/test_checkout.py"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


# --- docs/how-to/opentelemetry.md ----------------------------------------------------------------


def test_the_opentelemetry_how_to_serves_prometheus_metrics_as_written(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus")
    page = "how-to/opentelemetry.md"
    (tmp_path / "postback.toml").write_text(
        '[postback]\nqueue = "sqlite://postback.db"\n\n' + sandbox_tables(sandbox)
    )
    (tmp_path / "metrics_app.py").write_text(block(page, "# metrics_app.py"))
    env = {**os.environ, "METRICS_PORT": "0"}  # a free port
    result = subprocess.run(
        [sys.executable, "metrics_app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # AppLovin takes the purchase (an email and an ip are enough), as the page shows.
    [delivered] = [ln for ln in lines if ln.startswith("postback_events_delivered_total")
                   and 'postback_vendor="applovin"' in ln]  # fmt: skip
    assert delivered.endswith(" 1.0")
    for name in ("postback_events_tracked_total", "postback_delivery_duration_seconds_bucket",
                 "postback_queue_depth", "postback_queue_oldest_age_seconds"):  # fmt: skip
        assert any(ln.startswith(name) for ln in lines), (name, lines)
    # The page's sample output shows real metric names.
    [shown] = [b for b in blocks(page, "text") if "postback_events_delivered_total" in b]
    for ln in shown.splitlines():
        if ln.startswith("postback_"):
            assert any(out.startswith(ln.split("{")[0] + "{") for out in lines), ln
    assert len(sandbox.received("applovin")) == 1

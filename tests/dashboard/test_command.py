"""``postback ui``: registered in the CLI, serves on loopback, refuses any other address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from postback.cli import main
from postback.dashboard import Dashboard, LoopbackOnly, serve
from postback.dashboard.wsgi import is_loopback
from postback.delivery.sqlite import SQLiteQueue


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_ui_refuses_to_listen_beyond_loopback(host: str, tmp_path) -> None:
    result = CliRunner().invoke(main, ["ui", "--host", host, "-c", str(tmp_path / "none.toml")])
    assert result.exit_code == 2
    assert "only listens on loopback" in result.output


def test_serve_refuses_beyond_loopback(dashboard: Dashboard) -> None:
    with pytest.raises(LoopbackOnly, match="SSH tunnel"):
        serve(dashboard, "0.0.0.0", 0)


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "localhost.evil"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_postback_ui_refuses_a_missing_queue_file_instead_of_creating_it(tmp_path) -> None:
    # Was: a mistyped path served an empty dashboard over a new empty queue (and directories).
    missing = tmp_path / "typo" / "q.db"
    config = tmp_path / "postback.toml"
    config.write_text(f'[postback]\nqueue = "sqlite:///{missing}"\n')
    env = {**os.environ, "POSTBACK_DISABLE_PLUGINS": "*"}
    argv = [sys.executable, "-m", "postback", "ui", "-c", str(config), "--port", "0"]
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("postback ui served a queue that does not exist") from None
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"the queue file {missing} does not exist" in done.stderr
    assert not (tmp_path / "typo").exists()


def test_postback_ui_serves_a_config(tmp_path) -> None:
    config = tmp_path / "postback.toml"
    config.write_text(f'[postback]\nqueue = "sqlite:///{tmp_path}/q.db"\n')
    SQLiteQueue(tmp_path / "q.db").close()  # the app made it
    port = _free_port()
    env = {**os.environ, "POSTBACK_DISABLE_PLUGINS": "*"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "postback", "ui", "-c", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/config", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    out = proc.stdout.read().decode() if proc.poll() is not None else ""
                    raise AssertionError(f"postback ui did not start: {out}") from None
                time.sleep(0.1)
        assert page.status_code == 200
        assert "[postback]" in page.text and str(tmp_path / "q.db") in page.text
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def served(dashboard: Dashboard) -> Iterator[str]:
    server = serve(dashboard, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("name", ["rebound.example", "127.0.0.1.nip.io", "localhost.evil", ""])
def test_the_loopback_server_refuses_a_request_addressed_to_another_name(
    served: str, name: str
) -> None:
    """DNS rebinding: a web page at an attacker's name that resolves to 127.0.0.1 is, to the
    browser, its own origin, so it could read the pages and their CSRF token, then replay or
    discard dead letters. The server only answers requests addressed to a loopback name."""
    port = served.rsplit(":", 1)[1]
    host = f"{name}:{port}" if name else ""
    page = httpx.get(f"{served}/config", headers={"host": host})
    assert page.status_code == 403, page.text
    assert "localhost" in page.text and "[postback]" not in page.text
    post = httpx.post(
        f"{served}/deadletters/1/discard",
        headers={"host": host, "origin": f"http://{host}"},
        data={"csrf_token": "0" * 64},
    )
    assert post.status_code == 403


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "app.localhost", "127.0.0.2"])
def test_the_loopback_server_answers_loopback_names(served: str, name: str) -> None:
    port = served.rsplit(":", 1)[1]
    page = httpx.get(f"{served}/config", headers={"host": f"{name}:{port}"})
    assert page.status_code == 200 and "[postback]" in page.text


@pytest.mark.parametrize("taken", [True, False], ids=["in-use", "out-of-range"])
def test_ui_on_a_port_it_cannot_listen_on_is_a_clear_error(
    tmp_path, monkeypatch: pytest.MonkeyPatch, taken: bool
) -> None:
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "*")
    config = tmp_path / "postback.toml"
    config.write_text('[postback]\nqueue = "memory://"\n')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1] if taken else 70000
        result = CliRunner().invoke(main, ["ui", "-c", str(config), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert str(port) in result.output

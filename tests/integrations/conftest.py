"""Fixtures for the web integration tests: a sandbox, and real servers on loopback.

The apps under test live in ``apps/`` (put on ``sys.path`` here and on ``PYTHONPATH`` for
server processes). They deliver to the sandbox's ``ExampleEmulator`` through the in-process
plugins ``postback.testing.example`` and ``pb_context_echo`` (which copies the request context
into the wire record, so the sandbox shows what arrived). Entry-point plugins are disabled:
these tests are about the integrations, not the vendors.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from postback.sandbox import Sandbox
from postback.testing.example import ExampleEmulator

APPS = Path(__file__).parent / "apps"
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _no_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "*")


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox([ExampleEmulator()]) as box:
        monkeypatch.setenv("PB_TEST_EXAMPLE_URL", box.base_url("example"))
        yield box


@pytest.fixture
def example_config(sandbox: Sandbox) -> Callable[..., dict[str, Any]]:
    """A config dict delivering to the sandbox; keywords go to [postback]."""

    def make(**core: Any) -> dict[str, Any]:
        return {
            "postback": {"queue": "memory://", **core},
            "vendors": {"example": {**sandbox.vendor_config("example"), "linger": 0}},
        }

    return make


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(name="wait_until")
def _wait_until() -> Callable[..., None]:
    return wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server (or worker) process started by a test, with its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int | None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            argv, env=env, cwd=APPS, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.http = httpx.Client(base_url=self.url, trust_env=False, timeout=30.0)

    @property
    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, path: str = "/health", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.output}")
            try:
                if self.http.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready after {timeout}s:\n{self.output}")
            time.sleep(0.1)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.get(path, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text, self.output)
        return response

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                pytest.fail(f"process did not stop after {sig!r}:\n{self.output}")
        return self.proc.returncode

    def cleanup(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def start_process(tmp_path: Path, sandbox: Sandbox) -> Iterator[Callable[..., ServerProcess]]:
    """Start a process from ``apps/`` with the sandbox in its environment; killed at the end.

    ``argv`` may contain ``{port}``, replaced by a free loopback port.
    """
    started: list[ServerProcess] = []

    def start(
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        serve: bool = True,
        ready_path: str = "/health",
    ) -> ServerProcess:
        port = free_port() if serve else None
        full_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")]),
            "POSTBACK_DISABLE_PLUGINS": "*",
            "PB_TEST_EXAMPLE_URL": sandbox.base_url("example"),
            "PYTHONUNBUFFERED": "1",
            "PB_TEST_SERVER": "1",
            **(env or {}),
        }
        resolved = [a.format(port=port) for a in argv]
        if resolved[0] in ("gunicorn", "uvicorn"):
            resolved[0] = str(VENV_BIN / resolved[0])
        elif resolved[0] == "python":
            resolved[0] = sys.executable
        proc = ServerProcess(resolved, full_env, tmp_path / f"process-{len(started)}.log", port)
        started.append(proc)
        if serve:
            proc.wait_ready(ready_path)
        return proc

    yield start
    for proc in started:
        proc.cleanup()


def received_by_id(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {e["event_id"]: e for e in sandbox.received("example")}


@pytest.fixture(name="received_by_id")
def _received_by_id() -> Callable[[Sandbox], dict[str, dict[str, Any]]]:
    return received_by_id

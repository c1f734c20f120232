"""Helpers for the Redis queue tests: a redis-server process, worker processes, a recording sink.

Imported by ``conftest.py`` (fixtures) and the test modules.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from postback import Tracker
from postback.sandbox import Sandbox
from postback.testing.example import ExampleEmulator

REAL_PLUGINS = "mobana,x,whop,tonai,applovin"  # kept out of worker processes: hermetic tests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free and valid too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def redis_binary() -> str:
    """The redis-server path, or skip (fail in CI) with how to get one."""
    found = shutil.which("redis-server")
    if found:
        return found
    reason = (
        "redis-server is not on PATH: install Redis (e.g. apt install redis-server) or set "
        "REDIS_URL=redis://127.0.0.1:6379/0 to run the Redis queue tests"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class RedisServer:
    """A redis-server process on loopback, with an append-only file in ``directory``."""

    def __init__(
        self, directory: Path, *, appendfsync: str = "everysec", extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = redis_binary()
        self.directory = directory
        self.port = free_port()
        self.appendfsync = appendfsync
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            *self.extra_args,
        ]

    def start(self) -> RedisServer:
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except redis.AuthenticationError:
                    return self  # up, and wants a password
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start: {(self.directory / 'redis.log').read_text()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def shutdown(self) -> None:
        """``SHUTDOWN``: Redis writes and syncs its AOF, then exits."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            client.shutdown()
        except redis.ConnectionError:
            pass
        finally:
            client.close()
        self._wait()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed on the way out."""
        assert self.proc is not None
        self.proc.kill()
        self._wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self._wait()

    def _wait(self) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class SentinelServer(RedisServer):
    """A Redis Sentinel watching ``master`` (as service ``mymaster``)."""

    def __init__(self, directory: Path, master: RedisServer) -> None:
        super().__init__(directory)
        self.master = master
        self.url = f"redis+sentinel://127.0.0.1:{self.port}/mymaster/0"

    def command(self) -> list[str]:
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 1\n"
        )
        return [self.binary, str(conf), "--sentinel"]


def cleanup_prefix(base_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(base_url)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def queue_url(base_url: str, **params: Any) -> str:
    """``base_url`` with query parameters added."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{base_url}{'&' if '?' in base_url else '?'}{query}"


# --------------------------------------------------------------------------------------------
# The sink


class RecordingSandbox(Sandbox):
    """The example emulator, also noting when each request arrived and how many are open."""

    def __init__(self) -> None:
        super().__init__([ExampleEmulator()])
        self.arrivals: list[float] = []
        self.open_requests = 0
        self.started_requests = 0
        self._record = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.startswith("/example/"):
            return super().handle(request)
        with self._record:
            self.arrivals.append(time.monotonic())
            self.open_requests += 1
            self.started_requests += 1
        try:
            return super().handle(request)
        finally:
            with self._record:
                self.open_requests -= 1

    def event_ids(self) -> list[str]:
        return [r["event_id"] for r in self.received("example")]


# --------------------------------------------------------------------------------------------
# Producers and worker processes


def example_config(queue: str, sink: Sandbox, **vendor: Any) -> dict[str, Any]:
    return {
        "postback": {"queue": queue},
        "vendors": {"example": {**sink.vendor_config("example"), "linger": 0.01, **vendor}},
    }


def track_many(tracker: Tracker, count: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + count):
        ids.append(
            tracker.track(
                "purchase",
                user={"email": f"u{i}@example.com"},
                value=i + 1,
                currency="USD",
                event_id=f"evt-{i}",
            )
        )
    return ids


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    lines = []
    for table, values in (
        ("postback", cfg["postback"]),
        *((f"vendors.{k}", v) for k, v in cfg["vendors"].items()),
    ):
        lines.append(f"[{table}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Workers:
    """``postback worker`` processes; whatever is still running is killed at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        shim = root / "plugin-shim"
        info = shim / "postback_test_example-1.0.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: postback-test-example\nVersion: 1.0\n"
        )
        (info / "entry_points.txt").write_text("[postback]\nexample = postback.testing.example\n")
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])),
            "POSTBACK_DISABLE_PLUGINS": REAL_PLUGINS,
            "PYTHONUNBUFFERED": "1",
        }

    def start(self, config: Path, count: int = 1) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            n = len(self.procs)
            log = (self.root / f"worker-{n}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "postback", "-v", "worker", "--config", str(config)],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            self.procs.append(proc)
            started.append(proc)
        return started

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.root / f"worker-{self.procs.index(proc)}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

"""Shared plumbing of the benchmarks: the sink process and its client, process measurements.

Nothing here measures anything by itself; ``run.py`` (the orchestrator) and ``workload.py``
(the measured processes) use it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "BENCH_DIR",
    "SCRATCH_ENV",
    "Neighbour",
    "Sink",
    "SinkClient",
    "cpu_seconds",
    "machine",
    "rss_bytes",
    "run_worker",
    "source_fingerprint",
    "throughput_spec",
]

BENCH_DIR = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: The environment variable through which run.py gives its workloads a scratch directory.
SCRATCH_ENV = "POSTBACK_BENCH_SCRATCH"


class SinkClient:
    """Talks to a running sink's ``/_sink/`` control endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(30.0, read=None))

    def configure(self, *, latency: float | None = None, status: int | str | None = "keep") -> None:
        body: dict[str, Any] = {}
        if latency is not None:
            body["latency"] = latency
        if status != "keep":
            body["status"] = status
        self._client.post("/_sink/config", json=body).raise_for_status()

    def reset(self) -> None:
        self._client.post("/_sink/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self._client.get("/_sink/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def ids(self) -> set[str]:
        response = self._client.get("/_sink/ids")
        response.raise_for_status()
        return set(response.json()["ids"])

    def wait(self, count: int, timeout: float) -> dict[str, Any]:
        """Block until the sink has ``count`` unique ids (or ``timeout`` seconds passed)."""
        response = self._client.get(
            "/_sink/wait", params={"count": count, "timeout": timeout}, timeout=timeout + 10
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        self._client.close()


class Sink:
    """The sink as a child process (``bench/sink.py``), started on a free loopback port."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "sink.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            self.process.kill()
            raise RuntimeError(f"the sink did not start (said {line!r})")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = SinkClient(self.url)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: The busy neighbour: pinned to the machine's last CPU, it spins until it is terminated.
_SPIN = """
import os
os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
x = 0
while True:
    x += 1
"""


class Neighbour:
    """A CPU-bound process on the other core: the "busy machine" variant of a measurement.

    Apps rarely have a machine to themselves: other processes (another web worker, a cron job,
    a neighbour on the same host) want the cores too. The neighbour spins on the machine's last
    CPU at normal priority for as long as the context is open, so the process under test, its
    delivery process (if any) and the sink share what is left.
    """

    def __enter__(self) -> Neighbour:
        self.process = subprocess.Popen([sys.executable, "-c", _SPIN])
        time.sleep(0.2)  # let it start spinning before the measurement does
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def source_fingerprint() -> str:
    """A hash of the core's and the plugins' source, to tell whether it changed during a run."""
    import hashlib

    root = BENCH_DIR.parent
    digest = hashlib.sha256()
    files = sorted(root.glob("src/postback/**/*.py")) + sorted(root.glob("plugins/*/src/**/*.py"))
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()[:12]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(field: str = "VmRSS") -> int:
    """This process's resident set size (``VmRSS``) or its peak (``VmHWM``), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("postback", "segment-analytics-python", "httpx", "requests", "orjson"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "not installed"
    import sqlite3

    git = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    from postback.config import CoreSettings

    return {
        "default_workers": CoreSettings().workers,
        "git": f"{git or 'unknown'}{' + uncommitted changes in src/' if dirty else ''}",
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "versions": versions,
        "loadavg_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def throughput_spec(n: int, **extra: Any) -> dict[str, Any]:
    """A ``throughput`` workload (``workload.py``): postback tracks ``n`` events for the
    batched bench vendor with 16 requests in flight; ``extra`` adds or overrides keys."""
    spec = {"scenario": "throughput", "lib": "postback", "n": n, "vendor": "bench_batch"}
    return {**spec, "concurrency": 16, **extra}


def run_worker(spec: dict[str, Any], *, timeout: float = 300.0) -> dict[str, Any]:
    """Run ``workload.py`` with ``spec`` in a fresh interpreter; its JSON result."""
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "workload.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"workload {spec.get('scenario')}/{spec.get('lib')} failed "
            f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(
            f"workload printed no result:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result

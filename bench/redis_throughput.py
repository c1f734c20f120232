"""Benchmark of the Redis queue: delivery throughput with 1, 2 and 4 ``postback worker``
processes, and the cost of ``track()`` on Redis side by side with SQLite, in one run.

Usage (from the repository root)::

    .venv/bin/python bench/redis_throughput.py            # full run, about two minutes
    .venv/bin/python bench/redis_throughput.py --quick    # smaller counts, for a smoke test
    .venv/bin/python bench/redis_throughput.py --redis-url redis://127.0.0.1:6379/0

It starts a ``redis-server`` of its own (``appendonly yes``, ``appendfsync everysec``, in a temp
dir) unless ``--redis-url`` is given, and the lean asyncio sink of ``bench/sink.py`` in its own
process, answering every request after 20 ms, like a vendor.

Throughput: the queue is filled while the workers are paused (SIGSTOP), then they are all let go
at once (SIGCONT); the figure is events / (time the sink accepted the last event - that moment).
Two shapes: batches of 50 events per request (a batching vendor, CPU-bound here) and one event
per request (a vendor without a batch endpoint, latency-bound: 8 requests in flight per worker).
Rate limits are off, so the figures are the queue's and the workers', not a vendor's.

track(): the same events through a tracker that only enqueues (``workers = false``), timed one
by one with ``perf_counter_ns``: p50, p99 and max, for SQLite (``synchronous`` normal and full)
and Redis (``appendfsync`` everysec and always).

Prints a table and writes ``bench/results/redis.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from common import BENCH_DIR, Sink, cpu_seconds, machine

import postback.testing.example as example
from postback import Tracker

RESULTS = BENCH_DIR / "results" / "redis.json"
LATENCY = 0.02
REAL_PLUGINS = "mobana,x,whop,tonai,applovin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """redis-server on loopback with an append-only file in a temp dir."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server is not on PATH: install Redis or pass --redis-url")
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        try:
            for _ in range(400):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.proc.poll() is not None:
                        break
                    time.sleep(0.05)
            sys.exit(f"redis-server did not start on port {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def example_vendor(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"api_key": "bench-key", "base_url": base_url, "rate_limit": False, **extra}


def track_events(tracker: Tracker, count: int, tag: str) -> list[int]:
    """Track ``count`` purchases; the time each track() took, in ns."""
    took = []
    clock = time.perf_counter_ns
    for i in range(count):
        t0 = clock()
        tracker.track(
            "purchase",
            user={"email": f"u{i}@example.com"},
            value=19.99 + i % 7,
            currency="USD",
            event_id=f"{tag}-{i}",
            properties={"transaction_id": f"T{i}", "items": [{"id": "sku-1"}]},
        )
        took.append(clock() - t0)
    return took


def percentiles(samples: list[int]) -> dict[str, float]:
    s = sorted(samples)

    def at(p: float) -> float:
        return round(s[min(int(len(s) * p), len(s) - 1)] / 1000, 1)

    return {
        "p50_us": at(0.50),
        "p99_us": at(0.99),
        "max_us": round(s[-1] / 1000, 1),
        "mean_us": round(sum(s) / len(s) / 1000, 1),
    }


def cleanup(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# --------------------------------------------------------------------------------------------
# track() cost


def track_cost(redis_url: str, tmp: Path, count: int, own_server: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    vendor = example_vendor("http://127.0.0.1:9/unused")
    client = redis.Redis.from_url(redis_url)
    cases: list[tuple[str, dict[str, Any], str | None]] = [
        ("sqlite (synchronous=normal)", {"queue": f"sqlite:///{tmp}/track-normal.db"}, None),
        (
            "sqlite (synchronous=full)",
            {"queue": f"sqlite:///{tmp}/track-full.db", "sqlite_synchronous": "full"},
            None,
        ),
        (
            "redis (appendfsync everysec)",
            {"queue": f"{redis_url}?prefix=bench-track-es"},
            "everysec",
        ),
    ]
    if own_server:
        cases.append(
            (
                "redis (appendfsync always)",
                {"queue": f"{redis_url}?prefix=bench-track-al"},
                "always",
            )
        )
    for label, core, fsync in cases:
        if fsync and own_server:
            client.config_set("appendfsync", fsync)
        cfg = {"postback": {**core, "workers": False}, "vendors": {"example": vendor}}
        tracker = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
        track_events(tracker, 300, "warm")
        if fsync:
            client.config_resetstat()
        took = track_events(tracker, count, "t")
        row: dict[str, Any] = {"events": count, **percentiles(took)}
        if fsync:
            stats = client.info("commandstats").get("cmdstat_evalsha", {})
            row["redis_server_us_per_put"] = stats.get("usec_per_call")
            prefix = core["queue"].rpartition("prefix=")[2]
            used = client.memory_usage("{" + prefix + "}:events", samples=0) or 0
            row["stream_bytes_per_event"] = round(used / (count + 300))
        tracker.close(timeout=0)
        if fsync:
            cleanup(redis_url, core["queue"].rpartition("prefix=")[2])
        out[label] = row
        server = f"  (Redis: {row['redis_server_us_per_put']} us/put)" if fsync else ""
        print(
            f"  track() {label:32} p50 {row['p50_us']:8.1f} us  p99 {row['p99_us']:8.1f} us"
            f"  max {row['max_us']:9.1f} us{server}",
            flush=True,
        )
    if own_server:
        client.config_set("appendfsync", "everysec")
    client.close()
    return out


# --------------------------------------------------------------------------------------------
# Delivery throughput


class WorkerPool:
    """``postback worker`` processes with the example vendor registered by entry point."""

    def __init__(self, tmp: Path) -> None:
        shim = tmp / "shim"
        info = shim / "postback_bench_example-1.0.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: postback-bench-example\nVersion: 1.0\n"
        )
        (info / "entry_points.txt").write_text("[postback]\nexample = postback.testing.example\n")
        self.tmp = tmp
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])),
            "POSTBACK_DISABLE_PLUGINS": REAL_PLUGINS,
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, config: Path, count: int) -> None:
        for _ in range(count):
            log_path = self.tmp / f"worker-{len(self.logs)}.log"
            with log_path.open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "postback", "worker", "--config", str(config)],
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            self.logs.append(log_path)
        deadline = time.monotonic() + 60
        for proc, log_path in zip(self.procs, self.logs, strict=True):
            while "postback worker: delivering" not in log_path.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker did not start:\n{log_path.read_text()}")
                time.sleep(0.05)

    def signal(self, sig: int) -> None:
        for proc in self.procs:
            proc.send_signal(sig)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def throughput(
    redis_url: str,
    redis_pid: int | None,
    sink: Sink,
    tmp: Path,
    n_workers: int,
    batch_size: int,
    events: int,
    run: int,
    queue: str = "redis",
) -> dict[str, Any]:
    """Fill the queue with the workers paused, let them go, time until the sink has it all.

    ``queue="sqlite"`` runs the same with a SQLite file (one deliverer) as the baseline.
    """
    prefix = f"bench-tp-{run}"
    url = f"{redis_url}?prefix={prefix}" if queue == "redis" else f"sqlite:///{tmp}/tp-{run}.db"
    config = tmp / f"worker-{run}.toml"
    config.write_text(
        f'[postback]\nqueue = "{url}"\n\n[vendors.example]\napi_key = "bench-key"\n'
        f'base_url = "{sink.url}/example"\nrate_limit = false\nbatch_size = {batch_size}\n'
    )
    sink.client.reset()
    sink.client.configure(latency=LATENCY)
    pool = WorkerPool(tmp / f"run-{run}")
    try:
        pool.start(config, n_workers)
        pool.signal(signal.SIGSTOP)
        cfg = {
            "postback": {"queue": url, "workers": False},
            "vendors": {"example": example_vendor(f"{sink.url}/example")},
        }
        producer = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
        track_events(producer, events, f"r{run}")
        producer.close(timeout=0)
        cpu0 = pool.cpu_seconds()
        redis_cpu0 = cpu_seconds(redis_pid) if redis_pid else 0.0
        start_ns = time.monotonic_ns()
        pool.signal(signal.SIGCONT)
        reached = sink.client.wait(events, timeout=600)
        if not reached["reached"]:
            raise RuntimeError(f"only {reached['unique']} of {events} events arrived")
        elapsed = (reached["reached_ns"] - start_ns) / 1e9
        stats = sink.client.stats()
        row = {
            "queue": queue,
            "workers": n_workers,
            "batch_size": batch_size,
            "events": events,
            "seconds": round(elapsed, 3),
            "events_per_s": round(events / elapsed),
            "requests": stats["requests"],
            "duplicates": stats["received"] - stats["unique"],
            "worker_cpu_s": round(pool.cpu_seconds() - cpu0, 2),
        }
        if redis_pid:
            row["redis_cpu_s"] = round(cpu_seconds(redis_pid) - redis_cpu0, 2)
    finally:
        pool.stop()
        if queue == "redis":
            cleanup(redis_url, prefix)
    print(
        f"  {queue:6} {n_workers} worker(s), batch {batch_size:2}: "
        f"{row['events_per_s']:7} events/s "
        f"({events} in {row['seconds']} s, {row['requests']} requests, "
        f"worker CPU {row['worker_cpu_s']} s)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of starting one")
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke test)")
    args = parser.parse_args()
    quick = args.quick
    batched_events, single_events, track_n = (4000, 600, 1000) if quick else (30000, 4000, 5000)
    with tempfile.TemporaryDirectory(prefix="postback-bench-redis-") as tmp_name:
        tmp = Path(tmp_name)
        server = None if args.redis_url else RedisProcess(tmp / "redis-data")
        redis_url = args.redis_url or server.url  # type: ignore[union-attr]
        results: dict[str, Any] = {"machine": machine(), "redis_url": redis_url.split("@")[-1]}
        info = redis.Redis.from_url(redis_url).info("server")
        results["redis_version"] = info["redis_version"]
        sink = Sink()
        try:
            print("track() cost, one event at a time:", flush=True)
            results["track"] = track_cost(redis_url, tmp, track_n, server is not None)
            print(f"delivery throughput, sink latency {LATENCY * 1000:.0f} ms:", flush=True)
            rows = []
            run = 0
            for batch_size, events in ((50, batched_events), (1, single_events)):
                run += 1
                rows.append(
                    throughput(redis_url, None, sink, tmp, 1, batch_size, events, run, "sqlite")
                )
                for n in (1, 2, 4):
                    run += 1
                    rows.append(
                        throughput(
                            redis_url,
                            server.proc.pid if server else None,
                            sink,
                            tmp,
                            n,
                            batch_size,
                            events,
                            run,
                        )
                    )
            results["throughput"] = rows
            results["sink_latency_s"] = LATENCY
            results["command"] = "python bench/redis_throughput.py" + (" --quick" if quick else "")
        finally:
            sink.stop()
            if server is not None:
                server.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {RESULTS.relative_to(BENCH_DIR.parent)}")


def print_table(results: dict[str, Any]) -> None:
    print("\n| queue | track() p50 | p99 | max | Redis server time per put |")
    print("|---|---:|---:|---:|---:|")
    for label, row in results["track"].items():
        server = row.get("redis_server_us_per_put")
        print(
            f"| {label} | {row['p50_us']} µs | {row['p99_us']} µs | {row['max_us']} µs | "
            f"{f'{server} µs' if server is not None else '-'} |"
        )
    print(
        "\n| queue | workers | events per request | events/s | requests | worker CPU s "
        "| redis CPU s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in results["throughput"]:
        print(
            f"| {row['queue']} | {row['workers']} | {row['batch_size']} | {row['events_per_s']} | "
            f"{row['requests']} | {row['worker_cpu_s']} | {row.get('redis_cpu_s', '-')} |"
        )


if __name__ == "__main__":
    main()

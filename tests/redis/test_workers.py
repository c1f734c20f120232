"""Real ``postback worker`` processes sharing one Redis queue: a worker killed mid-run, a graceful
SIGTERM, a Redis restart, and one rate limit shared by every worker."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import postback.testing.example as example
from postback import Tracker
from postback.delivery.redis import RedisQueue
from postback.errors import QueueError
from tests.redis.support import (
    RecordingSandbox,
    RedisServer,
    Workers,
    example_config,
    queue_url,
    track_many,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


def start_workers(workers: Workers, config: Path, count: int) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` workers and wait until each says it is delivering."""
    procs = workers.start(config, count)
    for proc in procs:
        wait_for(
            lambda p=proc: "postback worker: delivering" in workers.log(p) or p.poll() is not None,
            60,
            "a worker to start",
        )
        assert proc.poll() is None, workers.log(proc)
    return procs


def assert_same_events(sink: RecordingSandbox, expected: list[str]) -> Counter[str]:
    """Every expected event arrived; a repeat is the same event (same id, same content)."""
    records = sink.received("example")
    seen = Counter(r["event_id"] for r in records)
    assert set(seen) == set(expected)
    by_id: dict[str, dict[str, object]] = {}
    for r in records:
        assert by_id.setdefault(r["event_id"], r) == r
    for eid, r in by_id.items():
        assert r["value_micros"] == (int(eid.split("-")[1]) + 1) * 1_000_000
    return seen


def test_every_event_arrives_when_a_worker_is_killed(
    redis_url: str, sink: RecordingSandbox, producer: Tracker, workers: Workers, tmp_path: Path
) -> None:
    sink.set_fault("example", latency=0.05)
    config = write_config(
        tmp_path / "worker.toml", example_config(redis_url, sink, batch_size=2, concurrency=2)
    )
    procs = start_workers(workers, config, 3)
    expected = track_many(producer, 300)
    wait_for(lambda: len(sink.received("example")) >= 50, 60, "deliveries to start")
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(10)
    wait_for(lambda: set(sink.event_ids()) >= set(expected), 90, "every event at the sink")
    seen = assert_same_events(sink, expected)
    wait_for(
        lambda: producer.queue.depth(["example"], int(time.time() * 1000))["example"].pending == 0,
        30,
        "the queue to drain",
    )
    assert all(p.poll() is None for p in procs[1:])
    assert sum(seen.values()) >= len(expected)


def test_sigterm_finishes_in_flight_and_leaves_the_rest(
    redis_base_url: str,
    redis_url: str,
    prefix: str,
    sink: RecordingSandbox,
    producer: Tracker,
    workers: Workers,
    tmp_path: Path,
) -> None:
    url = queue_url(redis_base_url, prefix=prefix, visibility_timeout=60)
    sink.set_fault("example", latency=1.0)
    config = write_config(
        tmp_path / "worker.toml", example_config(url, sink, batch_size=2, concurrency=2)
    )
    [first] = start_workers(workers, config, 1)
    expected = track_many(producer, 20)
    wait_for(lambda: sink.open_requests >= 1, 30, "a request in flight")
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0, workers.log(first)
    delivered = sink.event_ids()
    assert delivered, "the in-flight requests were finished"
    assert len(delivered) == len(set(delivered))
    queue = RedisQueue(url)
    try:
        depth = queue.depth(["example"], int(time.time() * 1000))["example"]
        assert depth.inflight == 0, workers.log(first)  # everything it sent was recorded
        assert depth.dead == 0
        assert depth.ready + depth.retrying == len(expected) - len(delivered)
    finally:
        queue.close()
    sink.set_fault("example", latency=0.0)
    start_workers(workers, config, 1)
    wait_for(lambda: set(sink.event_ids()) >= set(expected), 60, "the rest to be delivered")
    seen = assert_same_events(sink, expected)
    assert max(seen.values()) == 1, seen  # a graceful stop delivers nothing twice


@pytest.mark.parametrize(("stop", "appendfsync"), [("shutdown", "everysec"), ("sigkill", "always")])
def test_redis_restart_loses_no_acknowledged_event(
    stop: str,
    appendfsync: str,
    local_redis: Callable[..., RedisServer],
    sink: RecordingSandbox,
    workers: Workers,
    tmp_path: Path,
) -> None:
    """An event whose track() returned survives Redis stopping (SHUTDOWN, or SIGKILL with
    ``appendfsync always``) and starting again on the same AOF."""
    server = local_redis(appendfsync)
    url = queue_url(server.url, prefix="restart", visibility_timeout=2)
    config = write_config(tmp_path / "worker.toml", example_config(url, sink, batch_size=10))
    start_workers(workers, config, 1)
    cfg = example_config(url, sink)
    cfg["postback"]["workers"] = False
    tracker = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    acked: list[str] = []
    refused: list[int] = []
    stopping = threading.Event()

    def produce() -> None:
        i = 0
        while not stopping.is_set():
            try:
                acked.append(track_many(tracker, 1, start=i)[0])
            except QueueError:
                refused.append(i)
            i += 1
            time.sleep(0.002)

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        wait_for(lambda: len(acked) >= 100, 30, "events to be tracked")
        if stop == "shutdown":
            server.shutdown()
        else:
            server.kill()
        time.sleep(0.3)
        server.start()
        before = len(acked)
        wait_for(lambda: len(acked) >= before + 100, 60, "tracking to resume")
    finally:
        stopping.set()
        thread.join(30)
        tracker.close(timeout=0)
    wait_for(
        lambda: set(sink.event_ids()) >= set(acked), 90, "every acknowledged event at the sink"
    )
    assert len(acked) >= 200


def test_workers_share_one_rate_limit(
    redis_base_url: str,
    redis_url: str,
    prefix: str,
    sink: RecordingSandbox,
    producer: Tracker,
    workers: Workers,
    tmp_path: Path,
) -> None:
    limit, window = 10, 2.0
    url = queue_url(redis_base_url, prefix=prefix, visibility_timeout=10)
    config = write_config(
        tmp_path / "worker.toml",
        example_config(url, sink, batch_size=1, concurrency=3, rate_limit=f"{limit}/2s"),
    )
    start_workers(workers, config, 3)
    expected = track_many(producer, 30)
    wait_for(lambda: set(sink.event_ids()) >= set(expected), 60, "every event at the sink")
    arrivals = sorted(sink.arrivals)
    # Requests reach the sink up to `jitter` after the limiter let them go (generous, for a
    # loaded machine): any stretch of (window - jitter) seconds at the sink lies inside one
    # window at the limiter. Per-process limits would let 30 requests through at once.
    jitter = 1.0
    for i, start in enumerate(arrivals):
        in_window = sum(1 for t in arrivals[i:] if t < start + window - jitter)
        assert in_window <= limit, (in_window, [round(t - arrivals[0], 3) for t in arrivals])
    # 30 requests at 10 per 2 s take two full windows; without the shared limit, 9 parallel
    # senders would need a fraction of a second.
    assert arrivals[-1] - arrivals[0] >= 2 * window - jitter

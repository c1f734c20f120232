"""The Queue contract on a real Redis: put, claim, settle, retry, dead letters, replay, remember,
depth, the visibility timeout, trimming, health, shared rate limits, errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner
from limits import RateLimitItemPerSecond
from limits.strategies import MovingWindowRateLimiter

import postback.testing.example as example
from postback import Tracker
from postback.cli import main as cli
from postback.delivery.queue import Claimed, Queue, Settlement
from postback.delivery.redis import RedisQueue
from postback.delivery.registry import open_queue
from postback.errors import ConfigError, QueueError
from tests.redis.support import (
    RecordingSandbox,
    RedisServer,
    example_config,
    free_port,
    write_config,
)


@pytest.fixture
def queue(redis_url: str) -> Iterator[RedisQueue]:
    q = open_queue(redis_url)
    assert isinstance(q, RedisQueue)
    yield q
    q.close()


@pytest.fixture
def other(redis_url: str) -> Iterator[RedisQueue]:
    """A second process's view of the same queue (another consumer)."""
    q = RedisQueue(redis_url)
    yield q
    q.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def payload(i: int, name: str = "purchase") -> bytes:
    return orjson.dumps({"name": name, "event_id": f"e{i}", "i": i})


def put(q: Queue, i: int, vendors: tuple[str, ...] = ("a",)) -> None:
    q.put(f"e{i}", "purchase", 1_000 + i, list(vendors), payload(i))


def ids(claimed: list[Claimed]) -> list[str]:
    return [c.event_id for c in claimed]


def test_put_claim_settle_in_order(queue: RedisQueue) -> None:
    assert queue.capabilities.shared_across_hosts and queue.acquire_delivery()
    for i in range(5):
        put(queue, i)
    assert queue.depth(["a"], now_ms())["a"].ready == 5
    first = queue.claim("a", 3, now_ms())
    assert ids(first) == ["e0", "e1", "e2"]
    assert first[0].payload == payload(0) and first[0].created_ms == 1_000
    assert all(c.attempts == 0 for c in first)
    assert [c.seq for c in first] == sorted(c.seq for c in first)
    d = queue.depth(["a"], now_ms())["a"]
    assert (d.ready, d.inflight) == (2, 3)
    queue.settle("a", [Settlement(c, "done") for c in first], now_ms())
    assert ids(queue.claim("a", 10, now_ms())) == ["e3", "e4"]
    assert queue.depth(["a"], now_ms())["a"].inflight == 2


def test_routing_per_vendor_group(queue: RedisQueue) -> None:
    put(queue, 0, ("a", "b"))
    put(queue, 1, ("a",))
    put(queue, 2, ("b",))
    depth = queue.depth(["a", "b", "c"], now_ms())
    assert (depth["a"].ready, depth["b"].ready, depth["c"].ready) == (2, 2, 0)
    assert ids(queue.claim("b", 10, now_ms())) == ["e0", "e2"]
    assert ids(queue.claim("a", 10, now_ms())) == ["e0", "e1"]
    assert queue.claim("c", 10, now_ms()) == []
    assert queue.vendors_seen() == ["a", "b", "c"]  # c has a consumer group now


def test_retry_waits_until_due_and_counts_attempts(queue: RedisQueue) -> None:
    put(queue, 0)
    [c] = queue.claim("a", 1, now_ms())
    due = now_ms() + 60_000
    queue.settle("a", [Settlement(c, "retry", due_ms=due, error="HTTP 503", attempts=1)], now_ms())
    assert queue.claim("a", 10, now_ms()) == []
    d = queue.depth(["a"], now_ms())["a"]
    assert (d.ready, d.retrying, d.inflight) == (0, 1, 0)
    assert queue.next_due_ms("a") == due
    [again] = queue.claim("a", 10, due)
    assert (again.event_id, again.attempts, again.payload) == ("e0", 1, payload(0))
    assert again.seq == c.seq and again.created_ms == c.created_ms
    assert queue.depth(["a"], due)["a"].inflight == 1
    queue.settle("a", [Settlement(again, "retry", due_ms=due, error="HTTP 500", attempts=2)], due)
    [third] = queue.claim("a", 10, due)
    assert third.attempts == 2
    queue.settle("a", [Settlement(third, "done")], due)
    assert queue.depth(["a"], due)["a"].pending == 0
    assert queue.next_due_ms("a") is None


def test_release_keeps_attempts(queue: RedisQueue) -> None:
    put(queue, 0)
    [c] = queue.claim("a", 1, now_ms())
    queue.settle("a", [Settlement(c, "retry", due_ms=0, error="boom", attempts=3)], now_ms())
    [c] = queue.claim("a", 1, now_ms())
    queue.settle("a", [Settlement(c, "release", due_ms=0)], now_ms())
    [c] = queue.claim("a", 1, now_ms())
    assert c.attempts == 3


def test_dead_letters_and_requeue(queue: RedisQueue) -> None:
    for i in range(3):
        put(queue, i, ("a", "b"))
    claimed = queue.claim("a", 3, now_ms())
    t0 = now_ms()
    queue.settle(
        "a",
        [
            Settlement(claimed[0], "dead", error="HTTP 400: bad value", attempts=1),
            Settlement(claimed[1], "dead", error="gave up after 5 attempts", attempts=5),
            Settlement(claimed[2], "done"),
        ],
        t0,
    )
    [b0] = queue.claim("b", 1, now_ms())
    queue.settle("b", [Settlement(b0, "dead", error="refused", attempts=1)], t0 + 10)
    assert queue.depth(["a", "b"], now_ms())["a"].dead == 2
    rows = queue.dead_letters()
    assert [(d.vendor, d.event_id) for d in rows] == [("b", "e0"), ("a", "e1"), ("a", "e0")]
    a_rows = queue.dead_letters("a")
    assert [d.event_id for d in a_rows] == ["e1", "e0"]
    first = a_rows[1]
    assert (first.name, first.created_ms, first.reason, first.attempts, first.payload) == (
        "purchase",
        1_000,
        "HTTP 400: bad value",
        1,
        payload(0),
    )
    assert first.failed_ms == t0
    assert queue.dead_letter(first.id) == first
    assert queue.dead_letter(9999) is None
    assert queue.dead_letters(since_ms=t0 + 5) == rows[:1]

    moved = queue.requeue_dead("a", ids=[first.id])
    assert [d.id for d in moved] == [first.id]
    assert queue.requeue_dead(ids=[first.id]) == []  # already moved
    assert [d.event_id for d in queue.dead_letters("a")] == ["e1"]
    [again] = queue.claim("a", 10, now_ms())
    assert (again.event_id, again.attempts, again.payload) == ("e0", 0, payload(0))
    assert queue.depth(["b"], now_ms())["b"].ready == 2  # the replay went to a only
    assert {(d.vendor, d.event_id) for d in queue.requeue_dead()} == {("a", "e1"), ("b", "e0")}
    assert queue.dead_letters() == []
    assert ids(queue.claim("b", 10, now_ms())) == ["e1", "e2", "e0"]


def test_remember_and_forget(queue: RedisQueue, other: RedisQueue) -> None:
    assert queue.remember("tonai", "user-1") is True
    assert other.remember("tonai", "user-1") is False  # durable and shared
    assert queue.remember("x", "user-1") is True  # per vendor
    queue.forget("tonai", "user-1")
    assert other.remember("tonai", "user-1") is True


def test_crashed_consumer_is_taken_over_after_visibility(
    queue: RedisQueue, other: RedisQueue
) -> None:
    for i in range(4):
        put(queue, i)
    held = queue.claim("a", 2, now_ms())  # then "queue" dies without settling
    assert ids(other.claim("a", 10, now_ms())) == ["e2", "e3"]  # not e0, e1: still held
    time.sleep(2.3)
    taken = other.claim("a", 10, now_ms())
    assert ids(taken) == ["e0", "e1"]
    assert [c.seq for c in taken] == [c.seq for c in held]
    queue.settle("a", [Settlement(c, "dead", error="late", attempts=1) for c in held], now_ms())
    assert queue.dead_letters() == []  # a settlement for entries it lost is not applied
    other.settle("a", [Settlement(c, "done") for c in taken], now_ms())
    assert queue.depth(["a"], now_ms())["a"].inflight == 2  # e2, e3 still in flight


def test_live_consumer_renews_what_it_holds(queue: RedisQueue, other: RedisQueue) -> None:
    put(queue, 0)
    put(queue, 1)
    [c] = queue.claim("a", 1, now_ms())
    queue.settle("a", [Settlement(c, "retry", due_ms=0, error="x", attempts=1)], now_ms())
    held = queue.claim("a", 10, now_ms())  # e0 (a leased retry) and e1 (a stream entry)
    assert sorted(ids(held)) == ["e0", "e1"]
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        queue.maintenance()  # the engine calls this every second
        assert other.claim("a", 10, now_ms()) == []
        time.sleep(0.25)
    queue.settle("a", [Settlement(c, "done") for c in held], now_ms())
    assert queue.depth(["a"], now_ms())["a"].pending == 0


def test_expired_retry_lease_is_taken_over(queue: RedisQueue, other: RedisQueue) -> None:
    put(queue, 0)
    [c] = queue.claim("a", 1, now_ms())
    queue.settle("a", [Settlement(c, "retry", due_ms=0, error="x", attempts=2)], now_ms())
    [leased] = queue.claim("a", 1, now_ms())  # then dies
    assert other.claim("a", 1, now_ms()) == []
    [taken] = other.claim("a", 1, now_ms() + 2_500)
    assert (taken.event_id, taken.attempts) == ("e0", 2)
    queue.settle("a", [Settlement(leased, "done")], now_ms())  # lost it: not applied
    assert other.depth(["a"], now_ms())["a"].inflight == 1
    other.settle("a", [Settlement(taken, "done")], now_ms())
    assert other.depth(["a"], now_ms())["a"].pending == 0


def test_non_routed_entries_are_skipped_and_acknowledged(
    queue: RedisQueue, redis_client: redis.Redis
) -> None:
    put(queue, 0, ("b",))
    queue.claim("a", 10, now_ms())  # creates a's group
    for i in range(1, 30):
        put(queue, i, ("b",))
    put(queue, 30, ("a",))
    assert ids(queue.claim("a", 5, now_ms())) == ["e30"]
    pending = redis_client.xpending(queue.stream_key, "a")
    assert pending["pending"] == 1


def test_trim_never_drops_what_a_group_has_not_acknowledged(
    queue: RedisQueue, redis_client: redis.Redis
) -> None:
    for i in range(300):
        put(queue, i, ("a", "b"))
    while batch := queue.claim("a", 100, now_ms()):
        queue.settle("a", [Settlement(c, "done") for c in batch], now_ms())
    queue.maintenance()
    assert redis_client.xlen(queue.stream_key) == 300  # b has not read anything yet
    b_first = queue.claim("b", 1, now_ms())
    while batch := queue.claim("b", 100, now_ms()):
        queue.settle("b", [Settlement(c, "done") for c in batch], now_ms())
    queue._next_trim = 0.0
    queue.maintenance()
    assert redis_client.xlen(queue.stream_key) == 300  # b's first entry is still pending
    queue.settle("b", [Settlement(c, "done") for c in b_first], now_ms())
    queue._next_trim = 0.0
    queue.maintenance()
    assert redis_client.xlen(queue.stream_key) < 300  # whole stream nodes were trimmed
    assert queue.depth(["a", "b"], now_ms())["b"].pending == 0


def test_a_vendor_without_a_group_keeps_its_entries(
    queue: RedisQueue, redis_client: redis.Redis
) -> None:
    for i in range(250):
        put(queue, i, ("a", "late"))
    while batch := queue.claim("a", 100, now_ms()):
        queue.settle("a", [Settlement(c, "done") for c in batch], now_ms())
    queue.maintenance()
    assert redis_client.xlen(queue.stream_key) == 250
    got = []
    while batch := queue.claim("late", 100, now_ms()):
        got += ids(batch)
        queue.settle("late", [Settlement(c, "done") for c in batch], now_ms())
    assert got == [f"e{i}" for i in range(250)]


def test_health_and_recover(queue: RedisQueue, other: RedisQueue) -> None:
    for i in range(3):
        put(queue, i)
    queue.claim("a", 2, now_ms())
    health = queue.health()
    group = health["groups"]["a"]  # type: ignore[index]
    assert group["pending"] == 2 and group["consumers"] == 1 and group["lag"] == 1
    assert health["stream_length"] == 3
    assert "append-only file on" in str(health["persistence"])
    assert other.recover() == 0
    time.sleep(2.2)
    assert other.recover() == 2


def test_after_fork_changes_consumer(queue: RedisQueue) -> None:
    name = queue.consumer
    queue.after_fork()
    assert queue.consumer != name
    put(queue, 0)
    assert ids(queue.claim("a", 1, now_ms())) == ["e0"]


def test_shared_rate_limit_across_processes(queue: RedisQueue, other: RedisQueue) -> None:
    item = RateLimitItemPerSecond(5, 10)
    one = MovingWindowRateLimiter(queue.rate_limit_storage())
    two = MovingWindowRateLimiter(other.rate_limit_storage())
    hits = [limiter.hit(item, "x", "cred") for limiter in (one, two) * 4]
    assert hits == [True] * 5 + [False] * 3
    assert two.hit(item, "x", "other-cred")  # per credential
    stats = one.get_window_stats(item, "x", "cred")
    assert stats.remaining == 0 and stats.reset_time > time.time()


def test_errors_say_what_to_check() -> None:
    port = free_port()
    with pytest.raises(QueueError) as info:
        RedisQueue(f"redis://:s3cret-pw@127.0.0.1:{port}/0?socket_connect_timeout=0.5")
    message = str(info.value)
    assert message.startswith(f"cannot reach Redis at redis://127.0.0.1:{port}/0")
    assert "check that redis-server is running" in message
    assert "s3cret-pw" not in message
    with pytest.raises(ConfigError, match="visibility_timeout"):
        RedisQueue("redis://127.0.0.1:6379/0?visibility_timeout=soon")
    with pytest.raises(ConfigError, match="prefix"):
        RedisQueue("redis://127.0.0.1:6379/0?prefix=a:b")


def test_passwords_stay_out_of_urls_messages_and_stats(
    local_redis: Callable[..., RedisServer],
) -> None:
    server = local_redis(extra_args=("--requirepass", "s3cret-pw"))
    q = RedisQueue(f"redis://:s3cret-pw@127.0.0.1:{server.port}/0?prefix=auth")
    try:
        put(q, 0)
        assert ids(q.claim("a", 1, now_ms())) == ["e0"]
        shown = f"{q.url} {q!r} {q.health()}"
        assert "s3cret-pw" not in shown and ":***@127.0.0.1" in q.url
    finally:
        q.close()
    with pytest.raises(QueueError, match="refused our credentials") as info:
        RedisQueue(f"redis://:wrong-pw@127.0.0.1:{server.port}/0")
    assert "wrong-pw" not in str(info.value)


def test_put_fails_loudly_when_redis_goes_away(local_redis: Callable[..., RedisServer]) -> None:
    server = local_redis()
    q = RedisQueue(f"{server.url}?prefix=p&socket_timeout=1")
    put(q, 0)
    server.kill()
    with pytest.raises(QueueError, match=r"storing an event \(it was not accepted\)"):
        put(q, 1)
    q.close()


def test_tracker_delivers_through_redis(redis_url: str, sink: RecordingSandbox) -> None:
    cfg = example_config(redis_url, sink)
    tracker = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        for i in range(20):
            tracker.track("sign_up", user={"email": f"u{i}@example.com"}, event_id=f"s{i}")
        report = tracker.flush(timeout=30)
        assert report.complete, report
        assert sorted(sink.event_ids()) == sorted(f"s{i}" for i in range(20))
        assert tracker.stats()["example"]["queue_depth"] == 0
    finally:
        tracker.close(timeout=1)


def test_dead_letters_replay_through_the_cli(
    redis_url: str, sink: RecordingSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with SQLite: a vendor refuses events, they become dead letters, ``postback replay``
    sends them again once the vendor takes them."""
    shim = tmp_path / "shim"
    info = shim / "postback_test_example-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: postback-test-example\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[postback]\nexample = postback.testing.example\n")
    monkeypatch.syspath_prepend(str(shim))
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "mobana,x,whop,tonai,applovin")
    config = write_config(tmp_path / "postback.toml", example_config(redis_url, sink, batch_size=1))
    sink.set_fault("example", status=422, count=3)
    tracker = Tracker.from_config(config)
    try:
        for i in range(3):
            tracker.track("lead", user={"email": f"l{i}@example.com"}, event_id=f"lead-{i}")
        tracker.flush(timeout=30)
    finally:
        tracker.close(timeout=1)
    assert sink.event_ids() == []
    runner = CliRunner()
    listed = runner.invoke(cli, ["deadletters", "list", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "lead-0" in listed.output and "HTTP 422" in listed.output
    stats = runner.invoke(cli, ["queue", "stats", "--json", "--config", str(config)])
    assert stats.exit_code == 0, stats.output
    data = orjson.loads(stats.output)
    assert data["vendors"]["example"]["dead"] == 3
    assert data["health"]["groups"]["example"]["pending"] == 0
    replay = runner.invoke(cli, ["replay", "--config", str(config), "--timeout", "30"])
    assert replay.exit_code == 0, replay.output
    assert sorted(sink.event_ids()) == ["lead-0", "lead-1", "lead-2"]
    q = RedisQueue(redis_url)
    assert q.dead_letters() == []
    q.close()


def test_an_outcome_redis_could_not_record_is_redelivered(
    local_redis: Callable[..., RedisServer],
) -> None:
    """Redis restarting while a batch settles: the events are not kept 'held' (and renewed)
    by this process; after the visibility timeout they are claimed and delivered again."""
    server = local_redis("everysec")
    q = open_queue(f"{server.url}?prefix=lost&visibility_timeout=1")
    assert isinstance(q, RedisQueue)
    try:
        q.put("e1", "sign_up", int(time.time() * 1000), ["a"], b"{}")
        (claimed,) = q.claim("a", 10, int(time.time() * 1000))
        server.shutdown()
        with pytest.raises(QueueError):
            q.settle("a", [Settlement(claimed, "done")], int(time.time() * 1000))
        server.start()
        deadline = time.monotonic() + 15
        again: list[Claimed] = []
        while not again and time.monotonic() < deadline:
            try:
                q.maintenance()  # renews only what this process still holds
                again = q.claim("a", 10, int(time.time() * 1000))
            except QueueError:
                pass  # Redis still loading its append-only file
            time.sleep(0.2)
        assert [c.event_id for c in again] == ["e1"]
    finally:
        q.close()


def test_skip_counts_are_shared_by_every_process(queue: RedisQueue, other: RedisQueue) -> None:
    assert queue.skip_counts() == {}
    queue.add_skips({("x", "no device id"): 3, ("applovin", "no user agent"): 1})
    other.add_skips({("x", "no device id"): 2})
    assert other.skip_counts() == {"x": {"no device id": 5}, "applovin": {"no user agent": 1}}


def test_depth_tells_when_the_oldest_waiting_event_was_queued(queue: RedisQueue) -> None:
    """For the oldest-event-age gauge: unread, in flight and retrying entries all count."""
    assert queue.acquire_delivery()
    assert queue.depth(["a"], now_ms())["a"].oldest_ms is None
    put(queue, 0)
    time.sleep(0.01)
    put(queue, 1)
    first = queue.depth(["a"], now_ms())["a"].oldest_ms  # unread
    assert first is not None and abs(first - now_ms()) < 60_000
    [c0] = queue.claim("a", 1, now_ms())
    assert queue.depth(["a"], now_ms())["a"].oldest_ms == first  # in flight
    queue.settle("a", [Settlement(c0, "retry", now_ms() + 60_000, "busy", 1)], now_ms())
    [c1] = queue.claim("a", 1, now_ms())
    assert c1.event_id == "e1"
    queue.settle("a", [Settlement(c1, "done", 0, None, 1)], now_ms())
    assert queue.depth(["a"], now_ms())["a"].oldest_ms == first  # waiting to be retried

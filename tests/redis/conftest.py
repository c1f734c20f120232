"""Fixtures for the Redis queue tests: a real redis-server, worker processes, a recording sink.

``REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``) points the tests at a server you run;
otherwise the session starts ``redis-server`` on a free loopback port in a temp dir (with
``appendonly yes``). Without the binary the tests skip with the reason; in CI (``CI`` set) they
fail instead. Every test works under its own key prefix and deletes its keys afterwards.

Worker processes are the real ``postback worker --config FILE``. The example vendor
(``postback.testing.example``) is not installed as a distribution, so the workers get a
``dist-info`` directory with its entry point on their ``PYTHONPATH``: to ``importlib.metadata``
that is an installed plugin (see :class:`tests.redis.support.Workers`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import postback.testing.example as example
from postback import Tracker
from tests.redis.support import (
    RecordingSandbox,
    RedisServer,
    Workers,
    cleanup_prefix,
    example_config,
    queue_url,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/redis/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``REDIS_URL``, or a redis-server this session starts (and stops)."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    import uuid

    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_url(redis_base_url: str, prefix: str) -> Iterator[str]:
    """A queue URL under a key prefix of its own (deleted after the test), 2 s visibility."""
    yield queue_url(redis_base_url, prefix=prefix, visibility_timeout=2)
    cleanup_prefix(redis_base_url, prefix)


@pytest.fixture
def redis_client(redis_base_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_base_url)
    yield client
    client.close()


@pytest.fixture
def local_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers of this test's own (to restart or kill them); stopped after."""
    servers: list[RedisServer] = []

    def start(appendfsync: str = "everysec", extra_args: tuple[str, ...] = ()) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(directory, appendfsync=appendfsync, extra_args=extra_args).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sink() -> Iterator[RecordingSandbox]:
    box = RecordingSandbox().start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def producer(redis_url: str, sink: RecordingSandbox) -> Iterator[Tracker]:
    """A tracker that only enqueues (``workers = false``), as a web process would."""
    cfg = example_config(redis_url, sink)
    cfg["postback"]["workers"] = False
    tracker = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    yield tracker
    tracker.close(timeout=0)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()

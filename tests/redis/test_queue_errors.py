"""Caller-oriented queue errors from a real redis-server: a caller can tell "retry later" from
"fix the credentials" from "you are writing to a replica" without parsing the message."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from postback.delivery.redis import RedisQueue
from postback.delivery.redis.urls import parse_url
from postback.errors import ConfigError, QueueAuthRefused, QueueReadOnly, QueueUnavailable
from tests.redis.support import RedisServer, free_port


def put(q: RedisQueue, i: int) -> None:
    q.put(f"e{i}", "purchase", 1_000, ["a"], b'{"name": "purchase"}')


def test_a_server_that_is_not_running_is_unavailable() -> None:
    port = free_port()
    with pytest.raises(QueueUnavailable, match="check that redis-server is running") as info:
        RedisQueue(f"redis://:s3cret-pw@127.0.0.1:{port}/0?socket_connect_timeout=0.5")
    assert "s3cret-pw" not in str(info.value)


def test_a_server_that_stopped_is_unavailable(local_redis: Callable[..., RedisServer]) -> None:
    server = local_redis()
    q = RedisQueue(f"{server.url}?prefix=gone&socket_timeout=1&socket_connect_timeout=0.5")
    try:
        put(q, 0)
        server.kill()
        with pytest.raises(QueueUnavailable, match=r"storing an event \(it was not accepted\)"):
            put(q, 1)
    finally:
        q.close()


def test_a_wrong_password_is_refused(local_redis: Callable[..., RedisServer]) -> None:
    server = local_redis(extra_args=("--requirepass", "right-pw"))
    with pytest.raises(QueueAuthRefused, match="refused our credentials") as info:
        RedisQueue(f"redis://:wrong-pw@127.0.0.1:{server.port}/0")
    assert "wrong-pw" not in str(info.value) and "right-pw" not in str(info.value)


def test_a_user_without_the_rights_is_refused(local_redis: Callable[..., RedisServer]) -> None:
    server = local_redis()
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">reader-pw", "~*", "+@read", "+info")
    admin.close()
    q = RedisQueue(f"redis://reader:reader-pw@127.0.0.1:{server.port}/0?prefix=acl")
    try:
        with pytest.raises(QueueAuthRefused, match="denied a command"):
            put(q, 0)
    finally:
        q.close()


def test_a_replica_is_read_only(local_redis: Callable[..., RedisServer]) -> None:
    master = local_redis()
    replica = local_redis(extra_args=("--replicaof", "127.0.0.1", str(master.port)))
    client = redis.Redis(host="127.0.0.1", port=replica.port)
    deadline = time.monotonic() + 20
    while client.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica never synced with its master"
        time.sleep(0.05)
    client.close()
    q = RedisQueue(f"{replica.url}?prefix=ro")
    try:
        with pytest.raises(QueueReadOnly, match="read-only replica"):
            put(q, 0)
    finally:
        q.close()


@pytest.mark.parametrize(
    ("url", "written"),
    [
        ("redis://:s3cret-pw@127.0.0.1:6379/abc", "/abc"),
        ("rediss://127.0.0.1:6379/1/2", "/1/2"),
        ("redis://127.0.0.1:6379?db=one", "?db=one"),
        ("redis+sentinel://:s3cret-pw@127.0.0.1:26379/mymaster/x", "/mymaster/x"),
    ],
)
def test_a_database_that_is_not_a_number_is_refused(url: str, written: str) -> None:
    """redis-py reads ``redis://host/abc`` as database 0: refused before any connection (no
    server runs here), naming the URL with its password masked and saying what to write."""
    with pytest.raises(ConfigError) as info:
        RedisQueue(url)
    text = str(info.value)
    assert f"the database {written!r} in the queue URL" in text and "is not a number" in text
    assert "s3cret-pw" not in text and "for database 0" in text
    if "s3cret-pw" in url:
        assert ":***@127.0.0.1" in text


def test_a_numbered_database_parses() -> None:
    for url in ("redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379/", "redis://127.0.0.1"):
        assert parse_url(url).display_url == url
    # As redis-py reads them: a blank ?db= is ignored (the path's 3 is the database), and a
    # ?db= that is a number is the database whatever the path says.
    for url in ("redis://127.0.0.1:6379/3?db=", "redis://127.0.0.1:6379/x?db=1"):
        parse_url(url)
    assert parse_url("redis+sentinel://127.0.0.1:26379/mymaster/2").prefix == "postback"

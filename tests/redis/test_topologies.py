"""The URL forms beyond plain ``redis://``: TLS (``rediss://``), Sentinel and Cluster, each
against real servers started here, through the same queue round trip and shared rate limit."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from limits import RateLimitItemPerSecond
from limits.strategies import MovingWindowRateLimiter

from postback.delivery.queue import Settlement
from postback.delivery.redis import RedisQueue
from postback.delivery.registry import open_queue
from tests.redis.support import RedisServer, SentinelServer, cluster_port, wait_for


def round_trip(url: str) -> None:
    """put, claim, a retry, a dead letter and its replay, depth, a shared rate limit."""
    q = open_queue(url)
    assert isinstance(q, RedisQueue)
    try:
        now = int(time.time() * 1000)
        for i in range(3):
            q.put(f"e{i}", "purchase", 1, ["a"], b'{"name": "purchase"}')
        c = q.claim("a", 10, now)
        assert [x.event_id for x in c] == ["e0", "e1", "e2"]
        q.settle(
            "a",
            [
                Settlement(c[0], "done"),
                Settlement(c[1], "retry", due_ms=now, error="503", attempts=1),
                Settlement(c[2], "dead", error="400", attempts=1),
            ],
            now,
        )
        depth = q.depth(["a"], now)["a"]
        assert (depth.ready, depth.inflight, depth.dead) == (1, 0, 1)
        assert [d.event_id for d in q.requeue_dead()] == ["e2"]
        again = q.claim("a", 10, now)
        assert sorted((x.event_id, x.attempts) for x in again) == [("e1", 1), ("e2", 0)]
        q.settle("a", [Settlement(x, "done") for x in again], now)
        q.maintenance()
        assert q.depth(["a"], now)["a"].pending == 0
        assert q.recover() == 0 and q.next_due_ms("a") is None and q.dead_letters() == []
        assert q.remember("a", "k") and not q.remember("a", "k")
        limiter = MovingWindowRateLimiter(q.rate_limit_storage())
        item = RateLimitItemPerSecond(2, 10)
        assert [limiter.hit(item, "a", "cred") for _ in range(3)] == [True, True, False]
        assert q.health()["groups"]["a"]["pending"] == 0  # type: ignore[index]
    finally:
        q.close()


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    started: list[RedisServer] = []
    yield started
    for server in reversed(started):
        server.stop()


def test_tls(tmp_path: Path, servers: list[RedisServer]) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH: it makes the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server = RedisServer(tmp_path)
    server.extra_args = [
        "--port",
        "0",
        "--tls-port",
        str(server.port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(cert),
        "--tls-auth-clients",
        "no",
    ]
    log = (tmp_path / "redis.log").open("ab")
    server.proc = subprocess.Popen(server.command(), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    servers.append(server)
    url = f"rediss://127.0.0.1:{server.port}/0"

    def up() -> bool:
        client = redis.Redis.from_url(url, ssl_ca_certs=str(cert), socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    wait_for(up, 20, "redis-server with TLS")
    round_trip(f"{url}?ssl_ca_certs={cert}&prefix=tls")


def test_sentinel(tmp_path: Path, servers: list[RedisServer]) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "s").mkdir()
    master = RedisServer(tmp_path / "m").start()
    servers.append(master)
    sentinel = SentinelServer(tmp_path / "s", master).start()
    servers.append(sentinel)
    round_trip(f"{sentinel.url}?prefix=sentinel")


def test_cluster(tmp_path: Path, servers: list[RedisServer]) -> None:
    node = RedisServer(tmp_path)
    node.port = cluster_port()
    node.extra_args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        str(tmp_path / "nodes.conf"),
    ]
    servers.append(node.start())
    client = redis.Redis(host="127.0.0.1", port=node.port)
    try:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_for(
            lambda: b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"),
            20,
            "the one-node cluster",
        )
    finally:
        client.close()
    round_trip(f"redis+cluster://127.0.0.1:{node.port}?prefix=cluster")


def test_acl_user_with_the_documented_permissions(
    tmp_path: Path, servers: list[RedisServer]
) -> None:
    """The ACL line in docs/deployment.md is enough for the whole queue."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
    [line] = [x for x in docs.read_text().splitlines() if x.startswith("ACL SETUSER postback")]
    rules = line.split()[3:]
    assert "~{postback}:*" in rules
    server = RedisServer(tmp_path).start()
    servers.append(server)
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        admin.execute_command(
            "ACL", "SETUSER", "postback", *[">s3cret" if r == ">password" else r for r in rules]
        )
    finally:
        admin.close()
    round_trip(f"redis://postback:s3cret@127.0.0.1:{server.port}/0")

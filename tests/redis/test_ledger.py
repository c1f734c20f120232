"""The delivery ledger over a real Redis: a worker process delivers, this process reads the
status; ``postback status`` from a third process; TTL, retention and the size cap."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import redis

from postback import Tracker
from postback.delivery.ledgers import open_ledger
from postback.delivery.redis.ledger import RedisLedger
from postback.ledger import LedgerEntry, read_status
from tests.redis.support import RecordingSandbox, Workers, example_config, wait_for, write_config


def _state(t: Tracker, event_id: str) -> str | None:
    v = t.status(event_id).vendors.get("example")
    return v.state if v else None


def test_a_worker_delivers_and_another_process_reads(
    redis_url: str, sink: RecordingSandbox, producer: Tracker, workers: Workers, tmp_path: Path
) -> None:
    producer.track(
        "purchase",
        user={"email": "ann@example.com"},
        value=5,
        currency="USD",
        event_id="r-ok",
        vendors={"example": {"click_id": "c9"}},
    )
    producer.track(
        "purchase", user={"email": "ann@example.com"}, value=-5, currency="USD", event_id="r-bad"
    )
    producer.track("purchase", user={}, value=5, currency="USD", event_id="r-skip")
    # Nobody delivers yet: "queued" comes from the stream, nothing was written for it.
    assert _state(producer, "r-ok") == "queued"
    assert _state(producer, "r-skip") == "skipped"
    config = write_config(tmp_path / "worker.toml", example_config(redis_url, sink))
    workers.start(config)
    wait_for(lambda: _state(producer, "r-ok") == "delivered", 60, "r-ok delivered")
    wait_for(lambda: _state(producer, "r-bad") == "dead-lettered", 30, "r-bad dead-lettered")
    ok = producer.status("r-ok").vendors["example"]
    assert ok.vendor_ref == "campaign=cmp-c9" and [a.number for a in ok.attempts] == [1]
    assert producer.status("r-bad").vendors["example"].dead_reason == "negative value"
    out = subprocess.run(
        [sys.executable, "-m", "postback", "status", "r-ok", "--json", "-c", str(config)],
        env=workers.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["vendors"]["example"]["state"] == "delivered"


def test_rows_expire_and_are_capped(redis_url: str, redis_client: redis.Redis, prefix: str) -> None:
    t = Tracker.from_config(
        {"postback": {"queue": redis_url, "workers": False}, "vendors": {}},
        load_entry_points=False,
    )
    try:
        ledger = open_ledger(t.queue, retention=60.0, max_entries=3)
        assert isinstance(ledger, RedisLedger)
        assert not read_status(ledger, "e0").found  # no stream yet: no error, no record
        now = int(time.time() * 1000)
        rows = [LedgerEntry(f"e{i}", "example", now + i, "delivered", 1) for i in range(5)]
        old = [LedgerEntry("old", "example", now - 120_000, "delivered", 1)]
        ledger.write(rows + old)
        ttl = redis_client.ttl("{" + prefix + "}:ledger:e:e0")
        assert 0 < ttl <= 60
        assert ledger.prune(now) == 3  # "old" past the retention, then e0 and e1 over the cap
        assert [i for i in range(5) if ledger.read(f"e{i}")] == [2, 3, 4]
        assert redis_client.zcard("{" + prefix + "}:ledger:rows") == 3
    finally:
        t.close(timeout=0)

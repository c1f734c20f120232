"""What encrypting stored events (``POSTBACK_ENCRYPTION_KEYS``) adds to ``Tracker.track()``.

    python bench/encryption_cost.py

Tracks a purchase (email, user id, IP) to the example vendor on a ``sqlite://`` queue, enqueue
only (``workers = false``), with and without a key, five interleaved runs of 5,000 calls per
case; prints microseconds per call (median of runs, best run) and the difference. Also times
``Keyring.seal`` alone on the event's bytes (per-call median of 20,000).
"""

from __future__ import annotations

import base64
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import postback.testing.example as example
from postback import Tracker
from postback.encryption import keyring_from_env

N = 5_000
RUNS = 5
USER = {"email": "ada@example.com", "user_id": "u-1", "ip_address": "203.0.113.7"}
KEY = f"k1:{base64.b64encode(os.urandom(32)).decode()}"


def tracker(tmp: Path, name: str, encrypted: bool) -> Tracker:
    if encrypted:
        os.environ["POSTBACK_ENCRYPTION_KEYS"] = KEY
    else:
        os.environ.pop("POSTBACK_ENCRYPTION_KEYS", None)
    config: dict[str, Any] = {
        "postback": {"queue": f"sqlite:///{tmp}/{name}.db", "workers": False},
        "vendors": {"example": {"api_key": "k", "base_url": "http://127.0.0.1:9"}},
    }
    return Tracker.from_config(config, plugins=[example], load_entry_points=False)


def measure(t: Tracker, name: str, run: int) -> float:
    start = time.perf_counter()
    for i in range(N):
        t.track("purchase", user=USER, value=49.99, currency="USD", event_id=f"{name}-{run}-{i}")
    return (time.perf_counter() - start) / N * 1e6


def seal_cost() -> float:
    os.environ["POSTBACK_ENCRYPTION_KEYS"] = KEY
    ring = keyring_from_env()
    assert ring is not None
    payload = b'{"name":"purchase","event_id":"x","timestamp_ms":1,"user":{"email":"a@b.co"}}' * 3
    samples = []
    for _ in range(20_000):
        t0 = time.perf_counter_ns()
        ring.seal(payload)
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        trackers = {"plain": tracker(tmp, "plain", False), "encrypted": tracker(tmp, "enc", True)}
        for label, t in trackers.items():
            measure(t, f"warm-{label}", 0)
        results: dict[str, list[float]] = {label: [] for label in trackers}
        for run in range(RUNS):
            for label, t in trackers.items():
                results[label].append(measure(t, label, run))
        for label, values in results.items():
            print(
                f"{label:10} median {statistics.median(values):6.2f} µs  best {min(values):6.2f} µs"
            )
        diff = statistics.median(results["encrypted"]) - statistics.median(results["plain"])
        print(f"encryption adds {diff:+.2f} µs per track() (median of runs)")
        print(f"Keyring.seal alone: {seal_cost():.2f} µs per event (median)")
        for t in trackers.values():
            t.close(timeout=0)


if __name__ == "__main__":
    main()

"""What consent checks and local dedupe add to ``Tracker.track()`` on a ``sqlite://`` queue.

    python bench/consent_cost.py

Tracks a purchase with a given ``event_id`` to the example vendor (enqueue only: ``workers =
false``, so no delivery competes), five interleaved runs of 5,000 calls per case, in
microseconds per call (median and best run): without consent, with ``consent={"ads": True}``,
with ``[consent] policy = "require"`` and consent given, with a ``postback_consent`` plugin,
and with ``dedupe_window`` on (each
call a new id: the worst case, one write to ``<queue>.recent``). With ``REDIS_URL`` set, the
same on a ``redis://`` queue without and with dedupe (one ``SET NX PX`` round trip more).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import postback.testing.example as example
from postback import Destination, Event, Tracker, hookimpl

N = 5_000
RUNS = 5
USER = {"email": "ada@example.com", "user_id": "u-1", "ip_address": "203.0.113.7"}


class Cmp:
    @hookimpl
    def postback_consent(
        self, event: Event, destination: Destination, consent: Mapping[str, bool] | None
    ) -> bool | None:
        return None


def tracker(
    tmp: Path, name: str, table: dict[str, Any], consent: Any, plugins: list[Any]
) -> Tracker:
    table = dict(table)
    queue = table.pop("queue", f"sqlite:///{tmp}/{name}.db")
    config: dict[str, Any] = {
        "postback": {"queue": queue, "workers": False},  # enqueue only
        "vendors": {"example": {"api_key": "k", "base_url": "http://127.0.0.1:9", **table}},
    }
    if consent:
        config["consent"] = consent
    return Tracker.from_config(config, plugins=[example, *plugins], load_entry_points=False)


def measure(t: Tracker, name: str, run: int, **kwargs: Any) -> float:
    start = time.perf_counter()
    for i in range(N):
        t.track("purchase", user=USER, value=49.99, currency="USD",
                event_id=f"{name}-{run}-{i}", **kwargs)  # fmt: skip
    return (time.perf_counter() - start) / N * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cases = [
            ("no consent", {}, None, [], {}),
            ("consent given", {}, None, [], {"consent": {"ads": True}}),
            ("policy require", {}, {"policy": "require"}, [], {"consent": {"ads": True}}),
            ("consent plugin", {}, None, [Cmp()], {}),
            ("dedupe (sqlite)", {"dedupe_window": "24h"}, None, [], {}),
        ]
        if os.environ.get("REDIS_URL"):  # e.g. redis://127.0.0.1:6379/0 (a key prefix of its own)
            url = os.environ["REDIS_URL"] + f"?prefix=bench{os.getpid()}"
            cases.append(("no dedupe (redis)", {"queue": url}, None, [], {}))
            cases.append(("dedupe (redis)", {"queue": url, "dedupe_window": "24h"}, None, [], {}))
        trackers = {}
        for i, (label, table, consent, plugins, kwargs) in enumerate(cases):
            trackers[label] = tracker(tmp, f"case{i}", table, consent, plugins)
            measure(trackers[label], f"warm{i}", 0, **kwargs)
        results: dict[str, list[float]] = {label: [] for label, *_ in cases}
        for run in range(RUNS):  # interleaved, so that a busy moment hits every case alike
            for i, (label, _, _, _, kwargs) in enumerate(cases):
                results[label].append(measure(trackers[label], f"case{i}", run, **kwargs))
        for label, got in results.items():
            print(
                f"{label:16} median {statistics.median(got):6.1f}  min {min(got):6.1f} µs/track()"
            )
        for t in trackers.values():
            t.close(timeout=0)


if __name__ == "__main__":
    sys.exit(main())

"""What ``track()`` costs an asyncio application (the FastAPI how-to's table).

    python bench/aio_cost.py [--runs 5] [--n 5000]

Measures, on a ``sqlite://`` queue in a temporary directory with delivery off (only the cost
to the caller is measured): the synchronous ``Tracker.track()``; ``await AsyncTracker.track()``
one at a time and 5,000 at once (inline on the loop, which ``AsyncTracker`` does when the
queue's ``put()`` is a buffered file append, and through its writer thread, which it uses for
``redis://`` and ``sqlite_synchronous = "full"``); ``asyncio.to_thread(Tracker.track)``; and
the longest gap between two iterations of the loop while 200 simulated requests each track 20
events. Prints medians (and ranges) of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from postback import AsyncTracker, Tracker
from postback.testing import example

USER = {"user_id": "u1", "email": "a@example.com", "ip_address": "203.0.113.7"}
CONTEXT = {"url": "https://shop.example.com/checkout", "utm_source": "x"}


def config(tmp: Path) -> dict[str, Any]:
    return {
        "postback": {"queue": f"sqlite:///{tmp}/q.db", "workers": False},
        "vendors": {"example": {"api_key": "k", "base_url": "http://127.0.0.1:9"}},
    }


def fields(i: int) -> dict[str, Any]:
    return {
        "user": USER,
        "value": 49.99,
        "currency": "USD",
        "event_id": f"e{i}",
        "context": CONTEXT,
        "properties": {"transaction_id": f"t{i}"},
    }


def sync_cost(tracker: Tracker, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        tracker.track("purchase", **fields(i))
    return (time.perf_counter() - t0) / n * 1e6


async def one_at_a_time(tracker: AsyncTracker, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        await tracker.track("purchase", **fields(i))
    return (time.perf_counter() - t0) / n * 1e6


async def all_at_once(tracker: AsyncTracker, n: int) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(tracker.track("purchase", **fields(i)) for i in range(n)))
    return (time.perf_counter() - t0) / n * 1e6


async def to_thread(tracker: Tracker, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        await asyncio.to_thread(tracker.track, "purchase", **fields(i))
    return (time.perf_counter() - t0) / n * 1e6


async def worst_loop_gap(tracker: AsyncTracker) -> float:
    """The longest time between two loop iterations while requests track events."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def request(r: int) -> None:
        for i in range(20):
            await tracker.track("purchase", **fields(r * 100 + i))
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(request(r) for r in range(200)))
    done.set()
    await tick
    return max(gaps) * 1e3


def measure(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker.from_config(config(Path(tmp)), plugins=[example])
        out["Tracker.track(), on the loop"] = sync_cost(tracker, n)
        out["asyncio.to_thread(Tracker.track), one at a time"] = asyncio.run(to_thread(tracker, n))
        tracker.close(timeout=0)
        for inline in (True, False):
            how = "inline" if inline else "writer thread"

            async def run(tag: str = how, inline: bool = inline) -> None:
                atracker = AsyncTracker.from_config(config(Path(tmp)), plugins=[example])
                atracker._inline = inline
                out[f"await AsyncTracker.track() ({tag}), one at a time"] = await one_at_a_time(
                    atracker, n
                )
                out[f"await AsyncTracker.track() ({tag}), {n:,} at once"] = await all_at_once(
                    atracker, n
                )
                out[
                    f"worst loop stall, 200 requests x 20 events ({tag}), ms"
                ] = await worst_loop_gap(atracker)
                await atracker.close(timeout=0)

            asyncio.run(run())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    runs = [measure(args.n) for _ in range(args.runs)]
    print(f"| | median of {args.runs} runs (range) |")
    print("|---|---|")
    for key in runs[0]:
        values = [r[key] for r in runs]
        unit = "" if key.endswith("ms") else " µs"
        key_shown = key.removesuffix(", ms")
        print(
            f"| {key_shown} | {statistics.median(values):.1f}{unit or ' ms'} "
            f"({min(values):.1f}-{max(values):.1f}) |"
        )


if __name__ == "__main__":
    main()

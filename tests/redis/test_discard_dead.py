"""``RedisQueue.discard_dead()`` (the dashboard's "discard"): the dead letter leaves the store and
every index, so depth and listings no longer count it."""

from __future__ import annotations

from postback.delivery.queue import Claimed, Settlement
from postback.delivery.registry import open_queue


def test_discard_dead(redis_url: str) -> None:
    queue = open_queue(redis_url)
    try:
        assert queue.acquire_delivery()
        queue.serve(["v"])
        for i in range(3):
            queue.put(f"e{i}", "purchase", 1000 + i, ["v"], b"{}")
        claimed: list[Claimed] = []
        for _ in range(50):
            claimed += queue.claim("v", 10, 10_000)
            if len(claimed) >= 3:
                break
        queue.settle("v", [Settlement(c, "dead", error="no") for c in claimed], 10_000)
        ids = sorted(d.id for d in queue.dead_letters())
        assert len(ids) == 3
        gone = queue.discard_dead([ids[0], ids[1], 999_999])
        assert sorted(d.id for d in gone) == ids[:2]
        assert [d.id for d in queue.dead_letters()] == [ids[2]]
        assert [d.id for d in queue.dead_letters(vendor="v")] == [ids[2]]
        assert queue.depth(["v"], 10_000)["v"].dead == 1
    finally:
        queue.close()

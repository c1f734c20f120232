"""``Queue.discard_dead()``: deletes the named dead letters, returns those that existed."""

from __future__ import annotations

import pytest

from postback.delivery.memory import MemoryQueue
from postback.delivery.queue import Claimed, Settlement
from postback.delivery.sqlite import SQLiteQueue


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_discard_dead(kind: str, tmp_path) -> None:
    queue = MemoryQueue() if kind == "memory" else SQLiteQueue(tmp_path / "q.db")
    try:
        assert queue.acquire_delivery()
        queue.serve(["v"])
        for i in range(3):
            queue.put(f"e{i}", "purchase", 1000 + i, ["v"], b"{}")
        claimed: list[Claimed] = []
        while len(claimed) < 3:
            claimed += queue.claim("v", 10, 10_000)
        queue.settle("v", [Settlement(c, "dead", error="no") for c in claimed], 10_000)
        ids = sorted(d.id for d in queue.dead_letters())
        assert len(ids) == 3
        gone = queue.discard_dead([ids[0], ids[1], 999_999])
        assert sorted(d.id for d in gone) == ids[:2]
        assert [d.id for d in queue.dead_letters()] == [ids[2]]
        assert queue.depth(["v"], 10_000)["v"].dead == 1
        assert queue.discard_dead([]) == []
    finally:
        queue.close()

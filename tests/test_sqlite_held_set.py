"""The held set's bookkeeping, with plain data (no queue, no file)."""

from __future__ import annotations

from postback.delivery.held import ROW_BITS, HeldChunk, skip_settled


def _chunk(n: int) -> HeldChunk:
    rows = [(f"e{i}", "x", 1, ",a,b,", b"{}") for i in range(n)]
    chunk = HeldChunk(
        3, "seg", 1000 + 10 * n, rows, start=1000, ends=[1010 + 10 * i for i in range(n)]
    )
    for v in ("a", "b"):
        chunk.lists[v] = range(n)
        chunk.claimed[v] = 0
        chunk.inflight[v] = set()
    return chunk


def test_a_held_row_is_named_by_its_chunk_and_index() -> None:
    chunk = _chunk(2)
    assert chunk.first == 3 << ROW_BITS


def test_settled_to_is_where_the_first_unsettled_row_of_the_vendor_starts() -> None:
    chunk = _chunk(5)
    assert chunk.settled_to("a") == 1000  # nothing claimed: nothing settled
    chunk.claimed["a"] = 5
    chunk.inflight["a"] = {2, 4}  # 0, 1 and 3 delivered
    assert chunk.settled_to("a") == 1020  # rows 0 and 1 end there
    chunk.inflight["a"] = {4}
    chunk.returned["a"] = [3]
    assert chunk.settled_to("a") == 1030
    chunk.inflight["a"] = set()
    chunk.returned["a"] = []
    assert chunk.settled_to("a") is None  # all of them
    chunk.claimed["b"] = 2
    assert chunk.settled_to("b") == 1020  # the unclaimed rest


def test_skip_settled_takes_out_the_vendors_that_had_a_row() -> None:
    rows = [(f"e{i}", "x", 1, ",a,b,", b"{}") for i in range(3)]
    out = skip_settled(rows, [10, 20, 30], {"a": 20, "b": 10})
    assert [r[3] for r in out] == [",", ",b,", ",a,b,"]
    assert out[2] is rows[2]

"""Erase support for the Redis queue: which events it still holds for some vendor.

Used by :meth:`RedisQueue.stored_events <postback.delivery.redis.queue.RedisQueue.stored_events>`
for an erase's report (:mod:`postback.delivery.erase`): the stream entries some vendor's group
has not read or not acknowledged, and every vendor's retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from postback.delivery.redis.queue import RedisQueue

__all__ = ["stored_events"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _unpack(record: bytes) -> tuple[dict[str, Any], bytes]:
    """A stored record (the queue's format): JSON metadata, a newline, the event bytes."""
    head, _, payload = record.partition(b"\n")
    return orjson.loads(head), payload


def _entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as numbers, for ordering."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def stored_events(queue: RedisQueue) -> list[tuple[str, bytes, int]]:
    """``(event_id, payload, created_ms)`` of every event ``queue`` still holds for some vendor."""
    groups = queue._groups()
    read_up_to = {v: _entry_key(_text(g["last-delivered-id"])) for v, g in groups.items()}
    unacked: set[str] = set()
    for v in groups:
        for p in queue._client.xpending_range(queue.stream_key, v, "-", "+", 1 << 30):
            unacked.add(_text(p["message_id"]))
    out: list[tuple[str, bytes, int]] = []
    last = "-"
    while True:
        entries = queue._client.xrange(queue.stream_key, last, "+", count=1000)
        for entry_id, fields in entries:
            eid = _text(entry_id)
            key = _entry_key(eid)
            vendors = [v for v in _text(fields[b"vendors"]).split(",") if v]
            if eid in unacked or any(v not in read_up_to or key > read_up_to[v] for v in vendors):
                created = int(fields.get(b"created_ms", 0))
                out.append((_text(fields[b"event_id"]), fields[b"payload"], created))
        if len(entries) < 1000:
            break
        last = "(" + _text(entries[-1][0])
    for vendor in queue.vendors_seen():
        for record in queue._client.hvals(queue._vkeys(vendor)["retrydata"]):
            meta, payload = _unpack(record)
            out.append((str(meta.get("event_id", "")), payload, int(meta.get("created_ms", 0))))
    return out

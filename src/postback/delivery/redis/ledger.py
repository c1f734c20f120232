"""The delivery ledger of a ``redis://`` queue, in the same Redis as the queue.

Layout (``{P}`` as in :mod:`postback.delivery.redis`, so every key shares the queue's slot on
Redis Cluster)::

    {P}:ledger:e:EVENT_ID   hash: "at_ms|vendor|kind|attempt" -> the row (JSON); expires
                            ``ledger_retention`` after its latest row
    {P}:ledger:rows         zset: "EVENT_ID<tab>field" -> at_ms, every row (the size cap and
                            the retention are enforced through it)

A batch of rows is one pipeline (``HSET`` + ``EXPIRE`` per event, ``ZADD`` of the rows), sent
by the :class:`~postback.ledger.LedgerWriter` thread: one round trip per batch, never per event.
Pruning drops index entries past the retention (their hashes expired on their own) and, beyond
``ledger_max_entries``, the oldest rows from both.

What waits in the queue for an event is found by reading the newest entries of the stream (at
most :data:`WAITING_SCAN`) and up to as many of each vendor's retries: a stream has no index
by event id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from postback.delivery.queue import Queue
from postback.delivery.redis.queue import RedisQueue, _seq, _text, _unpack
from postback.ledger import DEFAULT_MAX_ENTRIES, DEFAULT_RETENTION, LedgerEntry, safe_note

__all__ = ["WAITING_SCAN", "RedisLedger", "is_redis_queue"]

#: How many of the newest stream entries are searched for an event still waiting.
WAITING_SCAN = 2000


def is_redis_queue(queue: Queue) -> bool:
    return isinstance(queue, RedisQueue)


class RedisLedger:
    """The ledger in the queue's Redis, through the queue's connection."""

    def __init__(
        self,
        queue: Queue,
        *,
        retention: float = DEFAULT_RETENTION,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        assert isinstance(queue, RedisQueue)
        self.queue = queue
        self.retention = retention
        self.max_entries = max_entries
        base = queue._base
        self._event_prefix = f"{base}:ledger:e:"
        self._rows_key = f"{base}:ledger:rows"

    @property
    def _client(self) -> Any:
        return self.queue._client  # the queue reconnects after fork: always ask it

    def write(self, entries: Sequence[LedgerEntry]) -> None:
        ttl = max(int(self.retention), 1)
        per_event: dict[str, dict[str, bytes]] = {}
        index: dict[str, int] = {}
        for e in entries:
            field = f"{e.at_ms}|{e.vendor}|{e.kind}|{e.attempt}"
            per_event.setdefault(e.event_id, {})[field] = orjson.dumps(tuple(e))
            index[f"{e.event_id}\t{field}"] = e.at_ms
        with self.queue._errors("writing the delivery ledger"):
            pipe = self._client.pipeline(transaction=False)
            for event_id, fields in per_event.items():
                key = self._event_prefix + event_id
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ttl)
            pipe.zadd(self._rows_key, index)
            pipe.execute()

    def read(self, event_id: str) -> list[LedgerEntry]:
        with self.queue._errors("reading the delivery ledger"):
            raw = self._client.hgetall(self._event_prefix + event_id)
        rows = [LedgerEntry(*orjson.loads(v)) for v in raw.values()]
        rows.sort(key=lambda r: (r.at_ms, r.attempt))
        return rows

    def prune(self, now_ms: int) -> int:
        cutoff = now_ms - int(self.retention * 1000)
        client = self._client
        with self.queue._errors("pruning the delivery ledger"):
            gone = int(client.zremrangebyscore(self._rows_key, "-inf", f"({cutoff}"))
            excess = int(client.zcard(self._rows_key)) - self.max_entries
            if excess > 0:
                members = client.zpopmin(self._rows_key, excess)
                pipe = client.pipeline(transaction=False)
                for member, _ in members:
                    event_id, _, field = _text(member).partition("\t")
                    pipe.hdel(self._event_prefix + event_id, field)
                pipe.execute()
                gone += len(members)
        return gone

    def waiting(self, event_id: str) -> list[LedgerEntry]:
        q = self.queue
        client = self._client
        out: list[LedgerEntry] = []
        with q._errors("looking for an event in the queue"):
            entries = client.xrevrange(q.stream_key, count=WAITING_SCAN)
            groups = q._groups()  # {} before the first event
            for entry_id, fields in entries:
                f = {_text(k): v for k, v in fields.items()}
                if _text(f.get("event_id", b"")) != event_id:
                    continue
                seq = _seq(_text(entry_id))
                name = _text(f.get("name", b""))
                created = int(f.get("created_ms", 0))
                for vendor in filter(None, _text(f.get("vendors", b"")).split(",")):
                    group = groups.get(vendor)
                    last = _seq(_text(group["last-delivered-id"])) if group else 0
                    if seq > last:
                        out.append(
                            LedgerEntry(event_id, vendor, 0, "queued", 0, "", "", name, created)
                        )
            for vendor in sorted(groups):
                keys = q._vkeys(vendor)
                scanned = 0
                for member, record in client.hscan_iter(keys["retrydata"], count=500):
                    scanned += 1
                    if scanned > WAITING_SCAN:
                        break
                    meta, _ = _unpack(record)
                    if meta.get("event_id") != event_id:
                        continue
                    due = client.zscore(keys["retry"], member)
                    out.append(
                        LedgerEntry(
                            event_id, vendor, 0, "retrying", int(meta.get("attempts", 0)),
                            safe_note(meta.get("error")), "", str(meta.get("name", "")),
                            int(meta.get("created_ms", 0)), int(due or 0),
                        )
                    )  # fmt: skip
        return out

    def after_fork(self) -> None:
        pass  # the queue's own after_fork() replaced the connection pool

    def close(self) -> None:
        pass  # the queue's connection: the queue closes it

"""Which delivery ledger backend goes with a queue (:func:`open_ledger`).

Kept apart from :mod:`postback.ledger` (the model and the writer), which the backends import:
this module imports the backends, lazily, so that none is loaded for a queue that does not
use it (the Redis client is imported only for a ``redis://`` queue).
"""

from __future__ import annotations

from postback.delivery.queue import Queue
from postback.ledger import DEFAULT_MAX_ENTRIES, DEFAULT_RETENTION, Ledger, MemoryLedger

__all__ = ["open_ledger"]


def open_ledger(
    queue: Queue, *, retention: float = DEFAULT_RETENTION, max_entries: int = DEFAULT_MAX_ENTRIES
) -> Ledger:
    """The ledger backend that goes with ``queue``: a queue that has an ``open_ledger(retention,
    max_entries)`` method chooses its own; SQLite and Redis queues get theirs; any other queue
    an in-process :class:`MemoryLedger`."""
    own = getattr(queue, "open_ledger", None)
    if callable(own):
        ledger: Ledger = own(retention=retention, max_entries=max_entries)
        return ledger
    from postback.delivery.sqlite import SQLiteQueue

    if isinstance(queue, SQLiteQueue):
        from postback.delivery.ledger_sqlite import SQLiteLedger

        return SQLiteLedger(queue.path, retention=retention, max_entries=max_entries)
    if queue.url.startswith(("redis:", "rediss:", "redis+")):
        from postback.delivery.redis.ledger import RedisLedger, is_redis_queue

        if is_redis_queue(queue):
            return RedisLedger(queue, retention=retention, max_entries=max_entries)
    return MemoryLedger(queue, retention=retention, max_entries=max_entries)

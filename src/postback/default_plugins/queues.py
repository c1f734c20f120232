"""The core's queue backends, registered through ``postback_register_queues`` as a plugin's are.

Each opener imports its backend's module on first use, so a process that never opens a Redis
queue never imports the Redis client. The capabilities declared here are the ones each queue
class declares; :class:`~postback.testing.QueueContract` checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Callable

from postback.delivery.queue import Queue, QueueBackend, QueueCapabilities, QueueOptions
from postback.errors import QueueNotFound
from postback.hookspecs import hookimpl

__all__ = ["BUILTIN_QUEUES", "postback_register_queues"]


def open_memory(url: str, options: QueueOptions) -> Queue:
    from postback.delivery.memory import MemoryQueue

    return MemoryQueue(max_size=options.max_size)


def open_sqlite(url: str, options: QueueOptions) -> Queue:
    from postback.delivery.queue import sqlite_path
    from postback.delivery.sqlite import SQLiteQueue

    path = sqlite_path(url, options.base_dir)
    if not options.create and not path.exists():  # a mistyped path: no new empty queue
        raise QueueNotFound(
            f"the queue file {path} does not exist: check [postback] queue in the config (or "
            "pass the app's config with --config); if the app has not run yet, it is made by "
            "the first track() or `postback worker`; nothing was created",
            path,
        )
    return SQLiteQueue(
        path,
        synchronous=options.synchronous,
        mapped_spool=options.delivers_on_threads,
    )


def open_redis(url: str, options: QueueOptions) -> Queue:
    from postback.delivery.redis import RedisQueue

    return RedisQueue(url)


MEMORY = QueueBackend(
    name="memory",
    schemes=("memory",),
    open=open_memory,
    capabilities=QueueCapabilities(loop_safe_put=True),
    example="memory://",
    summary="in this process only, lost when it exits: tests and short scripts",
)
SQLITE = QueueBackend(
    name="sqlite",
    schemes=("sqlite",),
    open=open_sqlite,
    # put() writes to the page cache; with sqlite_synchronous = "full" it fsyncs (the queue
    # then declares loop_safe_put=False).
    capabilities=QueueCapabilities(cross_process=True, loop_safe_put=True, polls_every=0.05),
    example="sqlite:///var/lib/myapp/postback.db",
    summary="one file per host, shared by the app's processes (the default)",
)
REDIS = QueueBackend(
    name="redis",
    schemes=("redis", "rediss", "redis+sentinel", "redis+cluster"),
    open=open_redis,
    capabilities=QueueCapabilities(
        cross_process=True, shared_across_hosts=True, shared_rate_limits=True
    ),
    example="redis://host:6379/0",
    summary="one queue for many hosts; any number of workers deliver from it",
)

BUILTIN_QUEUES: tuple[QueueBackend, ...] = (MEMORY, SQLITE, REDIS)


@hookimpl
def postback_register_queues(register: Callable[[QueueBackend], None]) -> None:
    for backend in BUILTIN_QUEUES:
        register(backend)

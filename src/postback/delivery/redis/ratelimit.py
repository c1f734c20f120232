"""Rate limits every worker of a Redis queue shares: ``limits``' Redis storages (plain,
Sentinel, Cluster), with the moving window timed by the Redis server's clock.

The subclasses below override two methods of ``limits``' Redis storages and call three of
their internals. What they use is listed in :data:`LIMITS_INTERNALS` and pinned by
``tests/redis/test_rate_limits.py`` (signatures, and that ``limits``' own storage reads the
windows ours write: same key layout, same list of hit times); ``pyproject.toml`` bounds the
``limits`` version to the major versions that were checked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from limits.storage import RedisClusterStorage, RedisSentinelStorage, RedisStorage

from postback.delivery.redis.scripts import lua
from postback.delivery.redis.urls import RedisTarget

__all__ = ["LIMITS_INTERNALS", "shared_rate_storage"]

#: What the server-clock storages rely on in ``limits``' Redis storages: method -> parameters.
LIMITS_INTERNALS: dict[str, tuple[str, ...]] = {
    "initialize_storage": ("self", "_uri"),  # overridden: registers our two scripts
    "get_connection": ("self", "readonly"),  # called: the redis-py client limits made
    "prefixed_key": ("self", "key"),  # called: limits' key_prefix applied
    "acquire_entry": ("self", "key", "limit", "expiry", "amount"),  # overridden
    "get_moving_window": ("self", "key", "limit", "expiry"),  # overridden
}


class ServerClock:
    """Time the moving window by the Redis server's ``TIME``, not the worker's clock, so that
    workers on hosts whose clocks disagree still share one window."""

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)  # type: ignore[misc]
        conn = self.get_connection()  # type: ignore[attr-defined]
        self._acquire_window = conn.register_script(lua("acquire_window"))
        self._read_window = conn.register_script(lua("get_window"))

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        full = self.prefixed_key(key)  # type: ignore[attr-defined]
        return bool(self._acquire_window([full], [limit, expiry, amount]))

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        full = self.prefixed_key(key)  # type: ignore[attr-defined]
        start, count = self._read_window([full], [expiry, limit])
        if isinstance(start, bytes):
            start = start.decode()
        return float(start), int(count)


class ServerClockRedisStorage(ServerClock, RedisStorage):
    """``limits``' RedisStorage, timed by the server."""


class ServerClockRedisSentinelStorage(ServerClock, RedisSentinelStorage):
    """``limits``' RedisSentinelStorage, timed by the server."""


class ServerClockRedisClusterStorage(ServerClock, RedisClusterStorage):
    """``limits``' RedisClusterStorage, timed by the server."""


def shared_rate_storage(target: RedisTarget, key_prefix: str) -> Any:
    """The ``limits`` storage (plain, Sentinel or Cluster) for a queue URL, under
    ``key_prefix``."""
    options: dict[str, Any] = {"key_prefix": key_prefix}
    uri = target.client_url
    storage_class: type
    if target.scheme == "redis+sentinel":
        parts = urlsplit(uri)
        path = [p for p in parts.path.split("/") if p]
        if len(path) > 1:
            options["db"] = int(path[1])
        uri = urlunsplit(parts._replace(path="/" + path[0], query=""))
        storage_class = ServerClockRedisSentinelStorage
    elif target.scheme == "redis+cluster":
        uri = urlunsplit(urlsplit(uri)._replace(query=""))
        storage_class = ServerClockRedisClusterStorage
    else:
        storage_class = ServerClockRedisStorage
    return storage_class(uri, **options)

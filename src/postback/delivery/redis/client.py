"""A Redis queue's connection: plain, Sentinel or Cluster clients from a parsed URL, retries of
transient failures, the server check at start-up, and every Redis failure explained as the
caller-oriented :class:`~postback.QueueError` subclass it is.

Error mapping (messages say what to check and never contain the URL's password):

- unreachable, timed out, restarting (``LOADING``) -> :class:`~postback.QueueUnavailable`
- credentials refused, or an ACL user without the needed commands ->
  :class:`~postback.QueueAuthRefused`
- a read-only replica -> :class:`~postback.QueueReadOnly`
- anything else (out of memory, a server too old) -> :class:`~postback.QueueError`
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from postback.delivery.redis.urls import RedisTarget, split_hosts, typed_options
from postback.errors import (
    ConfigError,
    ConfigProblem,
    QueueAuthRefused,
    QueueError,
    QueueReadOnly,
    QueueUnavailable,
)

__all__ = ["MIN_REDIS", "RedisConnection", "first_node"]

log = logging.getLogger("postback.queue")

MIN_REDIS = (6, 2)  # XAUTOCLAIM, XTRIM MINID, exclusive XRANGE


class _Refused(Exception):
    """Carries an authentication error past redis-py's retry loop."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _RetryTransient(Retry):
    """Retry lost connections and timeouts (a Redis restart, a failover), but not a
    refused password: redis-py counts that as a connection error too."""

    def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        def attempt() -> Any:
            try:
                return do()
            except redis.exceptions.AuthenticationError as exc:
                raise _Refused(exc) from exc

        try:
            return super().call_with_retry(attempt, fail, *args, **kwargs)
        except _Refused as refused:
            raise refused.error from None


def first_node(info: Any) -> dict[str, Any]:
    """INFO from a cluster client is keyed by node; from one server it is flat."""
    if isinstance(info, dict) and info and all(isinstance(v, dict) for v in info.values()):
        first: dict[str, Any] = next(iter(info.values()))
        return first
    return info if isinstance(info, dict) else {}


class RedisConnection:
    """The client for one queue URL (``client``) and the errors it explains; ``key_base`` is
    the queue's ``{prefix}`` (named in permission errors)."""

    def __init__(self, target: RedisTarget, key_base: str) -> None:
        self._target = target
        self._base = key_base
        try:
            if target.scheme == "redis+sentinel":
                self.client = self._sentinel_client()
            elif target.scheme == "redis+cluster":
                self.client = self._cluster_client()
            else:
                self.client = redis.Redis.from_url(target.client_url, **self._client_defaults())
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                [ConfigProblem("postback.queue", f"cannot use {target.safe_url!r}: {exc}")]
            ) from None
        except redis.exceptions.RedisError as exc:
            raise self.explain(exc, "connecting") from None

    def _client_defaults(self) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "socket_timeout": 10.0,
            "socket_connect_timeout": 5.0,
            "health_check_interval": 30,
            "retry": _RetryTransient(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 6),
            "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        }
        for key in list(defaults):
            if key in self._target.options:
                del defaults[key]
        return defaults

    def _auth(self) -> dict[str, str]:
        parts = urlsplit(self._target.client_url)
        auth = {}
        if parts.username:
            auth["username"] = unquote(parts.username)
        if parts.password:
            auth["password"] = unquote(parts.password)
        return auth

    def _sentinel_client(self) -> Any:
        from redis.sentinel import Sentinel

        parts = urlsplit(self._target.client_url)
        netloc = parts.netloc.rpartition("@")[2]
        hosts = split_hosts(netloc, 26379)
        path = [p for p in parts.path.split("/") if p]
        if not hosts or not path:
            raise ValueError(
                "use redis+sentinel://[:password@]host:port[,host:port]/service_name[/db]"
            )
        options = typed_options(self._target.options)
        db = int(path[1]) if len(path) > 1 else int(options.pop("db", 0))
        options.pop("db", None)
        auth = self._auth()
        timeouts = {
            k: float(options.pop(k, d))
            for k, d in (("socket_timeout", 10.0), ("socket_connect_timeout", 5.0))
        }
        sentinel_class: Any = Sentinel
        sentinel = sentinel_class(
            hosts, sentinel_kwargs={**auth, **timeouts}, **auth, **timeouts, **options
        )
        return sentinel.master_for(path[0], db=db)

    def _cluster_client(self) -> Any:
        from redis.cluster import ClusterNode, RedisCluster

        parts = urlsplit(self._target.client_url)
        netloc = parts.netloc.rpartition("@")[2]
        node_class: Any = ClusterNode
        nodes = [node_class(h, p) for h, p in split_hosts(netloc, 6379)]
        if not nodes:
            raise ValueError("use redis+cluster://[:password@]host:port[,host:port...]")
        defaults = self._client_defaults()
        defaults.pop("health_check_interval", None)
        defaults.pop("retry_on_error", None)
        options: dict[str, Any] = {
            **defaults,
            **self._auth(),
            **typed_options(self._target.options),
        }
        return RedisCluster(startup_nodes=nodes, **options)

    def check_server(self) -> str:
        """Fail fast when Redis is unreachable or too old; warn when it does not persist."""
        with self.errors("connecting"):
            info = self.client.info("server")
            persistence = self.client.info("persistence")
            memory = self.client.info("memory")
        info = first_node(info)
        version = str(info.get("redis_version", "0"))
        parsed = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if parsed < MIN_REDIS:
            raise QueueError(
                f"Redis at {self._target.safe_url} is version {version}; the postback queue "
                "needs Redis 6.2 or newer (streams with XAUTOCLAIM): upgrade the server"
            )
        persistence = first_node(persistence)
        if not int(persistence.get("aof_enabled", 0)):
            log.warning(
                "Redis at %s has no append-only file (appendonly no): events that track() "
                "accepted can be lost when Redis restarts. Set 'appendonly yes' (see the "
                "deployment guide)",
                self._target.safe_url,
            )
        policy = str(first_node(memory).get("maxmemory_policy", "noeviction"))
        if policy.startswith("allkeys"):
            log.warning(
                "Redis at %s evicts keys under memory pressure (maxmemory-policy %s): it may "
                "drop queued events. Use 'maxmemory-policy noeviction' for the postback queue",
                self._target.safe_url,
                policy,
            )
        return version

    def explain(self, exc: Exception, action: str) -> QueueError:
        """The caller-oriented error for a Redis failure: unreachable or restarting ->
        QueueUnavailable, credentials or their rights refused -> QueueAuthRefused, a replica ->
        QueueReadOnly; anything else QueueError. Never with the URL's password."""
        where = self._target.safe_url
        msg = str(exc)
        errors = redis.exceptions
        if isinstance(exc, errors.AuthenticationError) or "WRONGPASS" in msg or "NOAUTH" in msg:
            return QueueAuthRefused(
                f"Redis at {where} refused our credentials while {action}: check the user and "
                "password in [postback] queue (redis://user:password@host:port/db) and the "
                "server's ACL"
            )
        if isinstance(exc, errors.BusyLoadingError):
            return QueueUnavailable(
                f"Redis at {where} is loading its data set (it is restarting) while {action}: "
                "try again in a moment"
            )
        if isinstance(exc, (errors.ConnectionError, errors.TimeoutError)):
            return QueueUnavailable(
                f"cannot reach Redis at {where} while {action} ({msg}): check that redis-server "
                "is running and reachable from this host (address, port, TLS, firewall) and "
                "that [postback] queue names it"
            )
        if isinstance(exc, errors.ReadOnlyError) or msg.startswith("READONLY"):
            return QueueReadOnly(
                f"Redis at {where} is a read-only replica ({action}): point [postback] queue at "
                "the master, or use redis+sentinel:// to follow failovers"
            )
        if msg.startswith("OOM") or "maxmemory" in msg:
            return QueueError(
                f"Redis at {where} is out of memory while {action}: the event was not accepted. "
                "Raise maxmemory, or run more postback workers to drain the backlog"
            )
        # redis-py strips the NOPERM prefix into NoPermissionError ("this user has no
        # permissions to run the 'evalsha' command").
        if (
            isinstance(exc, errors.NoPermissionError)
            or msg.startswith("NOPERM")
            or "no permissions" in msg
            or "can't run this command" in msg
        ):
            return QueueAuthRefused(
                f"Redis at {where} denied a command while {action} ({msg}): the user in the "
                "queue URL needs the commands listed in the deployment guide (streams, sets, "
                f"sorted sets, hashes, lists, scripting, EXISTS, EXPIRE, INFO, TIME) on keys "
                f"{self._base}:*"
            )
        return QueueError(f"Redis at {where} failed while {action}: {msg}")

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except redis.exceptions.RedisError as exc:
            raise self.explain(exc, action) from None

    def close(self) -> None:
        try:
            self.client.close()
        except redis.exceptions.RedisError:
            pass

"""``redis://``: a queue shared by many hosts, on Redis Streams with one consumer group per vendor.

When an app runs on many hosts, a per-host SQLite file is no longer the right queue. With
``queue = "redis://host:6379/0"`` every process that calls ``track()`` appends to one Redis
stream, and any number of ``postback worker`` processes, on any hosts, deliver from it.

Layout (``P`` is the ``?prefix=`` query parameter, default ``postback``; every key carries the
hash tag ``{P}`` so that the Lua scripts below work on Redis Cluster, where all of them then live
in one slot)::

    {P}:events              stream: one entry per event (event_id, name, created_ms,
                            vendors ",a,b,", payload); the canonical event is stored once
    {P}:vendors             set: every vendor an event was ever routed to
    consumer group VENDOR   on {P}:events, one per vendor; each process is one consumer
                            (host:pid:random) in the group of every vendor it delivers to
    {P}:v:VENDOR:retry      zset: stream id -> due time (ms) of events waiting for a retry
    {P}:v:VENDOR:leased     zset: stream id -> lease expiry (ms) of retries a worker holds now
    {P}:v:VENDOR:owner      hash: stream id -> consumer holding that retry
    {P}:v:VENDOR:retrydata  hash: stream id -> the event (and attempts, last error) for retries
    {P}:v:VENDOR:dead       zset: dead-letter id -> failed time (ms)
    {P}:v:VENDOR:remembered set: a vendor's durable keys (e.g. Ton AI's once-per-user marks)
    {P}:dead                hash: dead-letter id -> the event, reason, attempts
    {P}:dead:all            zset: dead-letter id -> failed time (ms), every vendor
    {P}:dead:seq            counter for dead-letter ids
    {P}:skips               hash: "VENDOR<tab>reason" -> events the vendor was left out of
    {P}:limits:...          the shared rate limits (``limits``' moving-window lists)

How an event travels:

- ``put`` (the ``track()`` path) is one Lua call: ``SADD {P}:vendors`` + ``XADD {P}:events``.
  It returns once Redis has applied the write; how much that survives (a Redis crash, a power
  cut) is decided by Redis' persistence settings (``appendonly yes`` and ``appendfsync``), see
  ``docs/deployment.md``.
- ``claim`` is one Lua call that takes, in this order: entries another consumer has held longer
  than the visibility timeout (``XAUTOCLAIM``), retries that are due (and retries whose holder's
  lease ran out), then new entries (``XREADGROUP >``). New entries that are not routed to the
  vendor are acknowledged on the spot, inside Redis, and never reach the client.
- ``settle`` is one Lua call that records each outcome and only then acknowledges the entry
  (``XACK``), atomically: a retry moves the event (payload copied) into the vendor's retry set
  with its due time and attempts; a dead letter is stored with its payload and reason; ``done``
  is just the acknowledgement. A settlement for an entry this process no longer holds (another
  worker took it over after the visibility timeout) is skipped: that worker settles it.
- While a process holds entries (a request in flight, or waiting for the rate limit), the
  engine's periodic ``maintenance()`` renews them (``XCLAIM ... JUSTID`` resets their idle time,
  leases are pushed forward), so only the entries of a process that died or hung are taken over.
- ``maintenance()`` also trims the stream (``XTRIM MINID ~``) below the oldest entry that some
  vendor group has not acknowledged (its oldest pending entry, or its last-delivered id): an
  entry some vendor has not settled is never dropped. Retries and dead letters carry their own
  copy of the event, so trimming never depends on them.

Delivery is at-least-once, as with SQLite: a worker that dies after the vendor accepted a batch
but before ``settle`` leaves the entries pending; another worker delivers them again after the
visibility timeout, with the same event id, which the vendors' dedupe keys absorb.

URL forms (redis-py does the connecting):

- ``redis://[[user]:password@]host:port/db``, ``rediss://...`` (TLS), ``unix:///path.sock?db=0``
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``: the master
  is found through Sentinel (the password is used for the sentinels and the master)
- ``redis+cluster://[[user]:password@]host:port[,host:port...]``: Redis Cluster; every key of a
  queue hashes to one slot (the ``{P}`` hash tag), so a cluster gives failover, not sharding
- query parameters: ``prefix`` (key namespace, default ``postback``), ``visibility_timeout``
  (seconds or ``"2m"``, default 60), and redis-py's own (``socket_timeout``, ``ssl_cert_reqs``...)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import attrs
import orjson

from postback.config import parse_duration
from postback.delivery.queue import (
    Claimed,
    DeadLetter,
    Queue,
    QueueCapabilities,
    QueueDepth,
    Settlement,
)
from postback.errors import (
    ConfigError,
    ConfigProblem,
    QueueAuthRefused,
    QueueError,
    QueueReadOnly,
    QueueUnavailable,
)

try:
    import redis
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - exercised only without the extra installed
    redis = None  # type: ignore[assignment]

__all__ = ["RedisQueue"]

log = logging.getLogger("postback.queue")

DEFAULT_PREFIX = "postback"
DEFAULT_VISIBILITY_TIMEOUT = 60.0
MIN_REDIS = (6, 2)  # XAUTOCLAIM, XTRIM MINID, exclusive XRANGE
TRIM_EVERY = 10.0  # seconds between stream trims (per process)
CONSUMER_SWEEP_EVERY = 60.0  # seconds between sweeps of consumers that went away
NEW_READ_ROUNDS = 8  # XREADGROUP rounds per claim when entries are skipped (not routed)
MAX_HOLD = 1800.0  # seconds a claimed entry is renewed at most (a rate-limit wait fits)
DEPTH_SCAN = 1000  # unread entries counted exactly per vendor; beyond that the group lag
_U64 = (1 << 64) - 1

# --------------------------------------------------------------------------------------------
# Lua: each script is one atomic step. KEYS are declared so that the scripts also run on Redis
# Cluster (all keys share the {prefix} hash tag).

_LUA_PUT = """
if #ARGV > 5 then
  redis.call('SADD', KEYS[2], unpack(ARGV, 6))
end
return redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[1], 'name', ARGV[2],
                  'created_ms', ARGV[3], 'vendors', ARGV[4], 'payload', ARGV[5])
"""

_LUA_FIELDS = """
local function fields_of(list)
  local m = {}
  for i = 1, #list, 2 do m[list[i]] = list[i + 1] end
  return m
end
"""

# KEYS: stream, retry, leased, retrydata, owner
# ARGV: group, consumer, limit, now_ms, lease_until_ms, min_idle_ms, autoclaim cursor ('' = skip),
#       vendor tag (",v,"), read rounds
# Returns {next_cursor, ('s', id, event_id, name, created_ms, payload | 'r', id, record)...}
_LUA_CLAIM = (
    _LUA_FIELDS
    + """
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local limit = tonumber(ARGV[3])
local now, lease_until = ARGV[4], ARGV[5]
local tag = ARGV[8]
local out = {''}
local n = 0

local function ensure_group()
  redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end

local function push_entry(id, f)
  out[#out + 1] = 's'
  out[#out + 1] = id
  out[#out + 1] = f['event_id'] or ''
  out[#out + 1] = f['name'] or ''
  out[#out + 1] = f['created_ms'] or '0'
  out[#out + 1] = f['payload'] or ''
  n = n + 1
end

if ARGV[7] ~= '' then
  local r = redis.pcall('XAUTOCLAIM', stream, group, consumer, ARGV[6], ARGV[7], 'COUNT', limit)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'NOGROUP', 1, true) then
      ensure_group()
      out[1] = '0-0'
    else
      return redis.error_reply(r.err)
    end
  else
    out[1] = r[1]
    for _, e in ipairs(r[2]) do
      if type(e) == 'table' and type(e[2]) == 'table' then
        push_entry(e[1], fields_of(e[2]))
      end
    end
  end
end

local function lease(id)
  local record = redis.call('HGET', KEYS[4], id)
  if record then
    redis.call('ZADD', KEYS[3], lease_until, id)
    redis.call('HSET', KEYS[5], id, consumer)
    out[#out + 1] = 'r'
    out[#out + 1] = id
    out[#out + 1] = record
    n = n + 1
  else
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[5], id)
  end
end

if n < limit then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit - n)) do
    lease(id)
  end
end
if n < limit then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit - n)) do
    redis.call('ZREM', KEYS[2], id)
    lease(id)
  end
end

local rounds = 0
while n < limit and rounds < tonumber(ARGV[9]) do
  rounds = rounds + 1
  local want = limit - n
  local r = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
                        'STREAMS', stream, '>')
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'NOGROUP', 1, true) then
      ensure_group()
    else
      return redis.error_reply(r.err)
    end
  elseif not r then
    break
  else
    local entries = r[1][2]
    local skipped = {}
    for _, e in ipairs(entries) do
      local f = fields_of(e[2])
      if f['vendors'] and string.find(f['vendors'], tag, 1, true) then
        push_entry(e[1], f)
      else
        skipped[#skipped + 1] = e[1]
      end
    end
    if #skipped > 0 then
      redis.call('XACK', stream, group, unpack(skipped))
    end
    if #entries < want then break end
  end
end
return out
"""
)

# KEYS: stream, retry, leased, retrydata, owner, dead, dead-by-vendor, dead-all, dead-seq
# ARGV: group, consumer, now_ms, then (kind, id, due_ms, record) per settlement
# kind: 'done' | 'retry' (also release) | 'dead'. Returns how many were applied.
_LUA_SETTLE = """
local stream, group, consumer, now = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local applied = 0
local acks = {}
for i = 4, #ARGV, 4 do
  local kind, id, due, record = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local source = nil
  if redis.call('HGET', KEYS[5], id) == consumer then
    source = 'retry'
  else
    local p = redis.pcall('XPENDING', stream, group, id, id, 1, consumer)
    if type(p) == 'table' and not p.err and #p > 0 then source = 'stream' end
  end
  if source then
    applied = applied + 1
    if source == 'retry' then
      redis.call('ZREM', KEYS[3], id)
      redis.call('HDEL', KEYS[5], id)
    else
      acks[#acks + 1] = id
    end
    if kind == 'retry' then
      redis.call('ZADD', KEYS[2], due, id)
      redis.call('HSET', KEYS[4], id, record)
    else
      if source == 'retry' then redis.call('HDEL', KEYS[4], id) end
      if kind == 'dead' then
        local dead_id = string.format('%016d', redis.call('INCR', KEYS[9]))
        redis.call('HSET', KEYS[6], dead_id, record)
        redis.call('ZADD', KEYS[7], now, dead_id)
        redis.call('ZADD', KEYS[8], now, dead_id)
      end
    end
  end
end
if #acks > 0 then
  redis.call('XACK', stream, group, unpack(acks))
end
return applied
"""

# KEYS: stream, leased, owner ; ARGV: group, consumer, lease_until_ms, ids...
# Renews what this consumer still holds; returns how many it still holds.
_LUA_RENEW = """
local held = 0
local entries = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[2] then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[3], id)
    held = held + 1
  else
    local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
    if type(p) == 'table' and not p.err and #p > 0 then entries[#entries + 1] = id end
  end
end
if #entries > 0 then
  -- XCLAIM to ourselves resets the idle time; JUSTID leaves the delivery counter alone
  local cmd = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
  for _, id in ipairs(entries) do cmd[#cmd + 1] = id end
  cmd[#cmd + 1] = 'JUSTID'
  redis.call(unpack(cmd))
  held = held + #entries
end
return held
"""

# KEYS: stream, vendors ; ARGV: stale consumer idle (ms), sweep consumers ('1' / '0')
# Ensures a group for every vendor ever routed to, trims below the oldest unacknowledged entry
# of every group, and drops consumers that hold nothing and have been silent for long.
_LUA_MAINTAIN = (
    _LUA_FIELDS
    + """
local function cmp(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  if am ~= bm then return am < bm and -1 or 1 end
  if as ~= bs then return as < bs and -1 or 1 end
  return 0
end
for _, v in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.pcall('XGROUP', 'CREATE', KEYS[1], v, '0', 'MKSTREAM')
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, ''} end
local low = nil
local dropped = 0
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = fields_of(g)
  local keep = info['last-delivered-id']
  if tonumber(info['pending']) > 0 then
    keep = redis.call('XPENDING', KEYS[1], info['name'])[2]
  end
  if low == nil or cmp(keep, low) < 0 then low = keep end
  if ARGV[2] == '1' then
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], info['name'])) do
      local ci = fields_of(c)
      if tonumber(ci['pending']) == 0 and tonumber(ci['idle']) > tonumber(ARGV[1]) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], info['name'], ci['name'])
        dropped = dropped + 1
      end
    end
  end
end
local trimmed = 0
if low and low ~= '0-0' then
  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', low)
end
return {trimmed, dropped, low or ''}
"""
)

# KEYS: stream, retry, leased, dead-by-vendor ; ARGV: group, vendor tag, now_ms, scan cap
# Returns {ready, retrying, inflight, dead}.
_LUA_DEPTH = (
    _LUA_FIELDS
    + """
local last, pending, lag = nil, 0, nil
local unread = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = fields_of(g)
    if info['name'] == ARGV[1] then
      last = info['last-delivered-id']
      pending = tonumber(info['pending'])
      if type(info['lag']) == 'number' then lag = info['lag'] end
    end
  end
  if lag ~= 0 then
    local cap = tonumber(ARGV[4])
    local start = '-'
    if last then start = '(' .. last end
    local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', cap)
    for _, e in ipairs(entries) do
      local f = fields_of(e[2])
      if f['vendors'] and string.find(f['vendors'], ARGV[2], 1, true) then
        unread = unread + 1
      end
    end
    if #entries >= cap and lag then
      unread = unread + math.max(lag - #entries, 0)
    end
  end
end
local due = redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[3])
local waiting = redis.call('ZCARD', KEYS[2]) - due
local leased = redis.call('ZCARD', KEYS[3])
local dead = redis.call('ZCARD', KEYS[4])
return {unread + due, waiting, pending + leased, dead}
"""
)

# KEYS: stream, vendors, dead, dead-all, dead-by-vendor
# ARGV: dead id, vendor, event_id, name, created_ms, payload. Returns the new entry id or nil.
_LUA_REQUEUE = """
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return false end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[3], 'name', ARGV[4],
                  'created_ms', ARGV[5], 'vendors', ',' .. ARGV[2] .. ',', 'payload', ARGV[6])
"""

# The moving window of ``limits`` (a list of hit times per key), timed by the Redis server's
# clock instead of each worker's, so that workers on hosts whose clocks disagree still share
# one window. Same data layout as limits' own scripts.
_LUA_ACQUIRE_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, expiry, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if amount > limit then return false end
local entry = redis.call('LINDEX', KEYS[1], limit - amount)
if entry and tonumber(entry) >= now - expiry then return false end
local stamp = string.format('%.6f', now)
for i = 1, amount do redis.call('LPUSH', KEYS[1], stamp) end
redis.call('LTRIM', KEYS[1], 0, limit - 1)
redis.call('EXPIRE', KEYS[1], math.ceil(expiry))
return true
"""

_LUA_GET_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local target = now - tonumber(ARGV[1])
local high = tonumber(ARGV[2]) - 1
local low, found = 0, nil
while low <= high do
  local mid = math.floor((low + high) / 2)
  local val = tonumber(redis.call('LINDEX', KEYS[1], mid))
  if val and val >= target then
    found = mid
    low = mid + 1
  else
    high = mid - 1
  end
end
if found then
  return {tostring(redis.call('LINDEX', KEYS[1], found)), found + 1}
end
return {string.format('%.6f', now), 0}
"""


# --------------------------------------------------------------------------------------------
# Helpers


def _seq(entry_id: str) -> int:
    """A stream id ``"ms-n"`` as the integer :class:`Claimed` carries (order-preserving)."""
    ms, _, n = entry_id.partition("-")
    return (int(ms) << 64) | int(n or 0)


def _entry_id(seq: int) -> str:
    return f"{seq >> 64}-{seq & _U64}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pack(meta: dict[str, Any], payload: bytes) -> bytes:
    """A stored record: JSON metadata, a newline, the event bytes (orjson never emits one)."""
    return orjson.dumps(meta) + b"\n" + payload


def _unpack(record: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, payload = record.partition(b"\n")
    return orjson.loads(head), payload


def _event_name(payload: bytes) -> str:
    """The event's canonical name, read from its stored bytes (for records that lack it)."""
    try:
        name = orjson.loads(payload).get("name")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return name if isinstance(name, str) else ""


def _split_hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """``h1:p1,[::1]:p2`` -> [(h1, p1), ("::1", p2)]."""
    hosts = []
    for item in netloc.split(","):
        part = item.strip()
        if not part:
            continue
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = part.rpartition(":") if part.count(":") == 1 else (part, "", "")
        hosts.append((host, int(port) if port else default_port))
    return hosts


def _typed_options(options: dict[str, str]) -> dict[str, Any]:
    """Query parameters typed as redis-py types them in its own URL parser."""
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    parsers: dict[str, Any] = dict(URL_QUERY_ARGUMENT_PARSERS)
    typed: dict[str, Any] = {}
    for key, value in options.items():
        parser = parsers.get(key)
        typed[key] = parser(value) if parser else value
    return typed


class _Refused(Exception):
    """Carries an authentication error past redis-py's retry loop."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


if redis is not None:

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


@attrs.frozen
class _Target:
    """What a queue URL names, with postback's own parameters taken out."""

    scheme: str
    client_url: str  # the URL without postback's parameters (redis-py / limits read it)
    safe_url: str  # for error messages: scheme, host and path only
    display_url: str  # the whole URL with passwords masked (``queue.url``: logs, stats)
    prefix: str
    visibility_ms: int
    options: dict[str, str]


def _parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in ("prefix", "visibility_timeout")}
    rest = [(k, v) for k, v in query if k not in own]
    problems = []
    prefix = own.get("prefix", DEFAULT_PREFIX)
    if not prefix or any(c in prefix for c in "{}: \t\n"):
        problems.append(
            f"prefix={prefix!r} in the queue URL must be a non-empty name without braces, "
            "colons or spaces (e.g. ?prefix=myapp)"
        )
    visibility = DEFAULT_VISIBILITY_TIMEOUT
    if "visibility_timeout" in own:
        try:
            visibility = parse_duration(own["visibility_timeout"])
        except ValueError as exc:
            problems.append(f"visibility_timeout in the queue URL {exc}")
        else:
            if visibility < 1:
                problems.append(
                    "visibility_timeout in the queue URL must be at least 1 second (it is how "
                    "long a dead worker's events wait before others take them over)"
                )
    if problems:
        raise ConfigError([ConfigProblem("postback.queue", p) for p in problems])
    client_url = urlunsplit(parts._replace(query=urlencode(rest)))
    host = parts.hostname or ""
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    safe = urlunsplit((parts.scheme, netloc or host, parts.path, "", ""))
    user = (
        f"{parts.username or ''}:***@"
        if parts.password
        else (f"{parts.username}@" if parts.username else "")
    )
    shown = [(k, "***" if "password" in k.lower() else v) for k, v in query]
    display = urlunsplit(
        (parts.scheme, user + (netloc or host), parts.path, urlencode(shown, safe="*"), "")
    )
    return _Target(
        scheme=parts.scheme,
        client_url=client_url,
        safe_url=safe,
        display_url=display,
        prefix=prefix,
        visibility_ms=int(visibility * 1000),
        options=dict(rest),
    )


@attrs.define
class _Held:
    """An entry this process has claimed and not settled yet."""

    entry_id: str
    name: str
    error: str | None
    since: float = attrs.field(factory=time.monotonic)


# --------------------------------------------------------------------------------------------
# The queue


class RedisQueue(Queue):
    """A :class:`~postback.delivery.queue.Queue` on Redis Streams, shared by many hosts.

    Every process that delivers is a consumer (``host:pid:random``) in the consumer group of
    each vendor it serves; :meth:`acquire_delivery` is always true. See the module docstring
    for the layout and the guarantees.
    """

    capabilities = QueueCapabilities(
        cross_process=True, shared_across_hosts=True, shared_rate_limits=True
    )

    def __init__(self, url: str) -> None:
        if redis is None:  # pragma: no cover
            raise QueueError(
                "queue = 'redis://...' needs the redis package: pip install 'postback[redis]'"
            )
        self._target = _parse_url(url)
        self.url = self._target.display_url  # printed by the CLI: never the password
        self.prefix = self._target.prefix
        self.visibility_ms = self._target.visibility_ms
        base = "{" + self.prefix + "}"
        self._base = base
        self.stream_key = f"{base}:events"
        self._vendors_key = f"{base}:vendors"
        self._dead_key = f"{base}:dead"
        self._dead_all_key = f"{base}:dead:all"
        self._dead_seq_key = f"{base}:dead:seq"
        self._skips_key = f"{base}:skips"
        self._lock = threading.Lock()
        self._held: dict[str, dict[int, _Held]] = {}
        self._autoclaim: dict[str, tuple[str, float]] = {}  # vendor -> (cursor, next scan at)
        self._last_renew = 0.0
        self._next_trim = 0.0
        self._next_sweep = 0.0
        self._rate_storage: Any = None
        self.consumer = self._consumer_name()
        self._connect()
        self._check_server()

    # --- connections ---------------------------------------------------------------------------

    @staticmethod
    def _consumer_name() -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

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

    def _connect(self) -> None:
        target = self._target
        try:
            if target.scheme == "redis+sentinel":
                self._client = self._sentinel_client()
            elif target.scheme == "redis+cluster":
                self._client = self._cluster_client()
            else:
                self._client = redis.Redis.from_url(target.client_url, **self._client_defaults())
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                [ConfigProblem("postback.queue", f"cannot use {target.safe_url!r}: {exc}")]
            ) from None
        except redis.exceptions.RedisError as exc:
            raise self._explain(exc, "connecting") from None
        client = self._client
        self._put_script = client.register_script(_LUA_PUT)
        self._claim_script = client.register_script(_LUA_CLAIM)
        self._settle_script = client.register_script(_LUA_SETTLE)
        self._renew_script = client.register_script(_LUA_RENEW)
        self._maintain_script = client.register_script(_LUA_MAINTAIN)
        self._depth_script = client.register_script(_LUA_DEPTH)
        self._requeue_script = client.register_script(_LUA_REQUEUE)

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
        hosts = _split_hosts(netloc, 26379)
        path = [p for p in parts.path.split("/") if p]
        if not hosts or not path:
            raise ValueError(
                "use redis+sentinel://[:password@]host:port[,host:port]/service_name[/db]"
            )
        options = _typed_options(self._target.options)
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
        nodes = [node_class(h, p) for h, p in _split_hosts(netloc, 6379)]
        if not nodes:
            raise ValueError("use redis+cluster://[:password@]host:port[,host:port...]")
        defaults = self._client_defaults()
        defaults.pop("health_check_interval", None)
        defaults.pop("retry_on_error", None)
        options: dict[str, Any] = {
            **defaults,
            **self._auth(),
            **_typed_options(self._target.options),
        }
        return RedisCluster(startup_nodes=nodes, **options)

    def _check_server(self) -> None:
        """Fail fast when Redis is unreachable or too old; warn when it does not persist."""
        with self._errors("connecting"):
            info = self._client.info("server")
            persistence = self._client.info("persistence")
            memory = self._client.info("memory")
        info = self._first_node(info)
        version = str(info.get("redis_version", "0"))
        parsed = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if parsed < MIN_REDIS:
            raise QueueError(
                f"Redis at {self._target.safe_url} is version {version}; the postback queue "
                "needs Redis 6.2 or newer (streams with XAUTOCLAIM): upgrade the server"
            )
        self.server_version = version
        persistence = self._first_node(persistence)
        if not int(persistence.get("aof_enabled", 0)):
            log.warning(
                "Redis at %s has no append-only file (appendonly no): events that track() "
                "accepted can be lost when Redis restarts. Set 'appendonly yes' (see the "
                "deployment guide)",
                self._target.safe_url,
            )
        policy = str(self._first_node(memory).get("maxmemory_policy", "noeviction"))
        if policy.startswith("allkeys"):
            log.warning(
                "Redis at %s evicts keys under memory pressure (maxmemory-policy %s): it may "
                "drop queued events. Use 'maxmemory-policy noeviction' for the postback queue",
                self._target.safe_url,
                policy,
            )

    @staticmethod
    def _first_node(info: Any) -> dict[str, Any]:
        """INFO from a cluster client is keyed by node; from one server it is flat."""
        if isinstance(info, dict) and info and all(isinstance(v, dict) for v in info.values()):
            first: dict[str, Any] = next(iter(info.values()))
            return first
        return info if isinstance(info, dict) else {}

    def _explain(self, exc: Exception, action: str) -> QueueError:
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
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except redis.exceptions.RedisError as exc:
            raise self._explain(exc, action) from None

    def after_fork(self) -> None:
        """In a forked child: a new connection pool and a new consumer name; hold nothing."""
        self._lock = threading.Lock()
        self._held = {}
        self._autoclaim = {}
        self._rate_storage = None
        self.consumer = self._consumer_name()
        self._connect()

    def close(self) -> None:
        """Drop the pooled connections.

        A request thread that finishes after ``close()`` (the engine does not wait for
        in-flight requests) can still record its outcome: redis-py opens a connection for it.
        """
        try:
            self._client.close()
        except redis.exceptions.RedisError:
            pass

    def __repr__(self) -> str:
        return f"<RedisQueue {self._target.safe_url} prefix={self.prefix!r}>"

    # --- keys ------------------------------------------------------------------------------------

    def _vkeys(self, vendor: str) -> dict[str, str]:
        v = f"{self._base}:v:{vendor}"
        return {
            "retry": f"{v}:retry",
            "leased": f"{v}:leased",
            "retrydata": f"{v}:retrydata",
            "owner": f"{v}:owner",
            "dead": f"{v}:dead",
            "remembered": f"{v}:remembered",
        }

    # --- enqueue (the track() path) --------------------------------------------------------------

    def put(
        self, event_id: str, name: str, created_ms: int, vendors: Sequence[str], payload: bytes
    ) -> None:
        tag = "," + ",".join(vendors) + ","
        with self._errors("storing an event (it was not accepted)"):
            self._put_script(
                keys=[self.stream_key, self._vendors_key],
                args=[event_id, name, created_ms, tag, payload, *vendors],
            )

    # --- delivery --------------------------------------------------------------------------------

    def acquire_delivery(self) -> bool:
        """Every worker delivers: the consumer groups share the work out."""
        return True

    def recover(self) -> int:
        """Count what dead workers left behind; :meth:`claim` takes it over after the
        visibility timeout (``XAUTOCLAIM``; expired retry leases), so nothing else is needed."""
        now_ms = int(time.time() * 1000)
        total = 0
        with self._errors("looking for events that stopped workers left"):
            groups = self._groups()
            for vendor, info in groups.items():
                if int(info.get("pending", 0)):
                    stale = self._client.xpending_range(
                        self.stream_key,
                        vendor,
                        min="-",
                        max="+",
                        count=10_000,
                        idle=self.visibility_ms,
                    )
                    total += len(stale)
                total += int(self._client.zcount(self._vkeys(vendor)["leased"], "-inf", now_ms))
        return total

    def claim(self, vendor: str, limit: int, now_ms: int) -> list[Claimed]:
        if limit <= 0:
            return []
        keys = self._vkeys(vendor)
        now = time.monotonic()
        cursor, scan_at = self._autoclaim.get(vendor, ("0-0", 0.0))
        scan = cursor != "0-0" or now >= scan_at
        with self._errors(f"claiming events for {vendor}"):
            reply = self._claim_script(
                keys=[
                    self.stream_key,
                    keys["retry"],
                    keys["leased"],
                    keys["retrydata"],
                    keys["owner"],
                ],
                args=[
                    vendor,
                    self.consumer,
                    limit,
                    now_ms,
                    now_ms + self.visibility_ms,
                    self.visibility_ms,
                    cursor if scan else "",
                    f",{vendor},",
                    NEW_READ_ROUNDS,
                ],
            )
        if scan:
            next_cursor = _text(reply[0]) or "0-0"
            pause = max(self.visibility_ms / 4000.0, 0.25)
            self._autoclaim[vendor] = (next_cursor, now + pause if next_cursor == "0-0" else 0.0)
        out: list[Claimed] = []
        held: list[tuple[int, _Held]] = []
        i = 1
        while i < len(reply):
            source = _text(reply[i])
            entry_id = _text(reply[i + 1])
            seq = _seq(entry_id)
            if source == "s":
                event_id, name, created, payload = reply[i + 2 : i + 6]
                i += 6
                out.append(Claimed(seq, _text(event_id), bytes(payload), 0, int(created)))
                held.append((seq, _Held(entry_id, _text(name), None)))
            else:
                meta, payload = _unpack(reply[i + 2])
                i += 3
                out.append(
                    Claimed(
                        seq,
                        meta["event_id"],
                        payload,
                        int(meta["attempts"]),
                        int(meta["created_ms"]),
                    )
                )
                held.append((seq, _Held(entry_id, meta.get("name", ""), meta.get("error"))))
        if held:
            with self._lock:
                mine = self._held.setdefault(vendor, {})
                # An entry this process already works on came back because its renewal was
                # late: the claim renewed it again; it must not be delivered twice from here.
                again = {seq for seq, _ in held if seq in mine}
                if again:
                    out = [c for c in out if c.seq not in again]
                mine.update((seq, h) for seq, h in held if seq not in again)
        return out

    def settle(self, vendor: str, settlements: Sequence[Settlement], now_ms: int) -> None:
        if not settlements:
            return
        with self._lock:
            mine = self._held.get(vendor, {})
            known = [mine.get(s.claimed.seq) for s in settlements]
        args: list[Any] = [vendor, self.consumer, now_ms]
        for s, h in zip(settlements, known, strict=True):
            c = s.claimed
            entry_id = h.entry_id if h else _entry_id(c.seq)
            name = (h.name if h else "") or _event_name(c.payload)
            if s.kind == "done":
                args += ["done", entry_id, 0, b""]
            elif s.kind in ("retry", "release"):
                attempts = s.attempts if s.kind == "retry" else c.attempts
                error = s.error if s.error is not None else (h.error if h else None)
                meta = {
                    "event_id": c.event_id,
                    "name": name,
                    "created_ms": c.created_ms,
                    "attempts": attempts,
                    "error": error,
                }
                args += ["retry", entry_id, int(s.due_ms), _pack(meta, c.payload)]
            else:
                meta = {
                    "vendor": vendor,
                    "event_id": c.event_id,
                    "name": name,
                    "created_ms": c.created_ms,
                    "failed_ms": now_ms,
                    "attempts": s.attempts,
                    "reason": s.error or "",
                }
                args += ["dead", entry_id, 0, _pack(meta, c.payload)]
        keys = self._vkeys(vendor)
        try:
            with self._errors(f"recording delivery outcomes for {vendor}"):
                applied = self._settle_script(
                    keys=[
                        self.stream_key,
                        keys["retry"],
                        keys["leased"],
                        keys["retrydata"],
                        keys["owner"],
                        self._dead_key,
                        keys["dead"],
                        self._dead_all_key,
                        self._dead_seq_key,
                    ],
                    args=args,
                )
        finally:
            # Recorded or not, this process is done with them. If Redis could not take the
            # outcome (it was restarting), they must not stay "held" here and be renewed:
            # their lease runs out and they are claimed again and redelivered (at least once).
            with self._lock:
                for s in settlements:
                    mine.pop(s.claimed.seq, None)
        skipped = len(settlements) - int(applied)
        if skipped:
            log.info(
                "%s: %d outcome(s) not recorded: another worker took those events over after "
                "the visibility timeout (%.0fs) and settles them",
                vendor,
                skipped,
                self.visibility_ms / 1000,
            )

    def next_due_ms(self, vendor: str) -> int | None:
        with self._errors(f"reading retry times for {vendor}"):
            first = self._client.zrange(self._vkeys(vendor)["retry"], 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def maintenance(self) -> None:
        """Renew what this process holds, trim the stream, sweep consumers that went away."""
        now = time.monotonic()
        try:
            if now - self._last_renew >= min(self.visibility_ms / 4000.0, 5.0):
                self._renew()
                self._last_renew = now
            if now >= self._next_trim:
                sweep = now >= self._next_sweep
                stale_ms = max(10 * self.visibility_ms, 600_000)
                with self._errors("trimming the stream"):
                    trimmed, dropped, _low = self._maintain_script(
                        keys=[self.stream_key, self._vendors_key],
                        args=[stale_ms, "1" if sweep else "0"],
                    )
                if int(trimmed) or int(dropped):
                    log.debug(
                        "queue maintenance: trimmed %s entries, dropped %s idle consumers",
                        trimmed,
                        dropped,
                    )
                self._next_trim = now + TRIM_EVERY
                if sweep:
                    self._next_sweep = now + CONSUMER_SWEEP_EVERY
        except QueueError as exc:
            log.warning("queue maintenance failed (will retry): %s", exc)

    def _renew(self) -> None:
        """Keep what this process holds from being taken over, up to ``MAX_HOLD`` seconds.

        Past that the process evidently lost track of the entries (a bug; nothing legitimate
        holds an event that long), so they are left to expire and be delivered by others.
        """
        now = time.monotonic()
        held: dict[str, list[str]] = {}
        with self._lock:
            for vendor, entries in self._held.items():
                for seq, h in list(entries.items()):
                    if now - h.since > MAX_HOLD:
                        del entries[seq]
                        log.warning(
                            "%s: event %s was held %.0f s without an outcome; leaving it to "
                            "other workers after the visibility timeout",
                            vendor,
                            h.entry_id,
                            now - h.since,
                        )
                    else:
                        held.setdefault(vendor, []).append(h.entry_id)
        lease_until = int(time.time() * 1000) + self.visibility_ms
        for vendor, ids in held.items():
            keys = self._vkeys(vendor)
            with self._errors(f"renewing the events held for {vendor}"):
                self._renew_script(
                    keys=[self.stream_key, keys["leased"], keys["owner"]],
                    args=[vendor, self.consumer, lease_until, *ids],
                )

    # --- inspection ------------------------------------------------------------------------------

    def depth(self, vendors: Sequence[str], now_ms: int) -> dict[str, QueueDepth]:
        out: dict[str, QueueDepth] = {}
        with self._errors("reading queue depth"):
            for v in vendors:
                keys = self._vkeys(v)
                ready, retrying, inflight, dead = self._depth_script(
                    keys=[self.stream_key, keys["retry"], keys["leased"], keys["dead"]],
                    args=[v, f",{v},", now_ms, DEPTH_SCAN],
                )
                out[v] = QueueDepth(int(ready), int(retrying), int(inflight), int(dead))
        return out

    def _groups(self) -> dict[str, dict[str, Any]]:
        try:
            groups = self._client.xinfo_groups(self.stream_key)
        except redis.exceptions.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return {}
            raise
        return {_text(g["name"]): g for g in groups}

    def vendors_seen(self) -> list[str]:
        """Every vendor an event was routed to, or that has a consumer group."""
        with self._errors("listing vendors"):
            names = {_text(v) for v in self._client.smembers(self._vendors_key)}
            names.update(self._groups())
        return sorted(names)

    def health(self) -> dict[str, object]:
        """Per vendor group: pending (in flight), lag (unread), consumers; and the server."""
        now_ms = int(time.time() * 1000)
        with self._errors("reading queue health"):
            client = self._client
            persistence = self._first_node(client.info("persistence"))
            groups = self._groups()
            vendors: dict[str, object] = {}
            for name in sorted(set(groups) | set(self.vendors_seen())):
                g = groups.get(name, {})
                consumers = client.xinfo_consumers(self.stream_key, name) if g else []
                active = sum(1 for c in consumers if int(c.get("idle", 0)) < 60_000)
                oldest = None
                if int(g.get("pending", 0)):
                    first = client.xpending_range(self.stream_key, name, "-", "+", 1)
                    if first:
                        added_ms = int(_text(first[0]["message_id"]).partition("-")[0])
                        oldest = round((now_ms - added_ms) / 1000, 1)
                keys = self._vkeys(name)
                vendors[name] = {
                    "pending": int(g.get("pending", 0)),
                    "lag": g.get("lag"),
                    "consumers": len(consumers),
                    "active_consumers": active,
                    "oldest_pending_age_s": oldest,
                    "retry_waiting": int(client.zcard(keys["retry"])),
                    "retry_inflight": int(client.zcard(keys["leased"])),
                }
            length = int(client.xlen(self.stream_key))
        aof = int(persistence.get("aof_enabled", 0))
        return {
            "backend": f"redis {self.server_version} at {self._target.safe_url}",
            "stream": self.stream_key,
            "stream_length": length,
            "persistence": "append-only file on"
            if aof
            else "NO append-only file: acknowledged events can be lost on restart",
            "visibility_timeout_s": self.visibility_ms / 1000,
            "groups": vendors,
        }

    # --- dead letters ----------------------------------------------------------------------------

    @staticmethod
    def _dead_letter(dead_id: bytes | str, record: bytes) -> DeadLetter:
        meta, payload = _unpack(record)
        return DeadLetter(
            id=int(_text(dead_id)),
            vendor=meta["vendor"],
            event_id=meta["event_id"],
            name=meta["name"],
            created_ms=int(meta["created_ms"]),
            failed_ms=int(meta["failed_ms"]),
            attempts=int(meta["attempts"]),
            reason=meta["reason"],
            payload=payload,
        )

    def _find_dead(
        self, vendor: str | None, since_ms: int | None, ids: Sequence[int], limit: int
    ) -> list[DeadLetter]:
        client = self._client
        if ids:
            members = [f"{i:016d}" for i in ids]
        else:
            index = self._vkeys(vendor)["dead"] if vendor is not None else self._dead_all_key
            low = since_ms if since_ms is not None else "-inf"
            members = [
                _text(m) for m in client.zrevrangebyscore(index, "+inf", low, start=0, num=limit)
            ]
        if not members:
            return []
        records = client.hmget(self._dead_key, members)
        rows = [self._dead_letter(m, r) for m, r in zip(members, records, strict=True) if r]
        rows = [
            d
            for d in rows
            if (vendor is None or d.vendor == vendor)
            and (since_ms is None or d.failed_ms >= since_ms)
        ]
        rows.sort(key=lambda d: (d.failed_ms, d.id), reverse=True)
        return rows[:limit]

    def dead_letters(
        self, vendor: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        with self._errors("reading dead letters"):
            return self._find_dead(vendor, since_ms, (), limit)

    def dead_letter(self, id: int) -> DeadLetter | None:
        with self._errors("reading a dead letter"):
            rows = self._find_dead(None, None, (id,), 1)
        return rows[0] if rows else None

    def requeue_dead(
        self, vendor: str | None = None, since_ms: int | None = None, ids: Sequence[int] = ()
    ) -> list[DeadLetter]:
        """Put dead letters back on the stream for their vendor only, oldest first."""
        moved: list[DeadLetter] = []
        with self._errors("requeueing dead letters"):
            rows = self._find_dead(vendor, since_ms, ids, 10**9)
            for d in reversed(rows):
                entry = self._requeue_script(
                    keys=[
                        self.stream_key,
                        self._vendors_key,
                        self._dead_key,
                        self._dead_all_key,
                        self._vkeys(d.vendor)["dead"],
                    ],
                    args=[f"{d.id:016d}", d.vendor, d.event_id, d.name, d.created_ms, d.payload],
                )
                if entry:
                    moved.append(d)
        moved.reverse()
        return moved

    # --- durable keys ----------------------------------------------------------------------------

    def add_skips(self, counts: Mapping[tuple[str, str], int]) -> None:
        with self._errors("counting skips"):
            pipe = self._client.pipeline(transaction=False)
            for (vendor, reason), n in counts.items():
                pipe.hincrby(self._skips_key, f"{vendor}\t{reason}", n)
            pipe.execute()

    def skip_counts(self) -> dict[str, dict[str, int]]:
        with self._errors("reading skip counts"):
            raw = self._client.hgetall(self._skips_key)
        out: dict[str, dict[str, int]] = {}
        for field, n in raw.items():
            vendor, _, reason = _text(field).partition("\t")
            out.setdefault(vendor, {})[reason] = int(n)
        return out

    def remember(self, vendor: str, key: str) -> bool:
        with self._errors(f"remembering a key for {vendor}"):
            return bool(self._client.sadd(self._vkeys(vendor)["remembered"], key))

    def forget(self, vendor: str, key: str) -> None:
        with self._errors(f"forgetting a key for {vendor}"):
            self._client.srem(self._vkeys(vendor)["remembered"], key)

    # --- rate limits -----------------------------------------------------------------------------

    def rate_limit_storage(self) -> object | None:
        """A ``limits`` storage on this Redis, so every worker shares one moving window per
        vendor and credential (timed by the Redis server's clock)."""
        if self._rate_storage is None:
            self._rate_storage = _rate_storage(self._target, f"{self._base}:limits")
        storage: object = self._rate_storage
        return storage


# --------------------------------------------------------------------------------------------
# Shared rate limits


def _rate_storage(target: _Target, key_prefix: str) -> Any:
    """Build the ``limits`` Redis storage (plain, Sentinel or Cluster) for a queue URL."""
    from limits.storage import RedisClusterStorage, RedisSentinelStorage, RedisStorage

    class ServerClock:
        """Time the moving window by the Redis server's ``TIME``, not the worker's clock."""

        def initialize_storage(self, uri: str) -> None:
            super().initialize_storage(uri)  # type: ignore[misc]
            conn = self.get_connection()  # type: ignore[attr-defined]
            self._acquire_window = conn.register_script(_LUA_ACQUIRE_WINDOW)
            self._read_window = conn.register_script(_LUA_GET_WINDOW)

        def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
            full = self.prefixed_key(key)  # type: ignore[attr-defined]
            return bool(self._acquire_window([full], [limit, expiry, amount]))

        def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
            full = self.prefixed_key(key)  # type: ignore[attr-defined]
            start, count = self._read_window([full], [expiry, limit])
            return float(_text(start)), int(count)

    options: dict[str, Any] = {"key_prefix": key_prefix}
    uri = target.client_url
    if target.scheme == "redis+sentinel":
        parts = urlsplit(uri)
        path = [p for p in parts.path.split("/") if p]
        if len(path) > 1:
            options["db"] = int(path[1])
        uri = urlunsplit(parts._replace(path="/" + path[0], query=""))
        base: type = RedisSentinelStorage
    elif target.scheme == "redis+cluster":
        uri = urlunsplit(urlsplit(uri)._replace(query=""))
        base = RedisClusterStorage
    else:
        base = RedisStorage
    storage_class = type(f"ServerClock{base.__name__}", (ServerClock, base), {})
    return storage_class(uri, **options)

"""``redis://``: a queue shared by many hosts, on Redis Streams with one consumer group per vendor.

The package's parts: :mod:`~postback.delivery.redis.urls` (what a URL names),
:mod:`~postback.delivery.redis.client` (connections, and Redis failures as caller-oriented
errors), :mod:`~postback.delivery.redis.scripts` (the Lua scripts, package data in ``lua/``),
:mod:`~postback.delivery.redis.queue` (:class:`RedisQueue`) and
:mod:`~postback.delivery.redis.ratelimit` (the rate limits every worker shares). Importing
this package imports the Redis client; the registry imports it only when a ``redis://`` queue
is opened.

When an app runs on many hosts, a per-host SQLite file is no longer the right queue. With
``queue = "redis://host:6379/0"`` every process that calls ``track()`` appends to one Redis
stream, and any number of ``postback worker`` processes, on any hosts, deliver from it.

Layout (``P`` is the ``?prefix=`` query parameter, default ``postback``; every key carries the
hash tag ``{P}`` so that the Lua scripts work on Redis Cluster, where all of them then live
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
    {P}:v:VENDOR:recent:KEY string with a time to live: an event id seen within the vendor's
                            dedupe window (``remember_for``, ``SET NX PX``)
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

from postback.delivery.redis.queue import RedisQueue

__all__ = ["RedisQueue"]

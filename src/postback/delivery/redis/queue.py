"""The Redis queue: :class:`RedisQueue`, on Redis Streams with one consumer group per vendor.

The key layout, how an event travels and what survives what are described in
:mod:`postback.delivery.redis`; the atomic steps are the Lua scripts of
:mod:`postback.delivery.redis.scripts`, the connection and its errors are
:mod:`postback.delivery.redis.client`, the shared rate limits
:mod:`postback.delivery.redis.ratelimit`.

Size: about 690 lines, over the house's 600, because it is the one class that implements the
:class:`~postback.delivery.queue.Queue` contract on Redis: each method is a thin call of a Lua
script or a pipeline, and the parts with a life of their own (scripts, URLs, connection, rate
limits, erasure, ledger) are modules of their own already.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import orjson
import redis

from postback.delivery import erase, timing
from postback.delivery.queue import (
    Claimed,
    DeadLetter,
    Queue,
    QueueCapabilities,
    QueueDepth,
    Settlement,
)
from postback.delivery.redis.client import RedisConnection, first_node
from postback.delivery.redis.scripts import lua
from postback.delivery.redis.urls import parse_url
from postback.errors import QueueError

__all__ = ["RedisQueue"]

log = logging.getLogger("postback.queue")

NEW_READ_ROUNDS = 8  # XREADGROUP rounds per claim when entries are skipped (not routed)
DEPTH_SCAN = 1000  # unread entries counted exactly per vendor; beyond that the group lag
_U64 = (1 << 64) - 1


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
        self._target = parse_url(url)
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
        self.server_version = self._connection.check_server()

    # --- connections ---------------------------------------------------------------------------

    @staticmethod
    def _consumer_name() -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def _connect(self) -> None:
        self._connection = RedisConnection(self._target, self._base)
        client = self._client = self._connection.client
        self._errors = self._connection.errors
        self._put_script = client.register_script(lua("put"))
        self._put_unique_script = client.register_script(lua("put_unique"))
        self._claim_script = client.register_script(lua("claim"))
        self._settle_script = client.register_script(lua("settle"))
        self._renew_script = client.register_script(lua("renew"))
        self._maintain_script = client.register_script(lua("maintain"))
        self._depth_script = client.register_script(lua("depth"))
        self._requeue_script = client.register_script(lua("requeue"))

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
        self._connection.close()

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

    def put_unique(
        self,
        event_id: str,
        name: str,
        created_ms: int,
        vendors: Sequence[str],
        payload: bytes,
        windows: Mapping[str, int],
    ) -> list[str]:
        """One Lua call, as ``put``: ``SET NX PX`` per vendor with a window, then ``SADD`` +
        ``XADD`` for the vendors left; atomic, so no key is claimed for an event not stored."""
        keys = [self.stream_key, self._vendors_key]
        args: list[object] = [event_id, name, created_ms, payload]
        for vendor in vendors:
            window = windows.get(vendor) or 0
            args += (vendor, max(1, window) if window else 0)
            if window:
                keys.append(self._recent_key(vendor, event_id))
        with self._errors("storing an event (it was not accepted)"):
            dups = self._put_unique_script(keys=keys, args=args)
        return [_text(v) for v in dups]

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
                self._next_trim = now + timing.TRIM_EVERY
                if sweep:
                    self._next_sweep = now + timing.CONSUMER_SWEEP_EVERY
        except QueueError as exc:
            log.warning("queue maintenance failed (will retry): %s", exc)

    def _renew(self) -> None:
        """Keep what this process holds from being taken over, up to ``timing.MAX_HOLD`` seconds.

        Past that the process evidently lost track of the entries (a bug; nothing legitimate
        holds an event that long), so they are left to expire and be delivered by others.
        """
        now = time.monotonic()
        held: dict[str, list[str]] = {}
        with self._lock:
            for vendor, entries in self._held.items():
                for seq, h in list(entries.items()):
                    if now - h.since > timing.MAX_HOLD:
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
                ready, retrying, inflight, dead, oldest = self._depth_script(
                    keys=[self.stream_key, keys["retry"], keys["leased"], keys["dead"]],
                    args=[v, f",{v},", now_ms, DEPTH_SCAN],
                )
                out[v] = QueueDepth(
                    int(ready),
                    int(retrying),
                    int(inflight),
                    int(dead),
                    int(oldest) if int(oldest) >= 0 else None,
                )
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
            persistence = first_node(client.info("persistence"))
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

    def discard_dead(self, ids: Sequence[int]) -> list[DeadLetter]:
        with self._errors("discarding dead letters"):
            rows = self._find_dead(None, None, ids, len(ids)) if ids else []
            if rows:
                pipe = self._client.pipeline(transaction=True)
                for d in rows:
                    member = f"{d.id:016d}"
                    pipe.hdel(self._dead_key, member)
                    pipe.zrem(self._dead_all_key, member)
                    pipe.zrem(self._vkeys(d.vendor)["dead"], member)
                pipe.execute()
        return rows

    def expire_dead(self, before_ms: int) -> int:
        with self._errors("expiring dead letters"):
            members = self._client.zrangebyscore(self._dead_all_key, "-inf", f"({before_ms}")
        return len(self.discard_dead([int(_text(m)) for m in members])) if members else 0

    def erasure_log(self) -> erase.ErasureLog:
        return erase.RedisErasureLog(self._client, self._base)

    def stored_events(self) -> Iterable[tuple[str, bytes, int]]:
        from postback.delivery.redis.erasure import stored_events

        with self._errors("reading the queue for an erase"):
            return stored_events(self)

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

    def forget_prefix(self, vendor: str, prefix: str) -> None:
        name = self._vkeys(vendor)["remembered"]
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"  # the prefix, literally
        with self._errors(f"forgetting keys for {vendor}"):
            found = [k for k in self._client.sscan_iter(name, match=pattern, count=1000)]
            for i in range(0, len(found), 1000):
                self._client.srem(name, *found[i : i + 1000])

    def remember_for(self, vendors: Sequence[str], key: str, window_ms: int) -> list[str]:
        """``SET NX PX`` per vendor, pipelined: one round trip; Redis expires the keys."""
        with self._errors("remembering an event id (dedupe)"):
            pipe = self._client.pipeline(transaction=False)
            for vendor in vendors:
                pipe.set(self._recent_key(vendor, key), 1, nx=True, px=max(1, window_ms))
            results = pipe.execute()
        return [v for v, ok in zip(vendors, results, strict=True) if ok]

    def forget_for(self, vendors: Sequence[str], key: str) -> None:
        with self._errors("forgetting an event id (dedupe)"):
            self._client.delete(*(self._recent_key(v, key) for v in vendors))

    def _recent_key(self, vendor: str, key: str) -> str:
        return f"{self._base}:v:{vendor}:recent:{key}"

    # --- rate limits -----------------------------------------------------------------------------

    def rate_limit_storage(self) -> object | None:
        """A ``limits`` storage on this Redis, so every worker shares one moving window per
        vendor and credential (timed by the Redis server's clock)."""
        if self._rate_storage is None:
            from postback.delivery.redis.ratelimit import shared_rate_storage

            self._rate_storage = shared_rate_storage(self._target, f"{self._base}:limits")
        storage: object = self._rate_storage
        return storage

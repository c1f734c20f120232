"""Erasing a person: who is meant, the tombstones every deliverer honours, and the report.

Theory of operation. ``tracker.erase(email=...)`` cannot simply delete rows: the person's
events may sit in a spool file not yet read, in a deliverer's memory in another process, in a
retry, or on another host's Redis consumer. So an erase does three things:

1. It records a *tombstone* per identifier in the queue's :class:`ErasureLog` (a SHA-256 of the
   normalised identifier and the time of the erase, never the identifier itself). Every
   deliverer's :class:`ErasureFilter` checks each claimed event against them, before the
   vendor's transform, and drops the person's events that were queued before the erase (a
   skip with reason ``erased``; an event tracked after the erase is new data and goes out).
   The filter looks for new tombstones before every batch (a file's header on SQLite, one
   ``GET`` on Redis), so no event of the person is sent once ``erase()`` has returned, except
   one whose request was already being sent: that request finishes.
2. It deletes the person's dead letters at once (:func:`erase_dead_letters`).
3. It counts the person's events the queue still holds (:class:`ErasureReport`), which the
   deliverer drops the next time it takes them up (at the latest at their next retry).

Identifiers match as the event model normalises them: ``email`` trimmed and lower-cased
(and as the SHA-256 hex of that, so that an email tracked already hashed matches too),
``user_id`` trimmed, ``phone`` by its digits (``+1 415-555-0123`` is ``14155550123``) and by
those of its E.164 form: a national number (``(415) 555-0123``) read in the regions the erase
names or the vendors' ``default_phone_region`` settings, so that either form matches the other.
Other identifiers (``erase(user={"telegram_user_id": ...})``: every user field a vendor plugin
declares as an identifier, and the core ids in :data:`CORE_IDS`) match as ``track()`` stores
them, by name. Tombstones are kept :data:`TOMBSTONE_DAYS` days, longer than any retry lasts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import orjson
import phonenumbers

from postback.delivery import sqltx
from postback.encryption import open_payload
from postback.events import USER_FIELDS
from postback.pii import is_sha256_hex, normalize_phone, sha256_hex

if TYPE_CHECKING:
    from postback.config.vendors import VendorConfig
    from postback.delivery.queue import Claimed, Queue
    from postback.destination import Destination
    from postback.fields import FieldSet

__all__ = [
    "CORE_IDS",
    "ErasureFilter",
    "ErasureLog",
    "ErasureReport",
    "MemoryErasureLog",
    "Person",
    "RedisErasureLog",
    "SQLiteErasureLog",
    "check_region",
    "disabled_keepers",
    "erasable_user",
    "erase_dead_letters",
    "erase_person",
    "payload_keys",
    "phone_regions",
]

_log = logging.getLogger("postback")

TOMBSTONE_DAYS = 400
_NON_DIGITS = re.compile(r"\D+")


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:40]


def _text(value: object) -> str | None:
    """An identifier as ``track()`` stores it: a string, or an integer (a numeric user id)
    as its digits; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _email_keys(email: str) -> tuple[str, ...]:
    """An email's keys: as given (trimmed, lower-cased) and as the SHA-256 hex of that, the
    form an app may have tracked it in (an email given as such a hash has that one key)."""
    if is_sha256_hex(email):
        return (_key("email", email),)
    return (_key("email", email), _key("email", sha256_hex(email)))


def _keys_of(
    user_id: object, email: object, phone: object, regions: tuple[str, ...] = ()
) -> set[str]:
    keys: set[str] = set()
    user_id, email, phone = _text(user_id), _text(email), _text(phone)
    if user_id is not None and user_id.strip():
        keys.add(_key("user_id", user_id.strip()))
    if email is not None and email.strip():
        keys.update(_email_keys(email.strip().lower()))
    if phone is not None:
        keys.update(_phone_keys(phone, regions))
    return keys


#: (the phone's own key, regions) -> its keys: parsing costs about 40 µs, and a person's
#: events come in runs. Keyed by a hash, so that no phone number is kept in memory.
_PHONE_KEYS: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {}
_PHONE_KEYS_MAX = 4096


def _phone_keys(phone: str, regions: tuple[str, ...]) -> frozenset[str]:
    """A phone's keys: its digits as given, and the digits of its E.164 form, read as an
    international number or (a national one) in each of ``regions``."""
    cache_key = (_key("raw phone", phone), regions)
    hit = _PHONE_KEYS.get(cache_key)
    if hit is None:
        hit = _parse_phone_keys(phone, regions)
        if len(_PHONE_KEYS) >= _PHONE_KEYS_MAX:
            _PHONE_KEYS.clear()
        _PHONE_KEYS[cache_key] = hit
    return hit


def _parse_phone_keys(phone: str, regions: tuple[str, ...]) -> frozenset[str]:
    digits = _NON_DIGITS.sub("", phone)
    if not digits:
        return frozenset()
    keys = {_key("phone", digits)}
    for region in (None,) if phone.lstrip().startswith("+") else regions:
        try:
            keys.add(_key("phone", normalize_phone(phone, region)[1:]))
        except ValueError:  # not a number there (or no region for a national one)
            continue
    return frozenset(keys)


def check_region(region: str) -> str:
    """``region`` as ISO 3166 alpha-2 in capitals, or ValueError saying what is wrong."""
    upper = region.strip().upper()
    if upper not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"erase: phone_region= must be a region code phones are numbered in "
            f"(ISO 3166 alpha-2, e.g. 'US'), got {region!r}"
        )
    return upper


def _check_regions(regions: Iterable[str]) -> tuple[str, ...]:
    return tuple(check_region(r) for r in regions)


def phone_regions(destinations: Iterable[Destination]) -> tuple[str, ...]:
    """The regions the vendors read a national phone number in (their
    ``default_phone_region`` setting), each once."""
    found = (
        getattr(getattr(d, "settings", None), "default_phone_region", None) for d in destinations
    )
    return tuple(dict.fromkeys(r.strip().upper() for r in found if isinstance(r, str) and r))


#: Core user fields that single out a person besides ``user_id``, ``email`` and ``phone``:
#: ``erase(user=...)`` takes them, as it takes every identifier a vendor plugin declares.
CORE_IDS = frozenset(
    {"external_id", "anonymous_id", "username", "ifa", "idfv", "client_id", "membership_id"}
)
#: A stored user's fields that are not keyed as ``user.NAME``: the core's but those ids (and
#: user_id, email and phone, keyed above). Every other field is one a plugin declares.
_NOT_KEYED = frozenset(USER_FIELDS) - CORE_IDS


def erasable_user(user: Mapping[str, object], fields: FieldSet) -> tuple[tuple[str, str], ...]:
    """``erase(user=...)`` read as ``track()`` reads those fields (stripped, then a declared
    field's type and validator); ValueError for a field that is unknown or identifies no one."""
    found: list[tuple[str, str]] = []
    for name, raw in user.items():
        declared = fields.declared.get(f"user.{name}")
        if name in ("user_id", "email", "phone"):
            raise ValueError(f"erase: give user[{name!r}] as erase({name}=...)")
        if name not in fields.user:
            raise ValueError(f"erase: user.{name}: {fields.unknown('user', str(name))}")
        if not (declared.identifier if declared else name in CORE_IDS):
            raise ValueError(f"erase: user.{name} does not identify a person (not an identifier)")
        text = _text(raw)
        if text is None:
            raise ValueError(f"erase: user.{name} must be a string (or a number), got {raw!r}")
        value = text.strip()
        check = fields.user_checks.get(name)
        if value and check is not None:
            try:
                value = check.parse(value)
            except ValueError as exc:
                raise ValueError(f"erase: user.{name} {exc}") from None
        if value:
            found.append((name, value))
    return tuple(found)


@attrs.frozen
class Person:
    """Whom to erase: any of ``user_id``, ``email``, ``phone`` (an event matching any is theirs).
    ``phone_regions``: where a national ``phone`` may be numbered (ISO 3166 alpha-2)."""

    user_id: str | int | None = None
    email: str | None = None
    phone: str | int | None = None
    phone_regions: tuple[str, ...] = attrs.field(default=(), converter=_check_regions)
    #: Other identifiers, ``(name, value)`` as :func:`erasable_user` reads them.
    user: tuple[tuple[str, str], ...] = ()

    def __attrs_post_init__(self) -> None:
        for name in ("user_id", "email", "phone"):
            given = getattr(self, name)
            if given is not None and _text(given) is None:  # never ignored without a word
                raise ValueError(
                    f"erase: {name}= must be a string (or a number, as track() takes it), "
                    f"got {type(given).__name__}"
                )
        if not self.keys():
            raise ValueError(
                "erase needs at least one of user_id=, email=, phone=, user= (a non-empty string)"
            )

    def keys(self) -> set[str]:
        """The tombstone keys (hashes of the normalised identifiers)."""
        keys = _keys_of(self.user_id, self.email, self.phone, self.phone_regions)
        keys.update(_key(f"user.{name}", value) for name, value in self.user)
        return keys

    def identifiers(self) -> dict[str, str]:
        """The identifiers given, by field name, as ``track()`` stores them (for
        :meth:`~postback.destination.Destination.erase_user`)."""
        ids = {f: _text(getattr(self, f)) for f in ("user_id", "email", "phone")}
        out = {f: v.strip() for f, v in ids.items() if v is not None and v.strip()}
        if "email" in out:
            out["email"] = out["email"].lower()
        return {**out, **dict(self.user)}

    def __repr__(self) -> str:  # never the identifiers themselves
        given = [f for f in ("user_id", "email", "phone") if getattr(self, f)]
        given += [f"user.{name}" for name, _ in self.user]
        return f"Person({', '.join(given)})"


def payload_keys(payload: bytes, phone_regions: tuple[str, ...] = ()) -> set[str]:
    """The tombstone keys of a stored event (empty if it is unreadable or has no user);
    ``phone_regions``: where its phone may be numbered, if given in national form."""
    try:
        plain = open_payload(payload)
    except ValueError:  # sealed with a key not here
        return set()
    return _plain_keys(plain, phone_regions)


def _plain_keys(plain: bytes, phone_regions: tuple[str, ...]) -> set[str]:
    """:func:`payload_keys` of an event's plain (opened) bytes."""
    try:
        data = orjson.loads(plain)
    except orjson.JSONDecodeError:  # unreadable
        return set()
    user = data.get("user") if isinstance(data, Mapping) else None
    if not isinstance(user, Mapping):
        return set()
    keys = _keys_of(user.get("user_id"), user.get("email"), user.get("phone"), phone_regions)
    if not user.keys() <= _NOT_KEYED:  # a core id or a declared field: keyed by name
        for name, value in user.items():
            if name not in _NOT_KEYED and (text := _text(value)) is not None and text.strip():
                keys.add(_key(f"user.{name}", text.strip()))
    return keys


@attrs.frozen
class ErasureReport:
    """What ``erase()`` did.

    ``pending``: the person's events the queue held (new or waiting for a retry), which no
    vendor will get; ``already_erased``: those of them an earlier erase had dropped already
    (not counted in ``pending``), still in the queue until the deliverer takes them up and
    removes them; ``dead_letters``: their dead letters, deleted; ``in_flight``: their events
    a lane of this process was sending at that moment (those requests finish: a request
    already written cannot be recalled), or None when delivery runs in another process (the
    same holds there); ``in_flight_outcome`` says so. ``not_forgotten``: the vendors whose
    :meth:`~postback.Destination.erase_user` failed, or that could not be built for it (a
    disabled one; logged): what they keep about the person (Ton AI's once-per-user marks) is
    still there; erase again once the cause is fixed. ``unreadable``: dead letters sealed
    with a key this process's ``POSTBACK_ENCRYPTION_KEYS`` does not list, so not matched (the
    person's may be among them): erase again with the app's keys.
    """

    pending: int
    dead_letters: int
    in_flight: int | None
    in_flight_outcome: Literal["finished"] = "finished"
    not_forgotten: tuple[str, ...] = ()
    unreadable: int = 0
    already_erased: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.dead_letters + (self.in_flight or 0)


class ErasureLog:
    """Where a queue keeps tombstones: ``{key: erased_ms}``, shared by every process using it."""

    def add(self, keys: Iterable[str], at_ms: int) -> None:
        raise NotImplementedError

    def load(self) -> dict[str, int]:
        raise NotImplementedError

    def version(self) -> object:
        """A cheap token that changes when tombstones are added (checked before each batch)."""
        raise NotImplementedError


class MemoryErasureLog(ErasureLog):
    def __init__(self) -> None:
        self._keys: dict[str, int] = {}
        self._version = 0

    def add(self, keys: Iterable[str], at_ms: int) -> None:
        for k in keys:
            self._keys[k] = at_ms
        self._version += 1

    def load(self) -> dict[str, int]:
        return dict(self._keys)

    def version(self) -> object:
        return self._version


class SQLiteErasureLog(ErasureLog):
    """``<queue file>.erased``: a small SQLite file of tombstones (created ``0600``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: The file, open for reading its header in :meth:`version` (before every batch: one
        #: ``fstat`` and one ``pread``, not an ``open`` and a ``close`` too); a file replaced
        #: since is opened again, and every descriptor is closed with this object.
        self._fd: int | None = None
        self._fds: list[int] = []
        self._fd_lock = threading.Lock()
        weakref.finalize(self, _close_all, self._fds)

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS erased(key TEXT PRIMARY KEY, at_ms INTEGER)")
        return conn

    def add(self, keys: Iterable[str], at_ms: int) -> None:
        conn = self._connect()
        try:
            with sqltx.write(conn):
                conn.executemany(
                    "INSERT INTO erased(key, at_ms) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET at_ms=excluded.at_ms",
                    [(k, at_ms) for k in keys],
                )
                conn.execute(
                    "DELETE FROM erased WHERE at_ms < ?", (at_ms - TOMBSTONE_DAYS * 86_400_000,)
                )
        finally:
            conn.close()

    def load(self) -> dict[str, int]:
        if not self.path.exists():
            return {}
        conn = self._connect()
        try:
            return dict(conn.execute("SELECT key, at_ms FROM erased").fetchall())
        finally:
            conn.close()

    def version(self) -> object:
        # The file's time and size alone miss a second erase within one tick of a coarse
        # clock (most kernels before 6.13, NFS): SQLite's file change counter (header bytes
        # 24-27, bumped by every write transaction in its default rollback journal mode) does not.
        fd = self._fd
        if fd is None or (st := os.fstat(fd)).st_nlink == 0:  # none yet, or deleted since
            fd = self._open(fd)
            if fd is None:
                return None
            st = os.fstat(fd)
        return (st.st_ino, st.st_mtime_ns, st.st_size, os.pread(fd, 4, 24))

    def _open(self, stale: int | None) -> int | None:
        """The file, opened (again, if ``stale`` is the descriptor of one deleted since);
        None while there is none. Without a lock while there is no file (every batch asks,
        from every request thread). The stale descriptor stays open until this object goes:
        another thread may be reading it."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        with self._fd_lock:
            if self._fd != stale:  # another thread opened it meanwhile: keep that one
                os.close(fd)
                return self._fd
            self._fds.append(fd)
            self._fd = fd
            return fd


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class RedisErasureLog(ErasureLog):
    """``{P}:erased`` (hash: key -> erased ms) and ``{P}:erased:version`` (a counter)."""

    def __init__(self, client: Any, base: str) -> None:
        self._client = client
        self._hash = f"{base}:erased"
        self._version = f"{base}:erased:version"

    def add(self, keys: Iterable[str], at_ms: int) -> None:
        expired = [k for k, v in self.load().items() if v < at_ms - TOMBSTONE_DAYS * 86_400_000]
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self._hash, mapping={k: at_ms for k in keys})
        if expired:
            pipe.hdel(self._hash, *expired)
        pipe.incr(self._version)
        pipe.execute()

    def load(self) -> dict[str, int]:
        return {
            (k.decode() if isinstance(k, bytes) else str(k)): int(v)
            for k, v in self._client.hgetall(self._hash).items()
        }

    def version(self) -> object:
        return self._client.get(self._version)


class ErasureFilter:
    """A deliverer's view of the tombstones: :meth:`refresh` before each batch, then
    :meth:`erased` per claimed event (free while there are no tombstones)."""

    def __init__(self, log: ErasureLog | None, phone_regions: tuple[str, ...] = ()) -> None:
        self.log = log
        #: Where a phone stored in national form is numbered: the vendors' regions.
        self.phone_regions = phone_regions
        self._seen: object = None
        self._keys: dict[str, int] = {}
        self._lock = threading.Lock()

    def refresh(self, *, force: bool = False) -> None:
        if self.log is None:
            return
        version = self.log.version()
        if version == self._seen and not force:
            return
        keys = self.log.load()
        with self._lock:
            self._keys, self._seen = keys, version

    @property
    def active(self) -> bool:
        """Whether anyone is erased (as of the last :meth:`refresh`): else no event is."""
        return bool(self._keys)

    def erased(self, claimed: Claimed) -> bool:
        """Whether the claimed event belongs to an erased person and was queued before it."""
        tombstones = self._keys
        if not tombstones:
            return False
        for key in payload_keys(claimed.payload, self.phone_regions):
            at_ms = tombstones.get(key)
            if at_ms is not None and claimed.created_ms <= at_ms:
                return True
        return False


def erase_dead_letters(
    queue: Queue, person: Person, phone_regions: tuple[str, ...] = ()
) -> tuple[int, int]:
    """Delete every dead letter of ``person``: how many, and how many could not be read here
    (sealed with a key this process lacks: whose they are is unknown). ``phone_regions``: see
    :func:`payload_keys` (the person's own are added)."""
    keys = person.keys()
    regions = tuple(dict.fromkeys((*phone_regions, *person.phone_regions)))
    ids, unreadable = [], 0
    for d in queue.dead_letters(None, None, 1 << 62):
        try:
            plain = open_payload(d.payload)  # opened once, here
        except ValueError:  # UnknownKey: POSTBACK_ENCRYPTION_KEYS unset, rotated, or damaged
            unreadable += 1
            continue
        if _plain_keys(plain, regions) & keys:
            ids.append(d.id)
    return (len(queue.discard_dead(ids)) if ids else 0), unreadable


def sqlite_stored_events(path: Path, spool_dir: Path) -> Iterable[tuple[str, bytes, int]]:
    """``(event_id, payload, created_ms)`` of every event a ``sqlite://`` queue still holds for
    some vendor: the log's rows past the slowest cursor or waiting for a retry, and the spool's
    records past what was ingested. Read on a connection of its own, without the write lock."""
    from postback.delivery import spool

    conn = sqltx.connect_read_only(path, timeout=10.0)
    try:
        yield from conn.execute(
            "SELECT event_id, payload, created_ms FROM events "
            "WHERE seq IN (SELECT seq FROM pending) "
            "OR seq > coalesce((SELECT min(seq) FROM cursors), 0)"
        )
        offsets = dict(conn.execute("SELECT segment, offset FROM spool").fetchall())
    finally:
        conn.close()
    for segment in spool.segments(spool_dir):
        try:
            data = segment.read_bytes()
        except FileNotFoundError:
            continue  # ingested and deleted meanwhile: its events are in the log
        start = int(offsets.get(segment.name, 0))
        rows, _, _ = spool.parse_records(data[start:])
        for event_id, _name, created_ms, _vendors, payload in rows:
            yield event_id, payload, created_ms


def disabled_keepers(
    vendors: Mapping[str, VendorConfig], classes: Mapping[str, type[Destination]], queue: Queue
) -> tuple[list[Destination], list[str]]:
    """The configured vendors turned off (``enabled = false``) whose plugin keeps something of
    its own about a person in the queue (it overrides ``Destination.erase_user``: Ton AI's
    once-per-user marks outlive the switch), built so that an erase reaches it; and the names
    of those that could not be built (logged, the exception's type only)."""
    from postback.delivery.queue import QueueKeyStore
    from postback.destination import Destination

    built: list[Destination] = []
    failed: list[str] = []
    for name, vc in vendors.items():
        cls = classes[name]
        if vc.enabled or cls.erase_user is Destination.erase_user:
            continue
        try:
            destination = vc.make_destination(cls)
        except Exception as exc:
            failed.append(name)
            _log.error(
                "erase: vendor %s (disabled) could not be built to forget what it keeps about "
                "the person (%s); erase them again once fixed",
                name,
                type(exc).__name__,
            )
            continue
        destination.store = QueueKeyStore(queue, name)
        built.append(destination)
    return built, failed


def erase_person(
    queue: Queue,
    erasures: ErasureFilter,
    sending: Iterable[Claimed] | None,
    person: Person,
    destinations: Iterable[Destination] = (),
) -> ErasureReport:
    """Erase ``person`` from ``queue`` (see the module docstring); ``sending``: the events this
    process's lanes are sending now, or None when another process delivers; each of
    ``destinations`` forgets what it keeps about them (``Destination.erase_user``)."""
    from postback.errors import QueueError

    log = queue.erasure_log()
    if log is None:
        raise QueueError(
            f"the queue {queue.url} cannot erase a person (its backend keeps no tombstones); "
            "use a sqlite://, redis:// or memory:// queue"
        )
    if not person.phone_regions:  # a national phone: read in the vendors' regions
        person = attrs.evolve(person, phone_regions=erasures.phone_regions)
    keys = person.keys()
    at_ms = time.time_ns() // 1_000_000
    try:
        earlier = log.load()  # the tombstones before this erase: what they dropped already
        log.add(keys, at_ms)
        erasures.refresh(force=True)
    except Exception as exc:  # sqlite3, OS or Redis errors alike: nothing was erased
        raise QueueError(f"could not record the erase in {queue.url}: {exc}") from exc
    # Tombstones cover events queued up to and in ``at_ms``; one tracked after erase() returns
    # must be newer, so do not return within that millisecond. Bounded by the monotonic clock:
    # a wall clock stepped back (NTP) would hold erase() for as long as the step.
    until = time.monotonic() + 0.002
    while time.time_ns() // 1_000_000 <= at_ms and time.monotonic() < until:
        time.sleep(0.0002)
    regions = tuple(dict.fromkeys((*erasures.phone_regions, *person.phone_regions)))
    in_flight: set[str] | None = None
    if sending is not None:
        in_flight = {c.event_id for c in sending if payload_keys(c.payload, regions) & keys}
    dead, unreadable = erase_dead_letters(queue, person, regions)
    not_forgotten = []
    for destination in destinations:
        try:
            destination.erase_user(person.identifiers())
        except Exception as exc:  # the rest of the erase is done: say so rather than hide it
            not_forgotten.append(destination.name)
            _log.error(  # the exception's type only: its text may quote an identifier
                "erase: vendor %s could not forget what it keeps about the person (%s); "
                "erase them again once fixed",
                destination.name,
                type(exc).__name__,
            )
    held: set[str] = set()
    dropped: set[str] = set()  # by an earlier erase: the deliverer has yet to remove them
    for row in queue.stored_events():
        matched = payload_keys(row[1], regions)
        if not matched & keys:
            continue
        held.add(row[0])
        created_ms = row[2] if len(row) > 2 else None  # a queue plugin may not say
        if created_ms is not None and any(earlier.get(k, -1) >= created_ms for k in matched):
            dropped.add(row[0])
    held -= in_flight or set()
    return ErasureReport(
        pending=len(held - dropped),
        already_erased=len(held & dropped),
        dead_letters=dead,
        in_flight=None if in_flight is None else len(in_flight),
        not_forgotten=tuple(not_forgotten),
        unreadable=unreadable,
    )

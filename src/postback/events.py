"""The canonical event model: what ``track()`` accepts, stores and hands to vendor plugins.

An :class:`Event` is frozen (attrs) and already normalised when it exists: a snake_case name,
an upper-case ISO 4217 currency, a timestamp as integer epoch milliseconds (UTC), money as exact
integer micros (``49.99`` becomes ``49_990_000``, never ``49_989_999``). :func:`make_event`
builds one from the loose keywords of ``track()`` and reports *every* problem at once.

The queue stores events as bytes produced by :data:`converter` (one cattrs converter for the
canonical form, orjson underneath): :func:`dumps_event` and :func:`loads_event`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import orjson
from cattrs.preconf.orjson import make_converter

from postback.errors import InvalidEvent, Problem
from postback.normalize import (
    CANONICAL_EVENTS,
    MAX_VALUE,
    normalize_currency,
    normalize_event_name,
    to_micros,
    to_timestamp_ms,
)

__all__ = [
    "CANONICAL_EVENTS",
    "CONTEXT_FIELDS",
    "MAX_VALUE",
    "USER_FIELDS",
    "Attribution",
    "Context",
    "Event",
    "User",
    "converter",
    "dumps_event",
    "loads_event",
    "make_event",
    "new_event_id",
    "normalize_currency",
    "normalize_event_name",
    "to_micros",
    "to_timestamp_ms",
]


# User and Context are frozen dict-classes rather than slotted: attrs sets a frozen slotted
# instance's fields one object.__setattr__ at a time, which for 25 and 35 optional fields
# costs twice as much on the track() path as filling the instance __dict__.
@attrs.frozen(slots=False)
class User:
    """Who did it. Every field is optional; vendors say which ones they need.

    Identifiers are sent as given (vendor plugins hash them when their vendor wants hashes);
    ``email`` is trimmed and lower-cased on the way in.
    """

    user_id: str | None = None
    external_id: str | None = None
    anonymous_id: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    username: str | None = None
    birthdate: str | None = None
    gender: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    install_id: str | None = None
    ifa: str | None = None
    idfv: str | None = None
    os: str | None = None
    telegram_user_id: str | None = None
    client_id: str | None = None
    member_id: str | None = None
    membership_id: str | None = None


@attrs.frozen(slots=False)
class Context:
    """Where it happened: page, click ids and campaign parameters.

    ``action_source`` says where the event originated (``app``, ``website``, ``email``, ...;
    Whop's vocabulary, which AppLovin's ``esi`` is derived from).
    """

    url: str | None = None
    referrer_url: str | None = None
    action_source: str | None = None
    session_id: str | None = None
    language: str | None = None
    timezone: str | None = None
    screen_resolution: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_term: str | None = None
    utm_id: str | None = None
    gclid: str | None = None
    gbraid: str | None = None
    wbraid: str | None = None
    fbclid: str | None = None
    fbc: str | None = None
    fbp: str | None = None
    ttclid: str | None = None
    ttp: str | None = None
    twclid: str | None = None
    msclkid: str | None = None
    li_fat_id: str | None = None
    rdt_cid: str | None = None
    sc: str | None = None
    sccid: str | None = None
    ig_sid: str | None = None
    ga: str | None = None
    ad_campaign_id: str | None = None
    ad_id: str | None = None
    ad_set_id: str | None = None
    aleid: str | None = None
    alart: str | None = None
    axwrt: str | None = None


def _restore_class_defaults(cls: type[Any]) -> None:
    """Put each field's default (None) back on the class as a class attribute.

    attrs removes them; with them back, an instance whose ``__dict__`` holds only the fields
    that are set still reads None for the others, which lets :func:`_fast_new` build an
    instance from already-validated values without attrs' frozen ``__init__`` writing every
    field (35 of them for Context) on each ``track()``. Equality, hashing and repr read fields
    with getattr, so both kinds of instance behave the same.
    """
    for field in attrs.fields(cls):
        assert field.default is None
        type.__setattr__(cls, field.name, None)


def _fast_new(cls: type[Any], values: dict[str, str]) -> Any:
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


_restore_class_defaults(User)
_restore_class_defaults(Context)
USER_FIELDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(User))
CONTEXT_FIELDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(Context))
_USER_FIELD_SET = frozenset(USER_FIELDS)
_CONTEXT_FIELD_SET = frozenset(CONTEXT_FIELDS)
_EMPTY_USER = User()
_EMPTY_CONTEXT = Context()


@attrs.frozen(slots=True)
class Event:
    """A canonical conversion event, normalised and ready to queue.

    ``value_micros`` is the value in millionths of a currency unit (exact integer arithmetic);
    :attr:`value` gives it back as a :class:`~decimal.Decimal`. ``timestamp_ms`` is UTC epoch
    milliseconds; :attr:`timestamp` gives an aware :class:`~datetime.datetime`.
    ``vendor_options`` holds the per-vendor overrides passed as ``track(vendors=...)``.
    """

    name: str
    event_id: str
    timestamp_ms: int
    user: User = _EMPTY_USER
    value_micros: int | None = None
    currency: str | None = None
    context: Context = _EMPTY_CONTEXT
    properties: Mapping[str, Any] = attrs.field(factory=dict)
    vendor_options: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def value(self) -> Decimal | None:
        """The value as an exact :class:`~decimal.Decimal` in major units, or ``None``."""
        if self.value_micros is None:
            return None
        return (Decimal(self.value_micros) / _MICROS).normalize()

    @property
    def timestamp(self) -> datetime:
        """The event time as an aware UTC datetime (millisecond precision)."""
        return _EPOCH + timedelta(milliseconds=self.timestamp_ms)

    def options_for(self, vendor: str) -> Mapping[str, Any]:
        """The per-event options given for ``vendor`` in ``track(vendors={...})``."""
        opts = self.vendor_options.get(vendor)
        return opts if isinstance(opts, Mapping) else {}


def _slot_setters() -> tuple[Any, ...]:
    setters = tuple(Event.__dict__[a.name].__set__ for a in attrs.fields(Event))
    assert len(setters) == 9, "update _new_event for Event's fields"
    return setters


(
    _set_name,
    _set_event_id,
    _set_timestamp_ms,
    _set_user,
    _set_value_micros,
    _set_currency,
    _set_context,
    _set_properties,
    _set_vendor_options,
) = _slot_setters()


def _new_event(
    name: str,
    event_id: str,
    timestamp_ms: int,
    user: User,
    value_micros: int | None,
    currency: str | None,
    context: Context,
    properties: Mapping[str, Any],
    vendor_options: Mapping[str, Any],
) -> Event:
    """An :class:`Event` from values already validated, every field given: the slots are
    filled directly, at half the cost of attrs' frozen ``__init__`` (which sets each field
    through ``object.__setattr__``). ``track()`` and every delivered event make one."""
    event: Event = object.__new__(Event)
    _set_name(event, name)
    _set_event_id(event, event_id)
    _set_timestamp_ms(event, timestamp_ms)
    _set_user(event, user)
    _set_value_micros(event, value_micros)
    _set_currency(event, currency)
    _set_context(event, context)
    _set_properties(event, properties)
    _set_vendor_options(event, vendor_options)
    return event


@attrs.frozen(slots=True)
class Attribution:
    """Attribution that a vendor returned for a delivered event.

    Vendors fill what they know; ``raw`` keeps the vendor's own object for anything else.
    ``network`` tells which of the vendor's networks claimed it (X: ``"x"`` for
    ``twitter_attribution``, ``"tpn"`` for ``tpn_attribution``).
    """

    vendor: str
    event_id: str
    network: str | None = None
    attribution_type: str | None = None
    engagement_type: str | None = None
    engagement_time: datetime | None = None
    country_code: str | None = None
    account_id: str | None = None
    campaign_id: str | None = None
    campaign_name: str | None = None
    ad_group_id: str | None = None
    objective: str | None = None
    creative_id: str | None = None
    publisher_app_id: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict)


def _make_converter() -> Any:
    conv = make_converter(omit_if_default=True)
    # properties and vendor options are plain JSON-able data that orjson writes as they are;
    # cattrs' generic walk over them would cost more than the rest of the event together.
    plain = Mapping[str, Any]
    conv.register_unstructure_hook_func(lambda t: t == plain, lambda value: value)
    # User and Context are frozen dict-classes whose unset fields are None: their stored form
    # is the set fields, read straight from the instance dict.
    conv.register_unstructure_hook(User, _set_fields)
    conv.register_unstructure_hook(Context, _set_fields)
    return conv


def _set_fields(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in obj.__dict__.items() if v is not None}


#: The one cattrs converter for the canonical form (never the global one).
converter = _make_converter()
_generated_unstructure_event = converter.get_unstructure_hook(Event)
_generated_structure_event = converter.get_structure_hook(Event)


def _structure_event(data: Any, cls: type[Event]) -> Event:
    """Read back the form dumps_event writes, directly: the delivery lanes do this for every
    event they send, and cattrs' generic path costs ten times more. Anything unexpected (a
    payload from another postback version) goes through cattrs' generated hook."""
    try:
        user = data.get("user")
        context = data.get("context")
        return _new_event(
            data["name"],
            data["event_id"],
            data["timestamp_ms"],
            _fast_new(User, user)
            if user and user.keys() <= _USER_FIELD_SET
            else (User(**user) if user else _EMPTY_USER),
            data.get("value_micros"),
            data.get("currency"),
            _fast_new(Context, context)
            if context and context.keys() <= _CONTEXT_FIELD_SET
            else (Context(**context) if context else _EMPTY_CONTEXT),
            data.get("properties") or {},
            data.get("vendor_options") or {},
        )
    except (TypeError, KeyError, AttributeError):
        return _generated_structure_event(data, cls)  # type: ignore[no-any-return]


converter.register_structure_hook(Event, _structure_event)


def _unstructure_event_fast(e: Event) -> dict[str, Any]:
    """The stored form of an event (what cattrs' generated hook would produce), directly."""
    d: dict[str, Any] = {"name": e.name, "event_id": e.event_id, "timestamp_ms": e.timestamp_ms}
    if e.user is not _EMPTY_USER:
        d["user"] = _set_fields(e.user)
    if e.value_micros is not None:
        d["value_micros"] = e.value_micros
    if e.currency is not None:
        d["currency"] = e.currency
    if e.context is not _EMPTY_CONTEXT:
        d["context"] = _set_fields(e.context)
    if e.properties:
        d["properties"] = e.properties
    if e.vendor_options:
        d["vendor_options"] = e.vendor_options
    return d


converter.register_unstructure_hook(Event, _unstructure_event_fast)


def dumps_event(event: Event) -> bytes:
    """Serialise an event to the bytes the queue stores."""
    return orjson.dumps(_unstructure_event_fast(event))


def loads_event(data: bytes | str) -> Event:
    """Read back an event that :func:`dumps_event` produced."""
    return _structure_event(orjson.loads(data), Event)


def new_event_id() -> str:
    """A random (version 4) UUID string, made without ``uuid.UUID``'s overhead."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_EVENT_ID_RE = re.compile(r"^[\x21-\x7e]{1,255}\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = Decimal(1_000_000)


def _close_matches(key: str, known: frozenset[str]) -> str:
    import difflib

    hits = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean {hits[0]!r}?" if hits else ""


def _coerce_str(value: object) -> str | None:
    """User and context fields are strings; numbers (Telegram ids, user ids) are accepted."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return None


def _build_fields(
    cls: type[Any],
    group: str,
    data: object,
    known: frozenset[str],
    problems: list[Problem],
) -> Any:
    if data is None:
        return _EMPTY_USER if cls is User else _EMPTY_CONTEXT
    if not isinstance(data, Mapping):
        problems.append(Problem(group, f"must be a dict, got {type(data).__name__}"))
        return _EMPTY_USER if cls is User else _EMPTY_CONTEXT
    clean: dict[str, str] = {}
    if data.keys() <= known:
        # The common case, kept tight (it runs inside every track()): known keys, str values.
        for key, raw in data.items():
            if raw.__class__ is str:
                val = raw.strip()
                if val:
                    clean[key] = val.lower() if key == "email" else val
            elif raw is not None:
                break  # not a plain string: take the general path below
        else:
            if not clean:
                return _EMPTY_USER if cls is User else _EMPTY_CONTEXT
            return _fast_new(cls, clean)
        clean = {}
    for key, raw in data.items():
        if key not in known:
            problems.append(
                Problem(
                    f"{group}.{key}",
                    f"unknown {group} field{_close_matches(str(key), known)} "
                    f"(known fields: {', '.join(sorted(known))})",
                )
            )
            continue
        if raw is None:
            continue
        coerced = _coerce_str(raw)
        if coerced is None:
            problems.append(
                Problem(f"{group}.{key}", f"must be a string, got {type(raw).__name__}")
            )
            continue
        val = coerced.strip()
        if not val:
            continue
        if key == "email":
            val = val.lower()
        clean[key] = val
    return cls(**clean) if clean else (_EMPTY_USER if cls is User else _EMPTY_CONTEXT)


def make_event(
    name: object,
    *,
    user: object = None,
    value: object = None,
    currency: object = None,
    event_id: object = None,
    timestamp: object = None,
    context: object = None,
    properties: object = None,
    vendors: object = None,
    default_currency: str | None = None,
    extra_currencies: frozenset[str] = frozenset(),
) -> Event:
    """Build a normalised :class:`Event` from ``track()``'s keywords. ``extra_currencies``:
    codes beyond ISO 4217 that a configured vendor takes (``Destination.extra_currencies``).

    Raises :class:`~postback.InvalidEvent` listing every problem with the canonical event.
    """
    problems: list[Problem] = []

    try:
        norm_name = normalize_event_name(name)
    except ValueError as exc:
        problems.append(Problem("name", str(exc)))
        norm_name = str(name)

    if event_id is None:
        eid = new_event_id()
    elif isinstance(event_id, str) and _EVENT_ID_RE.match(event_id):
        eid = event_id
    else:
        problems.append(
            Problem(
                "event_id",
                "must be 1 to 255 printable ASCII characters without spaces "
                f"(e.g. 'order-1042-purchase'), got {event_id!r}",
            )
        )
        eid = ""

    if timestamp is None:
        ts = time.time_ns() // 1_000_000
    else:
        try:
            ts = to_timestamp_ms(timestamp)
        except ValueError as exc:
            problems.append(Problem("timestamp", str(exc)))
            ts = 0

    micros: int | None = None
    if value is not None:
        try:
            micros = to_micros(value)
        except ValueError as exc:
            problems.append(Problem("value", str(exc)))

    cur: str | None = None
    if currency is not None:
        try:
            cur = normalize_currency(currency, extra_currencies)
        except ValueError as exc:
            problems.append(Problem("currency", str(exc)))
    elif value is not None:
        if default_currency:
            cur = default_currency
        else:
            problems.append(
                Problem(
                    "currency",
                    "a value needs a currency: pass currency='USD' (ISO 4217) or set "
                    "default_currency in [postback]",
                )
            )

    user_obj = _build_fields(User, "user", user, _USER_FIELD_SET, problems)
    ctx_obj = _build_fields(Context, "context", context, _CONTEXT_FIELD_SET, problems)

    props: Mapping[str, Any]
    if properties is None:
        props = {}
    elif isinstance(properties, Mapping):
        props = properties
    else:
        problems.append(Problem("properties", f"must be a dict, got {type(properties).__name__}"))
        props = {}

    opts: Mapping[str, Any]
    if vendors is None:
        opts = {}
    elif isinstance(vendors, Mapping):
        opts = vendors
        for vname, vopts in vendors.items():
            if not (isinstance(vopts, Mapping) or vopts is False or vopts is True):
                problems.append(
                    Problem(
                        f"vendors.{vname}",
                        "must be a dict of options for that vendor, or False to skip it",
                    )
                )
    else:
        problems.append(Problem("vendors", f"must be a dict, got {type(vendors).__name__}"))
        opts = {}

    if problems:
        raise InvalidEvent(str(name), problems)
    return _new_event(norm_name, eid, ts, user_obj, micros, cur, ctx_obj, props, opts)

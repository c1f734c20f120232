"""The canonical event model: what ``track()`` accepts, stores and hands to vendor plugins.

An :class:`Event` is frozen (attrs) and already normalised when it exists: a snake_case name,
an upper-case ISO 4217 currency, a timestamp as integer epoch milliseconds (UTC), money as exact
integer micros (``49.99`` becomes ``49_990_000``, never ``49_989_999``). :func:`make_event`
builds one from the loose keywords of ``track()`` and reports *every* problem at once.

:class:`User` and :class:`Context` hold the core's fields; the fields installed vendor plugins
declare (:mod:`postback.fields`) sit beside them in the same instance and stored form, read
with ``.get(name)``. ``make_event`` accepts those its field set names; for any other it says
why (:func:`~postback.field_names.unknown_field`: a did-you-mean, or the first-party plugin
to install). Event ids are made and checked by :mod:`postback.event_ids`.

The queue stores events in the form :mod:`postback.event_codec` writes and reads, which
shares this module's private constructors (``_new_event``, ``_fast_new``, the empty user and
context) that keep ``track()`` and the delivery lanes cheap. Parsing of single values lives in
:mod:`postback.normalize` and declared fields in :mod:`postback.fields`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from postback.errors import InvalidEvent, Problem, brief_repr, brief_str
from postback.event_ids import is_event_id, new_event_id
from postback.field_names import KNOWN_ELSEWHERE, unknown_field, unknown_problems
from postback.iso import CURRENCIES
from postback.normalize import (
    CANONICAL_EVENTS,
    CLICK_ID_FIELDS,
    MAX_VALUE,
    Unreadable,
    coerce_str,
    normalize_currency,
    normalize_event_name,
    not_a_string,
    plain,
    plain_data,
    read_mapping,
    screen_click_ids,
    screen_user_agent,
    to_micros,
    to_timestamp_ms,
    vendor_options,
)

if TYPE_CHECKING:
    from postback.fields import FieldSet

__all__ = [
    "CANONICAL_EVENTS",
    "CONTEXT_FIELDS",
    "KNOWN_ELSEWHERE",
    "MAX_VALUE",
    "USER_FIELDS",
    "Attribution",
    "Context",
    "Event",
    "User",
    "make_event",
    "new_event_id",
    "normalize_currency",
    "normalize_event_name",
    "to_micros",
    "to_timestamp_ms",
    "unknown_field",
]


class _FieldGroup:
    """What User and Context share: the fields that are set live in the instance ``__dict__``
    (core fields and the fields installed vendors declare, see :mod:`postback.fields`), and
    equality, hashing and repr look at those alone."""

    __slots__ = ()

    def get(self, name: str) -> str | None:
        """The value of field ``name`` (core or declared), or ``None`` when it is not set.

        The way to read a field a vendor declares (``event.user.get("telegram_user_id")``):
        typed, and ``None`` for a field no installed plugin declares."""
        return self.__dict__.get(name)

    def set_fields(self) -> dict[str, str]:
        """The fields that are set, by name (what the queue stores)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.set_fields() == other.set_fields()

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash((self.__class__, frozenset(self.set_fields().items())))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.set_fields().items())
        return f"{self.__class__.__name__}({shown})"

    def __getattr__(self, name: str) -> Any:
        # Only called when the field is neither set nor a core or declared field.
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"{self.__class__.__name__} has no field {name!r}: no installed plugin declares it "
            f"(read fields a vendor declares with .get({name!r}), which gives None when unset)"
        )


# User and Context are frozen dict-classes rather than slotted: attrs sets a frozen slotted
# instance's fields one object.__setattr__ at a time, which for 25 and 35 optional fields
# costs twice as much on the track() path as filling the instance __dict__. Fields that a
# vendor declares (postback.fields) are kept in the same __dict__, under their own names.
@attrs.frozen(slots=False, eq=False, repr=False)
class User(_FieldGroup):
    """Who did it. Every field is optional; vendors say which ones they need.

    Identifiers are sent as given (vendor plugins hash them when their vendor wants hashes);
    ``email`` is trimmed and lower-cased on the way in. Installed vendor plugins add fields
    of their own (Ton AI's ``telegram_user_id``): read them with :meth:`get`.
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
    ifa: str | None = None
    idfv: str | None = None
    os: str | None = None
    client_id: str | None = None
    membership_id: str | None = None


@attrs.frozen(slots=False, eq=False, repr=False)
class Context(_FieldGroup):
    """Where it happened: page, click ids and campaign parameters.

    ``action_source`` says where the event originated (``app``, ``website``, ``email``, ...;
    Whop's vocabulary, which AppLovin's ``esi`` is derived from). Installed vendor plugins add
    fields of their own (AppLovin's ``aleid``): read them with :meth:`get`.
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


def declare_names(cls: type[Any], names: Iterable[str]) -> None:
    """Let ``cls`` (User or Context) read ``names``, fields a plugin declares, as None where
    an instance does not set them: ``event.user.install_id`` works with Mobana installed.
    Names that are already attributes of ``cls`` are left alone."""
    for name in names:
        if name not in cls.__dict__ and not hasattr(cls, name):
            type.__setattr__(cls, name, None)


_restore_class_defaults(User)
_restore_class_defaults(Context)
#: The core's fields; installed plugins declare more (:class:`postback.fields.FieldSet`).
USER_FIELDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(User))
CONTEXT_FIELDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(Context))
_EMPTY_USER = User()
_USER_FIELD_COUNT = len(USER_FIELDS)
_CONTEXT_FIELD_COUNT = len(CONTEXT_FIELDS)
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
        """The per-event options given for ``vendor`` in ``track(vendors={...})`` (an empty
        dict when there are none: the common case, answered without a lookup)."""
        given = self.vendor_options
        if not given:
            return {}
        opts = given.get(vendor)
        return opts if isinstance(opts, Mapping) else {}


class _OpenEvent(Event):
    """An :class:`Event` being filled in: the same slots, set by plain assignment (attrs'
    frozen ``__setattr__`` and ``__delattr__`` put back to object's, so Python's own fast
    path for slot stores applies). :func:`_new_event` makes one, fills it and turns it into
    an Event; none is ever handed out."""

    __slots__ = ()
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__


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
    """An :class:`Event` from values already validated, every field given: an
    :class:`_OpenEvent` whose slots are assigned, then made an Event by assigning its class
    (the layouts are the same), at a third of the cost of attrs' frozen ``__init__`` (which
    sets each field through ``object.__setattr__``). ``track()`` and every delivered event
    make one."""
    event: Any = object.__new__(_OpenEvent)
    event.name = name
    event.event_id = event_id
    event.timestamp_ms = timestamp_ms
    event.user = user
    event.value_micros = value_micros
    event.currency = currency
    event.context = context
    event.properties = properties
    event.vendor_options = vendor_options
    event.__class__ = Event
    return event  # type: ignore[no-any-return]


assert len(attrs.fields(Event)) == 9, "update _new_event for Event's fields"


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = Decimal(1_000_000)


class _CoreFields:
    """The core's fields alone: what :func:`make_event` accepts without a field set (the
    shape of :class:`postback.fields.FieldSet`, which adds the declared ones)."""

    user = frozenset(USER_FIELDS)
    context = frozenset(CONTEXT_FIELDS)
    user_checks: Mapping[str, Any] = {}
    context_checks: Mapping[str, Any] = {}

    def unknown(self, group: str, key: str) -> str:
        return unknown_field(group, key, self.user if group == "user" else self.context)


_CORE_ONLY: Any = _CoreFields()


def _build_fields(
    cls: type[Any],
    group: str,
    data: object,
    fields: FieldSet,
    problems: list[Problem],
) -> Any:
    empty = _EMPTY_USER if cls is User else _EMPTY_CONTEXT
    if data is None:
        return empty
    if data.__class__ is not dict:
        if not isinstance(data, Mapping):
            problems.append(Problem(group, f"must be a dict, got {type(data).__name__}"))
            return empty
        try:  # a dict subclass or another mapping: its entries, read once (keys plain)
            data = read_mapping(data)
        except Unreadable as exc:
            problems.append(Problem(group, exc.message))
            return empty
    known = fields.user if cls is User else fields.context
    checks = fields.user_checks if cls is User else fields.context_checks
    clean: dict[str, str] = {}
    # The common case, kept tight (it runs inside every track()): known fields that need no
    # check of their own (a declared type or validator), str values. A key that is not one,
    # or a value that is not a str, ends it: the general path below (which also takes a key
    # whose own __eq__ raised: a str subclass, read there by plain()).
    try:
        for key, raw in data.items():
            if key not in known or key in checks:
                break
            if raw.__class__ is str:
                val = raw.strip()
                if val:
                    clean[key] = val
            elif raw is not None:
                break
        else:
            if not clean:
                return empty
            if "email" in clean:
                clean["email"] = clean["email"].lower()
            # Control characters (isprintable() clears the common case in C): a click id with
            # one is malformed, a user agent loses them.
            if cls is User:
                if "user_agent" in clean and not clean["user_agent"].isprintable():
                    screen_user_agent(clean)
            elif not CLICK_ID_FIELDS.isdisjoint(clean) and (bad := screen_click_ids(clean)):
                problems.extend(Problem(f"context.{k}", m) for k, m in bad)
            if not clean:
                return empty
            obj = object.__new__(cls)  # _fast_new(cls, clean), inline: twice in every track()
            obj.__dict__.update(clean)
            return obj
    except Exception:  # a key whose own __eq__ raised: the general path reads it by plain()
        data = read_mapping(data)  # (a plain dict by now: this never raises)
    clean = {}
    unknown: list[object] = []
    at = len(problems)  # the unknown names go here, before the group's other problems
    for given, raw in data.items():
        key = plain(given)
        if key not in known:
            unknown.append(key)
            continue
        if raw is None:
            continue
        coerced = coerce_str(plain(raw))  # a subclass's own strip() or __str__ not called
        if coerced is None:
            problems.append(Problem(f"{group}.{key}", not_a_string(raw)))
            continue
        val = coerced.strip()
        if not val:
            continue
        if key == "email":
            val = val.lower()
        check = checks.get(key)
        if check is not None:
            try:
                val = check.parse(val)
            except ValueError as exc:
                problems.append(Problem(f"{group}.{key}", str(exc)))
                continue
        clean[key] = val
    if unknown:  # the first few named, each with a did-you-mean; the rest counted
        problems[at:at] = unknown_problems(group, unknown, fields.unknown)
    if cls is User:
        screen_user_agent(clean)
    else:
        problems.extend(Problem(f"context.{k}", m) for k, m in screen_click_ids(clean))
    return _fast_new(cls, clean) if clean else empty


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
    fields: FieldSet | None = None,
) -> Event:
    """Build a normalised :class:`Event` from ``track()``'s keywords. ``extra_currencies``:
    codes beyond ISO 4217 that a configured vendor takes (``Destination.extra_currencies``).
    ``fields``: the user and context fields accepted, the core's and those the installed
    plugins declare (:class:`postback.fields.FieldSet`; the core's alone when ``None``).

    Raises :class:`~postback.InvalidEvent` listing every problem with the canonical event.
    """
    problems: list[Problem] = []

    # The common cases inline (a canonical name, an upper-case ISO 4217 code): what the
    # normalising functions would return, without their calls.
    if name.__class__ is str and name in CANONICAL_EVENTS:
        norm_name = name
    else:
        try:
            norm_name = normalize_event_name(name)
        except ValueError as exc:
            problems.append(Problem("name", str(exc)))
            norm_name = ""  # not used: the event is refused

    if event_id is None:
        eid = new_event_id()
    elif isinstance(event_id, str) and is_event_id(event_id):
        eid = event_id if event_id.__class__ is str else plain(event_id)  # threads hash it
    else:
        problems.append(
            Problem(
                "event_id",
                "must be 1 to 255 printable ASCII characters without spaces "
                f"(e.g. 'order-1042-purchase'), got {brief_repr(event_id)}",
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
    if currency.__class__ is str and currency in CURRENCIES:
        cur = currency
    elif currency is not None:
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

    if fields is None:
        fields = _CORE_ONLY
    user_obj = _build_fields(User, "user", user, fields, problems)
    ctx_obj = _build_fields(Context, "context", context, fields, problems)

    props: Mapping[str, Any]
    if properties is None:
        props = {}
    elif properties.__class__ is dict:
        props = properties  # (any subclass or mapping inside: see storable.stored_event)
    elif isinstance(properties, Mapping):
        try:  # a dict subclass or another mapping: read once, as plain data
            props = plain_data(properties)  # type: ignore[assignment]
        except Unreadable as exc:
            problems.append(Problem(exc.field("properties"), exc.message))
            props = {}
    else:
        problems.append(Problem("properties", f"must be a dict, got {type(properties).__name__}"))
        props = {}

    opts: Mapping[str, Any]
    if vendors is None:
        opts = {}
    elif vendors.__class__ is dict:
        opts = vendors
        for vname, vopts in vendors.items():
            if vname.__class__ is not str or (
                vopts.__class__ is not dict and vopts is not False and vopts is not True
            ):
                opts = vendor_options(vendors, problems)
                break
    else:
        opts = vendor_options(vendors, problems)

    if problems:
        # The name as given, bounded: it is quoted in the message and logged (on_invalid = log)
        raise InvalidEvent(brief_str(name), problems)
    return _new_event(norm_name, eid, ts, user_obj, micros, cur, ctx_obj, props, opts)

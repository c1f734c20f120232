"""Normalisation of ``track()``'s loose inputs into the canonical event's fields.

Each helper returns the normalised value or raises ValueError with a message that says how to
fix the input; :func:`postback.events.make_event` turns those into Problems. Every helper
bounds its input before any costly work, so each accepts or refuses in microseconds: money below
:data:`MAX_VALUE`, event times between 2001 and 2100 UTC. A str, int or float subclass is read
as its plain value (:func:`plain`): its own methods are never called. A mapping or list
given as ``properties``, vendor options or a user or context group is read into plain dicts
and lists once (:func:`plain_data`, :func:`read_mapping`); one whose own methods raise is
:class:`Unreadable`, which names where it is and what to pass instead. :func:`vendor_options`
reads ``track(vendors=...)`` that is not already plain; :func:`coerce_str` a user or context
field's value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import Enum
from typing import Any, overload

from postback.errors import Problem, brief_error, brief_repr, brief_str
from postback.iso import CURRENCIES

__all__ = [
    "CANONICAL_EVENTS",
    "CLICK_ID_FIELDS",
    "MAX_VALUE",
    "Unreadable",
    "coerce_str",
    "has_control",
    "normalize_currency",
    "normalize_event_name",
    "not_a_string",
    "plain",
    "plain_data",
    "read_mapping",
    "screen_click_ids",
    "screen_user_agent",
    "to_micros",
    "to_timestamp_ms",
    "vendor_options",
]

#: The canonical event names. Vendors map these to their own vocabulary; any other snake_case
#: name is a custom event, which a vendor maps through ``event_map`` or refuses.
CANONICAL_EVENTS: frozenset[str] = frozenset(
    """
    install app_open sign_up login lead purchase add_to_cart add_to_wishlist begin_checkout
    add_payment_info search view_item share invite rate tutorial_complete level_achieved
    achievement_unlocked reservation spent_credits re_engage subscribe contact schedule
    submit_application page_view remove_from_cart view_cart
    """.split()
)

#: Context fields that hold an ad click id, copied as is from the ad click's URL: printable text
#: only (a control character is not part of any vendor's id, and the vendor gets it verbatim).
CLICK_ID_FIELDS: frozenset[str] = frozenset(
    """
    gclid gbraid wbraid fbclid ttclid twclid msclkid li_fat_id rdt_cid sccid aleid alart
    """.split()
)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEP_RE = re.compile(r"[\s\-.]+")
_MIN_TIMESTAMP_MS = 978_307_200_000  # 2001-01-01: anything earlier is almost surely seconds
#: Event times are in [2001-01-01, 2100-01-01) UTC: every vendor can send a time in that range
#: (a year-10000 time cannot even be formatted as ISO 8601).
_MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_MICROS = Decimal(1_000_000)
#: The largest money amount ``track()`` accepts, in major units (exclusive): 10**12 keeps the
#: value in micros inside a signed 64-bit integer, which every vendor and the queue can carry.
MAX_VALUE = 10**12
_MAX_VALUE_MICROS = MAX_VALUE * 1_000_000
#: Below this magnitude (2**30) adjacent floats are less than half a micro apart: to_micros's
#: float fast path is exact there.
_EXACT_FLOAT = float(2**30)
#: A money amount given as a string is at most this many characters (checked before parsing,
#: so ``"9e999990"`` is refused in microseconds rather than expanded digit by digit).
_MAX_VALUE_CHARS = 64


@overload
def plain(value: str) -> str: ...
@overload
def plain(value: object) -> object: ...
def plain(value: object) -> object:
    """A str, int or float subclass's value as the plain type (read with the base type's own
    methods): its own ``strip``, ``__str__``, ``__hash__`` may do anything, even raise."""
    cls = value.__class__
    if cls is str or cls is int or cls is float or cls is bool:
        return value
    if isinstance(value, str):
        return str.__getitem__(value, slice(None))
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    return value


class Unreadable(Exception):
    """Reading a caller's mapping or list raised (its own ``items``, ``__getitem__``,
    ``__iter__``...): a malformed argument. ``path`` holds the keys and indexes from the
    argument down to it."""

    def __init__(self, kind: str, cause: BaseException) -> None:
        super().__init__(kind)
        self.kind = kind
        self.cause = brief_error(cause)
        self.path: list[object] = []

    def field(self, argument: str) -> str:
        """Where it is, from ``argument``: ``properties.items[1]``."""
        return argument + "".join(
            f"[{key}]" if key.__class__ is int else f".{brief_str(key)}" for key in self.path
        )

    @property
    def message(self) -> str:
        fix = "a dict" if self.kind == "mapping" else "a list"
        return f"could not be read as a {self.kind} ({self.cause}); pass {fix}"


def read_mapping(data: Mapping[object, object]) -> dict[object, object]:
    """``data``'s entries as a plain dict, one level deep, keys read by :func:`plain`: a dict
    subclass through dict's own methods (its overrides never called), any other mapping
    through its ``items()``. Raises :class:`Unreadable` when reading it raises."""
    try:
        items = dict.items(data) if isinstance(data, dict) else data.items()
        return {plain(key): value for key, value in items}
    except Exception as exc:
        raise Unreadable("mapping", exc) from None


#: How deep :func:`plain_data` copies: past what orjson stores (it refuses 255 levels, and
#: the stored form names the field), and far from Python's recursion limit.
_COPY_DEPTH = 256


def plain_data(value: object, depth: int = 0) -> object:
    """JSON-like data (``properties``, vendor options) with every mapping a plain dict (keys
    read by :func:`plain`), every list a plain list (a tuple stays one), every str, int or
    float subclass its plain value: what a vendor plugin and the stored form then read, so
    none of the caller's own methods runs there. Enum members, dates and other values are
    kept as they are. Raises :class:`Unreadable` (with the path to it) for a mapping or list
    whose reading raises."""
    cls = value.__class__
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return value
    if isinstance(value, (str, int, float)):
        return value if isinstance(value, Enum) else plain(value)
    if depth >= _COPY_DEPTH:
        return value
    if isinstance(value, Mapping):
        out: dict[object, object] = {}
        key: object = None
        try:
            for given, item in dict.items(value) if isinstance(value, dict) else value.items():
                key = plain(given)
                out[key] = plain_data(item, depth + 1)
        except Unreadable as exc:
            exc.path.insert(0, key)
            raise
        except Exception as exc:
            raise Unreadable("mapping", exc) from None
        return out
    if isinstance(value, (list, tuple)):
        items: list[object] = []
        try:
            for item in list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value):
                items.append(plain_data(item, depth + 1))
        except Unreadable as exc:
            exc.path.insert(0, len(items))
            raise
        except Exception as exc:  # (list's and tuple's own iteration does not raise)
            raise Unreadable("list", exc) from None
        return tuple(items) if cls is tuple else items
    return value


def normalize_event_name(name: object) -> str:
    """``"Add To Cart"``, ``"addToCart"`` and ``"add-to-cart"`` all become ``"add_to_cart"``."""
    name = plain(name)
    if not isinstance(name, str):
        raise ValueError(f"must be a string, got {type(name).__name__}")
    if name in CANONICAL_EVENTS:
        return name
    norm = _SEP_RE.sub("_", _CAMEL_RE.sub("_", name.strip())).lower()
    if not _NAME_RE.match(norm):
        raise ValueError(
            f"{brief_repr(name)} is not a usable event name: use snake_case letters, digits and "
            "underscores, starting with a letter, at most 64 characters (e.g. 'purchase')"
        )
    return norm


def normalize_currency(currency: object, extra: frozenset[str] = frozenset()) -> str:
    """Return the upper-case ISO 4217 code, or one of ``extra`` (upper-case codes beyond ISO
    4217 that a configured vendor takes, e.g. Whop's ``ETH``), or raise ValueError."""
    currency = plain(currency)
    if not isinstance(currency, str):
        raise ValueError(f"must be an ISO 4217 code such as 'USD', got {type(currency).__name__}")
    code = currency.strip().upper()
    if code not in CURRENCIES and code not in extra:
        also = f", or one a configured vendor takes: {', '.join(sorted(extra))}" if extra else ""
        raise ValueError(
            f"{brief_repr(currency)} is not an ISO 4217 currency code (e.g. 'USD', 'EUR'){also}"
        )
    return code


def to_micros(value: object) -> int:
    """Convert a money amount to exact integer micros.

    Floats go through their shortest repr, so ``49.99`` is ``Decimal("49.99")`` and becomes
    ``49_990_000``; amounts finer than a micro are rounded half-to-even. The magnitude must be
    below :data:`MAX_VALUE`; the exponent is checked before any arithmetic, so every input is
    accepted or refused in microseconds.
    """
    if value.__class__ is float and -_EXACT_FLOAT < value < _EXACT_FLOAT:  # (NaN is not)
        # The common case, without text or Decimal: below 2**30 a float's neighbours are
        # less than a micro apart, so when the nearest whole number of micros maps back to
        # exactly this float, its shortest repr has at most 6 decimals and is that number.
        micros = round(value * 1_000_000)
        if micros / 1_000_000 == value:
            return micros
    if value.__class__ is float and -MAX_VALUE < value < MAX_VALUE:
        # Without Decimal: the shortest repr with at most 6 decimals (and no exponent) is
        # exact in micros, read as two integers. Anything else: below.
        text = repr(value)
        whole, _, frac = text.partition(".")
        if len(frac) <= 6 and "e" not in text:
            if whole[0] == "-":
                return -(int(whole[1:]) * 1_000_000 + int(frac.ljust(6, "0")))
            return int(whole) * 1_000_000 + int(frac.ljust(6, "0"))
    value = plain(value)
    if isinstance(value, bool):
        raise ValueError("must be a number, got bool")
    if isinstance(value, int):
        if -MAX_VALUE < value < MAX_VALUE:
            return value * 1_000_000
        raise ValueError(_too_large(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {brief_repr(value)}")
        if not -MAX_VALUE < value < MAX_VALUE:
            raise ValueError(_too_large(value))
        dec = Decimal(repr(value))
    elif isinstance(value, Decimal):
        dec = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_VALUE_CHARS:
            raise ValueError(
                f"is {len(text)} characters long; a money amount is at most {_MAX_VALUE_CHARS}"
            )
        try:
            dec = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{brief_repr(value)} is not a number") from None
    else:
        raise ValueError(f"must be a number, got {type(value).__name__}")
    if not dec.is_finite():
        raise ValueError(f"must be a finite number, got {brief_repr(value)}")
    # adjusted() is the exponent of the leading digit: checked before scaling, so a huge
    # exponent never becomes a huge integer (or a decimal.Overflow).
    if dec and dec.adjusted() >= 12:
        raise ValueError(_too_large(value))
    if dec and dec.adjusted() < -12:
        return 0  # far below a micro: rounds to zero, without scaling a tiny exponent
    micros = int((dec * _MICROS).to_integral_value(ROUND_HALF_EVEN))
    if not -_MAX_VALUE_MICROS < micros < _MAX_VALUE_MICROS:
        raise ValueError(_too_large(value))
    return micros


def _too_large(value: object) -> str:
    return (
        f"{brief_repr(value, 40)} is too large: a money amount must be below {MAX_VALUE:,} "
        "in major units"
    )


def to_timestamp_ms(value: object) -> int:
    """Accept an aware datetime, epoch milliseconds, or an ISO-8601 string with an offset,
    from 2001-01-01 (inclusive) to 2100-01-01 (exclusive) UTC."""
    value = plain(value)
    if isinstance(value, bool):
        raise ValueError("must be a datetime or epoch milliseconds, got bool")
    if isinstance(value, datetime):
        try:
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(
                    "naive datetime: pass an aware one, e.g. datetime.now(timezone.utc)"
                )
            ms = (value - _EPOCH) // _MILLISECOND
        except OverflowError:
            raise ValueError(f"{brief_repr(value)} is out of range") from None
        return _in_range(ms, value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be finite, got {brief_repr(value)}")
        if isinstance(value, int) and value.bit_length() > 64:
            raise ValueError("is too large for epoch milliseconds (after the year 2100)")
        ms = round(value)
        if ms < _MIN_TIMESTAMP_MS:
            raise ValueError(
                f"{brief_repr(value)} is before 2001 as epoch milliseconds; "
                "if it is epoch seconds, multiply by 1000"
            )
        return _in_range(ms, value)
    if isinstance(value, str):
        if len(value) > 64:
            raise ValueError(f"is {len(value)} characters long; not an ISO 8601 time")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{brief_repr(value)} is not ISO 8601 (e.g. '2026-11-24T10:00:00.123Z')"
            ) from None
        return to_timestamp_ms(parsed)
    raise ValueError(
        f"must be an aware datetime, epoch milliseconds or ISO 8601, got {type(value).__name__}"
    )


def _in_range(ms: int, given: object) -> int:
    if _MIN_TIMESTAMP_MS <= ms < _MAX_TIMESTAMP_MS:
        return ms
    return _out_of_range(given)


def _out_of_range(given: object) -> int:
    raise ValueError(
        f"{brief_repr(given)} is outside the range every vendor can send: "
        "2001-01-01 to 2100-01-01 UTC"
    )


#: Control characters (Unicode category Cc): never part of a user agent or a campaign name,
#: and what splits a header or a log line. Other non-printables (a no-break space, U+3000, a
#: zero-width joiner in an emoji) are text there and stay.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control character (printable text is cleared in C first)."""
    return not value.isprintable() and _CONTROL.search(value) is not None


def screen_click_ids(clean: dict[str, str]) -> list[tuple[str, str]]:
    """Remove the click ids (:data:`CLICK_ID_FIELDS`) with a control character or another
    non-printable (a click id is URL text: a no-break space or a bidi override in one is an
    error) from ``clean``; return ``(field, why)`` for each: the event is malformed."""
    found = []
    for key in CLICK_ID_FIELDS.intersection(clean):
        value = clean[key]
        if not value.isprintable():
            bad = next(c for c in value if not c.isprintable())
            found.append(
                (
                    key,
                    f"contains a control character or other non-printable character ({bad!r}) "
                    f"in {brief_repr(value)}: pass the click id as the ad click's URL carried it",
                )
            )
    for key, _ in found:
        del clean[key]
    return sorted(found)


def screen_user_agent(clean: dict[str, str]) -> None:
    """Strip control characters from ``clean["user_agent"]`` (the ``User-Agent`` header as a
    client sent it, which apps pass on as it came: no client may make ``track()`` raise);
    drop it if nothing is left."""
    agent = clean.get("user_agent")
    if agent is not None and has_control(agent):
        stripped = _CONTROL.sub("", agent).strip()
        if stripped:
            clean["user_agent"] = stripped
        else:
            del clean["user_agent"]


#: User and context fields take integers that fit in 64 bits, signed or not (a user id, a
#: Telegram id): str() converts them in microseconds, where a 5000-digit one raises.
_MIN_INT_FIELD = -(2**63)
_MAX_INT_FIELD = 2**64 - 1


def coerce_str(value: object) -> str | None:
    """User and context fields are strings; numbers (Telegram ids, user ids) are accepted,
    in 64 bits (:func:`not_a_string` says why any other is refused)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if _MIN_INT_FIELD <= value <= _MAX_INT_FIELD:
            return str(value)
        return None
    if isinstance(value, date):
        return value.isoformat()
    return None


def not_a_string(value: object) -> str:
    """Why :func:`coerce_str` refused ``value``, and how to fix it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (
            f"is too large: {brief_repr(value)}; a number here fits in 64 bits "
            f"({_MIN_INT_FIELD} to {_MAX_INT_FIELD}); if it is an id, pass it as a string"
        )
    return f"must be a string, got {type(value).__name__}"


def vendor_options(vendors: object, problems: list[Problem]) -> dict[str, Any]:
    """``track(vendors=...)`` other than a plain dict of vendor names to plain dicts or
    booleans: read as plain data (:func:`~postback.normalize.plain_data`), or its problems."""
    if not isinstance(vendors, Mapping):
        problems.append(Problem("vendors", f"must be a dict, got {type(vendors).__name__}"))
        return {}
    try:
        opts: dict[Any, Any] = plain_data(vendors)  # type: ignore[assignment]
    except Unreadable as exc:
        problems.append(Problem(exc.field("vendors"), exc.message))
        return {}
    for vname, vopts in opts.items():
        if vname.__class__ is not str:
            problems.append(
                Problem(
                    "vendors",
                    f"keys must be vendor names (strings), got {brief_repr(vname)}",
                )
            )
        elif not (vopts.__class__ is dict or vopts is False or vopts is True):
            problems.append(
                Problem(
                    f"vendors.{brief_str(vname)}",
                    "must be a dict of options for that vendor, or False to skip it",
                )
            )
    return opts

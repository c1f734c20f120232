"""The stored form of an accepted event: bytes that the queue can hold and every vendor can send.

``track()`` calls :func:`stored_form` once per event, at the point where it serialises the event
anyway. It refuses, with :class:`~postback.InvalidEvent` naming the field at fault:

* an event whose stored form exceeds :data:`MAX_EVENT_BYTES` (named after its largest part,
  usually ``properties``), rather than accepting what the queue cannot keep;
* a lone surrogate (text that is not valid Unicode) in a user or context field, a property or a
  vendor option, named by its field (``user.email``), not blamed on ``properties``;
* ``NaN`` or an infinity inside ``properties`` or vendor options, which JSON cannot carry (the
  serialiser would write ``null``, silently changing the value);
* anything else JSON cannot hold (an integer beyond 64 bits, a non-string key, nesting too deep).

Properties and vendor options holding a dict, list, str, int or float subclass, or another
mapping, are read once as plain data (:func:`~postback.normalize.plain_data`) and put in the
event in their place: what the vendors' ``validate`` then reads and what is stored is plain,
none of the caller's own methods runs there; one whose reading raises is refused, naming
where it is.

The checks cost nothing on a well-formed event: the NaN search runs only when the serialised
bytes contain ``null``, the copy only when orjson met a subclass, and the diagnosis only when
serialising failed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from postback.errors import InvalidEvent, Problem, brief_repr, brief_str
from postback.event_codec import REFUSE_SUBCLASSES, dumps_event
from postback.events import Event
from postback.normalize import Unreadable, plain_data

__all__ = ["MAX_EVENT_BYTES", "stored_form"]

#: The largest stored form of one event that ``track()`` accepts: 1 MiB of serialised JSON.
#: Vendors take far less per event (a few KiB); the bound keeps the queue's records small.
MAX_EVENT_BYTES = 1 << 20
# How deep the NaN search goes: past what orjson serialises (it refuses 255 levels), so a
# NaN it wrote as null is found however deep (a shallower bound let one through).
_SEARCH_DEPTH = 256


def stored_form(event: Event) -> bytes:
    """The bytes the queue stores for ``event``, or :class:`~postback.InvalidEvent` naming the
    field that cannot be stored or sent.

    Properties or vendor options holding a subclass of dict, list, str, int or float, or
    another mapping, are replaced in ``event`` by their plain copies (:func:`_plain_event`):
    ``track()`` calls this on the event :func:`~postback.events.make_event` just built, before
    any plugin reads it. (In place, not a new event returned: a tuple per ``track()`` costs
    more than the rest of this check.)"""
    try:
        payload = dumps_event(event, REFUSE_SUBCLASSES)
    except (TypeError, orjson.JSONEncodeError):  # a subclass somewhere, or not storable
        _plain_event(event)
        try:
            payload = dumps_event(event)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise InvalidEvent(event.name, _diagnose(event, exc)) from None
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidEvent(event.name, [_too_large(event, len(payload))])
    # NaN and infinities are written as null: look for them (find(), not `in`: bytes'
    # __contains__ first tries the argument as an integer, and formats an error doing so).
    if payload.find(b"null") != -1 and (
        _any_non_finite(event.properties.values(), 0)
        or _any_non_finite(event.vendor_options.values(), 0)
    ):
        found = _non_finite("properties", event.properties)
        found += _non_finite("vendors", event.vendor_options)
        raise InvalidEvent(event.name, found)
    return payload


def _plain_event(event: Event) -> None:
    """Put plain copies of ``event``'s properties and vendor options in it; refuse it naming
    each one whose reading raised (the caller's own mapping: never a plugin's fault)."""
    problems = []
    parts = []
    for argument, data in (("properties", event.properties), ("vendors", event.vendor_options)):
        try:
            parts.append(plain_data(data))
        except Unreadable as exc:
            problems.append(Problem(exc.field(argument), exc.message))
    if problems:
        raise InvalidEvent(event.name, problems)
    object.__setattr__(event, "properties", parts[0])  # (frozen to its users, not to us)
    object.__setattr__(event, "vendor_options", parts[1])


def _any_non_finite(values: Iterable[Any], depth: int) -> bool:
    """Whether a float under ``values`` is NaN or infinite: the quick check, no paths."""
    for v in values:
        cls = v.__class__
        if cls is float or isinstance(v, float):
            if v - v != 0.0:  # NaN - NaN and inf - inf are NaN
                return True
        elif cls is dict or cls is list or isinstance(v, (Mapping, list, tuple)):
            if depth > _SEARCH_DEPTH:
                return False
            if _any_non_finite(v.values() if isinstance(v, Mapping) else v, depth + 1):
                return True
        elif cls is not str and v is not None and _is_dataclass(v):  # orjson: an object
            if depth > _SEARCH_DEPTH:
                return False
            if _any_non_finite(_fields_of(v).values(), depth + 1):
                return True
    return False


def _is_dataclass(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _fields_of(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _diagnose(event: Event, exc: Exception) -> list[Problem]:
    problems: list[Problem] = []
    for group, fields in (("user", event.user.__dict__), ("context", event.context.__dict__)):
        for key, val in fields.items():
            if isinstance(val, str) and not _is_utf8(val):
                problems.append(Problem(f"{group}.{key}", _SURROGATE))
    for group, data in (("properties", event.properties), ("vendors", event.vendor_options)):
        if not data:
            continue
        try:
            orjson.dumps(data)
        except (TypeError, orjson.JSONEncodeError) as inner:
            where = _first_unstorable(group, data)
            if where is not None:
                problems.append(where)
            else:
                problems.append(Problem(group, f"must be JSON-serialisable: {inner}"))
    return problems or [Problem("properties", f"must be JSON-serialisable: {exc}")]


_SURROGATE = (
    "contains a lone surrogate (text that is not valid Unicode); decode the input with "
    "errors='replace' or remove the character"
)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_unstorable(path: str, data: object, depth: int = 0) -> Problem | None:
    """The first key path below ``data`` whose key or value JSON cannot hold, or None."""
    if depth > 64:
        return Problem(path, "is nested too deeply (at most 64 levels)")
    if isinstance(data, Mapping):
        for key, val in data.items():
            if not isinstance(key, str):
                return Problem(path, f"keys must be strings, got {type(key).__name__}")
            if not _is_utf8(key):
                return Problem(f"{path}.{brief_repr(key)}", _SURROGATE)
            found = _first_unstorable(f"{path}.{brief_str(key)}", val, depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(data, (list, tuple)):
        for i, val in enumerate(data):
            found = _first_unstorable(f"{path}[{i}]", val, depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(data, str):
        return None if _is_utf8(data) else Problem(path, _SURROGATE)
    try:
        orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError) as exc:
        return Problem(path, f"must be JSON-serialisable: {exc}")
    return None


def _non_finite(path: str, data: object, depth: int = 0) -> list[Problem]:
    if isinstance(data, float):
        if not math.isfinite(data):
            return [Problem(path, f"must be a finite number (JSON has no {data!r}), got {data!r}")]
        return []
    if depth > _SEARCH_DEPTH:
        return []
    if isinstance(data, Mapping):
        return [p for k, v in data.items() for p in _non_finite(f"{path}.{k}", v, depth + 1)]
    if isinstance(data, (list, tuple)):
        return [p for i, v in enumerate(data) for p in _non_finite(f"{path}[{i}]", v, depth + 1)]
    if _is_dataclass(data):
        return _non_finite(path, _fields_of(data), depth)
    return []


def _too_large(event: Event, size: int) -> Problem:
    parts: dict[str, Any] = {
        "properties": event.properties,
        "vendors": event.vendor_options,
        "user": event.user.__dict__,
        "context": event.context.__dict__,
    }
    sizes = {name: len(orjson.dumps(part)) for name, part in parts.items() if part}
    field = max(sizes, key=lambda n: sizes[n]) if sizes else "properties"
    return Problem(
        field,
        f"the event is {size:,} bytes when stored ({field}: {sizes.get(field, 0):,}); "
        f"at most {MAX_EVENT_BYTES:,} (postback.storable.MAX_EVENT_BYTES) can be queued: "
        "keep large data out of the event and send a reference to it",
    )

"""The stored form of an :class:`~postback.events.Event`: the bytes the queue keeps.

Duties: :data:`converter` (the one cattrs converter for the canonical form, orjson underneath),
:func:`dumps_event` (every ``track()``), :func:`loads_event` (every event a delivery lane
sends), each with a direct fast path that gives what cattrs' generated hooks would. It shares
:mod:`postback.events`' private constructors (``_new_event``, ``_fast_new``, the empty user and
context), which is why it reads them from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from cattrs.preconf.orjson import make_converter

from postback.events import (
    _CONTEXT_FIELD_COUNT,
    _EMPTY_CONTEXT,
    _EMPTY_USER,
    _USER_FIELD_COUNT,
    Context,
    Event,
    User,
    _fast_new,
    _new_event,
)

__all__ = ["REFUSE_SUBCLASSES", "converter", "dumps_event", "loads_event"]


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
    event they send, and cattrs' generic path costs ten times more. A user or context field
    that is not a core one is a field a plugin declares (or declared: an event queued before
    its field moved out of the core, or whose plugin is gone) and is kept as stored. Anything
    unexpected (a payload from another postback version) goes through cattrs' generated hook."""
    user = data.get("user") if data.__class__ is dict else None
    context = data.get("context") if data.__class__ is dict else None
    if (user is not None and user.__class__ is not dict) or (
        context is not None and context.__class__ is not dict
    ):
        return _generated_structure_event(data, cls)  # type: ignore[no-any-return]
    try:
        return _new_event(
            data["name"],
            data["event_id"],
            data["timestamp_ms"],
            _fast_new(User, user) if user else _EMPTY_USER,
            data.get("value_micros"),
            data.get("currency"),
            _fast_new(Context, context) if context else _EMPTY_CONTEXT,
            data.get("properties") or {},
            data.get("vendor_options") or {},
        )
    except (TypeError, KeyError, AttributeError):
        return _generated_structure_event(data, cls)  # type: ignore[no-any-return]


converter.register_structure_hook(Event, _structure_event)


def _unstructure_event_fast(e: Event, fields_of: Any = _set_fields) -> dict[str, Any]:
    """The stored form of an event (what cattrs' generated hook would produce), directly."""
    d: dict[str, Any] = {"name": e.name, "event_id": e.event_id, "timestamp_ms": e.timestamp_ms}
    if e.user is not _EMPTY_USER:
        d["user"] = fields_of(e.user)
    if e.value_micros is not None:
        d["value_micros"] = e.value_micros
    if e.currency is not None:
        d["currency"] = e.currency
    if e.context is not _EMPTY_CONTEXT:
        d["context"] = fields_of(e.context)
    if e.properties:
        d["properties"] = e.properties
    if e.vendor_options:
        d["vendor_options"] = e.vendor_options
    return d


converter.register_unstructure_hook(Event, _unstructure_event_fast)


def _stored_fields(obj: Any) -> dict[str, Any]:
    """The set fields of a User or Context, for orjson to read (never handed out). An
    instance holding fewer entries than the core has fields was filled with the set fields
    only (:func:`_fast_new`, from :func:`make_event` or a stored event): its own ``__dict__``
    is that mapping, read without a copy. attrs' ``__init__`` writes every core field, None
    included: those go through :func:`_set_fields`."""
    d: dict[str, Any] = obj.__dict__
    if len(d) < (_USER_FIELD_COUNT if type(obj) is User else _CONTEXT_FIELD_COUNT):
        return d
    return _set_fields(obj)


def dumps_event(event: Event, option: int = 0) -> bytes:
    """Serialise an event to the bytes the queue stores: what
    ``_unstructure_event_fast(event, _stored_fields)`` gives, built here with both inline
    (this runs in every ``track()``: two and three calls fewer). ``option``: orjson's, such as
    :data:`REFUSE_SUBCLASSES`."""
    e = event
    d: dict[str, Any] = {"name": e.name, "event_id": e.event_id, "timestamp_ms": e.timestamp_ms}
    user = e.user
    if user is not _EMPTY_USER:
        fields = user.__dict__
        if len(fields) >= (_USER_FIELD_COUNT if type(user) is User else _CONTEXT_FIELD_COUNT):
            fields = _set_fields(user)
        d["user"] = fields
    if e.value_micros is not None:
        d["value_micros"] = e.value_micros
    if e.currency is not None:
        d["currency"] = e.currency
    ctx = e.context
    if ctx is not _EMPTY_CONTEXT:
        fields = ctx.__dict__
        if len(fields) >= _CONTEXT_FIELD_COUNT:
            fields = _set_fields(ctx)
        d["context"] = fields
    if e.properties:
        d["properties"] = e.properties
    if e.vendor_options:
        d["vendor_options"] = e.vendor_options
    return orjson.dumps(d, None, option)


#: :func:`dumps_event`'s option that refuses (TypeError) a subclass of dict, list, str or int
#: anywhere in the event rather than writing it as its base type (:mod:`postback.storable` then
#: reads the event as plain data).
REFUSE_SUBCLASSES = orjson.OPT_PASSTHROUGH_SUBCLASS


def loads_event(data: bytes | str) -> Event:
    """Read back an event that :func:`dumps_event` produced."""
    return _structure_event(orjson.loads(data), Event)

"""Privacy at rest: how a stored event is shown to a person.

:func:`shown_dead_letter` is the one way a dead letter is printed (``postback deadletters
show``): personal data masked unless ``reveal``, and every vendor's secrets removed always.

Masking reuses :func:`postback.dashboard.masking.mask_payload` (emails, phones, IPs, names) and
adds the identifiers a person can be looked up by (user and device ids, click ids, cookies,
and every user or context field a vendor plugin declares).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from postback.dashboard.masking import mask_payload
from postback.delivery.queue import DeadLetter
from postback.destination import Destination
from postback.encryption import UnknownKey, open_payload
from postback.events import CONTEXT_FIELDS, USER_FIELDS
from postback.textmask import mask_text, public_settings

__all__ = [
    "mask_event",
    "shown_dead_letter",
]

_CORE_USER = frozenset(USER_FIELDS)
_CORE_CONTEXT = frozenset(CONTEXT_FIELDS)
# Identifiers a person can be found by: shown as their first two characters only (and so is
# every user or context field a plugin declares: see _mask_declared). The first-party
# plugins' fields stay listed, so that they are masked inside properties too.
_IDENTIFIERS = frozenset(
    {
        "user_id",
        "external_id",
        "anonymous_id",
        "install_id",
        "ifa",
        "idfv",
        "telegram_user_id",
        "client_id",
        "member_id",
        "membership_id",
        "user_agent",
        "session_id",
        "gclid",
        "gbraid",
        "wbraid",
        "fbclid",
        "fbc",
        "fbp",
        "ttclid",
        "ttp",
        "twclid",
        "msclkid",
        "li_fat_id",
        "rdt_cid",
        "sc",
        "sccid",
        "ig_sid",
        "ga",
        "aleid",
        "alart",
        "axwrt",
    }
)


# The identifiers' keys however they are written: user_id, userId, USER-ID.
_IDENTIFIER_KEYS = frozenset(k.replace("_", "") for k in _IDENTIFIERS)


def _is_identifier(key: object) -> bool:
    return key in _IDENTIFIERS or (
        isinstance(key, str) and key.lower().replace("_", "").replace("-", "") in _IDENTIFIER_KEYS
    )


def _mask_identifiers(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (
                (v[:2] + "•••" if v else v)
                if isinstance(v, str) and _is_identifier(k)
                else str(v)[:2] + "•••"  # an id given as a number
                if isinstance(v, int) and not isinstance(v, bool) and _is_identifier(k)
                else _mask_identifiers(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_identifiers(v) for v in value]
    return value


def _mask_declared(event: Mapping[str, Any], plain: frozenset[str]) -> Mapping[str, Any]:
    """The event with every user and context field that is not a core one (a field a vendor
    plugin declares, installed here or not) masked as an identifier, except ``plain``."""
    out = dict(event)
    for group, core in (("user", _CORE_USER), ("context", _CORE_CONTEXT)):
        fields = event.get(group)
        if isinstance(fields, Mapping) and not fields.keys() <= core:
            out[group] = {
                k: (v[:2] + "•••" if v else v)
                if k not in core and k not in _IDENTIFIERS and k not in plain and isinstance(v, str)
                else v
                for k, v in fields.items()
            }
    return out


def mask_event(event: Mapping[str, Any], plain: Iterable[str] = ()) -> dict[str, Any]:
    """A stored canonical event with every personal field masked (ids keep 2 characters; so
    does every field a vendor plugin declares, but those in ``plain``: declared with
    ``identifier=False``)."""
    # Each top-level value by itself, as the dashboard does: the event's own "name" is the
    # event's name, not a person's (it is masked under user, context and properties).
    return mask_payload(_mask_identifiers(_mask_declared(event, frozenset(plain))))


def _redact(text: str, destinations: Iterable[Destination]) -> str:
    for d in destinations:
        text = d.redact(text)
    return text


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def shown_dead_letter(
    d: DeadLetter,
    destinations: Iterable[Destination],
    *,
    reveal: bool = False,
    keep: Collection[str] = (),
) -> str:
    """A dead letter as JSON text for a terminal: personal data masked unless ``reveal``;
    the secret settings of every vendor in ``destinations`` removed in any case. The reason
    keeps the vendors' non-secret settings (``keep``, and those of ``destinations``)."""
    destinations = list(destinations)
    try:
        event: Any = orjson.loads(open_payload(d.payload))
    except orjson.JSONDecodeError:
        event = "(not a readable event)"
    except UnknownKey as exc:
        event = f"(encrypted: {exc})"
    # Secrets out first: masking could cut one (a hex key looks like a hash) so that
    # redaction no longer finds it.
    reason = _redact(d.reason, destinations)
    reason = reason if reveal else mask_text(reason, {*keep, *public_settings(destinations)})
    if not reveal and isinstance(event, Mapping):
        plain = [f.name for d in destinations for f in d.fields if not f.identifier]
        event = mask_event(event, plain)
    shown = {
        "id": d.id,
        "vendor": d.vendor,
        "event_id": d.event_id,
        "name": d.name,
        "created": _iso(d.created_ms),
        "failed": _iso(d.failed_ms),
        "attempts": d.attempts,
        "reason": reason,
        "event": event,
        "masked": not reveal,
    }
    return _redact(json.dumps(shown, ensure_ascii=False), destinations)

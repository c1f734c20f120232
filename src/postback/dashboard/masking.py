"""What the dashboard may show: personal data masked, secrets never.

Every string that reaches a page passes through here first. :func:`mask_text` hides emails,
phone numbers and IP addresses wherever they appear in free text (a vendor's error message may
quote the email it refused); :func:`mask_payload` walks a canonical event and masks each user
and context field by what it is, and long hashes by shortening them (a SHA-256 of an email is
still a stable identifier). :func:`redacted_config` turns the config in use into rows where
every secret is a fixed placeholder: the secret's value is never read into the page at all.
:func:`visible` writes control and bidirectional-override characters as ``\\uXXXX`` (every
value a template outputs goes through it): a vendor's answer or a property cannot reverse or
hide the text around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from postback.config import Config, settings_help
from postback.destination import Secret
from postback.textmask import mask_text, visible

__all__ = [
    "REDACTED",
    "mask_payload",
    "mask_text",
    "mask_value",
    "redacted_config",
    "safe_url",
    "visible",
]

REDACTED = "•••••• (secret)"

# User and context fields that identify a person, and how each is masked.
_PERSONAL_KEYS = {
    "email": "email",
    "emails": "email",
    "phone": "phone",
    "phones": "phone",
    "ip": "ip",
    "ip_address": "ip",
    "client_ip": "ip",
    "first_name": "name",
    "last_name": "name",
    "name": "name",
    "city": "name",
    "zip": "name",
    "postal_code": "name",
    "street": "name",
    "address": "name",
    "date_of_birth": "name",
    "dob": "name",
    "birthdate": "name",
    "username": "name",
    "state": "name",
    # The same things as shops and forms name them (a shipping address in properties).
    "email_address": "email",
    "mail": "email",
    "phone_number": "phone",
    "mobile": "phone",
    "tel": "phone",
    "telephone": "phone",
    "full_name": "name",
    "fname": "name",
    "lname": "name",
    "given_name": "name",
    "family_name": "name",
    "surname": "name",
    "middle_name": "name",
    "address1": "name",
    "address2": "name",
    "street_address": "name",
    "zipcode": "name",
    "postcode": "name",
    "birthday": "name",
}


# The same keys however they are written: first_name, firstName, FIRST-NAME.
_PERSONAL_KEYS_ANY_CASE = {k.replace("_", ""): kind for k, kind in _PERSONAL_KEYS.items()}


def _kind_of(key: str, default: str | None) -> str | None:
    return _PERSONAL_KEYS_ANY_CASE.get(key.lower().replace("_", "").replace("-", ""), default)


def _mask_as(kind: str, value: str) -> str:
    if kind == "name":
        return (value[:1] + "•••") if value else value
    if kind == "ip":
        masked = mask_text(value)
        return masked if masked != value else "•••"
    masked = mask_text(value)  # email, phone: the pattern keeps a hint, else hide it all
    return masked if masked != value else (value[:1] + "•••" if value else value)


def mask_value(value: Any, kind: str | None = None) -> Any:
    """A JSON-like value with personal data masked (``kind`` from its key, if known)."""
    if isinstance(value, str):
        return _mask_as(kind, value) if kind else mask_text(value)
    if kind and isinstance(value, int | float) and not isinstance(value, bool):
        return _mask_as(kind, str(value))  # a phone number or a zip code given as a number
    if isinstance(value, Mapping):
        return {str(k): mask_value(v, _kind_of(str(k), kind)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v, kind) for v in value]
    return value


def mask_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical event (as stored in the queue) with every personal field masked."""
    return {str(k): mask_value(v) for k, v in event.items()}


def safe_url(url: str) -> str:
    """A URL without its password (``redis://:pw@host`` shows as ``redis://:•••@host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "•••"
    if parts.password is None and not parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:•••@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    query = "•••" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _show(value: Any) -> str:
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, str) and "://" in value:
        return safe_url(value)
    if isinstance(value, frozenset | set):
        return ", ".join(sorted(map(str, value))) or "(none)"
    if attrs.has(type(value)):
        return ", ".join(
            f"{f.name}={_show(getattr(value, f.name))}" for f in attrs.fields(type(value))
        )
    return repr(value)


def redacted_config(config: Config) -> list[tuple[str, list[tuple[str, str]]]]:
    """The config in use as ``[(section, [(setting, shown value)])]``, secrets redacted.

    A vendor setting declared secret is shown as :data:`REDACTED` without reading its value;
    any :class:`~postback.destination.Secret` elsewhere likewise; URLs lose their passwords.
    A disabled vendor's secret never given is "not set (checked when enabled)", as ``config
    check`` says, not shown as if it were set.
    """
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    core = [(f.name, _show(getattr(config.core, f.name))) for f in attrs.fields(type(config.core))]
    sections.append(("postback", core))
    for name, vc in config.vendors.items():
        rows: list[tuple[str, str]] = []
        for fname, _help, secret, _default in settings_help(type(vc.settings)):
            if fname in vc.unchecked_secrets:  # a disabled vendor's empty placeholder
                rows.append((fname, "not set (checked when enabled)"))
                continue
            rows.append((fname, REDACTED if secret else _show(getattr(vc.settings, fname))))
        for field in attrs.fields(type(vc)):
            if field.name in ("name", "settings"):
                continue
            rows.append((field.name, _show(getattr(vc, field.name))))
        sections.append((f"vendors.{name}", rows))
    return sections

"""Personal data masked in free text: the one path every stored or shown note goes through.

A vendor's error message may quote the email, phone number or IP address it refused; the
dashboard (:mod:`postback.dashboard.masking`) and the delivery ledger (:mod:`postback.ledger`)
pass such text through :func:`mask_text` before showing or storing it. Secrets are removed
before that by the vendor's own :meth:`~postback.Destination.redact`.

A URL's query string is masked by parameter name too: a form sent by GET puts the visitor's
details in the page URL (``context.url``) and the next page's referrer
(``?email=a@b.c&first_name=Ada&zip=90210``), where no pattern would recognise a name or a
postal code. The value of every parameter named like personal data (:data:`QUERY_PERSONAL`)
keeps its first character only. Only what is shown is masked: the stored event keeps the URL,
which a vendor (AppLovin's ``event_source_url``) is sent.

:func:`visible` writes control and bidirectional-override characters out as ``\\uXXXX``: a
vendor's answer quoted in a reason cannot clear or retitle the terminal that shows a log line,
nor reverse the text around it on a page. Every outcome's text passes through it
(:func:`postback.delivery.settle.scrubbed`), and so does every value the dashboard shows.

A vendor's own ids are not personal data, though they look like phone numbers (``No app found
for app_id 333903271``): a number a vendor id label names, and the non-secret values of the
vendors' settings that a caller passes as ``keep``, are shown as they are.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import attrs

__all__ = ["QUERY_PERSONAL", "mask_text", "public_settings", "public_values", "visible"]

#: Query parameters whose value is personal data, by name lower-cased without ``_``, ``-``
#: or ``.`` (``first_name``, ``firstName`` and ``FIRST-NAME`` are one).
QUERY_PERSONAL: frozenset[str] = frozenset(
    """
    email emails mail emailaddress phone phones phonenumber tel telephone mobile cell
    name firstname lastname fullname fname lname givenname familyname surname middlename
    address address1 address2 street streetaddress city zip zipcode postcode postalcode
    birthdate birthday dob dateofbirth username login user userid customerid
    password passwd pwd pass ssn
    """.split()
)

# Letters and digits of any script (``\w``): an address may be internationalised (müller.de).
# Tried only where a run of such characters starts: from inside one, it would scan the rest
# of the run again for each character (minutes for a 100 KB property).
# In a URL's query string the "@" is "%40" (kept so, the URL stays one).
_EMAIL = re.compile(r"(?<![\w.%+-])([\w.%+-])[\w.%+-]*(@|%40)([\w-])[\w.-]*(\.[^\W\d_]{2,})")
_IPV4 = re.compile(r"\b(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}\b")
_IPV6 = re.compile(r"\b([0-9A-Fa-f]{1,4}):([0-9A-Fa-f]{1,4}):[0-9A-Fa-f:]*:[0-9A-Fa-f]{0,4}\b")
# Any IPv6 address, "::" anywhere (``fe80::1``): masked when the standard library parses it.
_IPV6_ANY = re.compile(
    r"(?<![\w:])(?=[0-9A-Fa-f:]*[0-9A-Fa-f])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
    r"(?![\w:]|\.\d)"
)
# A phone number: optional + (%2B in a URL's query string), then 7 to 15 digits with the
# usual separators in between; a full stop may end it (a sentence), not go on into more
# digits or letters.
_PHONE = re.compile(r"(?<![\w.])(\+?|%2[Bb])(\d)[\d ().-]{5,18}(\d{2})(?!\w|\.\w)")
_HEX_HASH = re.compile(r"\b([0-9a-fA-F]{8})[0-9a-fA-F]{24,}\b")
# A vendor's id named just before a number or hash that would look like a phone number or a
# hashed email ("No app found for app_id 333903271", "pixel_id=...", "App ID: '...'"): the
# vendor's (or the app's) configuration, which a person's data is never labelled as.
_ID_LABEL = re.compile(
    r"\b(?:app|pixel|account|advertiser|company)[ _-]?id\W{0,3}\Z", re.IGNORECASE
)
# A query parameter: "?" or "&" (or ";"), its name, "=", and its value up to the next one.
_QUERY_PARAM = re.compile(r"(?<=[?&;])([\w.\[\]%+-]{1,64})=([^&;#\s\"'<>]+)")
# What every pattern above needs at least one of: an ``@`` (email), a digit (IPv4, phone), a
# colon (IPv6), 32 hex characters in a row (a hash) or a query parameter (``?name=``,
# ``&name=``): text without any is returned unscanned (``network=meta campaign=x`` included).
_ANY = re.compile(r"[@\d:]|[0-9a-fA-F]{32}|[?&;][\w.\[\]%+-]{1,64}=")


# Control characters (but tab and line feed) and the ones that reorder or isolate text.
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def visible(value: Any) -> Any:
    """``value`` with each control or bidirectional-override character written as
    ``\\uXXXX`` when it is a string (anything else as it is)."""
    if isinstance(value, str) and _INVISIBLE.search(value):
        return _INVISIBLE.sub(lambda m: f"\\u{ord(m[0]):04x}", value)
    return value


def mask_text(text: str, keep: Collection[str] = ()) -> str:
    """``text`` with emails, IP addresses, phone numbers and long hex hashes masked.

    Not masked: a bare number or hash that a vendor id label names (``app_id 333903271``,
    ``pixel_id=...``, ``account id: ...``: see :data:`_ID_LABEL`), and a token equal to one of
    ``keep``, the non-secret values of the vendors' settings
    (:func:`public_settings`): configuration, not anyone's personal data."""
    if _ANY.search(text) is None:  # the common note ("no device id"): nothing to mask
        return text
    if isinstance(keep, str):  # one value, not a collection of its characters and substrings
        keep = (keep,)
    if "=" in text:
        text = _QUERY_PARAM.sub(_mask_parameter, text)
    return _mask_patterns(text, keep)


def public_settings(destinations: Iterable[Any]) -> frozenset[str]:
    """The non-secret settings of these built destinations that masking would otherwise hide
    (an app id, a pixel id, an account): what :func:`mask_text` is given as ``keep`` where a
    tracker's vendors are built (the dashboard, :func:`postback.privacy.shown_dead_letter`).

    The CLI's reading commands build no vendor (that would need their secrets), so they use
    :func:`postback.cli._shared.public_vendor_values` on the config as written; a tracker made
    in code has no config file to read, so this one reads the built settings. Both apply
    :func:`public_values`, one rule. A :class:`~postback.destination.Secret` is never kept."""
    found: set[str] = set()
    for dest in destinations:
        settings = getattr(dest, "settings", None)
        if settings is None or not attrs.has(type(settings)):
            continue
        names = [f.name for f in attrs.fields(type(settings))]
        found |= public_values(type(settings), {n: getattr(settings, n, None) for n in names})
    return frozenset(found)


def public_values(settings_class: type, values: Mapping[str, object]) -> set[str]:
    """Of one vendor's setting ``values`` (built or as written), those a reason may show as
    they are: a text setting not declared ``secret`` (nor typed ``Secret``), not a ``${NAME}``,
    and shaped like an id masking would hide (:func:`mask_text` changes it as a whole, so at
    least 8 characters of phone shape or a 32-digit hash): a short or common value ("1",
    "US", "true") keeps nothing, and could only ever match itself."""
    found: set[str] = set()
    for a in attrs.fields(settings_class):
        value = values.get(a.name)
        if not isinstance(value, str) or a.metadata.get("secret") or "Secret" in str(a.type):
            continue
        if "${" not in value and value.strip() == value and mask_text(value) != value:
            found.add(value)
    return found


def _mask_patterns(text: str, keep: Collection[str] = ()) -> str:
    def kept(mask: Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
        return lambda m: m[0] if m[0] in keep else mask(m)

    def unlabelled(mask: Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
        def sub(m: re.Match[str]) -> str:
            start = m.start()
            if m[0] in keep:
                return m[0]
            # An id is a bare run of digits or a hash: "+1 415 555 0100" after a label is a
            # phone number the vendor calls an account, still masked.
            bare = m[0].isalnum()
            if bare and _ID_LABEL.search(m.string, max(0, start - 40), start):
                return m[0]
            return mask(m)

        return sub

    text = _EMAIL.sub(kept(lambda m: f"{m[1]}•••{m[2]}{m[3]}•••{m[4]}"), text)
    text = _IPV6_ANY.sub(kept(_mask_ipv6), text)
    text = _IPV6.sub(kept(lambda m: f"{m[1]}:{m[2]}:•••"), text)
    text = _IPV4.sub(kept(lambda m: f"{m[1]}.{m[2]}.•.•"), text)
    text = _HEX_HASH.sub(unlabelled(lambda m: f"{m[1]}…"), text)
    return _PHONE.sub(unlabelled(lambda m: f"{m[1]}{m[2]}•••••{m[3]}"), text)


def _mask_ipv6(m: re.Match[str]) -> str:
    """An IPv6 address shown up to its second colon (``2001:db8:•••``, ``fe80::•••``)."""
    found = m[0]
    try:
        ipaddress.IPv6Address(found)
    except ValueError:
        return found
    return found[: found.index(":", found.index(":") + 1) + 1] + "•••"


def _mask_parameter(m: re.Match[str]) -> str:
    """``name=value`` with the value masked when the name is personal: as the patterns mask
    it (an email or phone number keeps a hint), else cut to its first character."""
    name = m[1].lower().replace("_", "").replace("-", "").replace(".", "")
    if name not in QUERY_PERSONAL:
        return m[0]
    value = m[2]
    masked = _mask_patterns(value)
    return f"{m[1]}={masked if masked != value else value[:1] + '•••'}"

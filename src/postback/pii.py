"""Helpers for personal data that vendor plugins share: normalise, hash, and pass through.

Vendors disagree on how identifiers must be prepared (AppLovin wants phone digits without ``+``
before SHA-256; X wants an HMAC of the device id). These helpers do each step once, correctly,
so plugins compose them instead of re-implementing them.

Phone numbers are parsed with `phonenumbers <https://github.com/daviddrysdale/python-phonenumbers>`_
(a port of Google's libphonenumber): national formats, extensions and per-country rules are a
moving target that a hand-written regex gets wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re

import phonenumbers

__all__ = [
    "hash_email",
    "hash_phone",
    "hmac_sha256",
    "hmac_sha256_base64",
    "is_ip_address",
    "is_sha256_hex",
    "normalize_email",
    "normalize_phone",
    "phone_digits",
    "sha256_hex",
]

_SHA256_HEX = re.compile(r"^[A-Fa-f0-9]{64}\Z")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def is_ip_address(value: str) -> bool:
    """True when ``value`` is an IPv4 address (dotted decimal) or an IPv6 address.

    Cheap enough for ``validate`` at ``track()`` time: a regular expression for IPv4, and the
    standard library's parser only for text with a colon (IPv6)."""
    if _IPV4.fullmatch(value):
        return True
    if ":" not in value:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def is_sha256_hex(value: str) -> bool:
    """True when ``value`` already looks like a SHA-256 hex digest (64 hex characters)."""
    return bool(_SHA256_HEX.match(value))


def normalize_email(email: str) -> str:
    """Trim and lower-case an email address (the rule every vendor's hashing guide uses)."""
    return email.strip().lower()


def normalize_phone(phone: str, default_region: str | None = None) -> str:
    """Return ``phone`` in E.164 (``+14155550123``).

    A number without a ``+`` country prefix needs ``default_region`` (ISO 3166 alpha-2, e.g.
    ``"US"``). Raises :class:`ValueError` saying why when the number cannot be parsed or is
    not a possible number.
    """
    text = phone.strip()
    try:
        parsed = phonenumbers.parse(text, default_region.upper() if default_region else None)
    except phonenumbers.NumberParseException as exc:
        hint = (
            " (add the +country prefix or configure a default region)"
            if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
            else ""
        )
        raise ValueError(f"not a phone number: {exc}{hint}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("not a possible phone number for its country (wrong length)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_digits(phone: str, default_region: str | None = None) -> str:
    """E.164 without the ``+``: the country code and number as digits only (AppLovin's form)."""
    return normalize_phone(phone, default_region)[1:]


def sha256_hex(value: str) -> str:
    """Lower-case hex SHA-256 of the UTF-8 encoded ``value``."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hmac_sha256(key: bytes, value: str) -> bytes:
    """Raw HMAC-SHA256 digest of the UTF-8 encoded ``value`` under ``key``."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest()


def hmac_sha256_base64(key: bytes, value: str) -> str:
    """Standard base64 (with padding) of HMAC-SHA256: X's ``hashed_device_id`` form."""
    return base64.b64encode(hmac_sha256(key, value)).decode("ascii")


def hash_email(email: str) -> str:
    """SHA-256 hex of the normalised email; an already hashed value passes through as is."""
    if is_sha256_hex(email):
        return email.lower()
    return sha256_hex(normalize_email(email))


def hash_phone(phone: str, default_region: str | None = None, *, keep_plus: bool = False) -> str:
    """SHA-256 hex of the normalised phone; an already hashed value passes through.

    ``keep_plus=False`` hashes digits only (``14155550123``), as AppLovin expects;
    ``keep_plus=True`` hashes full E.164 (``+14155550123``), as Google and Meta expect.
    """
    if is_sha256_hex(phone):
        return phone.lower()
    e164 = normalize_phone(phone, default_region)
    return sha256_hex(e164 if keep_plus else e164[1:])

"""Shared PII helpers: normalise, hash, pass through what is already hashed."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from postback import pii


def test_email_normalisation_and_hash() -> None:
    assert pii.normalize_email("  Ada@Example.COM ") == "ada@example.com"
    expected = hashlib.sha256(b"ada@example.com").hexdigest()
    assert pii.hash_email(" Ada@Example.com") == expected
    assert pii.hash_email(expected.upper()) == expected  # already hashed: passes through


def test_phone_to_e164() -> None:
    assert pii.normalize_phone("+1 (415) 555-0123") == "+14155550123"
    assert pii.normalize_phone("020 7946 0958", "gb") == "+442079460958"
    assert pii.phone_digits("+1 415 555 0123") == "14155550123"


@pytest.mark.parametrize("bad", ["hello", "+1 23", "4155550123"])
def test_bad_phones_say_why(bad: str) -> None:
    with pytest.raises(ValueError, match="phone"):
        pii.normalize_phone(bad)


def test_phone_hash_digits_only_or_with_plus() -> None:
    assert pii.hash_phone("+1 415 555 0123") == hashlib.sha256(b"14155550123").hexdigest()
    assert (
        pii.hash_phone("+1 415 555 0123", keep_plus=True)
        == hashlib.sha256(b"+14155550123").hexdigest()
    )
    digest = hashlib.sha256(b"x").hexdigest()
    assert pii.hash_phone(digest) == digest


def test_hmac_helpers() -> None:
    key = b"secret-key"
    raw = hmac.new(key, b"abc", hashlib.sha256).digest()
    assert pii.hmac_sha256(key, "abc") == raw
    assert pii.hmac_sha256_base64(key, "abc") == base64.b64encode(raw).decode()
    assert len(pii.hmac_sha256_base64(key, "abc")) == 44
    assert pii.is_sha256_hex("a" * 64)
    assert not pii.is_sha256_hex("a" * 63)
    assert pii.sha256_hex("abc") == hashlib.sha256(b"abc").hexdigest()

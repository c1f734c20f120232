"""Optional encryption of stored events, with keys from the environment.

``POSTBACK_ENCRYPTION_KEYS="k2:BASE64KEY,k1:BASE64KEY"`` turns it on: ``track()`` seals each
event's bytes with AES-GCM (`cryptography <https://cryptography.io>`_) under the *first* key
before the queue stores them, so the spool files, the SQLite log, the Redis stream and retries,
and dead letters hold only ciphertext; every reader (the lanes, ``deadletters show``, the
dashboard, an erase) opens them with whichever listed key sealed them. To rotate, put the new
key first and keep the old one listed until the events it sealed have been delivered or their
dead letters have expired (``dead_letter_retention``). Unset, events are stored plain; set
but empty or blank is a :class:`~postback.errors.ConfigError` (an unset placeholder of a
deployment, not a wish to turn encryption off).

A sealed payload is ``~e1:KEYID:`` + a 12-byte random nonce + the ciphertext and tag; the key
id is also bound as associated data. A plain payload is a JSON object (``{...``), so the two
never mix up and a queue may hold both (turning encryption on or off needs no migration).
The queue's own columns (event id, event name, vendors, times) stay readable: they carry no
user data. Needs ``pip install 'postback[encryption]'`` (cryptography). Keys are 16, 24 or 32
bytes, base64 (standard or URL-safe); make one with::

    python -c "import os, base64; print(base64.b64encode(os.urandom(32)).decode())"
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any

from postback.errors import ConfigError, ConfigProblem

__all__ = ["ENV_VAR", "Keyring", "UnknownKey", "is_sealed", "keyring_from_env", "open_payload"]

ENV_VAR = "POSTBACK_ENCRYPTION_KEYS"
_MARK = b"~e1:"
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class UnknownKey(ValueError):
    """A stored event was sealed with a key id that ``POSTBACK_ENCRYPTION_KEYS`` lacks, or
    the key listed under that id does not open it (changed, or the bytes are damaged)."""


class Keyring:
    """The keys of ``POSTBACK_ENCRYPTION_KEYS``: seals with the first, opens with any."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        AESGCM = _aesgcm()
        self._current_id = keys[0][0].encode()
        self._current = AESGCM(keys[0][1])
        self._prefix = _MARK + self._current_id + b":"
        self._by_id = {kid.encode(): AESGCM(key) for kid, key in keys}
        self._urandom = os.urandom
        from cryptography.exceptions import InvalidTag  # (there: _aesgcm found cryptography)

        self._invalid_tag = InvalidTag

    def seal(self, payload: bytes) -> bytes:
        nonce = self._urandom(12)
        sealed: bytes = self._current.encrypt(nonce, payload, self._current_id)
        return self._prefix + nonce + sealed

    def open(self, data: bytes) -> bytes:
        if not data.startswith(_MARK):
            return data
        kid, sep, rest = data[len(_MARK) :].partition(b":")
        aead = self._by_id.get(kid)
        if aead is None or not sep:
            raise UnknownKey(
                f"the event was encrypted with key id {kid.decode(errors='replace')!r}, which "
                f"{ENV_VAR} does not list: add that key (after the current one) and replay"
            )
        try:
            plain: bytes = aead.decrypt(rest[:12], rest[12:], kid)
        except self._invalid_tag:
            raise UnknownKey(
                f"the event was encrypted with key id {kid.decode(errors='replace')!r}, but "
                f"the key {ENV_VAR} lists under that id does not open it: the key was changed "
                "(list the one that sealed it), or the stored bytes are damaged"
            ) from None
        return plain

    def __repr__(self) -> str:  # never the keys
        return f"<Keyring current={self._current_id.decode()!r} keys={len(self._by_id)}>"


def _parse(value: str) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    problems: list[str] = []
    for n, item in enumerate(x.strip() for x in value.split(",")):
        if not item:
            continue
        kid, sep, encoded = item.partition(":")
        if not sep or not _KEY_ID.match(kid):
            problems.append(
                f"entry {n + 1} must be KEYID:BASE64KEY with a key id of letters, digits, - or _"
            )
            continue
        try:
            key = base64.b64decode(encoded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"key {kid!r} is not valid base64")
            continue
        if len(key) not in (16, 24, 32):
            problems.append(f"key {kid!r} is {len(key)} bytes; AES-GCM needs 16, 24 or 32")
            continue
        keys.append((kid, key))
    if not keys and not problems:
        problems.append("lists no key")
    if problems:
        raise ConfigError([ConfigProblem(ENV_VAR, p) for p in problems])
    return keys


def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise ConfigError(
            [
                ConfigProblem(
                    ENV_VAR,
                    "is set, but encrypting stored events needs the cryptography package: "
                    "pip install 'postback[encryption]'",
                )
            ]
        ) from None
    return AESGCM


_cache: tuple[str | None, Keyring | None] | None = None


def keyring_from_env() -> Keyring | None:
    """The keyring ``POSTBACK_ENCRYPTION_KEYS`` names (None when unset); a malformed value is a
    :class:`~postback.errors.ConfigError` saying which entry and why, and so is an empty or
    blank one (a deployment's unset placeholder, not a wish to store events in plaintext)."""
    global _cache
    value = os.environ.get(ENV_VAR)
    if _cache is not None and _cache[0] == value:
        return _cache[1]
    if value is not None and not value.strip():
        raise ConfigError(
            [
                ConfigProblem(
                    ENV_VAR,
                    "is set but it is empty: unset it to store events unencrypted, or set it "
                    "to your keys (KEYID:BASE64KEY, comma-separated)",
                )
            ]
        )
    ring = Keyring(_parse(value)) if value is not None else None
    _cache = (value, ring)
    return ring


def is_sealed(data: bytes) -> bool:
    """Whether a stored event's bytes are encrypted (else they are its JSON)."""
    return data.startswith(_MARK)


def open_payload(data: bytes) -> bytes:
    """A stored event's plain bytes: sealed ones opened with the environment's keys."""
    if not data.startswith(_MARK):
        return data
    ring = keyring_from_env()
    if ring is None:
        raise UnknownKey(
            f"the event is encrypted but {ENV_VAR} is not set in this process: set it to the "
            "keys the app uses"
        )
    return ring.open(data)

"""Event ids: the random ones ``track()`` makes, and the check of those an application passes.

An event id is 1 to 255 printable ASCII characters without spaces: what the queue keys on
and every vendor's dedupe field takes. One that ``track()`` makes is a random (version 4)
UUID string.
"""

from __future__ import annotations

import os
import re

__all__ = ["EVENT_ID_RE", "is_event_id", "new_event_id"]

#: The variant nibble of a version 4 UUID (10xx) for each random hex digit.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}

#: What an event id must match (:func:`is_event_id` says the same without the regex engine).
EVENT_ID_RE = re.compile(r"^[\x21-\x7e]{1,255}\Z")


def new_event_id() -> str:
    """A random (version 4) UUID string, made without ``uuid.UUID``'s overhead: 122 random
    bits, the version digit ``4`` and the variant digit (8, 9, a or b) set in the text.

    Each id is its own ``os.urandom`` read, on purpose. A pool of bytes read for many ids at
    once saved 0.3 µs per id, but a process forked without Python's at-fork hooks (uWSGI's
    default prefork forks from C) would share the pool with its parent and its siblings, and
    they would make the same ids: dedupe would then drop real events. Checking the pid on
    every call costs what the pool saved."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def is_event_id(text: str) -> bool:
    """What :data:`EVENT_ID_RE` matches (1 to 255 of ``\\x21``-``\\x7e``), without the regex
    engine: the printable ASCII characters are ``\\x20``-``\\x7e``, less the space."""
    return 0 < len(text) < 256 and text.isascii() and text.isprintable() and " " not in text

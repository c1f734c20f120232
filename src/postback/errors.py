"""The one error tree of postback.

Every exception postback raises on purpose derives from :class:`PostbackError`::

    PostbackError
    ├── ConfigError                 bad configuration: every problem at once, with its key path
    ├── InvalidEvent (ValueError)   track() refused an event: every problem, per vendor and field
    ├── PluginError                 a plugin broke the contract (bad registration, duplicate name)
    ├── QueueError                  the queue cannot take or give events
    │   ├── QueueFull               the bounded memory queue is full: the event was NOT accepted
    │   ├── QueueCorrupt            the queue file is not a postback queue or is damaged
    │   ├── QueueUnavailable        the queue's server cannot be reached (retry later)
    │   ├── QueueAuthRefused        the queue's server refused the credentials (fix the URL)
    │   ├── QueueReadOnly           the queue is read-only (a replica, a read-only mount)
    │   └── QueueDiskFull           no space left where the queue writes: the event was NOT accepted
    └── TrackerClosed               track(), flush(), stats()... after close()

Errors carry their context as attributes (``problems``, ``path``) so callers and tests can read
them without parsing messages; messages always say what is wrong and how to fix it. No error
message ever contains a secret: settings marked secret are redacted before they reach one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import Path

import attrs

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "InvalidEvent",
    "PluginError",
    "PostbackError",
    "Problem",
    "QueueAuthRefused",
    "QueueCorrupt",
    "QueueDiskFull",
    "QueueError",
    "QueueFull",
    "QueueNotFound",
    "QueueReadOnly",
    "QueueUnavailable",
    "TrackerClosed",
]


#: How many characters of a value a message quotes (:func:`brief_repr`).
BRIEF_CHARS = 80
#: Values whose repr says what they are; any other type is shown by its name alone.
_REPR_TYPES = (float, Decimal, date, time, timedelta, bytes)


def brief_repr(value: object, limit: int = BRIEF_CHARS) -> str:
    """``value`` as a message quotes it: its repr cut to about ``limit`` characters (with
    ``...`` and the full length), an integer too large to print cheaply by its size, and a
    value of any other type than str, bytes, a number or a date by its type alone.

    Never raises, whatever ``value`` is (a ``__repr__`` that raises, an integer beyond
    Python's 4300-digit conversion limit), and costs the same for a 5 MB string as for a
    short one: what ``track()`` was given goes into its error messages and its log lines.
    """
    try:
        if isinstance(value, str):
            text = repr(str.__getitem__(value, slice(0, limit)))
            if len(value) <= limit and len(text) <= limit + 2:
                return text
            return f"{text[: limit - 3]}... ({len(value):,} characters)"
        if value is None or isinstance(value, bool):
            return repr(value)
        if isinstance(value, int):
            bits = value.bit_length()
            if bits > 128:  # str() of a huge int is slow, and raises beyond 4300 digits
                return f"an integer of {bits:,} bits"
            return repr(value)
        if isinstance(value, _REPR_TYPES):
            text = repr(value[:limit] if isinstance(value, bytes) else value)
            return text if len(text) <= limit else f"{text[: limit - 3]}..."
    except Exception:  # a hostile __repr__ (or len, or slice): shown by its type
        return _type_name(value)
    return _type_name(value)


def brief_str(value: object, limit: int = BRIEF_CHARS) -> str:
    """``value`` as a label (an event's name, a field's key): a string as it is, cut to
    ``limit`` characters with ``...``; anything else as :func:`brief_repr` shows it. Never
    raises."""
    if isinstance(value, str):
        head = str.__getitem__(value, slice(0, limit + 1))  # a plain str, whatever the class
        return head if len(head) <= limit else f"{head[: limit - 3]}..."
    return brief_repr(value, limit)


def brief_error(exc: BaseException, limit: int = BRIEF_CHARS) -> str:
    """An exception as a message quotes it: ``"RuntimeError: boom"``, its text cut to about
    ``limit`` characters. Never raises (an exception whose ``__str__`` raises is shown by its
    type's name alone): it quotes what a caller's own object raised."""
    try:
        name = brief_str(type(exc).__name__, limit)
    except Exception:  # a metaclass with a hostile __name__
        name = "an exception"
    try:
        text = brief_str(str(exc), limit)
    except Exception:
        return name
    return f"{name}: {text}" if text else name


def _type_name(value: object) -> str:
    try:
        return f"a value of type {type(value).__name__}"
    except Exception:  # a metaclass with a hostile __name__
        return "a value of an unprintable type"


class PostbackError(Exception):
    """Base class of every error postback raises on purpose."""


@attrs.frozen
class Problem:
    """One thing wrong with an event.

    ``vendor`` is ``None`` for problems with the canonical event itself (bad currency, unknown
    user field) and the vendor's name for problems that vendor's rules found.
    """

    field: str
    message: str
    vendor: str | None = None

    def __str__(self) -> str:
        where = f"{self.vendor}: " if self.vendor else ""
        return f"{where}{self.field}: {self.message}"


@attrs.frozen
class ConfigProblem:
    """One thing wrong with a configuration, at ``path`` (e.g. ``vendors.x.hmac_key``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(PostbackError):
    """The configuration is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: Iterable[ConfigProblem | str], source: str | None = None) -> None:
        self.problems: list[ConfigProblem] = [
            p if isinstance(p, ConfigProblem) else ConfigProblem("", p) for p in problems
        ]
        self.source = source
        head = f"invalid postback configuration{f' in {source}' if source else ''}"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head} ({len(self.problems)} problem(s)):\n{lines}")


class InvalidEvent(PostbackError, ValueError):
    """``track()`` refused an event. ``problems`` lists every problem, per vendor and field.

    Nothing was queued for any vendor: fix the event (or the vendor's routing) and track again.
    """

    def __init__(self, name: str, problems: Sequence[Problem]) -> None:
        self.event_name = name
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"invalid event {brief_repr(name)} ({len(self.problems)} problem(s)):\n{lines}"
        )


class PluginError(PostbackError):
    """A plugin broke the plugin contract (for example two plugins registered one vendor name)."""


class QueueError(PostbackError):
    """The queue cannot take or give events; the message says why and what to do."""


class QueueNotFound(QueueError):
    """The queue does not exist and was opened without creating it (``create_queue=False``,
    for the commands that read stored events): a ``sqlite://`` file not there, at ``path``."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class QueueFull(QueueError):
    """The bounded in-memory queue is full. The event was not accepted (nothing was dropped)."""


class QueueCorrupt(QueueError):
    """The queue store is damaged or is not a postback queue."""


class QueueUnavailable(QueueError):
    """The queue's server (Redis, say) cannot be reached now. Nothing was accepted; retry later."""


class QueueAuthRefused(QueueError):
    """The queue's server refused the credentials in the queue URL; fix them in the config."""


class QueueReadOnly(QueueError):
    """The queue cannot be written: a read-only replica, a read-only file or mount."""


class QueueDiskFull(QueueError):
    """No space is left where the queue writes. The event was not accepted; free space and retry."""


class TrackerClosed(PostbackError):
    """The tracker was closed (``track()``, ``flush()``, ``stats()``, ``status()``, ``erase()``
    and ``start()`` raise it then); create a new one to track more events."""

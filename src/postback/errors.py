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
    └── TrackerClosed               track() after close()

Errors carry their context as attributes (``problems``, ``path``) so callers and tests can read
them without parsing messages; messages always say what is wrong and how to fix it. No error
message ever contains a secret: settings marked secret are redacted before they reach one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
    "QueueReadOnly",
    "QueueUnavailable",
    "TrackerClosed",
]


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
        super().__init__(f"invalid event {name!r} ({len(self.problems)} problem(s)):\n{lines}")


class PluginError(PostbackError):
    """A plugin broke the plugin contract (for example two plugins registered one vendor name)."""


class QueueError(PostbackError):
    """The queue cannot take or give events; the message says why and what to do."""


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
    """The tracker was closed; create a new one to track more events."""

"""The ``[postback]`` table: :class:`CoreSettings`, its enums, and :func:`build_core`.

Each setting is an ``attrs`` field whose metadata holds its help text (the reference docs and
``postback config check`` show it) and its ``parse`` function, which turns a TOML (or
environment) value into the setting's type or raises ``ValueError`` saying what is wrong; the
same functions are the fields' converters, so ``CoreSettings(workers=True)`` means what
``workers = true`` means in a file. Range checks are ``attrs`` validators.
:func:`~postback.config.structure.structure_table` does the structuring, as for every table.
What needs more than the value (the queue URL against the installed queue backends) is checked
by :func:`build_core` afterwards, still naming the key.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from postback.config.structure import (
    did_you_mean,
    order_by_keys,
    structure_table,
    unknown_key_problems,
)
from postback.durations import parse_duration
from postback.errors import ConfigProblem
from postback.events import normalize_currency

if TYPE_CHECKING:
    from postback.delivery.registry import QueueRegistry

__all__ = [
    "CORE_HELP",
    "DEFAULT_QUEUE",
    "CoreSettings",
    "OnInvalid",
    "SqliteSynchronous",
    "Workers",
    "build_core",
]

DEFAULT_QUEUE = "sqlite://postback.db"
_MAX_EXIT_TIMEOUT = 600.0  # seconds: [postback] exit_timeout


class Workers(enum.StrEnum):
    """``workers``: where this process's events are delivered from (``AUTO`` until resolved by
    :func:`postback.tracker.auto_workers`; see :class:`postback.delivery.mode.DeliveryMode`)."""

    AUTO = "auto"
    PROCESS = "process"
    THREAD = "thread"  # workers = true
    OFF = "off"  # workers = false: only enqueue, for a separate 'postback worker'

    @classmethod
    def parse(cls, value: object) -> Workers:
        if isinstance(value, Workers):
            return value
        if value is True or value == "thread":
            return cls.THREAD
        if value is False or value == "off":
            return cls.OFF
        if value in ("auto", "process"):
            return cls(value)
        raise ValueError("must be 'auto' (the default), 'process', true (or 'thread') or false")


class OnInvalid(enum.StrEnum):
    """``on_invalid``: what ``track()`` does with a malformed event."""

    RAISE = "raise"
    LOG = "log"


class SqliteSynchronous(enum.StrEnum):
    """``sqlite_synchronous``: how durable each write to a ``sqlite://`` queue is."""

    NORMAL = "normal"
    FULL = "full"


def _choice(cls: type[enum.StrEnum]) -> Callable[[object], Any]:
    """A parser taking one of ``cls``'s values as a string."""
    names = [m.value for m in cls]
    words = " or ".join(", ".join(repr(n) for n in names).rsplit(", ", 1))

    def parse(value: object) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise ValueError(f"must be a string: {words}")
        if value not in names:
            raise ValueError(f"must be {words}{did_you_mean(value, names)}")
        return cls(value)

    return parse


def _string(message: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(message)
        return value

    return parse


def _queue_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value  # build_core checks it against the installed queue backends


def _optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else parse(value)


def _duration(*, at_most: float | None = None) -> Callable[[object], float]:
    if at_most is None:
        return parse_duration
    return lambda value: parse_duration(value, at_most=at_most)


def _integer(lo: int, hi: int | None, message: str) -> tuple[Callable[[object], int], Any]:
    """(parser, validator) of an integer from ``lo`` to ``hi`` (``None``: unbounded)."""

    def validate(_inst: object, _attr: object, value: int) -> None:
        if value < lo or (hi is not None and value > hi):
            raise ValueError(message)

    def parse(value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(message)
        validate(None, None, value)  # here too: a table's validators run once all parsed
        return value

    return parse, validate


def _field(
    default: Any,
    help: str,
    parse: Callable[[object], Any],
    validator: Any = None,
    shown_as: Callable[[Any], str] | bool = True,
) -> Any:
    """A core setting: ``parse`` structures a raw value and converts a constructor argument."""
    return attrs.field(
        default=default,
        converter=parse,
        validator=validator,
        repr=shown_as,
        metadata={"help": help, "parse": parse},
    )


def _url_repr(url: str) -> str:
    """The queue URL's repr with its passwords masked (the user's, and query parameters named
    like ``password``), as ``queue.url`` shows it: a config's repr may end up in a log."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "'***'"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if password is None and not any("password" in k.lower() for k, _ in query):
        return repr(url)
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    shown = urlencode([(k, "***" if "password" in k.lower() else v) for k, v in query], safe="*")
    return repr(urlunsplit(parts._replace(netloc=netloc, query=shown)))


_max_queue_size = _integer(1, None, "must be a positive integer")
_ledger_max_entries = _integer(1, None, "must be a positive integer")
_process_nice = _integer(0, 19, "must be an integer from 0 (the app's priority) to 19")


def _strict(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


@attrs.frozen
class CoreSettings:
    """The ``[postback]`` table."""

    queue: str = _field(
        DEFAULT_QUEUE,
        "Where events wait for delivery: 'sqlite:///abs/path.db', 'sqlite://rel/path.db' "
        "(relative to the config file), 'memory://', 'redis://host:6379/0', or a scheme an "
        "installed queue plugin registers.",
        _queue_url,
        shown_as=_url_repr,
    )
    on_invalid: OnInvalid = _field(
        OnInvalid.RAISE,
        "What track() does with a malformed event: 'raise' (InvalidEvent listing "
        "every problem) or 'log' (log it; queue it for the vendors that took it).",
        _choice(OnInvalid),
    )
    strict: bool = _field(
        False,
        "Make every skip (a vendor that cannot use an event as given) an InvalidEvent "
        "problem instead of leaving that vendor out; for development and tests (default false).",
        _strict,
    )
    default_currency: str | None = _field(
        None,
        "ISO 4217 currency used when track() gets a value without currency.",
        _optional(normalize_currency),
    )
    exit_timeout: float = _field(
        2.0,
        "Seconds the exit hook spends flushing; the rest stays queued (default 2). A request "
        "in flight to a vendor with retry_unconfirmed = false may take up to that vendor's "
        "timeout more.",
        _duration(at_most=_MAX_EXIT_TIMEOUT),  # bounded: how long a process may take to exit
    )
    workers: Workers = _field(
        Workers.AUTO,
        "Deliver from a worker process this process starts and stops ('process'), from "
        "background threads of this process (true, or 'thread'), or only enqueue, for a "
        "separate 'postback worker' (false). The default, 'auto', is 'process' where that is "
        "safe (a sqlite:// queue, no transport or delivery hooks passed in-process, not under "
        "pytest) and threads otherwise.",
        Workers.parse,
    )
    max_queue_size: int = _field(
        100_000,
        "Bound of the memory:// queue (track() raises QueueFull beyond it).",
        *_max_queue_size,
    )
    sqlite_synchronous: SqliteSynchronous = _field(
        SqliteSynchronous.NORMAL,
        "'normal' (survives a process crash; the default) or 'full' "
        "(also survives power loss, slower).",
        _choice(SqliteSynchronous),
    )
    process_nice: int = _field(
        10,
        "With workers = 'process': how much lower the delivery process's CPU "
        "priority is than the app's (0-19, default 10; 0 for the same). When they compete for a "
        "core, the app's requests come first and delivery catches up after; events wait on disk.",
        *_process_nice,
    )
    ca_bundle: str | None = _field(
        None,
        "A PEM file (or a directory of them) of CA certificates to trust for the "
        "vendors' TLS, besides the default ones: a private CA, or a TLS-inspecting proxy's. "
        "Relative to the config file.",
        _optional(_string("must be the path of a PEM file of CA certificates")),
    )
    ledger_retention: float = _field(
        7 * 86400.0,
        "How long the delivery ledger keeps each outcome (default '7d').",
        _duration(),
    )
    ledger_max_entries: int = _field(
        1_000_000,
        "Most delivery ledger rows kept, oldest dropped first (default 1000000).",
        *_ledger_max_entries,
    )
    dead_letter_retention: float = _field(
        30 * 86400.0,  # why 30 days: docs/explanation/privacy.md
        "How long a dead letter (an event a vendor refused, or that ran "
        "out of retries) is kept before the deliverer deletes it (default '30d').",
        _duration(),
    )


#: Setting name -> help text, in the order of :class:`CoreSettings`.
CORE_HELP: dict[str, str] = {a.name: a.metadata["help"] for a in attrs.fields(CoreSettings)}


def build_core(raw: object, problems: list[ConfigProblem], queues: QueueRegistry) -> CoreSettings:
    """The ``[postback]`` table; every problem is appended to ``problems`` (in the order of the
    table's keys), and the settings returned are then those that were valid."""
    if raw is None:
        return CoreSettings()
    if not isinstance(raw, Mapping):
        problems.append(ConfigProblem("postback", "must be a table"))
        return CoreSettings()
    known = list(CORE_HELP)
    found = unknown_key_problems(
        raw,
        known,
        "postback",
        lambda key: f"unknown setting{did_you_mean(key, known)}; known: {', '.join(known)}",
    )
    core = structure_table(raw, CoreSettings, "postback", found)
    queue = raw.get("queue")
    if isinstance(queue, str) and queues.backend_for(queue) is None:
        found.append(ConfigProblem("postback.queue", queues.unknown_url_message(queue)))
    reported = {p.path for p in problems}  # e.g. an unset ${VAR}: said once
    found = [p for p in found if p.path not in reported]
    order_by_keys(found, raw, "postback")
    problems += found
    if core is None:  # what was valid, for the checks that read the core settings
        bad = {p.path.split(".")[1] for p in found if p.path.count(".") >= 1}
        core = structure_table(raw, CoreSettings, "postback", [], only=set(known) - bad)
    return core if core is not None else CoreSettings()

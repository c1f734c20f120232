"""A ``[vendors.NAME]`` table: the settings every vendor takes (:class:`CommonSettings`), the
vendor's own settings class, and :func:`build_vendor`, which validates both into a
:class:`VendorConfig`.

Both halves go through :func:`~postback.config.structure.structure_table`, so an error names
its key (``vendors.x.retry.max_age``) whichever half it is in. What needs the destination class
or the ``[consent]`` table (``batch_size`` against the vendor's maximum, ``retry`` over its
policy, ``purposes`` against the known purposes, the ``events`` filter against its event map,
the plugin's own ``check_config``) is checked afterwards, still naming the key.
:func:`events_filter_warnings` says which ``events`` entries look like a misspelt canonical
name (a warning of ``config check`` and ``doctor``: an app may track a custom event so named).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from postback.config.structure import (
    did_you_mean,
    order_by_keys,
    structure_table,
    unknown_key_problems,
)
from postback.consent import ConsentSettings, parse_vendor_purposes
from postback.dedupe import DEDUPE_HELP, parse_dedupe_window
from postback.destination import Destination, RateLimit, RetryPolicy, Secret
from postback.durations import parse_duration
from postback.errors import ConfigError, ConfigProblem
from postback.events import CANONICAL_EVENTS, normalize_event_name
from postback.redaction import Redactor
from postback.setting_values import parse_rate_limit

__all__ = [
    "VENDOR_COMMON_HELP",
    "CommonSettings",
    "RetrySettings",
    "VendorConfig",
    "build_vendor",
    "events_filter_warnings",
]

_MAX_TIMEOUT = 600.0  # seconds: a vendor's timeout for one request
_MAX_LINGER = 60.0  # seconds: a vendor's linger before sending a partial batch


_BASE_URL_HELP = "such as 'http://127.0.0.1:8090' (the vendor's path is appended)"


def _base_url(value: object) -> str:
    """An origin (and path prefix) the vendor's paths can be appended to, checked at start-up
    so that a typo is not a day of "Connection refused" retries. Errors never quote the value:
    a password in it would be shown."""
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE):
        raise ValueError(f"must be an http(s) URL {_BASE_URL_HELP}")
    if re.search(r"\s", value):
        raise ValueError(f"holds whitespace; give an http(s) URL {_BASE_URL_HELP}")
    try:
        parts = urlsplit(value)  # its errors quote the host: "'x' does not appear to be ..."
    except ValueError:
        raise ValueError(f"must be an http(s) URL {_BASE_URL_HELP}") from None
    if "@" in parts.netloc:
        raise ValueError(
            "must not carry a user name or password (user:password@host): they would show in "
            "logs and errors; give the vendor's credentials in its secret settings, and a "
            "proxy's in HTTPS_PROXY"
        )
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(
            "must not have a query (?...) or fragment (#...): the vendor's path and parameters "
            f"are appended to it; give the origin and path prefix only, {_BASE_URL_HELP}"
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or not parts.hostname:
        raise ValueError(
            f"has no host, or a port that is not a number from 1 to 65535; {_BASE_URL_HELP}"
        )
    return value.rstrip("/")


def _events(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of event names, e.g. ['purchase']")
    return frozenset(normalize_event_name(v) for v in value)


def _event_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("must be a table of canonical name = vendor name")
    # An empty name passed every check here, then made each track() of the event raise
    # InvalidEvent from the plugin: refused at start-up instead.
    if blank := [k for k, v in value.items() if not v.strip()]:
        raise ValueError(
            f"{blank[0]!r} is mapped to no event name: give the vendor's name for it, or "
            "list the events the vendor should get in events = [...] to send it none"
        )
    return {normalize_event_name(k): v for k, v in value.items()}


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _rate_limit(value: object) -> RateLimit | bool:
    """A limit, or False: none at all (not even the vendor's default)."""
    if value is False or value == "none":
        return False
    return parse_rate_limit(value)


def _integer(lo: int, hi: int | None, message: str) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < lo
            or (hi is not None and value > hi)
        ):
            raise ValueError(message)
        return value

    return parse


def _positive_duration(value: object) -> float:
    return parse_duration(value, positive=True)


def _common(help: str, parse: Callable[[object], Any], default: Any = None) -> Any:
    return attrs.field(default=default, metadata={"help": help, "parse": parse})


@attrs.frozen
class RetrySettings:
    """A vendor's ``retry`` table: what it changes of the vendor's :class:`RetryPolicy`."""

    max_attempts: int | None = _common(
        "Attempts before an event is a dead letter.",
        _integer(1, None, "must be a positive integer"),
    )
    max_age: float | None = _common("Age after which it is.", _positive_duration)
    initial_backoff: float | None = _common("First backoff.", _positive_duration)
    max_backoff: float | None = _common("Longest backoff.", _positive_duration)

    def over(self, policy: RetryPolicy) -> RetryPolicy:
        changed = {k: v for k, v in attrs.asdict(self).items() if v is not None}
        return attrs.evolve(policy, **changed)


@attrs.frozen
class CommonSettings:
    """The settings every ``[vendors.NAME]`` table takes, handled by the core (``None``: not
    set, the vendor's default applies)."""

    base_url: str | None = _common(
        "Replaces the vendor's origin and keeps its path (sandbox, proxy, tests).", _base_url
    )
    events: frozenset[str] | None = _common(
        "Only these canonical events go to the vendor (default: every event it maps).", _events
    )
    event_map: dict[str, str] | None = _common(
        "Canonical event name -> the vendor's event name, overriding its defaults.", _event_map
    )
    enabled: bool = _common(
        "Set false to keep the table but send nothing to this vendor; its secrets are then "
        "not required (a ${NAME} may be unset), until it is enabled again.",
        _enabled,
        True,
    )
    rate_limit: RateLimit | bool | None = _common(
        "Requests per window, e.g. '600/minute' or '60000/15 minutes'; false for none.",
        _rate_limit,
    )
    concurrency: int | None = _common(
        "Requests in flight at once to this vendor.",
        _integer(1, 256, "must be an integer from 1 to 256"),
    )
    timeout: float = _common(
        "Seconds to wait for the vendor's response (default 10).",
        # zero would deliver nothing
        lambda v: parse_duration(v, positive=True, at_most=_MAX_TIMEOUT),
        10.0,
    )
    batch_size: int | None = _common(
        "Events per request, at most the vendor's maximum.",
        _integer(1, None, "must be a positive integer"),
    )
    linger: float = _common(
        "Seconds to wait for a fuller batch (default 0.05).",
        lambda v: parse_duration(v, at_most=_MAX_LINGER),
        0.05,
    )
    retry: RetrySettings | None = attrs.field(
        default=None,
        metadata={"help": "Table: max_attempts, max_age, initial_backoff, max_backoff."},
    )
    #: Checked against the ``[consent]`` purposes by :func:`build_vendor`.
    purposes: list[str] | None = _common(
        "Consent purposes the vendor needs (default: the plugin's, ['ads']); [] for none: the "
        "vendor then gets events whatever the user's consent.",
        lambda v: v,
    )
    dedupe_window: float | None = _common(DEDUPE_HELP, parse_dedupe_window)


#: Settings every vendor takes, handled by the core: name -> help text.
VENDOR_COMMON_HELP: dict[str, str] = {
    a.name: a.metadata["help"] for a in attrs.fields(CommonSettings)
}


@attrs.frozen
class VendorConfig:
    """One ``[vendors.NAME]`` table, validated."""

    name: str
    settings: Any
    base_url: str | None = None
    events: frozenset[str] | None = None
    event_map: Mapping[str, str] = attrs.field(factory=dict)
    enabled: bool = True
    rate_limit: RateLimit | None = None
    rate_limit_disabled: bool = False
    concurrency: int | None = None
    timeout: float = 10.0
    batch_size: int | None = None
    linger: float = 0.05
    retry: RetryPolicy | None = None
    purposes: tuple[str, ...] | None = None  # None: the destination's purposes
    dedupe_window: float | None = None  # None: its default_dedupe_window; 0: off
    #: The secret settings a disabled vendor was given no value for (an unset ``${NAME}``, or
    #: none at all): not required until it is enabled, held as empty secrets, never used.
    unchecked_secrets: tuple[str, ...] = attrs.field(default=())

    @unchecked_secrets.validator
    def _never_enabled_without_them(self, _: Any, value: tuple[str, ...]) -> None:
        # attrs.evolve(vc, enabled=True) on a vendor loaded disabled would send its empty
        # placeholders as the secrets.
        if value and self.enabled:
            raise ValueError(
                f"[vendors.{self.name}] was loaded with enabled = false, so its "
                f"{', '.join(value)} {'was' if len(value) == 1 else 'were'} never given: to "
                "enable it, load the config again with enabled = true and its secrets"
            )

    def make_destination(self, cls: type[Destination]) -> Destination:
        return cls(self.settings, base_url=self.base_url, event_map=self.event_map)


def build_vendor(
    name: str,
    raw: object,
    cls: type[Destination],
    problems: list[ConfigProblem],
    consent: ConsentSettings | None = None,
) -> VendorConfig | None:
    """One vendor's table, or None after appending every problem (in the order of its keys)."""
    base = f"vendors.{name}"
    if not isinstance(raw, Mapping):
        problems.append(ConfigProblem(base, "must be a table of settings"))
        return None
    own_fields = [a.name for a in attrs.fields(cls.settings_class)]
    known = own_fields + list(VENDOR_COMMON_HELP)
    found = unknown_key_problems(
        raw,
        known,
        base,
        lambda key: (
            f"unknown setting for {name}{did_you_mean(key, known)}; "
            f"{name} takes: {', '.join(sorted(known))}"
        ),
    )
    common_keys = [k for k in raw if k in VENDOR_COMMON_HELP]
    common = structure_table(raw, CommonSettings, base, found, only=common_keys)
    own = {k: v for k, v in raw.items() if k in own_fields}
    unchecked = _waived_secrets(raw, cls, base, problems)
    own.update((key, Secret("")) for key in unchecked)
    settings = structure_table(own, cls.settings_class, base, found, unchecked=unchecked)
    purposes: tuple[str, ...] | None = None
    found += _against_destination(name, raw, cls, base, found)
    if "purposes" in raw:  # read from raw: said even when another common setting is wrong
        purposes = parse_vendor_purposes(raw["purposes"], f"{base}.purposes", consent, found)
    reported = {p.path for p in problems}  # e.g. an unset ${VAR}: said once
    found = [p for p in found if p.path not in reported]
    order_by_keys(found, raw, base)
    redact = _secrets_redactor(raw, cls)
    problems += redact(found)
    if found or settings is None or common is None:
        return None
    probe_problems = _probe(name, settings, common, cls, base)
    if unchecked:  # run on the placeholders: what they say of the secrets (or of the table as
        # a whole, which the plugin may say of an empty secret) waits until it is enabled
        waived = {base, *(f"{base}.{key}" for key in unchecked)}
        probe_problems = [p for p in probe_problems if p.path not in waived]
    problems += redact(probe_problems)
    if probe_problems:
        return None
    return VendorConfig(
        name=name,
        settings=settings,
        base_url=common.base_url,
        events=common.events,
        event_map=common.event_map if common.event_map is not None else {},
        enabled=common.enabled,
        rate_limit=common.rate_limit if isinstance(common.rate_limit, RateLimit) else None,
        rate_limit_disabled=common.rate_limit is False,
        concurrency=common.concurrency,
        timeout=common.timeout,
        batch_size=common.batch_size,
        linger=common.linger,
        retry=common.retry.over(cls.retry_policy) if common.retry is not None else None,
        purposes=purposes,
        dedupe_window=common.dedupe_window,
        unchecked_secrets=unchecked,
    )


def _waived_secrets(
    raw: Mapping[str, Any], cls: type[Destination], base: str, problems: list[ConfigProblem]
) -> tuple[str, ...]:
    """The secret settings of a table with ``enabled = false`` that have no value (absent, or
    an unset ``${NAME}``, which left an empty string and a problem at its key path, removed
    here): a user disables a vendor when its keys are not at hand. A value that is given is
    checked as ever; with the vendor enabled, nothing is waived."""
    if raw.get("enabled") is not False:
        return ()
    waived = tuple(
        a.name
        for a in attrs.fields(cls.settings_class)
        if (a.metadata or {}).get("secret")
        and (raw.get(a.name) == "" or (a.name not in raw and a.default is attrs.NOTHING))
    )
    paths = {f"{base}.{key}" for key in waived}
    problems[:] = [p for p in problems if p.path not in paths]
    return waived


def _against_destination(
    name: str,
    raw: Mapping[str, Any],
    cls: type[Destination],
    base: str,
    found: list[ConfigProblem],
) -> list[ConfigProblem]:
    """What the common settings may not be for this vendor (checked even when another
    setting is wrong, so that every problem is said at once)."""
    size = raw.get("batch_size")
    path = f"{base}.batch_size"
    if isinstance(size, int) and size > cls.max_batch_size and all(p.path != path for p in found):
        return [
            ConfigProblem(
                path,
                f"{name} takes at most {cls.max_batch_size} event(s) per request",
            )
        ]
    return []


def _probe(
    name: str, settings: Any, common: CommonSettings, cls: type[Destination], base: str
) -> list[ConfigProblem]:
    """The vendor's own whole-config checks, and: the events filter may only name events the
    vendor can map."""
    problems: list[ConfigProblem] = []
    try:
        probe = cls(settings, event_map=common.event_map)
    except ConfigError as exc:
        return [
            ConfigProblem(
                p.path if p.path.startswith(base) else (f"{base}.{p.path}" if p.path else base),
                p.message,
            )
            for p in exc.problems
        ]
    except ValueError as exc:
        return [ConfigProblem(base, str(exc))]
    except Exception as exc:  # a plugin's bug: said as a problem of its table, naming it
        return [_plugin_failed(name, "__init__", exc, base)]
    try:
        for key, message in probe.check_config():
            problems.append(ConfigProblem(f"{base}.{key}" if key else base, message))
    except Exception as exc:
        return [_plugin_failed(name, "check_config", exc, base)]
    for ev in sorted(common.events or ()):
        if probe.vendor_event_name(ev) is None:
            problems.append(
                ConfigProblem(
                    f"{base}.events",
                    f"{name} has no event for {ev!r}: add it to "
                    f"[vendors.{name}.event_map] or remove it from events",
                )
            )
    return problems


def _plugin_failed(name: str, step: str, exc: Exception, base: str) -> ConfigProblem:
    """The problem said for a destination that raised in ``step`` while its settings were
    checked: the exception's type (its text may quote a secret the plugin was handling: a
    credential in a URL is not a declared setting, so redaction would not find it), and whose
    bug it is."""
    return ConfigProblem(
        base,
        f"the {name} plugin failed in {step} ({type(exc).__name__}; its text is not shown, as "
        "it may quote a secret): a bug in the plugin, report it to its authors",
    )


def _secrets_redactor(
    raw: Mapping[str, Any], cls: type[Destination]
) -> Callable[[list[ConfigProblem]], list[ConfigProblem]]:
    """What takes the values of the table's secret settings (8 characters or more, as for a
    withheld ``POSTBACK_*`` value) out of its problems' messages: a plugin's validator,
    ``__init__`` or ``check_config`` may quote the key whose format it checks."""
    given = [
        raw.get(a.name)
        for a in attrs.fields(cls.settings_class)
        if (a.metadata or {}).get("secret")
    ]
    secrets = [
        value
        for found in given
        for value in (found if isinstance(found, list | tuple) else [found])  # list[Secret]
        if isinstance(value, str)
        and len(value) >= 8
        and value.isascii()  # (one that is not is refused, unquoted, by the core)
    ]
    if not secrets:
        return lambda found: found
    redactor = Redactor(secrets)
    return lambda found: [ConfigProblem(p.path, redactor.redact(p.message)) for p in found]


def events_filter_warnings(
    vendors: Mapping[str, VendorConfig],
    classes: Mapping[str, type[Destination]] | None = None,
) -> list[tuple[str, str]]:
    """``(key path, message)`` for each ``events`` entry that is no canonical event but close
    to one: for a vendor taking custom events it passes the checks, and the vendor then never
    gets the event meant (``purchse``: no purchase). A name the vendor maps (its config's
    ``event_map``, or its plugin's default one, from ``classes``: Whop's ``view_content``) is
    the vendor's own event, not a typo."""
    found = []
    for name, vc in vendors.items():
        cls = (classes or {}).get(name)
        defaults = cls.default_event_map if cls is not None else {}
        for ev in sorted(vc.events or ()):
            if ev in CANONICAL_EVENTS or ev in vc.event_map or ev in defaults:
                continue
            hint = did_you_mean(ev, CANONICAL_EVENTS)
            if hint:
                found.append(
                    (
                        f"vendors.{name}.events",
                        f"{ev!r} is no canonical event{hint}; as written, {name} gets only events "
                        f"tracked under that exact name (fix it if it is a typo)",
                    )
                )
    return found

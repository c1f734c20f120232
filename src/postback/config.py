"""Configuration: a TOML file, ``[tool.postback]`` in pyproject.toml, or a dict of the same shape.

::

    [postback]
    queue = "sqlite:///var/lib/myapp/postback.db"
    default_currency = "USD"

    [vendors.applovin]
    api_key = "${APPLOVIN_API_KEY}"
    pixel_id = "..."

Strings may reference environment variables as ``${NAME}`` or ``${NAME:-default}``, which is how
secrets should arrive. Loading reports *every* problem at once, each with its key path
(``vendors.x.hmac_key``), in one :class:`~postback.ConfigError`: unknown keys (with a "did you
mean"), wrong types, missing settings and secrets, vendors that are configured but not
installed (with the list of those that are).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import cattrs

from postback.consent import ConsentSettings, build_consent_settings, parse_vendor_purposes
from postback.dedupe import DEDUPE_HELP, parse_dedupe_window
from postback.destination import Destination, RateLimit, RetryPolicy, Secret
from postback.durations import parse_duration
from postback.errors import ConfigError, ConfigProblem
from postback.events import CANONICAL_EVENTS, normalize_currency, normalize_event_name
from postback.installing import missing_vendor_message
from postback.setting_values import control_character_problems, parse_rate_limit

if TYPE_CHECKING:
    from postback.delivery.registry import QueueRegistry

__all__ = [
    "Config", "CoreSettings", "VendorConfig", "build_config", "find_config", "parse_duration",
    "parse_rate_limit", "read_config", "settings_help",
]  # fmt: skip

DEFAULT_QUEUE = "sqlite://postback.db"
CONFIG_FILENAMES = ("postback.toml", "pyproject.toml")
_MAX_EXIT_TIMEOUT = 600.0  # seconds: [postback] exit_timeout
_MAX_TIMEOUT = 600.0  # seconds: a vendor's timeout for one request
_MAX_LINGER = 60.0  # seconds: a vendor's linger before sending a partial batch
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@attrs.frozen
class CoreSettings:
    """The ``[postback]`` table."""

    queue: str = DEFAULT_QUEUE
    on_invalid: str = "raise"
    strict: bool = False
    default_currency: str | None = None
    exit_timeout: float = 2.0
    workers: bool | str = "auto"
    max_queue_size: int = 100_000
    sqlite_synchronous: str = "normal"
    process_nice: int = 10
    ca_bundle: str | None = None
    ledger_retention: float = 7 * 86400.0
    ledger_max_entries: int = 1_000_000
    dead_letter_retention: float = 30 * 86400.0  # why 30 days: docs/explanation/privacy.md


CORE_HELP: dict[str, str] = {
    "queue": "Where events wait for delivery: 'sqlite:///abs/path.db', 'sqlite://rel/path.db' "
    "(relative to the config file), 'memory://', 'redis://host:6379/0', or a scheme an "
    "installed queue plugin registers.",
    "on_invalid": "What track() does with a malformed event: 'raise' (InvalidEvent listing "
    "every problem) or 'log' (log it; queue it for the vendors that took it).",
    "strict": "Make every skip (a vendor that cannot use an event as given) an InvalidEvent "
    "problem instead of leaving that vendor out; for development and tests (default false).",
    "default_currency": "ISO 4217 currency used when track() gets a value without currency.",
    "exit_timeout": "Seconds the exit hook spends flushing; the rest stays queued (default 2).",
    "workers": "Deliver from a worker process this process starts and stops ('process'), from "
    "background threads of this process (true, or 'thread'), or only enqueue, for a separate "
    "'postback worker' (false). The default, 'auto', is 'process' where that is safe (a "
    "sqlite:// queue, no transport or delivery hooks passed in-process, not under pytest) "
    "and threads otherwise.",
    "max_queue_size": "Bound of the memory:// queue (track() raises QueueFull beyond it).",
    "sqlite_synchronous": "'normal' (survives a process crash; the default) or 'full' "
    "(also survives power loss, slower).",
    "ca_bundle": "A PEM file (or a directory of them) of CA certificates to trust for the "
    "vendors' TLS, besides the default ones: a private CA, or a TLS-inspecting proxy's. "
    "Relative to the config file.",
    "ledger_retention": "How long the delivery ledger keeps each outcome (default '7d').",
    "dead_letter_retention": "How long a dead letter (an event a vendor refused, or that ran "
    "out of retries) is kept before the deliverer deletes it (default '30d').",
    "ledger_max_entries": "Most delivery ledger rows kept, oldest dropped first (default 1000000).",
    "process_nice": "With workers = 'process': how much lower the delivery process's CPU "
    "priority is than the app's (0-19, default 10; 0 for the same). When they compete for a "
    "core, the app's requests come first and delivery catches up after; events wait on disk.",
}

#: Settings every vendor takes, handled by the core.
VENDOR_COMMON_HELP: dict[str, str] = {
    "base_url": "Replaces the vendor's origin and keeps its path (sandbox, proxy, tests).",
    "events": "Only these canonical events go to the vendor (default: every event it maps).",
    "event_map": "Canonical event name -> the vendor's event name, overriding its defaults.",
    "enabled": "Set false to keep the table but send nothing to this vendor.",
    "rate_limit": "Requests per window, e.g. '600/minute' or '60000/15 minutes'; false for none.",
    "concurrency": "Requests in flight at once to this vendor.",
    "timeout": "Seconds to wait for the vendor's response (default 10).",
    "batch_size": "Events per request, at most the vendor's maximum.",
    "linger": "Seconds to wait for a fuller batch (default 0.05).",
    "retry": "Table: max_attempts, max_age, initial_backoff, max_backoff.",
    "purposes": "Consent purposes the vendor needs (default: the plugin's, ['ads']).",
    "dedupe_window": DEDUPE_HELP,
}
_RETRY_KEYS = ("max_attempts", "max_age", "initial_backoff", "max_backoff")


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

    def make_destination(self, cls: type[Destination]) -> Destination:
        return cls(self.settings, base_url=self.base_url, event_map=self.event_map)


@attrs.frozen
class Config:
    """A whole validated configuration."""

    core: CoreSettings
    vendors: Mapping[str, VendorConfig]
    consent: ConsentSettings = ConsentSettings()
    source: str | None = None
    base_dir: Path = attrs.field(factory=Path.cwd)
    #: The mapping it was built from, ``${ENV}`` references unresolved (a worker process
    #: builds its own from it). Never shown: it may hold literal secrets.
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


# --------------------------------------------------------------------------------------------
# Reading


def find_config(start: Path | None = None) -> Path | None:
    """``$POSTBACK_CONFIG``, else postback.toml or a pyproject.toml with [tool.postback]."""
    env = os.environ.get("POSTBACK_CONFIG")
    if env:
        return Path(env)
    here = start or Path.cwd()
    for name in CONFIG_FILENAMES:
        path = here / name
        if path.is_file():
            if name == "pyproject.toml":
                with path.open("rb") as f:
                    if "postback" not in tomllib.load(f).get("tool", {}):
                        continue
            return path
    return None


def read_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> tuple[dict[str, Any], str | None, Path]:
    """Read a config source into (raw dict of the TOML file's shape, label, base directory)."""
    if isinstance(source, Mapping):
        return dict(source), None, Path.cwd()
    if source is None:
        found = find_config()
        if found is None:
            raise ConfigError(
                [
                    "no configuration found: pass a file or dict to Tracker.from_config(), set "
                    "POSTBACK_CONFIG, or create postback.toml (see 'postback config check')"
                ]
            )
        source = found
    path = Path(source)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"config file {str(path)!r} does not exist"]) from None
    except IsADirectoryError:
        raise ConfigError(
            [f"config path {str(path)!r} is a directory: give the postback.toml file in it"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"config file {str(path)!r} cannot be read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source=str(path)) from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {}).get("postback")
        if tool is None:
            raise ConfigError(["pyproject.toml has no [tool.postback] table"], source=str(path))
        tool = dict(tool)
        vendors = tool.pop("vendors", {})
        data = {"postback": tool, "vendors": vendors}
    return data, str(path), path.resolve().parent


# --------------------------------------------------------------------------------------------
# Small parsers


def _did_you_mean(key: str, known: list[str]) -> str:
    hits = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {hits[0]!r}?)" if hits else ""


def _substitute_env(value: Any, path: str, problems: list[ConfigProblem]) -> Any:
    if isinstance(value, str):
        if "${" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            got = os.environ.get(name)
            if got is None or got == "":
                if default is not None:
                    return default
                problems.append(
                    ConfigProblem(
                        path,
                        f"environment variable {name} is not set: export {name}=... before "
                        "starting (secrets belong in the environment, not the file)",
                    )
                )
                return ""
            return got

        return _ENV_RE.sub(repl, value)
    if isinstance(value, Mapping):
        return {k: _substitute_env(v, f"{path}.{k}", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _make_settings_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def structure_secret(value: object, _: type) -> Secret:
        if isinstance(value, Secret):
            if control_character_problems(value.reveal()):
                raise ValueError("contains a line break or other control character: remove it")
            return value
        if not isinstance(value, str) or not value:
            raise ValueError('must be a non-empty string (usually "${ENV_VAR}")')
        return Secret(value)

    def structure_str(value: object, _: type) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # app ids written as TOML integers
        raise ValueError(f"must be a string, got {type(value).__name__}")

    def structure_int(value: object, _: type) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"must be an integer, got {type(value).__name__}")

    def structure_bool(value: object, _: type) -> bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"must be true or false, got {value!r}")

    def structure_float(value: object, _: type) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"must be a number, got {type(value).__name__}")

    conv.register_structure_hook(Secret, structure_secret)
    conv.register_structure_hook(str, structure_str)
    conv.register_structure_hook(int, structure_int)
    conv.register_structure_hook(bool, structure_bool)
    conv.register_structure_hook(float, structure_float)
    return conv


settings_converter = _make_settings_converter()


def _format_exception(exc: BaseException, type_: Any) -> str:
    """Say what is wrong with a setting in words a user can act on."""
    if isinstance(exc, KeyError):
        return "required field missing"
    args = [a for a in getattr(type_, "__args__", ()) if a is not type(None)]
    if len(args) == 1 and getattr(args[0], "__origin__", None) is Literal:
        type_ = args[0]  # Literal[...] | None: name the choices
    origin = getattr(type_, "__origin__", None)
    if origin is Literal or (
        type_ is not None and "Literal" in repr(type_) and hasattr(type_, "__args__")
    ):
        choices = ", ".join(repr(a) for a in getattr(type_, "__args__", ()))
        got = str(exc.args[0]).split(" not in literal", 1)[0] if exc.args else ""
        return f"must be one of {choices}" + (f" (got {got!r})" if got else "")
    if isinstance(exc, (ValueError, TypeError)) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return cattrs.v.format_exception(exc, type_)


def _cattrs_problems(exc: BaseException, path: str) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    if not isinstance(exc, cattrs.BaseValidationError):
        return [ConfigProblem(path, _format_exception(exc, None))]
    for msg in cattrs.transform_error(  # type: ignore[arg-type,unused-ignore]
        exc, path="$", format_exception=_format_exception
    ):
        text, _, where = msg.rpartition(" @ ")
        sub = where[2:] if where.startswith("$.") else ""
        full = f"{path}.{sub}" if sub else path
        if text == "required field missing":
            text = "required setting is missing"
        out.append(ConfigProblem(full, text))
    return out


def settings_help(cls: type[Any]) -> list[tuple[str, str, bool, str]]:
    """(name, help, secret, default) for each field of a vendor's settings class."""
    rows = []
    for a in attrs.fields(cls):
        meta = a.metadata or {}
        if a.default is attrs.NOTHING:
            default = "required"
        elif isinstance(a.default, attrs.Factory):  # type: ignore[arg-type,unused-ignore]
            default = repr(a.default.factory())  # type: ignore[attr-defined,unused-ignore]
        else:
            default = repr(a.default)
        rows.append((a.name, meta.get("help", ""), bool(meta.get("secret")), default))
    return rows


# --------------------------------------------------------------------------------------------
# Building


def _build_core(raw: object, problems: list[ConfigProblem], queues: QueueRegistry) -> CoreSettings:
    if raw is None:
        return CoreSettings()
    if not isinstance(raw, Mapping):
        problems.append(ConfigProblem("postback", "must be a table"))
        return CoreSettings()
    known = [a.name for a in attrs.fields(CoreSettings)]
    kwargs: dict[str, Any] = {}
    for key, val in raw.items():
        path = f"postback.{key}"
        if key not in known:
            problems.append(
                ConfigProblem(
                    path, f"unknown setting{_did_you_mean(key, known)}; known: {', '.join(known)}"
                )
            )
            continue
        try:
            if key in ("queue", "on_invalid", "sqlite_synchronous"):
                if not isinstance(val, str):
                    raise ValueError("must be a string")
                if key == "on_invalid" and val not in ("raise", "log"):
                    raise ValueError("must be 'raise' or 'log'")
                if key == "sqlite_synchronous" and val not in ("normal", "full"):
                    raise ValueError("must be 'normal' or 'full'")
                if key == "queue" and queues.backend_for(val) is None:
                    raise ValueError(queues.unknown_url_message(val))
                kwargs[key] = val
            elif key == "strict":
                if not isinstance(val, bool):
                    raise ValueError("must be true or false")
                kwargs[key] = val
            elif key == "default_currency":
                kwargs[key] = normalize_currency(val)
            elif key == "exit_timeout":  # bounded: it is how long a process may take to exit
                kwargs[key] = parse_duration(val, at_most=_MAX_EXIT_TIMEOUT)
            elif key in ("ledger_retention", "dead_letter_retention"):
                kwargs[key] = parse_duration(val)
            elif key == "workers":
                if not isinstance(val, bool) and val not in ("auto", "thread", "process"):
                    raise ValueError(
                        "must be 'auto' (the default), 'process', true (or 'thread') or false"
                    )
                kwargs[key] = True if val == "thread" else val
            elif key in ("max_queue_size", "ledger_max_entries"):
                if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                    raise ValueError("must be a positive integer")
                kwargs[key] = val
            elif key == "ca_bundle":
                if not isinstance(val, str) or not val.strip():
                    raise ValueError("must be the path of a PEM file of CA certificates")
                kwargs[key] = val
            elif key == "process_nice":
                if not isinstance(val, int) or isinstance(val, bool) or not 0 <= val <= 19:
                    raise ValueError("must be an integer from 0 (the app's priority) to 19")
                kwargs[key] = val
        except ValueError as exc:
            problems.append(ConfigProblem(path, str(exc)))
    return CoreSettings(**kwargs)


def _build_vendor(
    name: str,
    raw: object,
    cls: type[Destination],
    problems: list[ConfigProblem],
    consent: ConsentSettings | None = None,
) -> VendorConfig | None:
    base = f"vendors.{name}"
    if not isinstance(raw, Mapping):
        problems.append(ConfigProblem(base, "must be a table of settings"))
        return None
    own_fields = [a.name for a in attrs.fields(cls.settings_class)]
    known = own_fields + list(VENDOR_COMMON_HELP)
    own: dict[str, Any] = {}
    common: dict[str, Any] = {}
    n_before = len(problems)
    for key, val in raw.items():
        if key in VENDOR_COMMON_HELP:
            common[key] = val
        elif key in own_fields:
            own[key] = val
        else:
            problems.append(
                ConfigProblem(
                    f"{base}.{key}",
                    f"unknown setting for {name}{_did_you_mean(key, known)}; "
                    f"{name} takes: {', '.join(sorted(known))}",
                )
            )
    settings = _structure_settings(own, cls.settings_class, base, problems)

    kwargs: dict[str, Any] = {}
    for key, val in common.items():
        path = f"{base}.{key}"
        try:
            if key == "base_url":
                if not isinstance(val, str) or not re.match(r"^https?://[^/\s]+", val):
                    raise ValueError(
                        "must be an http(s) URL such as 'http://127.0.0.1:8090' "
                        "(the vendor's path is appended)"
                    )
                kwargs[key] = val.rstrip("/")
            elif key == "events":
                if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
                    raise ValueError("must be a list of event names, e.g. ['purchase']")
                kwargs[key] = frozenset(normalize_event_name(v) for v in val)
            elif key == "event_map":
                if not isinstance(val, Mapping) or not all(
                    isinstance(v, str) for v in val.values()
                ):
                    raise ValueError("must be a table of canonical name = vendor name")
                kwargs[key] = {normalize_event_name(k): v for k, v in val.items()}
            elif key == "enabled":
                if not isinstance(val, bool):
                    raise ValueError("must be true or false")
                kwargs[key] = val
            elif key == "rate_limit":
                if val is False or val == "none":
                    kwargs["rate_limit_disabled"] = True
                else:
                    kwargs[key] = parse_rate_limit(val)
            elif key == "concurrency":
                if not isinstance(val, int) or isinstance(val, bool) or not 1 <= val <= 256:
                    raise ValueError("must be an integer from 1 to 256")
                kwargs[key] = val
            elif key == "timeout":  # zero would deliver nothing
                kwargs[key] = parse_duration(val, positive=True, at_most=_MAX_TIMEOUT)
            elif key == "linger":
                kwargs[key] = parse_duration(val, at_most=_MAX_LINGER)
            elif key == "batch_size":
                if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                    raise ValueError("must be a positive integer")
                if val > cls.max_batch_size:
                    raise ValueError(
                        f"{name} takes at most {cls.max_batch_size} event(s) per request"
                    )
                kwargs[key] = val
            elif key == "retry":
                kwargs[key] = _build_retry(val, cls.retry_policy, path, problems)
            elif key == "purposes":
                kwargs[key] = parse_vendor_purposes(val, path, consent, problems)
            elif key == "dedupe_window":
                kwargs[key] = parse_dedupe_window(val)
        except ValueError as exc:
            problems.append(ConfigProblem(path, str(exc)))

    # The vendor's own whole-config checks, and: the events filter may only name events the
    # vendor can map.
    probe: Destination | None = None
    if settings is not None and len(problems) == n_before:
        try:
            probe = cls(settings, event_map=kwargs.get("event_map"))
        except ConfigError as exc:
            problems.extend(
                ConfigProblem(
                    p.path if p.path.startswith(base) else (f"{base}.{p.path}" if p.path else base),
                    p.message,
                )
                for p in exc.problems
            )
        except ValueError as exc:
            problems.append(ConfigProblem(base, str(exc)))
        if probe is not None:
            for key, message in probe.check_config():
                problems.append(ConfigProblem(f"{base}.{key}" if key else base, message))
    if probe is not None and "events" in kwargs:
        for ev in sorted(kwargs["events"]):
            if probe.vendor_event_name(ev) is None:
                problems.append(
                    ConfigProblem(
                        f"{base}.events",
                        f"{name} has no event for {ev!r}: add it to "
                        f"[vendors.{name}.event_map] or remove it from events",
                    )
                )
    if len(problems) > n_before or settings is None:
        return None
    return VendorConfig(name=name, settings=settings, **kwargs)


def _structure_settings(
    own: Mapping[str, Any], cls: type[Any], base: str, problems: list[ConfigProblem]
) -> Any:
    """Structure a vendor's settings; report type errors and then each field validator's
    error at the field's own key path (attrs validators run per field, not all-or-nothing)."""
    reported = {p.path for p in problems}
    for field in attrs.fields(cls):
        # cattrs would happily turn "abc" into ["a", "b", "c"] for a list setting.
        origin = getattr(field.type, "__origin__", None) or (
            field.type.split("[", 1)[0] if isinstance(field.type, str) else None
        )
        if origin in (list, tuple, set, frozenset, "list", "tuple", "set", "frozenset") and (
            isinstance(own.get(field.name), str)
        ):
            problems.append(
                ConfigProblem(
                    f"{base}.{field.name}",
                    'must be a list of strings, not a string: e.g. ["a", "b"]',
                )
            )
            return None
    try:
        with attrs.validators.disabled():
            settings = settings_converter.structure(own, cls)
    except Exception as exc:  # cattrs' grouped errors, or a converter's ValueError
        problems.extend(p for p in _cattrs_problems(exc, base) if p.path not in reported)
        return None
    ok = True
    for field in attrs.fields(cls):
        if field.validator is None:
            continue
        try:
            field.validator(settings, field, getattr(settings, field.name))
        except Exception as exc:  # a plugin's validator may raise any error type
            message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
            path = f"{base}.{field.name}"
            if path not in reported:
                problems.append(ConfigProblem(path, message))
            ok = False
    return settings if ok else None


def _build_retry(
    val: object, default: RetryPolicy, path: str, problems: list[ConfigProblem]
) -> RetryPolicy:
    if not isinstance(val, Mapping):
        raise ValueError(f"must be a table with {', '.join(_RETRY_KEYS)}")
    kw: dict[str, Any] = {}
    for k, v in val.items():
        if k not in _RETRY_KEYS:
            problems.append(
                ConfigProblem(
                    f"{path}.{k}", f"unknown setting{_did_you_mean(k, list(_RETRY_KEYS))}"
                )
            )
        elif k == "max_attempts":
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                problems.append(ConfigProblem(f"{path}.{k}", "must be a positive integer"))
            else:
                kw[k] = v
        else:
            try:
                kw[k] = parse_duration(v, positive=True)
            except ValueError as exc:
                problems.append(ConfigProblem(f"{path}.{k}", str(exc)))
    return attrs.evolve(default, **kw)


def build_config(
    raw: Mapping[str, Any],
    destinations: Mapping[str, type[Destination]],
    *,
    source: str | None = None,
    base_dir: Path | None = None,
    broken: Mapping[str, str] | None = None,
    queues: QueueRegistry | None = None,
) -> Config:
    """Validate a raw config against the installed destinations and queue backends (default:
    the built-in ones); raise ConfigError listing every problem."""
    if queues is None:
        from postback.delivery.registry import QueueRegistry

        queues = QueueRegistry.builtin()
    problems: list[ConfigProblem] = []
    original = raw
    raw = _substitute_env(raw, "", problems)
    # _substitute_env prefixes paths with "."; strip it.
    problems = [ConfigProblem(p.path.lstrip("."), p.message) for p in problems]
    problems += [ConfigProblem(k, m) for k, m in control_character_problems(raw)]
    for key in raw:
        if key not in ("postback", "vendors", "consent"):
            problems.append(
                ConfigProblem(
                    str(key),
                    "unknown top-level table"
                    f"{_did_you_mean(str(key), ['postback', 'vendors', 'consent'])}; "
                    "a config has [postback], [consent] and [vendors.NAME] tables",
                )
            )
    core = _build_core(raw.get("postback"), problems, queues)
    consent = build_consent_settings(raw.get("consent"), problems)
    if core.ca_bundle is not None:  # loaded once now, so that a bad file fails at start-up
        from postback.delivery.http import resolve_ca_bundle

        path, problem = resolve_ca_bundle(core.ca_bundle, base_dir or Path.cwd())
        if problem is not None:
            problems.append(ConfigProblem("postback.ca_bundle", problem))
        core = attrs.evolve(core, ca_bundle=path)
    backend = queues.backend_for(core.queue)
    if core.workers == "process" and backend is not None and not backend.capabilities.cross_process:
        shared = [f"{b.schemes[0]}://" for b in queues.backends if b.capabilities.cross_process]
        problems.append(
            ConfigProblem(
                "postback.workers",
                "'process' delivers from another process, which cannot read a "
                f"{backend.schemes[0]}:// queue (it is local to one process): use a queue "
                f"other processes share ({', '.join(shared)}), or workers = true",
            )
        )
    vendors_raw = raw.get("vendors", {})
    vendors: dict[str, VendorConfig] = {}
    if not isinstance(vendors_raw, Mapping):
        problems.append(ConfigProblem("vendors", "must be a table of [vendors.NAME] tables"))
        vendors_raw = {}
    installed = sorted(destinations)
    for name, table in vendors_raw.items():
        cls = destinations.get(name)
        if cls is None:
            why = ""
            if broken and name in broken:
                why = f"; its plugin is installed but failed to load: {broken[name]}"
            problems.append(
                ConfigProblem(f"vendors.{name}", missing_vendor_message(str(name), installed, why))
            )
            continue
        vc = _build_vendor(name, table, cls, problems, consent)
        if vc is not None:
            vendors[name] = vc
    if problems:
        raise ConfigError(problems, source=source)
    config = Config(core, vendors, consent, source, base_dir or Path.cwd())
    return attrs.evolve(config, raw=original)


def known_event_names() -> frozenset[str]:
    return CANONICAL_EVENTS

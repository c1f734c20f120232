"""Finding, reading and validating a whole configuration: :func:`find_config`,
:func:`read_config`, :func:`build_config` and the :class:`Config` they make.

:func:`build_config` resolves ``${NAME}`` references, lays the ``POSTBACK_*`` environment
overrides over the result (:mod:`postback.config.env`), refuses control characters anywhere,
then builds the ``[postback]`` (:mod:`~postback.config.core`), ``[consent]`` and
``[vendors.NAME]`` (:mod:`~postback.config.vendors`) tables, collecting every problem before it
raises one :class:`~postback.ConfigError`. A problem with a setting the environment set names
the variable too. With no file found and ``POSTBACK_*`` settings in the environment,
:func:`read_config` gives an empty config for the environment to fill (a twelve-factor
deployment needs no file).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from postback.config.core import CORE_HELP, CoreSettings, build_core
from postback.config.env import apply_overrides, substitute_env
from postback.config.structure import did_you_mean
from postback.config.vendors import CommonSettings, RetrySettings, VendorConfig, build_vendor
from postback.consent import ConsentSettings, build_consent_settings
from postback.destination import Destination
from postback.errors import ConfigError, ConfigProblem
from postback.events import CANONICAL_EVENTS
from postback.installing import missing_vendor_message
from postback.setting_values import control_character_problems

if TYPE_CHECKING:
    from postback.delivery.registry import QueueRegistry

__all__ = [
    "CONFIG_FILENAMES",
    "ENV_SOURCE",
    "Config",
    "build_config",
    "environment_settings",
    "find_config",
    "known_event_names",
    "read_config",
]

CONFIG_FILENAMES = ("postback.toml", "pyproject.toml")
#: The label (``Config.source``) of a configuration read from ``POSTBACK_*`` variables alone.
ENV_SOURCE = "the environment (POSTBACK_* variables)"
_TABLES = ["postback", "vendors", "consent"]
#: The largest config file read (a config is a few kilobytes; a bigger file is not one).
MAX_CONFIG_BYTES = 1 << 20


@attrs.frozen
class Config:
    """A whole validated configuration."""

    core: CoreSettings
    vendors: Mapping[str, VendorConfig]
    consent: ConsentSettings = ConsentSettings()
    source: str | None = None
    base_dir: Path = attrs.field(factory=Path.cwd)
    #: The mapping it was built from, ``${ENV}`` references unresolved, the environment's
    #: ``POSTBACK_*`` overrides laid over it (a worker process builds its own from it, with no
    #: overrides of its own: those its parent fixed, such as ``workers``, stay fixed). Never
    #: shown: it may hold literal secrets.
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)
    #: Key path -> the ``POSTBACK_*`` variable that set it (``postback config check`` says so).
    from_env: Mapping[str, str] = attrs.field(factory=dict, eq=False)


def find_config(start: Path | None = None) -> Path | None:
    """``$POSTBACK_CONFIG``, else postback.toml or a pyproject.toml with [tool.postback]."""
    env = os.environ.get("POSTBACK_CONFIG")
    if env:
        return Path(env)
    here = start or Path.cwd()
    for name in CONFIG_FILENAMES:
        path = here / name
        if path.is_file():
            if name == "pyproject.toml" and not _may_have_postback_table(path):
                continue
            return path
    return None


def _may_have_postback_table(path: Path) -> bool:
    """Whether a pyproject.toml has ``[tool.postback]``, or cannot be read to tell (then
    :func:`read_config` says what is wrong with it rather than the search passing it by)."""
    try:
        tool = tomllib.loads(_read_text(path)).get("tool", {})
    except (OSError, ValueError, ConfigError):  # TOMLDecodeError, UnicodeDecodeError, too big
        return True
    return not isinstance(tool, Mapping) or "postback" in tool


def environment_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``POSTBACK_*`` variables of ``environ`` (default: ``os.environ``) that set a
    setting, by name (``POSTBACK_CONFIG`` and other non-settings left out)."""
    _, from_env = apply_overrides({}, list(CORE_HELP), lambda _: None, [], environ)
    return sorted(from_env.values())


def read_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> tuple[dict[str, Any], str | None, Path]:
    """Read a config source into (raw dict of the TOML file's shape, label, base directory).

    ``None`` is the default search (:func:`find_config`). When it finds no file but
    ``POSTBACK_*`` variables set settings, the config is the environment alone: an empty
    mapping (``build_config`` lays the variables over it), labelled :data:`ENV_SOURCE`, with
    the current directory as base. When there is neither, a :class:`~postback.ConfigError`
    names both ways. A file named explicitly (argument or ``POSTBACK_CONFIG``) must exist.
    """
    if isinstance(source, Mapping):
        return dict(source), None, Path.cwd()
    if source is None:
        found = find_config()
        if found is None:
            if environment_settings():
                # A twelve-factor deployment: every setting from POSTBACK_* variables, which
                # build_config lays over this empty config.
                return {}, ENV_SOURCE, Path.cwd()
            raise ConfigError(
                [
                    "no configuration found: either give a file (pass it or a dict to "
                    "Tracker.from_config(), set POSTBACK_CONFIG, or create postback.toml or a "
                    "pyproject.toml with [tool.postback]) or set the settings in POSTBACK_* "
                    "environment variables (POSTBACK_QUEUE, "
                    "POSTBACK_VENDORS__NAME__API_KEY, ...: see docs/how-to/environment.md); "
                    "'postback config check' shows what was found"
                ]
            )
        source = found
    path = Path(source)
    try:
        data = tomllib.loads(_read_text(path))
    except FileNotFoundError:
        where = (
            ""
            if path.is_absolute()
            else f" (looked for {str(Path.cwd() / path)!r}: run from the directory that holds "
            "it, or give its full path)"
        )
        raise ConfigError([f"config file {str(path)!r} does not exist{where}"]) from None
    except IsADirectoryError:
        raise ConfigError(
            [f"config path {str(path)!r} is a directory: give the postback.toml file in it"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"config file {str(path)!r} cannot be read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source=str(path)) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; tomllib raises this, not its own error
        raise ConfigError(
            [f"not UTF-8 text (byte {exc.start}): save the file as UTF-8, as TOML requires"],
            source=str(path),
        ) from None
    if path.name == "pyproject.toml":
        tools = data.get("tool", {})
        tool = tools.get("postback") if isinstance(tools, Mapping) else tools
        if tool is None:
            raise ConfigError(["pyproject.toml has no [tool.postback] table"], source=str(path))
        if not isinstance(tool, Mapping):
            key = "tool.postback" if isinstance(tools, Mapping) else "tool"
            raise ConfigError([ConfigProblem(key, "must be a table")], source=str(path))
        tool = dict(tool)
        vendors = tool.pop("vendors", {})
        data = {"postback": tool, "vendors": vendors}
        if "consent" in tool:  # [tool.postback.consent]: the [consent] table
            data["consent"] = tool.pop("consent")
    return data, str(path), path.resolve().parent


def _read_text(path: Path) -> str:
    """The text of a config file, refused (:class:`~postback.ConfigError`) when it is not a
    regular file (``/dev/zero`` or a pipe would be read, or waited on, forever) or is larger
    than :data:`MAX_CONFIG_BYTES`; without a leading UTF-8 byte order mark. Raises ``OSError``
    and ``UnicodeDecodeError`` as reading does."""
    mode = path.stat().st_mode  # before opening: opening a pipe with no writer blocks
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(mode):
        raise ConfigError(
            [
                f"config path {str(path)!r} is not a regular file (it is a device, pipe or "
                "socket): give the path of a postback.toml or pyproject.toml file"
            ]
        )
    with path.open("rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)  # the file may have grown since stat()
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [
                f"config file {str(path)!r} is larger than 1 MiB, which no config is: check "
                "that POSTBACK_CONFIG (or the path given) names your postback.toml or "
                "pyproject.toml"
            ]
        )
    # A byte order mark (Notepad's, PowerShell 5's "UTF8") is no part of the text; tomllib
    # would refuse it as an "invalid statement" at line 1, column 1.
    return data.decode("utf-8-sig")


def _field_type(cls: type[Any], name: str) -> Any:
    try:
        field = attrs.fields_dict(attrs.resolve_types(cls)).get(name)
    except Exception:  # a plugin's annotation that does not resolve: read as TOML, or text
        return None
    return None if field is None else field.type


def _setting_type(path: tuple[str, ...], destinations: Mapping[str, type[Destination]]) -> Any:
    """The type of the setting at a key path, for typing an environment override."""
    if path[0] == "postback" and len(path) == 2:
        return _field_type(CoreSettings, path[1])
    if path[0] == "consent" and len(path) == 2:
        return _field_type(ConsentSettings, path[1])
    if path[0] == "vendors" and len(path) == 3:
        dest = destinations.get(path[1])
        common = _field_type(CommonSettings, path[2])
        if common is None and dest is not None:
            return _field_type(dest.settings_class, path[2])
        return common
    if path[0] == "vendors" and len(path) == 4 and path[2] == "retry":
        return _field_type(RetrySettings, path[3])
    return None


def _name_variables(
    problems: list[ConfigProblem],
    from_env: Mapping[str, str],
    raw: Mapping[str, Any],
    overlaid: Mapping[str, Any],
    environ: Mapping[str, str],
) -> list[ConfigProblem]:
    """Each problem with a setting an environment variable set (or a table only one made)
    names the variable, and withholds its value as a ``${NAME}``'s (:func:`_withheld`): a key
    exported under the wrong variable is refused without being quoted."""
    out = []
    for p in problems:
        key, var = next(
            (
                (k, v)
                for k, v in from_env.items()
                if p.path == k
                or p.path.startswith((f"{k}.", f"{k}["))
                or (k.startswith(f"{p.path}.") and not _in_file(raw, p.path))
            ),
            (None, None),
        )
        if key is None or var is None:
            out.append(p)
            continue
        # Its text, and the strings read from it (a TOML table is quoted as a dict).
        values = [environ.get(var, ""), *_strings(_at(overlaid, key))]
        [masked] = _withheld([p], values)
        hint = ""
        if not environ.get(var, "").replace(",", "").strip() and "list" in p.message:
            hint = "; it is empty: unset it for the default, or set it to [] for none"
        out.append(ConfigProblem(p.path, f"{masked.message} (set by {var}{hint})"))
    return out


#: Values from ``${NAME}`` this long or longer are masked in problems (a shorter one, a port or
#: a flag, is no secret, and quoting it helps).
_WITHHELD_FROM = 8


def _withheld(problems: list[ConfigProblem], supplied: list[str]) -> list[ConfigProblem]:
    """``problems`` with every value a ``${NAME}`` reference supplied masked: a secret put by
    mistake in a setting that is not one (``timeout = "${API_KEY}"``) is refused without being
    quoted."""
    from postback.redaction import Redactor

    long = [v for v in supplied if len(v) >= _WITHHELD_FROM]
    redactor = Redactor(v for v in long if _is_text(v))
    # A value with a byte that was not UTF-8 (the redactor's wire forms need text): masked
    # as it is and as a message quotes it (repr: the byte as an escape).
    others = [form for v in long if not _is_text(v) for form in (repr(v)[1:-1], v)]
    if not redactor and not others:
        return problems

    def withheld(message: str) -> str:
        message = redactor.redact(message) if redactor else message
        for form in others:
            message = message.replace(form, "***")
        return message

    return [ConfigProblem(p.path, withheld(p.message)) for p in problems]


def _is_text(value: str) -> bool:
    """Not a lone surrogate (a byte of a variable that was not UTF-8; refused on its own)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


_ABSENT = object()


def _at(raw: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """The value at a dotted key path (``default`` when there is none)."""
    node: Any = raw
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _strings(value: Any) -> list[str]:
    """Every string in a value read from a variable (``{ key = '...' }`` is quoted as a dict)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _in_file(raw: Mapping[str, Any], path: str) -> bool:
    """Whether the dotted key path is set (to anything, ``None`` included)."""
    return _at(raw, path, _ABSENT) is not _ABSENT


def build_config(
    raw: Mapping[str, Any],
    destinations: Mapping[str, type[Destination]],
    *,
    source: str | None = None,
    base_dir: Path | None = None,
    broken: Mapping[str, str] | None = None,
    queues: QueueRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate a raw config, with the ``POSTBACK_*`` overrides of ``environ`` (default:
    ``os.environ``), against the installed destinations and queue backends (default: the
    built-in ones); raise ConfigError listing every problem."""
    if queues is None:
        from postback.delivery.registry import QueueRegistry

        queues = QueueRegistry.builtin()
    problems: list[ConfigProblem] = []
    supplied: list[str] = []  # what ${NAME} references brought in: never quoted in a problem
    substituted = substitute_env(raw, "", problems, supplied)
    vendor_names = list(destinations)
    if isinstance(substituted.get("vendors"), Mapping):
        vendor_names = [str(n) for n in substituted["vendors"]] + vendor_names

    def overlay(
        mapping: Mapping[str, Any], verbatim: bool = False
    ) -> tuple[dict[str, Any], dict[str, str]]:
        return apply_overrides(
            mapping,
            list(CORE_HELP),
            lambda path: _setting_type(path, destinations),
            vendor_names,
            environ,
            verbatim=verbatim,
        )

    # What a worker process rebuilds from: ${NAME} unresolved, except in the variables' values.
    original, _ = overlay(raw, verbatim=True)
    raw, from_env = overlay(substituted)
    problems += [ConfigProblem(k, m) for k, m in control_character_problems(raw)]
    for key in raw:
        if key not in _TABLES:
            problems.append(
                ConfigProblem(
                    str(key),
                    f"unknown top-level table{did_you_mean(str(key), _TABLES)}; "
                    "a config has [postback], [consent] and [vendors.NAME] tables",
                )
            )
    core = build_core(raw.get("postback"), problems, queues)
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
        vc = build_vendor(name, table, cls, problems, consent)
        if vc is not None:
            vendors[name] = vc
    if problems:
        env = os.environ if environ is None else environ
        named = _name_variables(problems, from_env, substituted, raw, env)
        raise ConfigError(_withheld(named, supplied), source=source)
    return Config(
        core, vendors, consent, source, base_dir or Path.cwd(), raw=original, from_env=from_env
    )


def known_event_names() -> frozenset[str]:
    return CANONICAL_EVENTS

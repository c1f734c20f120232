"""What the environment adds to a config: ``${NAME}`` references, and per-setting overrides.

* :func:`substitute_env` replaces ``${NAME}`` and ``${NAME:-default}`` in every string of the
  config (how secrets arrive from a file); an unset variable without a default is a problem
  naming the key. The values it put in are masked in the config's problems (a secret put by
  mistake in a setting that is not one would otherwise be quoted in the error).
* :func:`apply_overrides` lays ``POSTBACK_*`` variables over the config, so that a 12-factor
  deployment can set any setting without a file: ``POSTBACK_QUEUE`` is ``[postback] queue``,
  and a double underscore nests, ``POSTBACK_VENDORS__APPLOVIN__API_KEY`` is
  ``[vendors.applovin] api_key`` (``POSTBACK_CONSENT__POLICY`` is ``[consent] policy``). The
  environment wins over the file (or dict). A single-word variable is an override only when it
  names a ``[postback]`` setting, so ``POSTBACK_CONFIG``, ``POSTBACK_DISABLE_PLUGINS``,
  ``POSTBACK_ENCRYPTION_KEYS`` and other tools' ``POSTBACK_*`` variables are left alone.

A value is typed like the file's: a setting whose type is a string (a secret, an id) takes the
variable's text as it is; any other is read as a TOML value (``true``, ``12``, ``["a", "b"]``,
``{ max_age = "2h" }``), and as its text when that is not TOML (``process``, ``2s``,
``600/minute``), a list also from comma-separated text (``purchase,sign_up``), never from
empty text (an empty list is ``[]``: an empty variable is refused, not a safeguard turned off).
"""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from postback.destination import Secret
from postback.errors import ConfigProblem

__all__ = ["ENV_PREFIX", "apply_overrides", "env_name", "environ_without", "substitute_env"]

ENV_PREFIX = "POSTBACK_"
_NESTED_TABLES = ("vendors", "consent")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(
    value: Any, path: str, problems: list[ConfigProblem], found: list[str] | None = None
) -> Any:
    """``value`` with every ``${NAME}`` replaced; a problem for each unset one. ``found``, if
    given, gets each value the environment supplied (possibly a secret, whatever setting it
    was put in: the config's problems never quote it)."""
    if isinstance(value, _Verbatim):  # a POSTBACK_* variable's text: never expanded
        return str(value)
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
            if found is not None:
                found.append(got)
            return got

        return _ENV_RE.sub(repl, value)
    if isinstance(value, Mapping):
        return {
            k: substitute_env(v, f"{path}.{k}" if path else str(k), problems, found)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute_env(v, f"{path}[{i}]", problems, found) for i, v in enumerate(value)]
    return value


class _Verbatim(str):
    """A string a ``POSTBACK_*`` variable gave: :func:`substitute_env` leaves it as it is, in
    this process and in the delivery child that rebuilds the config from ``Config.raw``."""

    __slots__ = ()


def _verbatim(value: Any) -> Any:
    if isinstance(value, str):
        return _Verbatim(value)
    if isinstance(value, Mapping):
        return {k: _verbatim(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_verbatim(v) for v in value]
    return value


def env_name(path: str) -> str:
    """The variable that overrides a key path: ``vendors.applovin.api_key`` ->
    ``POSTBACK_VENDORS__APPLOVIN__API_KEY``, ``postback.queue`` -> ``POSTBACK_QUEUE``."""
    parts = path.split(".")
    if parts[0] == "postback":
        parts = parts[1:]
    return ENV_PREFIX + "__".join(p.upper().replace("-", "_") for p in parts)


def environ_without(settings: Iterable[str]) -> dict[str, str]:
    """``os.environ`` without the variables of these ``[postback]`` settings: for a tool that
    fixes them itself (``postback worker`` delivers, whatever ``POSTBACK_WORKERS`` the app's
    environment holds)."""
    fixed = {env_name(f"postback.{name}") for name in settings}
    return {k: v for k, v in os.environ.items() if k not in fixed}


def _is_text(type_: Any) -> bool:
    """Whether a setting of this type takes a variable's text as it is."""
    args = [a for a in typing.get_args(type_) if a is not type(None)]
    if typing.get_origin(type_) in (typing.Union, types.UnionType) and len(args) == 1:
        type_ = args[0]
    return type_ in (str, Secret)


def _is_list(type_: Any) -> bool:
    args = [a for a in typing.get_args(type_) if a is not type(None)]
    if typing.get_origin(type_) in (typing.Union, types.UnionType) and len(args) == 1:
        type_ = args[0]
    return typing.get_origin(type_) in (list, tuple, set, frozenset)


def _typed(text: str, type_: Any) -> Any:
    if _is_text(type_):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if _is_list(type_):
        parts = [part.strip() for part in text.split(",") if part.strip()]
        # An empty variable (a deployment's unset placeholder) is not an empty list, which
        # would turn a safeguard off (Sec-GPC, a vendor's consent purposes, its events):
        # its text is refused as the setting's value; [] is how to say none.
        return parts or text
    return text


def apply_overrides(
    raw: Mapping[str, Any],
    core_settings: list[str],
    type_of: Callable[[tuple[str, ...]], Any],
    vendor_names: list[str],
    environ: Mapping[str, str] | None = None,
    *,
    verbatim: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """``raw`` with the ``POSTBACK_*`` overrides laid over it, and {key path: variable} of the
    settings they set. With ``verbatim``, the strings they put in are marked so that
    :func:`substitute_env` does not expand a ``${NAME}`` in them (``raw`` being unresolved).

    ``type_of(path)`` is the type of the setting at a key path (``None``: unknown);
    ``vendor_names`` are the names a ``VENDORS__NAME`` segment may mean (compared ignoring
    case, ``-`` written as ``_``)."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = dict(raw)
    overrides: dict[str, str] = {}
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX):
            continue
        parts = var[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) == 1:
            if parts[0] not in core_settings:
                continue  # POSTBACK_CONFIG, POSTBACK_DISABLE_PLUGINS, another tool's ...
            parts = ["postback", parts[0]]
        elif parts[0] not in _NESTED_TABLES or not all(parts[1:]):
            continue
        if parts[0] == "vendors":
            parts[1] = next(
                (n for n in vendor_names if n.lower().replace("-", "_") == parts[1]), parts[1]
            )
        path = tuple(parts)
        value = _typed(environ[var], type_of(path))
        if _set(out, path, _verbatim(value) if verbatim else value):
            overrides[".".join(path)] = var
    return out, overrides


def _set(table: dict[str, Any], path: tuple[str, ...], value: Any) -> bool:
    """Set ``path`` in nested tables, copying each one it changes; False when something that is
    not a table is in the way (the structuring reports it)."""
    head, *rest = path
    if not rest:
        table[head] = value
        return True
    inner = table.get(head, {})
    if not isinstance(inner, Mapping):
        return False
    copy = dict(inner)
    if _set(copy, tuple(rest), value):
        table[head] = copy
        return True
    return False

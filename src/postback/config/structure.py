"""One structuring path for every table of the config: ``[postback]``, the settings every vendor
takes, each vendor's own settings class, and nested tables such as ``retry``.

A table is an ``attrs`` class. :func:`structure_table` turns a raw mapping into an instance of
it field by field, so that *every* problem is reported, each at its own key path
(``vendors.x.retry.max_age``), in words a user can act on:

* each field's value is parsed by its ``parse`` metadata (a function raising ``ValueError``:
  durations, enums, rate limits ...) or else structured by :data:`settings_converter` from the
  field's type (strict: no ``"1"`` for an integer, no ``"abc"`` for a list of strings);
* a field whose type is itself an ``attrs`` class (``retry``) is a nested table, structured the
  same way, its unknown keys reported with a did-you-mean;
* then each field's ``attrs`` validator runs on its own, so that one bad value does not hide the
  next one.

:func:`unknown_key_problems` reports keys a table does not take; :func:`settings_help` lists a
table's fields for the docs, ``postback plugins`` and ``postback config check``.
"""

from __future__ import annotations

import datetime
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
import cattrs

from postback.destination import Secret
from postback.errors import ConfigProblem
from postback.setting_values import control_character_problems, secret_text_problem

__all__ = [
    "did_you_mean",
    "order_by_keys",
    "settings_converter",
    "settings_help",
    "structure_table",
    "unknown_key_problems",
]


def _make_settings_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def structure_secret(value: object, _: type) -> Secret:
        if isinstance(value, Secret):
            text = value.reveal()
            if control_character_problems(text):  # (a str is checked with the whole config)
                raise ValueError("contains a line break or other control character: remove it")
        elif isinstance(value, str) and value:
            text = value
        else:
            raise ValueError('must be a non-empty string (usually "${ENV_VAR}")')
        why = secret_text_problem(text)
        if why is not None:
            raise ValueError(why)
        return value if isinstance(value, Secret) else Secret(value)

    def structure_str(value: object, _: type) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # app ids written as TOML integers
        if isinstance(value, (datetime.date, datetime.time)):  # a date written without quotes
            quoted = f'"{value.isoformat()}"'
            raise ValueError(f"must be a string, and TOML reads it as a date: write {quoted}")
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


#: Structures a setting from its type; strict about what TOML can hold.
settings_converter = _make_settings_converter()


def did_you_mean(key: str, known: Iterable[str]) -> str:
    hits = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {hits[0]!r}?)" if hits else ""


def _format_exception(exc: BaseException, type_: Any) -> str:
    """Say what is wrong with a setting in words a user can act on."""
    if isinstance(exc, KeyError):
        return "required setting is missing"
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


def _problems_from(exc: BaseException, type_: Any, path: str) -> list[ConfigProblem]:
    if not isinstance(exc, cattrs.BaseValidationError):
        return [ConfigProblem(path, _format_exception(exc, type_))]
    out: list[ConfigProblem] = []
    for msg in cattrs.transform_error(  # type: ignore[arg-type,unused-ignore]
        exc, path="$", format_exception=_format_exception
    ):
        text, _, where = msg.rpartition(" @ ")
        sub = where[1:] if where.startswith("$") else ""
        out.append(ConfigProblem(f"{path}{sub}" if sub else path, text))
    return out


def _nested_class(type_: Any) -> type[Any] | None:
    """The attrs class a field holds as a nested table (``X`` or ``X | None``), if any."""
    args = [a for a in typing.get_args(type_) if a is not type(None)] or [type_]
    if (
        len(args) == 1
        and isinstance(args[0], type)
        and attrs.has(args[0])
        and args[0] is not Secret
    ):
        return args[0]
    return None


def _is_list(type_: Any) -> bool:
    args = [a for a in typing.get_args(type_) if a is not type(None)]
    if typing.get_origin(type_) in (typing.Union, types.UnionType) and len(args) == 1:
        type_ = args[0]  # list[str] | None
    return typing.get_origin(type_) in (list, tuple, set, frozenset)


def unknown_key_problems(
    raw: Mapping[Any, Any], known: Iterable[str], base: str, describe: Callable[[str], str] | None
) -> list[ConfigProblem]:
    """A problem for each key of ``raw`` that is not ``known``; ``describe(key)`` words it
    (default: "unknown setting (did you mean ...)")."""
    names = list(known)
    out = []
    for key in raw:
        if key not in names:
            text = describe(str(key)) if describe else f"unknown setting{did_you_mean(key, names)}"
            out.append(ConfigProblem(f"{base}.{key}", text))
    return out


def order_by_keys(problems: list[ConfigProblem], raw: Mapping[Any, Any], base: str) -> None:
    """Sort a table's problems (in place, stably) in the order its keys were written."""
    order = {str(k): i for i, k in enumerate(raw)}

    def rank(p: ConfigProblem) -> int:
        rest = p.path[len(base) + 1 :] if p.path.startswith(base + ".") else ""
        return order.get(rest.split(".", 1)[0].split("[", 1)[0], len(order))

    problems.sort(key=rank)


def structure_table(
    raw: Mapping[str, Any],
    cls: type[Any],
    base: str,
    problems: list[ConfigProblem],
    *,
    only: Iterable[str] | None = None,
    unchecked: Iterable[str] = (),
) -> Any:
    """``cls`` built from ``raw`` (keys ``cls`` does not take are the caller's to report, except
    in nested tables), or ``None`` after appending each problem with its key path.

    ``only`` limits the fields read (a vendor's table mixes the common settings and its own);
    the validators of the ``unchecked`` fields are not run (a disabled vendor's placeholder
    for a secret it was not given).
    """
    attrs.resolve_types(cls)
    reported = {p.path for p in problems}
    fields = [f for f in attrs.fields(cls) if only is None or f.name in set(only)]
    found: list[ConfigProblem] = []
    kwargs: dict[str, Any] = {}
    for field in fields:
        path = f"{base}.{field.name}"
        if field.name not in raw:
            if field.default is attrs.NOTHING:
                found.append(ConfigProblem(path, "required setting is missing"))
            continue
        value = raw[field.name]
        parse = (field.metadata or {}).get("parse")
        nested = _nested_class(field.type)
        try:
            if parse is not None:
                kwargs[field.name] = parse(value)
            elif nested is not None and not isinstance(value, Mapping):
                names = ", ".join(a.name for a in attrs.fields(nested))
                raise ValueError(f"must be a table with {names}")
            elif nested is not None:
                found += unknown_key_problems(value, attrs.fields_dict(nested), path, None)
                sub = structure_table(value, nested, path, found)
                if sub is not None:
                    kwargs[field.name] = sub
            elif _is_list(field.type) and isinstance(value, str):
                # cattrs would happily turn "abc" into ["a", "b", "c"].
                raise ValueError('must be a list of strings, not a string: e.g. ["a", "b"]')
            else:
                kwargs[field.name] = settings_converter.structure(value, field.type)
        except Exception as exc:  # a converter's grouped errors, or a parser's ValueError
            found += _problems_from(exc, field.type, path)
    found = [p for p in found if p.path not in reported]
    if found or len(kwargs) < sum(1 for f in fields if f.name in raw):
        problems += found
        return None
    try:
        with attrs.validators.disabled():
            instance = cls(**kwargs)
    except Exception as exc:  # a plugin's converter may raise anything
        problems.append(ConfigProblem(base, _format_exception(exc, None)))
        return None
    ok = True
    for field in fields:
        if field.validator is None or field.name in unchecked:
            continue
        try:
            field.validator(instance, field, getattr(instance, field.name))
        except Exception as exc:  # a plugin's validator may raise any error type
            message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
            path = f"{base}.{field.name}"
            if path not in reported:
                problems.append(ConfigProblem(path, message))
            ok = False
    return instance if ok else None


def settings_help(cls: type[Any]) -> list[tuple[str, str, bool, str]]:
    """(name, help, secret, default) for each field of a settings class."""
    rows = []
    for a in attrs.fields(cls):
        meta = a.metadata or {}
        if a.default is attrs.NOTHING:
            default = "required"
        elif isinstance(a.default, attrs.Factory):  # type: ignore[arg-type,unused-ignore]
            default = repr(a.default.factory())  # type: ignore[attr-defined,unused-ignore]
        else:
            default = repr(getattr(a.default, "value", a.default))  # an enum: its value
        rows.append((a.name, meta.get("help", ""), bool(meta.get("secret")), default))
    return rows

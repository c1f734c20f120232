"""Fields vendors declare: the ``user`` and ``context`` fields a destination adds to the event.

The canonical :class:`~postback.events.User` and :class:`~postback.events.Context` hold the
fields many vendors use. A field only one vendor uses (Ton AI's ``telegram_user_id``, Mobana's
``install_id``, AppLovin's ``aleid``) is declared by that vendor's destination instead, so a new
vendor with a new identifier needs no core release::

    from postback.plugin import Destination, user_field

    class TonAI(Destination):
        fields = (user_field("telegram_user_id", help="The Telegram user's numeric id."),)

This module has three jobs:

* :class:`EventField`, the declaration (made with :func:`user_field` / :func:`context_field`):
  a name, a ``type`` (``str``, or ``int`` for a numeric id) or a ``validator`` that
  normalises the value or raises ``ValueError`` saying how to fix it, help text, and whether
  the value identifies a person (``identifier``: masked like an id in a shown dead letter);
* :class:`FieldSet`, the fields one plugin host accepts: the core's plus those the installed
  destinations declare, merged once when the host starts (:meth:`FieldSet.of`). Two plugins
  may declare the same name when the declarations agree; when they do not, that is a
  :class:`~postback.PluginError` naming both;
* the message for an unknown field (:meth:`FieldSet.unknown`): a did-you-mean over the core and
  declared names, and, for a name a first-party plugin declares that is not installed, which
  distribution to install (:data:`KNOWN_ELSEWHERE`, kept in :mod:`postback.field_names` with
  the message, so that :func:`~postback.events.make_event` gives it without a field set).

A declared value goes through the same coercion as a core field (a string, or an integer or a
date turned into one; stripped; empty means absent) before its ``type`` and ``validator``.
It is stored in the event like a core field, so an event queued before its field moved out of
the core reads back unchanged.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from postback.errors import PluginError, brief_repr
from postback.events import CONTEXT_FIELDS, USER_FIELDS, Context, User, declare_names
from postback.field_names import KNOWN_ELSEWHERE, unknown_field

if TYPE_CHECKING:
    from postback.destination import Destination

__all__ = [
    "CORE_FIELDS",
    "KNOWN_ELSEWHERE",
    "EventField",
    "FieldSet",
    "context_field",
    "user_field",
]

Group = Literal["user", "context"]
#: Normalises a declared field's (already coerced and stripped) value, or raises ValueError.
Validator = Callable[[str], str]


def _check_name(instance: Any, attribute: Any, value: str) -> None:
    if (
        not isinstance(value, str)
        or not value.isidentifier()
        or keyword.iskeyword(value)
        or value.startswith("_")
        or value != value.lower()
    ):
        raise ValueError(
            f"a declared field's name must be a lower-case Python identifier not starting "
            f"with '_' (e.g. 'telegram_user_id'), got {value!r}"
        )


def _check_type(instance: Any, attribute: Any, value: object) -> None:
    if value is not str and value is not int:
        raise ValueError(f"a declared field's type is str or int, got {value!r}")


@attrs.frozen
class EventField:
    """A ``user`` or ``context`` field a destination adds to the canonical event.

    ``type``: ``str`` (the default: any text; an integer or a date is accepted and turned into
    text, like every core field) or ``int`` (a whole number, or a string of digits; stored as
    its digits). ``validator``: called with the value (after ``type``), returns the value to
    store (normalised) or raises ``ValueError`` whose message says what is wrong and how to
    fix it; ``track()`` reports it as a problem with ``user.NAME``. ``help``: one line for the
    reference and the did-you-mean. ``identifier``: the value can single out a person (an id,
    a click id), so it is masked like an id when postback shows a stored event (``postback
    deadletters show``); set False for a value that cannot (a funnel step).

    Two destinations may declare the same field when their declarations agree on everything but
    ``help``. Make one with :func:`user_field` or :func:`context_field`.
    """

    name: str = attrs.field(validator=_check_name)
    group: Group = attrs.field(validator=attrs.validators.in_(("user", "context")))
    help: str = attrs.field(validator=attrs.validators.instance_of(str))
    type: type[str] | type[int] = attrs.field(default=str, validator=_check_type)
    validator: Validator | None = None
    identifier: bool = True

    @property
    def path(self) -> str:
        """``user.NAME`` or ``context.NAME``, as problems name the field."""
        return f"{self.group}.{self.name}"

    def agrees_with(self, other: EventField) -> bool:
        """Whether two declarations of one name can both stand (help text aside)."""
        return (self.group, self.type, self.validator, self.identifier) == (
            other.group,
            other.type,
            other.validator,
            other.identifier,
        )

    def parse(self, value: str) -> str:
        """The value to store for ``value`` (coerced and stripped), or ValueError."""
        if self.type is int:
            digits = value[1:] if value[:1] in "+-" else value
            if not (digits.isascii() and digits.isdigit()):
                raise ValueError(f"must be a whole number, got {brief_repr(value)}")
            # the length first: int() of a 5000-digit string raises (or is slow)
            significant = digits.lstrip("0")  # int() counts leading zeros against its limit
            number = int(significant or "0") if len(significant) <= 19 else None
            if number is not None and value[:1] == "-":
                number = -number
            if number is None or not -(2**63) <= number < 2**63:
                raise ValueError(
                    f"is too large: {brief_repr(value)}; a number here is a signed 64-bit "
                    "integer (-9223372036854775808 to 9223372036854775807)"
                )
            value = str(number)
        if self.validator is not None:
            try:
                out: object = self.validator(value)
            except ValueError:
                raise
            except Exception as exc:  # a bug in the plugin, not a bad value
                raise PluginError(
                    f"the validator of {self.path} failed: {type(exc).__name__}: {exc} (it must "
                    "return the value to store or raise ValueError saying what is wrong)"
                ) from exc
            if not isinstance(out, str):
                raise PluginError(
                    f"the validator of {self.path} returned {type(out).__name__}; it must "
                    "return the value to store (a string) or raise ValueError"
                )
            value = out
        return value


def user_field(
    name: str,
    *,
    help: str,
    type: type[str] | type[int] = str,
    validator: Validator | None = None,
    identifier: bool = True,
) -> EventField:
    """Declare a ``user`` field (who did it): see :class:`EventField`."""
    return EventField(name, "user", help, type, validator, identifier)


def context_field(
    name: str,
    *,
    help: str,
    type: type[str] | type[int] = str,
    validator: Validator | None = None,
    identifier: bool = True,
) -> EventField:
    """Declare a ``context`` field (where it happened: a click id, a page): see
    :class:`EventField`."""
    return EventField(name, "context", help, type, validator, identifier)


_CORE: Mapping[str, frozenset[str]] = {
    "user": frozenset(USER_FIELDS),
    "context": frozenset(CONTEXT_FIELDS),
}


@attrs.frozen(eq=False)
class FieldSet:
    """The ``user`` and ``context`` fields one plugin host accepts: core and declared.

    ``user`` / ``context``: every accepted name. ``user_checks`` / ``context_checks``: the
    declared fields whose values need more than the common coercion (a ``type`` or a
    ``validator``), by name. ``declared``: every declaration by path (``user.install_id``),
    with ``owners``: the destinations (vendor names) that declare it.
    """

    user: frozenset[str]
    context: frozenset[str]
    user_checks: Mapping[str, EventField]
    context_checks: Mapping[str, EventField]
    declared: Mapping[str, EventField]
    owners: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, destinations: Iterable[type[Destination]]) -> FieldSet:
        """Merge the declarations of ``destinations`` (classes) over the core fields.

        Raises :class:`~postback.PluginError` when a destination declares a core field, or two
        declare one name in ways that disagree (naming both)."""
        declared: dict[str, EventField] = {}
        owners: dict[str, list[str]] = {}
        for dest in destinations:
            vendor = getattr(dest, "name", dest.__qualname__)
            for f in getattr(dest, "fields", ()):
                if not isinstance(f, EventField):
                    raise PluginError(
                        f"{vendor!r} declares {f!r} in 'fields'; declare each with "
                        "postback.plugin.user_field() or context_field()"
                    )
                if f.name in _CORE[f.group]:
                    raise PluginError(
                        f"{vendor!r} declares {f.path}, which is a core field of the event: "
                        "use the core field (remove it from 'fields')"
                    )
                if getattr(User if f.group == "user" else Context, f.name, None) is not None:
                    raise PluginError(
                        f"{vendor!r} declares {f.path}, which is the name of a method of the "
                        "event's fields; choose another name"
                    )
                seen = declared.get(f.path)
                if seen is not None and not seen.agrees_with(f):
                    raise PluginError(
                        f"{f.path} is declared by {owners[f.path][0]!r} and by {vendor!r} in "
                        f"ways that disagree ({_shape(seen)} vs {_shape(f)}); uninstall one, "
                        "disable it with POSTBACK_DISABLE_PLUGINS, or ask its authors to agree"
                    )
                if seen is None:
                    declared[f.path] = f
                    owners[f.path] = []
                if vendor not in owners[f.path]:
                    owners[f.path].append(vendor)
        for f in declared.values():  # read as None where not set (event.user.install_id)
            declare_names(User if f.group == "user" else Context, (f.name,))
        by_group: dict[str, list[EventField]] = {"user": [], "context": []}
        for f in declared.values():
            by_group[f.group].append(f)
        return cls(
            user=_CORE["user"] | {f.name for f in by_group["user"]},
            context=_CORE["context"] | {f.name for f in by_group["context"]},
            user_checks=_checks(by_group["user"]),
            context_checks=_checks(by_group["context"]),
            declared=declared,
            owners={path: tuple(v) for path, v in owners.items()},
        )

    def known(self, group: str) -> frozenset[str]:
        """Every name ``group`` (``user`` or ``context``) accepts."""
        return self.user if group == "user" else self.context

    def unknown(self, group: str, key: str) -> str:
        """Why ``key`` is not a ``group`` field, with how to fix it."""
        return unknown_field(group, key, self.known(group))


def _checks(fields: Iterable[EventField]) -> dict[str, EventField]:
    return {f.name: f for f in fields if f.type is not str or f.validator is not None}


def _shape(f: EventField) -> str:
    validator = getattr(f.validator, "__qualname__", None) if f.validator else None
    parts = [f"type {f.type.__name__}"]
    if validator:
        parts.append(f"validator {validator}")
    if not f.identifier:
        parts.append("not an identifier")
    return ", ".join(parts)


#: The core's fields alone (no plugin declares any): what :func:`~postback.events.make_event`
#: accepts when it is given no field set.
CORE_FIELDS = FieldSet.of(())

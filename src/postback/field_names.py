"""Why a user or context field name is refused, and what fixes it.

:func:`unknown_field` says it for :func:`postback.events.make_event` and
:class:`postback.fields.FieldSet`: the first-party plugin to install for a field that plugin
declares (:data:`KNOWN_ELSEWHERE`), else a did-you-mean against the names accepted. Only the
first :data:`UNKNOWN_NAMED` of a group are named so; :func:`more_unknown` counts the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from postback.errors import Problem, brief_str

__all__ = ["KNOWN_ELSEWHERE", "UNKNOWN_NAMED", "unknown_field", "unknown_problems"]

#: How many unknown fields of a group are named, each with its fix (a did-you-mean costs tens
#: of microseconds, and a request's dict can hold millions of keys): the rest are counted.
UNKNOWN_NAMED = 20

#: Fields the first-party plugins declare (:mod:`postback.fields`): ``(group, name) ->
#: distribution``, so that passing one without its plugin installed says what to install.
KNOWN_ELSEWHERE: Mapping[tuple[str, str], str] = {
    ("user", "install_id"): "postback-mobana",
    ("user", "telegram_user_id"): "postback-tonai",
    ("user", "member_id"): "postback-whop",
    ("context", "aleid"): "postback-applovin",
    ("context", "alart"): "postback-applovin",
    ("context", "axwrt"): "postback-applovin",
}


def unknown_field(group: str, key: str, known: frozenset[str]) -> str:
    """Why ``key`` is not a ``group`` field (``known``: the names accepted), and the fix: the
    plugin to install for a field a first-party plugin declares, else a did-you-mean."""
    elsewhere = KNOWN_ELSEWHERE.get((group, key))
    if elsewhere is not None:
        return (
            f"unknown {group} field: the {elsewhere} plugin declares it, and it is not loaded "
            f"(pip install {elsewhere}; or see POSTBACK_DISABLE_PLUGINS and `postback plugins`)"
        )
    import difflib  # only when a field is refused: not at every start-up

    hits = difflib.get_close_matches(key, sorted(known), n=1)
    guess = f"; did you mean {hits[0]!r}?" if hits else ""
    return f"unknown {group} field{guess} (known fields: {', '.join(sorted(known))})"


def unknown_problems(
    group: str, keys: Sequence[object], why: Callable[[str, str], str]
) -> list[Problem]:
    """The problems of a ``group``'s unknown ``keys``: the first :data:`UNKNOWN_NAMED` each
    named with ``why`` (its fix), the rest counted in one."""
    named = [Problem(f"{group}.{k}", why(group, k)) for k in map(brief_str, keys[:UNKNOWN_NAMED])]
    if len(keys) > UNKNOWN_NAMED:
        more = len(keys) - UNKNOWN_NAMED
        named.append(Problem(group, f"and {more} more unknown {group} fields (not listed)"))
    return named

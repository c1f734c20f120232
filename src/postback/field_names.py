"""Why a user or context field name is refused, and what fixes it.

:func:`unknown_field` says it for :func:`postback.events.make_event` and
:class:`postback.fields.FieldSet`: the first-party plugin to install for a field that plugin
declares (:data:`KNOWN_ELSEWHERE`), else a did-you-mean against the names accepted.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["KNOWN_ELSEWHERE", "unknown_field"]

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

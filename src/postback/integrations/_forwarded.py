"""The RFC 7239 ``Forwarded`` header: the ``for=`` node of each element.

``Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`` lists one element per
proxy, left to right like ``X-Forwarded-For``; each element is ``;``-separated ``name=value``
pairs, and a value may be a quoted string (which may hold ``,`` ``;`` and ``\\``-escapes).
A node is an address (an IPv6 one in brackets, either with a port), ``unknown``, or an
obfuscated identifier (``_hidden``); only an address names a client.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["forwarded_for"]

#: A quoted string, a quote that no quote closes (a malformed header), a run of plain
#: characters, or a separator.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|"|[^",;]+|[,;]').findall
_ESCAPE = re.compile(r"\\(.)")


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return _ESCAPE.sub(r"\1", value[1:-1])
    return value


def forwarded_for(values: Sequence[str]) -> list[str | None] | None:
    """The ``for=`` node of every element of the ``Forwarded`` header lines, in order; None
    when a line is malformed (a quote that nothing closes), which then names no client.

    An element without ``for=`` gives ``None`` (a hop that says nothing about its client);
    empty elements (``a, , b``) are not hops and are skipped. Node names are case-insensitive.
    An unclosed quote is refused rather than read to the end of the line: the client writes
    the start of the line, and its quote would swallow the elements the proxies appended
    after it (``for=6.6.6.6, for="`` then ``, for=<the real client>``), forging the address.
    """
    nodes: list[str | None] = []
    for value in values:
        pair = ""
        node: str | None = None
        element = False  # the element has any content
        tokens = _TOKENS(value)
        if '"' in tokens:
            return None
        for part in [*tokens, ","]:
            if part not in (",", ";"):
                pair += part
                continue
            if pair.strip():
                element = True
                name, eq, val = pair.partition("=")
                if eq and name.strip().lower() == "for":
                    node = _unquote(val.strip()) or None
            pair = ""
            if part == ",":
                if element:
                    nodes.append(node)
                node, element = None, False
    return nodes

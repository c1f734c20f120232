"""The dashboard's own request and response values, so its views know no web framework.

Each adapter (:mod:`~postback.dashboard.wsgi`, :mod:`~postback.dashboard.asgi`,
:mod:`~postback.dashboard.frameworks`) turns its framework's request into a :class:`Request`
and writes the :class:`Response` back; the views in :mod:`~postback.dashboard.app` see only these.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

import attrs

__all__ = ["SECURITY_HEADERS", "Request", "Response", "parse_cookies", "parse_form"]

#: Sent with every response: no framing, no referrer, no caching, scripts and styles from the
#: dashboard's own origin only (there is no inline script or style to allow).
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)

MAX_FORM_BYTES = 64 * 1024


@attrs.frozen
class Request:
    """What a view needs of an HTTP request. ``path`` is relative to where the dashboard is
    mounted (always starts with ``/``); ``prefix`` is that mount point (``""`` at the root)."""

    method: str
    path: str
    prefix: str = ""
    query: Mapping[str, str] = attrs.field(factory=dict)
    form: Mapping[str, str] = attrs.field(factory=dict)
    cookies: Mapping[str, str] = attrs.field(factory=dict)
    #: The ``Origin`` header, if the browser sent one (checked on POST).
    origin: str | None = None
    #: The ``Host`` header.
    host: str = ""


@attrs.frozen
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    def all_headers(self) -> list[tuple[str, str]]:
        own = any(k == "Cache-Control" for k, _ in self.headers)
        cache = [] if own else [("Cache-Control", "no-store")]
        return [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            *SECURITY_HEADERS,
            *self.headers,
            *cache,
        ]


def _first(values: Mapping[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in values.items() if v}


def parse_query(query_string: str) -> dict[str, str]:
    return _first(parse_qs(query_string, keep_blank_values=True))


def parse_form(body: bytes, content_type: str | None) -> dict[str, str]:
    """A urlencoded form body (the only kind the dashboard's forms send)."""
    if not content_type or not content_type.startswith("application/x-www-form-urlencoded"):
        return {}
    text = body[:MAX_FORM_BYTES].decode("utf-8", "replace")
    return _first(parse_qs(text, keep_blank_values=True))


def parse_cookies(header: str | None) -> dict[str, str]:
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:
        return {}
    return {k: m.value for k, m in jar.items()}

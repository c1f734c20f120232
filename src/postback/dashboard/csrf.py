"""CSRF protection for the dashboard's POST forms: a signed double-submit cookie.

A browser gets a random ``postback_csrf`` cookie (HttpOnly, SameSite=Strict, scoped to the
dashboard's path) on its first page. Each form carries ``HMAC(key, cookie)``; a POST is accepted
only when the cookie is present and the form's token matches it, and, when the browser sends an
``Origin`` header, it names this host. The key is random per :class:`Dashboard` unless given
(several processes behind one load balancer need the same one).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from postback.dashboard.http import Request

__all__ = ["COOKIE", "CsrfGuard"]

COOKIE = "postback_csrf"


class CsrfGuard:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def __repr__(self) -> str:
        return "<CsrfGuard>"

    def cookie_value(self, request: Request) -> tuple[str, bool]:
        """The browser's cookie value, and whether it is new (to be set on the response)."""
        value = request.cookies.get(COOKIE, "")
        if len(value) == 43 and value.replace("-", "").replace("_", "").isalnum():
            return value, False
        return secrets.token_urlsafe(32), True

    def token(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode(), hashlib.sha256).hexdigest()

    def set_cookie_header(self, cookie: str, path: str) -> tuple[str, str]:
        return (
            "Set-Cookie",
            f"{COOKIE}={cookie}; Path={path or '/'}; HttpOnly; SameSite=Strict",
        )

    def problem(self, request: Request) -> str | None:
        """Why this POST must be refused, or None when it carries a valid token."""
        origin = request.origin
        if origin and origin != "null" and urlsplit(origin).netloc != request.host:
            return "the request came from another site (Origin does not match Host)"
        cookie = request.cookies.get(COOKIE)
        sent = request.form.get("csrf_token", "")
        if not cookie:
            return "no CSRF cookie: reload the page and submit the form again"
        # As bytes: compare_digest refuses a str that is not ASCII (a forged form would 500).
        if not hmac.compare_digest(self.token(cookie).encode(), sent.encode("utf-8", "replace")):
            return "the form's CSRF token is missing or stale: reload the page and try again"
        return None

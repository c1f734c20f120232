"""Redaction: one helper that removes every configured secret from text before it is shown.

Every text that leaves the delivery path goes through a :class:`Redactor` built from a
destination's secret settings: log lines, dead-letter reasons (stored in the queue), delivery
notes, ``postback deadletters show`` and ``postback send --dry-run``. It removes each secret
in the forms it can take in a request or an echoed response:

* as given, and its JSON-escaped form (a body echoing ``"key": "a\\"b"``);
* percent-encoded, as OAuth 1.0a (RFC 3986: everything but ``A-Za-z0-9-._~``) and as form
  data (``+`` for space) encode it, in either hex case (``%2B`` / ``%2b``);
* base64, as a Basic ``Authorization`` header carries it;
* the credential of any ``Authorization: Bearer|Basic ...`` echoed in the text, whatever it is.

A snippet cut *before* it was redacted can end with the first characters of a secret (a long
400 body cut at 500 characters): a trailing prefix of a secret's form, four characters or more,
is removed too. Callers still redact before truncating (:meth:`Redactor.snippet`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "Redactor", "secret_forms"]

#: What a secret is replaced with.
MASK = "***"
# The shortest trailing prefix of a secret's form that is removed from a cut snippet.
_MIN_PREFIX = 4
_AUTH_RE = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{4,}")
_TRAILER = " .…"  # what a truncating caller appends ("...", "…")


def secret_forms(secret: str) -> set[str]:
    """The forms of ``secret`` that can appear in a request or a vendor's echo of it."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms.add(quote(secret, safe="~"))  # OAuth 1.0a percent-encoding
    forms.add(quote_plus(secret))  # form-encoded
    forms.add(quote(secret, safe=""))
    raw = secret.encode("utf-8", "surrogatepass")
    forms.add(base64.b64encode(raw).decode("ascii"))
    forms.add(base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="))
    forms.add(base64.b64encode(raw).decode("ascii").rstrip("="))
    return {f for f in forms if f}


class Redactor:
    """Removes a fixed set of secrets, in every form :func:`secret_forms` lists, from text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for s in secrets:
            if s:
                forms |= secret_forms(s)
        self._forms = sorted(forms, key=len, reverse=True)  # longest first: no partial masks
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in self._forms), re.IGNORECASE)
            if self._forms
            else None
        )

    def __bool__(self) -> bool:
        return bool(self._forms)

    def redact(self, text: str) -> str:
        """``text`` with every secret form, echoed credential and trailing secret prefix masked."""
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
            text = self._cut_prefix(text)
        return _AUTH_RE.sub(rf"\1\2{MASK}", text)

    def snippet(self, text: str, limit: int = 500) -> str:
        """Redact ``text``, collapse its whitespace, then cut it to ``limit`` characters."""
        text = " ".join(self.redact(text).split())
        return text if len(text) <= limit else text[:limit] + "..."

    def _cut_prefix(self, text: str) -> str:
        body = text.rstrip(_TRAILER)
        tail = text[len(body) :]
        for form in self._forms:
            for k in range(len(form) - 1, _MIN_PREFIX - 1, -1):
                if body.endswith(form[:k]):
                    return body[: len(body) - k] + MASK + tail
        return text

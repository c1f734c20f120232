"""Redaction: one helper that removes every configured secret from text before it is shown.

Every text that leaves the delivery path goes through a :class:`Redactor` built from a
destination's secret settings: log lines, dead-letter reasons (stored in the queue), delivery
notes, ``postback deadletters show`` and ``postback send --dry-run``. It removes each secret
in the forms it can take in a request or an echoed response:

* as given, and its JSON-escaped form (a body echoing ``"key": "a\\"b"``);
* percent-encoded, as OAuth 1.0a (RFC 3986: everything but ``A-Za-z0-9-._~``) and as form
  data (``+`` for space) encode it, in either hex case (``%2B`` / ``%2b``), and encoded again
  (``%252B``: an OAuth 1.0a signature base string, a URL echoed in a URL's query);
* base64, as a Basic ``Authorization`` header carries it;
* any of those as a vendor's error body may escape it when it echoes the request, in any mix
  and nested (JSON inside HTML, JSON inside JSON): backslash escapes (PHP's ``\\/``, ``\\"``),
  ``\\uXXXX`` and ``\\xXX`` escapes in either hex case (Gson's ``\\u003d`` for ``=``, Go's
  ``\\u0026`` ``\\u003c`` ``\\u003e``), HTML entities, named (``&amp;``, ``&quot;``,
  ``&sol;``) or numeric (``&#61;``, ``&#x27;``);
* the credential of any ``Authorization: Bearer|Basic ...`` echoed in the text, whatever it is
  (its ``+ / =`` escaped as above, too).

Escapes are matched by decoding, not by listing every mix: a text holding a backslash, an ``&``
or a ``%`` (``%XX`` of an ASCII character is decoded too) is also matched with its escapes
decoded (three rounds: an escape escaped again, twice), and what matches there is masked in the
text as written. Escapes stand for punctuation and the like, not for letters and digits: only
the parts of the text around a secret form's longest run of letters and digits, written as is,
are decoded (all of it for a secret without one). A text with no backslash, ``&`` or ``%`` (the
common case: a short reason) costs what it did: one regex search; the last text redacted (up to
2 KiB) is answered again from memory, as each event of a rejected batch brings the same reason.

A snippet cut *before* it was redacted can end with the first characters of a secret (a long
400 body cut at 500 characters): a trailing prefix of a secret's form, four characters or more,
is removed too, escaped or not (with any escape cut in half at the end). Callers still redact
before truncating (:meth:`Redactor.snippet`).
"""

from __future__ import annotations

import base64
import html
import json
import re
from bisect import bisect_right
from collections.abc import Iterable
from html.entities import html5
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "Redactor", "secret_forms"]

#: What a secret is replaced with.
MASK = "***"
# The shortest trailing prefix of a secret's form that is removed from a cut snippet.
_MIN_PREFIX = 4
# A token character of a credential, or an escape of one of its + / = (JSON, Gson, HTML).
_AUTH_CHAR = (
    r"(?:[A-Za-z0-9._~+/=-]|\\+/|\\+u00(?:2[bBfF]|3[dD])"
    r"|&\#(?:0*(?:43|47|61)|[xX]0*(?:2[bBfF]|3[dD]));|&(?:plus|sol|equals);)"
)
_AUTH_RE = re.compile(rf"(?i)\b(bearer|basic)(\s+){_AUTH_CHAR}{{4,}}")
_AUTH_KEY_RE = re.compile(r"(?i)\b(?:bearer|basic)\s+")
_AUTH_TOKEN_RE = re.compile(rf"(?i){_AUTH_CHAR}{{4,}}")
_TRAILER = " .…"  # what a truncating caller appends ("...", "…")
# One escape, as echoed in JSON (any number of backslashes: JSON in JSON), JavaScript or
# HTML (an entity maybe escaped again: "\&quot;", "&amp;quot;").
_ESCAPE_RE = re.compile(
    r"""
    (?<!\\)  # at the start of a run of backslashes only: linear in a run of them
    (?:
      \\+u([dD][89abAB][0-9a-fA-F]{2})\\+u([dD][c-fC-F][0-9a-fA-F]{2})  # a surrogate pair
    | \\+u([0-9a-fA-F]{4})
    | \\+x([0-9a-fA-F]{2})
    | \\+([bfnrt])
    | \\*&(?:amp;)*\#(?:([0-9]{1,7})|[xX]([0-9a-fA-F]{1,6}));?
    | \\*&(?:amp;)*([A-Za-z][A-Za-z0-9]{1,31};)
    | \\+([^0-9A-Za-z\s])
    | %([0-7][0-9a-fA-F])  # percent-encoded again (%252B): ASCII only, a byte is not a char
    )
    """,
    re.VERBOSE,
)
_SHORT = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# An escape cut in half at the end of a snippet ("...\u00", "...&#6").
_PARTIAL_RE = re.compile(
    r"(?:(?<!\\)\\+(?:u[0-9a-fA-F]{0,3}|x[0-9a-fA-F]?)?|&(?:amp;)*#?[xX]?[0-9A-Za-z]{0,8}"
    r"|%[0-9a-fA-F]?)\Z"
)
_ROUNDS = 3  # decoding rounds: an escape escaped again, twice
_MAX_ESCAPE = 16  # the most characters an escape of one character takes, for a cut text
_MEMO_CHARS = 2048  # the longest text whose redaction is kept for the next call
_ALNUM_RE = re.compile(r"[A-Za-z0-9]+")


def _u_escaped(text: str, fmt: str) -> str:
    """``text`` with every character but ASCII letters and digits written as ``fmt``."""
    out = []
    for c in text:
        code = ord(c)
        if c.isascii() and c.isalnum():
            out.append(c)
        elif code > 0xFFFF and fmt.startswith("\\u"):  # a UTF-16 surrogate pair, as JSON
            hi, lo = divmod(code - 0x10000, 0x400)
            out.append(fmt % (0xD800 + hi) + fmt % (0xDC00 + lo))
        else:
            out.append(fmt % code)
    return "".join(out)


def secret_forms(secret: str) -> set[str]:
    """The forms of ``secret`` that can appear in a request or a vendor's echo of it.

    :class:`Redactor` masks these and any other mix of the escapes listed in this module's
    description (it decodes them rather than listing every combination)."""
    forms = _wire_forms(secret)
    escaped: set[str] = set()
    for f in forms:
        if f.isascii() and f.isalnum():
            continue
        escaped.add(f.replace("/", "\\/"))  # PHP's json_encode
        escaped.add(_u_escaped(f, "\\u%04x"))  # Gson, Go (and every other character)
        escaped.add(_u_escaped(f, "\\u%04X"))
        escaped.add(html.escape(f))  # &amp; &lt; &gt; &quot; &#x27;
        escaped.add(html.escape(f).replace("&#x27;", "&#39;"))
        escaped.add(_u_escaped(f, "&#%d;"))
    return forms | {f for f in escaped if f}


def _wire_forms(secret: str) -> set[str]:
    """The forms of ``secret`` a request carries (what :class:`Redactor` matches literally)."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms.add(quote(secret, safe="~"))  # OAuth 1.0a percent-encoding
    forms.add(quote_plus(secret))  # form-encoded
    forms.add(quote(secret, safe=""))
    raw = secret.encode("utf-8", "surrogatepass")
    forms.add(base64.b64encode(raw).decode("ascii"))
    forms.add(base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="))
    forms.add(base64.b64encode(raw).decode("ascii").rstrip("="))
    return {f for f in forms if f}


class _Decoded:
    """``text`` with one round of escapes decoded, and the way back to ``text``'s offsets."""

    __slots__ = ("at", "spans", "text")

    def __init__(self, text: str) -> None:
        pieces: list[str] = []
        self.spans: list[tuple[int, int, int, int]] = []  # decoded start, length; raw start, end
        self.at: list[int] = []  # the decoded starts, for bisect
        raw = out = 0
        for m in _ESCAPE_RE.finditer(text):
            char = _unescape(m)
            if char is None:
                continue
            pieces.append(text[raw : m.start()])
            out += m.start() - raw
            self.spans.append((out, len(char), m.start(), m.end()))
            self.at.append(out)
            pieces.append(char)
            out += len(char)
            raw = m.end()
        pieces.append(text[raw:])
        self.text = "".join(pieces)

    def start(self, i: int) -> int:
        """Where the decoded character ``i`` starts in the raw text."""
        k = bisect_right(self.at, i) - 1
        if k < 0:
            return i
        out, n, raw, end = self.spans[k]
        return raw if i < out + n else end + (i - out - n)

    def end(self, j: int) -> int:
        """Where the decoded characters up to ``j`` (excluded) end in the raw text."""
        k = bisect_right(self.at, j - 1) - 1
        if k < 0:
            return j
        out, n, _, end = self.spans[k]
        return end if j - 1 < out + n else end + (j - out - n)


def _unescape(m: re.Match[str]) -> str | None:
    hi, lo, u, x, short, dec, hexa, name, char, pct = m.groups()
    if pct is not None:
        return chr(int(pct, 16))
    if hi is not None:
        return chr(0x10000 + ((int(hi, 16) - 0xD800) << 10) + int(lo, 16) - 0xDC00)
    if u is not None or x is not None:
        return chr(int(u or x, 16))
    if short is not None:
        return _SHORT[short]
    if dec is not None or hexa is not None:
        code = int(dec, 10) if dec is not None else int(hexa, 16)
        return chr(code) if 0 < code <= 0x10FFFF else None
    if name is not None:
        return html5.get(name)
    return char


class Redactor:
    """Removes a fixed set of secrets, in every form :func:`secret_forms` lists (and every mix
    of the escapes it lists), from text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for s in secrets:
            if s:
                forms |= _wire_forms(s)
        self._forms = sorted(forms, key=len, reverse=True)  # longest first: no partial masks
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in self._forms), re.IGNORECASE)
            if self._forms
            else None
        )
        # Escapes only stand for punctuation and the like: a form matches once decoded only
        # where its longest run of letters and digits is written as is. Decoding (a Python
        # loop over the escapes) runs only then: a long escaped body without a secret costs
        # one more regex search. A form without letters or digits: always decoded.
        anchors = {max(_ALNUM_RE.findall(f), key=len, default="") for f in self._forms}
        self._anchors = (
            re.compile("|".join(re.escape(a) for a in anchors), re.IGNORECASE)
            if self._forms and "" not in anchors
            else None
        )
        self._last = ("", "")
        # How far an escaped form can reach: around a run of its letters and digits, and from
        # the end of a cut text (for a trailing prefix).
        self._reach = _MAX_ESCAPE * max((len(f) for f in self._forms), default=0)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def redact(self, text: str) -> str:
        """``text`` with every secret form, echoed credential and trailing secret prefix masked."""
        if not text:
            return text
        if len(text) > _MEMO_CHARS:
            return self._redact(text)
        last = self._last  # a batch's reason is redacted once per event: the last is kept
        if last[0] == text:
            return last[1]
        shown = self._redact(text)
        self._last = (text, shown)
        return shown

    def _redact(self, text: str) -> str:
        if self._pattern is not None:
            if "\\" in text or "&" in text or "%" in text:  # maybe escaped: decode where it matters
                text = self._redact_escaped(text)
            else:
                text = self._cut_prefix(self._pattern.sub(MASK, text))
        return _AUTH_RE.sub(rf"\1\2{MASK}", text)

    def snippet(self, text: str, limit: int = 500) -> str:
        """Redact ``text``, collapse its whitespace, then cut it to ``limit`` characters."""
        text = " ".join(self.redact(text).split())
        return text if len(text) <= limit else text[:limit] + "..."

    def _redact_escaped(self, text: str) -> str:
        # Decode up to _ROUNDS times; mask, in the raw text, what matches as written or in
        # any round (all at once: a shorter form matched as written, such as base64 without
        # its padding, cannot hide the longer one its escapes decode to).
        assert self._pattern is not None
        spans = [m.span() for m in self._pattern.finditer(text)]
        # Echoed credentials, found in the text as written (before any mask can hide their
        # keyword, and a keyword right after another one still counts).
        for keyword in _AUTH_KEY_RE.finditer(text):
            token = _AUTH_TOKEN_RE.match(text, keyword.end())
            if token is not None:
                spans.append(token.span())
        for left, right in self._windows(text):
            chain: list[_Decoded] = []
            current = text[left:right]
            for _ in range(_ROUNDS):
                decoded = _Decoded(current)
                if not decoded.spans:
                    break
                chain.append(decoded)
                current = decoded.text
                for m in self._pattern.finditer(current):
                    start, end = _raw_span(chain, m.start(), m.end())
                    spans.append((left + start, left + end))
        # A trailing prefix, as written or decoded, maybe followed by an escape cut in half.
        body = text.rstrip(_TRAILER)
        cut = self._prefix_start(body)
        if cut is None:
            left = max(0, len(body) - self._reach)
            partial = _PARTIAL_RE.search(body, left)
            current = body[left : partial.start()] if partial else body[left:]
            if partial:
                cut = self._prefix_start(current)
            chain = []
            for _ in range(_ROUNDS):
                if cut is not None:
                    break
                decoded = _Decoded(current)
                if not decoded.spans:
                    break
                chain.append(decoded)
                current = decoded.text
                k = self._prefix_start(current)
                if k is not None:
                    cut = _raw_span(chain, k, len(current))[0]
            if cut is not None:
                cut += left
        if cut is not None:
            spans.append((cut, len(body)))
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        pos = 0
        for start, end in spans:
            if end <= pos:
                continue
            if start >= pos:
                out.append(text[pos:start])
                out.append(MASK)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _windows(self, text: str) -> list[tuple[int, int]]:
        """The parts of ``text`` worth decoding: around each run of a form's letters and
        digits, as far as the form can reach escaped (all of it if a form has none)."""
        if self._anchors is None:
            return [(0, len(text))]
        windows: list[tuple[int, int]] = []
        reach = self._reach
        for m in self._anchors.finditer(text):
            left, right = max(0, m.start() - reach), m.end() + reach
            if windows and left <= windows[-1][1]:
                windows[-1] = (windows[-1][0], right)
            else:
                windows.append((left, right))
        return windows

    def _prefix_start(self, body: str) -> int | None:
        """Where a trailing prefix of a secret form (``_MIN_PREFIX`` or more) starts in ``body``."""
        if not body:
            return None
        last = body[-1]
        for form in self._forms:
            # Only where the form has the body's last character (rfind runs in C).
            i = form.rfind(last, 0, len(form) - 1)
            while i >= _MIN_PREFIX - 1:
                if body.endswith(form[: i + 1]):
                    return len(body) - i - 1
                i = form.rfind(last, 0, i)
        return None

    def _cut_prefix(self, text: str) -> str:
        body = text.rstrip(_TRAILER)
        cut = self._prefix_start(body)
        if cut is None:
            return text
        return body[:cut] + MASK + text[len(body) :]


def _raw_span(chain: list[_Decoded], start: int, end: int) -> tuple[int, int]:
    """A span of the last decoding in ``chain``, in the raw text's offsets."""
    for decoded in reversed(chain):
        start, end = decoded.start(start), decoded.end(end)
    return start, end

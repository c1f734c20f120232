"""A local emulation of Mobana's ``POST /conversion`` for ``postback sandbox`` and tests.

What it checks, in order (each failure answers as noted; Mobana's own error bodies are not
documented, so they follow the shape ``{"success": false, "error": ..., "message": ...}``):

* path ``/conversion`` (else 404) and method ``POST`` (else 405);
* header ``X-App-Key`` equal to the configured ``app_key`` (missing or wrong: **401**
  ``Unauthorized``, as Mobana's API docs say for an invalid or missing key);
* ``Content-Type: application/json`` (else 415) and a JSON object body (else 400);
* ``installId``: a non-empty string of at most 36 characters (else 400); ``name``: a non-empty
  string (else 400); ``value``: a finite number if present; ``flowSessionId``: a non-empty
  string if present; ``timestamp``: whole epoch *milliseconds* if present (a value in seconds
  is refused, as a client bug); no other fields (else 400).

The real Mobana logs invalid requests and still answers ``{"success": true}`` ("silent
success"); the emulator is stricter on malformed requests so that client bugs show in tests.
Like Mobana, it answers ``{"success": true}`` for a conversion name that is not configured:
such conversions are recorded in :attr:`received` with ``"configured": False``. Non-repeatable
conversion types count once per install (``"counted": False`` for repeats).

Triggering errors: an ``installId`` of the form ``00000000-0000-0000-0000-000000000NNN``, where
NNN is one of 400, 401, 403, 404, 408, 422, 429, 500, 502, 503 or 504, makes the emulator answer
that status (429 and 503 with ``Retry-After: 1``). ``00000000-0000-0000-0000-000000000200`` gets
a 200 whose body lacks ``"success": true``. For other faults (latency, hangs, garbage bodies)
use the sandbox's fault injection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import orjson

from postback.plugin import Emulator

__all__ = ["DEMO_APP_KEY", "MobanaEmulator"]

DEMO_APP_KEY = "sandbox-mobana-app-key-a1b2c3d4"

#: Conversion types the demo app has "configured in the Dashboard".
DEFAULT_CONVERSIONS: frozenset[str] = frozenset(
    {
        "signup", "sign_up", "login", "purchase", "subscribe", "add_to_cart", "begin_checkout",
        "add_payment_info", "lead", "tutorial_complete", "level_achieved", "achievement_unlocked",
        "spent_credits", "share", "invite", "rate", "search", "view_item", "install",
    }
)  # fmt: skip
#: Of those, the types Mobana counts once per install ("non-repeatable").
DEFAULT_NON_REPEATABLE: frozenset[str] = frozenset(
    {"signup", "sign_up", "install", "tutorial_complete"}
)

_ERROR_PREFIX = "00000000-0000-0000-0000-000000000"
_ERROR_STATUSES = {200, 400, 401, 403, 404, 408, 422, 429, 500, 502, 503, 504}
_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 415: "Unsupported Media Type",
    422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}  # fmt: skip
_FIELDS = frozenset({"installId", "name", "value", "flowSessionId", "timestamp"})
_MIN_TIMESTAMP_MS = 978_307_200_000  # 2001-01-01 in ms; smaller values are seconds


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        json={"success": False, "error": _REASONS.get(status, "Error"), "message": message},
        headers=dict(headers or {}),
    )


class MobanaEmulator(Emulator):
    """Mobana's ``/conversion`` endpoint, in memory (see the module docs for the rules)."""

    vendor = "mobana"

    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        *,
        conversions: Iterable[str] = DEFAULT_CONVERSIONS,
        non_repeatable: Iterable[str] = DEFAULT_NON_REPEATABLE,
    ) -> None:
        super().__init__(settings)
        #: Conversion types configured in the emulated Dashboard.
        self.conversions = frozenset(conversions)
        #: Types counted once per install.
        self.non_repeatable = frozenset(non_repeatable)
        self._counted: set[tuple[str, str]] = set()

    @classmethod
    def demo_settings(cls) -> dict[str, Any]:
        """Sandbox-only values (never a real key). The fixed rates are for the demo only."""
        return {
            "app_id": "a1b2c3d4",
            "app_key": DEMO_APP_KEY,
            "currency": "USD",
            "rates": {"EUR": "1.08", "GBP": "1.27"},
        }

    @classmethod
    def demo_rejection(cls) -> dict[str, Any] | None:
        """An event this emulator refuses as the vendor would, for ``postback demo``."""
        return {"name": "sign_up", "user": {"install_id": "00000000-0000-0000-0000-000000000422"}}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.rstrip("/") != "/conversion":
            return _error(404, f"no such endpoint: {request.url.path}")
        if request.method != "POST":
            return _error(405, "use POST /conversion", {"allow": "POST"})
        key = request.headers.get("x-app-key")
        if not key or key != str(self.settings.get("app_key")):
            return _error(401, "Invalid or missing X-App-Key header")
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            return _error(415, f"Content-Type must be application/json, got {ctype!r}")
        try:
            body = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            return _error(400, "body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        problem = _check_body(body)
        if problem:
            return _error(400, problem)

        install_id: str = body["installId"]
        if install_id.startswith(_ERROR_PREFIX):
            status = int(install_id[len(_ERROR_PREFIX) :] or 0)
            if status in _ERROR_STATUSES:
                if status == 200:
                    return httpx.Response(200, json={"received": True})
                retry = {"retry-after": "1"} if status in (429, 503) else None
                return _error(status, f"emulated {status} (special installId)", retry)

        name: str = body["name"]
        configured = name in self.conversions
        counted = configured
        if configured and name in self.non_repeatable:
            counted = (install_id, name) not in self._counted
            self._counted.add((install_id, name))
        self.received.append(
            {
                "event_id": None,  # Mobana's wire format carries no event id
                "name": name,
                "install_id": install_id,
                "value": body.get("value"),
                "flow_session_id": body.get("flowSessionId"),
                "timestamp": body.get("timestamp"),
                "configured": configured,
                "counted": counted,
            }
        )
        return httpx.Response(200, json={"success": True})


def _check_body(body: Mapping[str, Any]) -> str | None:
    """What is wrong with a conversion body, or None."""
    extra = sorted(set(body) - _FIELDS)
    if extra:
        return f"unknown field(s): {', '.join(extra)}"
    install_id = body.get("installId")
    if install_id is None:
        return "installId is required"
    if not isinstance(install_id, str) or not install_id or len(install_id) > 36:
        return "installId must be a non-empty string of at most 36 characters"
    name = body.get("name")
    if name is None:
        return "name is required"
    if not isinstance(name, str) or not name.strip():
        return "name must be a non-empty string"
    if "value" in body:
        value = body["value"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return "value must be a number"
    if "flowSessionId" in body:
        flow = body["flowSessionId"]
        if not isinstance(flow, str) or not flow:
            return "flowSessionId must be a non-empty string"
    if "timestamp" in body:
        ts = body["timestamp"]
        if (
            isinstance(ts, bool)
            or not isinstance(ts, int | float)
            or not math.isfinite(ts)
            or ts != int(ts)
        ):
            return "timestamp must be a whole number of milliseconds since the Unix epoch"
        if ts < _MIN_TIMESTAMP_MS:
            return "timestamp must be Unix epoch milliseconds (this looks like seconds)"
    return None

"""A local emulation of Ton AI's conversion endpoint, for ``postback sandbox`` and tests.

Ton AI documents only the success answer (HTTP 200 ``{"status": "success"}``). Every error
answer below is **emulated**: a plausible shape of our design, not Ton AI's documented one::

    {"status": "error", "code": "<CODE>", "message": "<what is wrong>"}
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import orjson

from postback.plugin import Emulator
from postback_tonai.destination import CONVERSION, PRODUCTS, check_telegram_user_id

__all__ = ["MAGIC_USER_IDS", "TonAIEmulator"]

#: telegramUserId values that make the emulator answer an error (all valid Telegram ids, so the
#: client sends them): id -> (HTTP status, code, message).
MAGIC_USER_IDS: dict[str, tuple[int, str, str]] = {
    "9990000200": (200, "DUPLICATE_CONVERSION", "conversion already reported for this user"),
    "9990000400": (400, "USER_NOT_ATTRIBUTED", "this user did not come from a Ton AI campaign"),
    "9990000403": (403, "FORBIDDEN", "this App Key may not report conversions"),
    "9990000429": (429, "RATE_LIMITED", "too many requests; retry later"),
    "9990000500": (500, "INTERNAL_ERROR", "internal server error"),
    "9990000503": (503, "SERVICE_UNAVAILABLE", "service temporarily unavailable"),
}


def _error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"status": "error" if status != 200 else "fail", "code": code, "message": message}
    return httpx.Response(status, json=body, headers=headers or None)


class TonAIEmulator(Emulator):
    """Ton AI's ``POST /api/v2/openapi/{exchange|ad}/event/report/conversion``.

    It answers HTTP 200 ``{"status": "success"}`` to a well-formed conversion and appends it to
    :attr:`received` as ``{"event_id": None, "name": "conversion", "telegram_user_id": ...,
    "product": "exchange" | "ad", "body": <the JSON body>}`` (the wire format carries no event
    id). Repeated conversions for one user are all accepted (whether Ton AI deduplicates them
    is not documented).

    How a client triggers each (emulated) error:

    - 404 ``NOT_FOUND``: any other path, e.g. a product other than ``exchange`` or ``ad``.
    - 405 ``METHOD_NOT_ALLOWED``: a method other than POST.
    - 401 ``UNAUTHORIZED``: no ``x-api-key`` header, or not the emulator's ``api_key``
      (``demo_settings()["api_key"]`` unless the emulator was given other settings).
    - 415 ``UNSUPPORTED_MEDIA_TYPE``: a ``content-type`` other than ``application/json``.
    - 400 ``INVALID_JSON``: a body that is not JSON.
    - 400 ``INVALID_EVENT``: a body other than exactly ``{"eventType": "conversion",
      "eventData": {"telegramUserId": "<digits>"}}``: a missing or extra field at either level,
      another ``eventType``, or a ``telegramUserId`` that is not a string of digits (a number
      is refused too: Ton AI documents it as a string).
    - Magic ``telegramUserId`` values (see :data:`MAGIC_USER_IDS`): ``9990000400`` -> 400
      ``USER_NOT_ATTRIBUTED``; ``9990000403`` -> 403 ``FORBIDDEN``; ``9990000429`` -> 429
      ``RATE_LIMITED`` with ``Retry-After: 1``; ``9990000500`` -> 500; ``9990000503`` -> 503;
      ``9990000200`` -> HTTP 200 ``{"status": "fail", "code": "DUPLICATE_CONVERSION", ...}``.
    """

    vendor: ClassVar[str] = "tonai"

    @classmethod
    def demo_settings(cls) -> dict[str, Any]:
        # Sandbox-only: Ton AI never issued this key.
        return {"api_key": "sandbox-tonai-app-key-7Qm2xV9c", "product": "exchange"}

    @classmethod
    def demo_rejection(cls) -> dict[str, Any] | None:
        """An event this emulator refuses as the vendor would, for ``postback demo``."""
        return {"name": "sign_up", "user": {"telegram_user_id": "9990000400"}}

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        product = self._product(path)
        if product is None:
            return _error(404, "NOT_FOUND", f"no route for {path}")
        if request.method != "POST":
            return _error(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed; use POST")
        key = request.headers.get("x-api-key")
        if not key or key != self.settings.get("api_key"):
            return _error(401, "UNAUTHORIZED", "missing or invalid x-api-key")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", "content-type must be application/json")
        try:
            body = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            return _error(400, "INVALID_JSON", "request body is not valid JSON")
        problem = _check_body(body)
        if problem is not None:
            return _error(400, "INVALID_EVENT", problem)
        telegram_id: str = body["eventData"]["telegramUserId"]
        magic = MAGIC_USER_IDS.get(telegram_id)
        if magic is not None:
            status, code, message = magic
            headers = {"retry-after": "1"} if status == 429 else {}
            return _error(status, code, message, **headers)
        self.received.append(
            {
                "event_id": None,
                "name": CONVERSION,
                "telegram_user_id": telegram_id,
                "product": product,
                "body": body,
            }
        )
        return httpx.Response(200, json={"status": "success"})

    @staticmethod
    def _product(path: str) -> str | None:
        for product in PRODUCTS:
            if path == f"/api/v2/openapi/{product}/event/report/conversion":
                return product
        return None


def _check_body(body: object) -> str | None:
    """What is wrong with a conversion body, or ``None``."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if set(body) != {"eventType", "eventData"}:
        extra = sorted(set(body) - {"eventType", "eventData"})
        missing = sorted({"eventType", "eventData"} - set(body))
        return _fields_message("body", missing, extra)
    if body["eventType"] != CONVERSION:
        return f'eventType must be "{CONVERSION}"'
    data = body["eventData"]
    if not isinstance(data, dict):
        return "eventData must be an object"
    if set(data) != {"telegramUserId"}:
        extra = sorted(set(data) - {"telegramUserId"})
        missing = sorted({"telegramUserId"} - set(data))
        return _fields_message("eventData", missing, extra)
    telegram_id = data["telegramUserId"]
    if not isinstance(telegram_id, str):
        return "eventData.telegramUserId must be a string"
    if check_telegram_user_id(telegram_id) is not None:
        return "eventData.telegramUserId must be a Telegram user id (digits)"
    return None


def _fields_message(where: str, missing: list[str], extra: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing field(s) {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected field(s) {', '.join(extra)}")
    return f"{where}: {'; '.join(parts)}"

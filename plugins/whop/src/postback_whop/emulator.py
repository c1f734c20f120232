"""A local emulation of Whop's ``POST /api/v1/events`` and ``POST /api/v1/conversions``.

It checks requests the way Whop's contract describes them (DIGEST.md, Whop section, and
``specs/whop_conversions_events_fragment.openapi.json``) and answers as Whop does:

- ``Authorization: Bearer <api_key>`` must carry the emulator's key, else **401**
  ``{"error": {"type": "unauthorized", "message": "Invalid or missing API key"}}``.
- ``account_id`` (events) or ``company_id`` (conversions) is required (**400**
  ``parameter_missing``) and must be the emulator's account, else **403** ``forbidden``.
- The body must be a JSON object (**400** ``invalid_json``) with only the fields the path's
  shape accepts, typed as the contract says: ``event_name`` (the enum on ``/conversions``),
  ``custom_name`` when ``event_name`` is ``custom`` (at most 35 characters),
  ``action_source``, ``currency`` (lower-case, the shape's list), ``value`` a number,
  ``event_time`` ISO 8601, ``user.gender`` male|female, ``user.birthdate`` YYYY-MM-DD, and the
  ``context``/``user`` fields of that shape. A violation is **400** with
  ``code`` ``parameter_missing`` or ``parameter_invalid`` and the ``param``.
- ``Idempotency-Key`` (at most 255 bytes): a key that already succeeded gets the stored
  response again (header ``idempotent-replayed: true``) and is not recorded twice. An
  ``event_id`` seen before is answered with its first id and not recorded twice either.
- Success: **200** ``{"id": "evnt_..."}`` (the id is derived from the account and event id,
  so it is deterministic).

Triggers for the other documented answers (by ``event_id`` prefix or id value):

==========================================  ================================================
``event_id`` starts with ``whop-429``        first request **429** ``rate_limit_exceeded``
                                             "Try again in N seconds." (N =
                                             :attr:`WhopEmulator.retry_seconds`, default 1),
                                             then accepted
``event_id`` starts with ``whop-409``        first request **409** ``conflict``, then accepted
``event_id`` starts with ``whop-500``        first request **500**, then accepted
``event_id`` starts with ``whop-422``        always **422** ``unprocessable_entity``
                                             (``param`` ``event_id``)
``plan_id`` starts with ``plan_missing``     **404** ``not_found`` (``param`` ``plan_id``)
``product_id`` starts with ``prod_missing``  **404** ``not_found`` (``param`` ``product_id``)
any other ``account_id`` / ``company_id``    **403** ``forbidden``
a wrong or missing key                       **401** ``unauthorized``
==========================================  ================================================

The ``type`` strings of 400/404/409/422/500 are this emulator's choice: Whop documents the
shape of the error body and the ``unauthorized``, ``forbidden`` and ``rate_limit_exceeded``
types, not the others. Whop's contract also allows unauthenticated calls to ``/events`` (its
browser pixel); the emulator, like a server-side integration, requires the key.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import date, datetime
from typing import Any

import httpx
import orjson

from postback.plugin import Emulator
from postback_whop.vocab import (
    ACTION_SOURCES,
    CONVERSIONS_CONTEXT_FIELDS,
    CONVERSIONS_CURRENCIES,
    CONVERSIONS_EVENT_NAMES,
    CONVERSIONS_TOP_FIELDS,
    CONVERSIONS_USER_FIELDS,
    CUSTOM_NAME_MAX,
    EVENTS_CONTEXT_FIELDS,
    EVENTS_CURRENCIES,
    EVENTS_TOP_FIELDS,
    EVENTS_USER_FIELDS,
    GENDERS,
    IDEMPOTENCY_KEY_MAX,
)

__all__ = ["WhopEmulator"]

_PATHS = {"/api/v1/events": "events", "/api/v1/conversions": "conversions"}
_STRING_FIELDS = (
    "event_id", "plan_id", "product_id", "url", "referrer_url", "app_id", "app_build_id",
    "title", "source", "custom_name",
)  # fmt: skip


class _Refusal(Exception):
    """An error answer: status and Whop's error object."""

    def __init__(
        self,
        status: int,
        etype: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error: dict[str, str] = {"type": etype, "message": message}
        if code:
            self.error["code"] = code
        if param:
            self.error["param"] = param

    def response(self) -> httpx.Response:
        return httpx.Response(self.status, json={"error": self.error})


def _missing(param: str) -> _Refusal:
    return _Refusal(
        400, "bad_request", f"Missing required parameter: {param}", "parameter_missing", param
    )


def _invalid(param: str, message: str) -> _Refusal:
    return _Refusal(400, "bad_request", message, "parameter_invalid", param)


class WhopEmulator(Emulator):
    """Whop's conversion-event API, served by ``postback sandbox`` under ``/whop``."""

    vendor = "whop"
    #: N in the 429 message "Try again in N seconds." (small, for tests; set it per instance).
    retry_seconds: int = 1

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        #: (api key, Idempotency-Key) -> the stored successful response (status, body bytes).
        self._idempotent: dict[tuple[str, str], tuple[int, bytes]] = {}
        #: (account, event_id) -> the id returned the first time.
        self._event_ids: dict[tuple[str, str], str] = {}
        #: event ids whose one-time transient error was already given.
        self._tripped: set[str] = set()

    @classmethod
    def demo_settings(cls) -> dict[str, Any]:
        return {
            "api_key": "whop_sandbox_key_3f9c2a7d41e8b650",
            "account_id": "biz_sandbox4Qk7Zp2",
            "api": "events",
        }

    @classmethod
    def demo_rejection(cls) -> dict[str, Any] | None:
        """An event this emulator refuses as the vendor would, for ``postback demo``."""
        return {"name": "lead", "event_id": "whop-422-demo"}

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            try:
                return self._handle(request)
            except _Refusal as refusal:
                return refusal.response()

    # --- steps --------------------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        shape = _PATHS.get(request.url.path)
        if shape is None or request.method != "POST":
            raise _Refusal(
                404, "not_found", f"No route matches {request.method} {request.url.path}"
            )
        key = str(self.settings.get("api_key", ""))
        if request.headers.get("authorization") != f"Bearer {key}":
            raise _Refusal(401, "unauthorized", "Invalid or missing API key")
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise _Refusal(
                400, "bad_request", "Content-Type must be application/json", "invalid_json"
            )
        idem = request.headers.get("idempotency-key")
        if idem is not None and (not idem or len(idem.encode()) > IDEMPOTENCY_KEY_MAX):
            raise _invalid(
                "Idempotency-Key", f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} bytes"
            )
        version = request.headers.get("api-version-date")
        if version is not None and not _is_date(version):
            raise _invalid("Api-Version-Date", "Api-Version-Date must be a date (YYYY-MM-DD)")
        if idem is not None and (key, idem) in self._idempotent:
            status, content = self._idempotent[(key, idem)]
            return httpx.Response(
                status,
                content=content,
                headers={"content-type": "application/json", "idempotent-replayed": "true"},
            )

        try:
            body = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            raise _Refusal(
                400, "bad_request", "The request body is not valid JSON", "invalid_json"
            ) from None
        if not isinstance(body, dict):
            raise _Refusal(
                400, "bad_request", "The request body must be a JSON object", "invalid_json"
            )

        account_field = "account_id" if shape == "events" else "company_id"
        account = body.get(account_field)
        if account is None:
            raise _missing(account_field)
        if account != self.settings.get("account_id"):
            raise _Refusal(
                403, "forbidden", f"You do not have permission to create events for {account}"
            )
        self._check_body(shape, body)
        event_id = body.get("event_id")
        self._triggers(body, event_id)

        if event_id is not None and (account, event_id) in self._event_ids:
            content = orjson.dumps({"id": self._event_ids[(account, event_id)]})
        else:
            seed = f"{account}:{event_id if event_id is not None else self.requests}"
            evnt = "evnt_" + hashlib.sha256(seed.encode()).hexdigest()[:14]
            if event_id is not None:
                self._event_ids[(account, event_id)] = evnt
            self.received.append(
                {
                    "event_id": event_id,
                    "name": body["event_name"],
                    "custom_name": body.get("custom_name"),
                    "api": shape,
                    "idempotency_key": idem,
                    "id": evnt,
                    "body": body,
                }
            )
            content = orjson.dumps({"id": evnt})
        if idem is not None:
            self._idempotent[(key, idem)] = (200, content)
        return httpx.Response(200, content=content, headers={"content-type": "application/json"})

    def _check_body(self, shape: str, body: dict[str, Any]) -> None:
        events = shape == "events"
        top = EVENTS_TOP_FIELDS if events else CONVERSIONS_TOP_FIELDS
        for field in body:
            if field not in top:
                raise _invalid(field, f"Unknown parameter: {field}")
        name = body.get("event_name")
        if name is None:
            raise _missing("event_name")
        if not isinstance(name, str) or not name:
            raise _invalid("event_name", "event_name must be a non-empty string")
        if not events and name not in CONVERSIONS_EVENT_NAMES:
            raise _invalid(
                "event_name",
                "event_name must be one of: " + ", ".join(sorted(CONVERSIONS_EVENT_NAMES)),
            )
        for field in _STRING_FIELDS:
            val = body.get(field)
            if val is not None and not isinstance(val, str):
                raise _invalid(field, f"{field} must be a string")
        custom = body.get("custom_name")
        if name == "custom" and not custom:
            raise _missing("custom_name")
        if custom is not None and len(custom) > CUSTOM_NAME_MAX:
            raise _invalid(
                "custom_name", f"custom_name must be at most {CUSTOM_NAME_MAX} characters"
            )
        source = body.get("action_source")
        if source is not None and source not in ACTION_SOURCES:
            raise _invalid(
                "action_source", "action_source must be one of: " + ", ".join(ACTION_SOURCES)
            )
        currency = body.get("currency")
        currencies = EVENTS_CURRENCIES if events else CONVERSIONS_CURRENCIES
        if currency is not None and currency not in currencies:
            raise _invalid("currency", f"{currency!r} is not a supported currency")
        value = body.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _invalid("value", "value must be a number")
        when = body.get("event_time")
        if when is not None and not _is_datetime(when):
            raise _invalid("event_time", "event_time must be an ISO 8601 date-time")
        duration = body.get("duration")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
            raise _invalid("duration", "duration must be an integer")
        resumed = body.get("resumed")
        if resumed is not None and not isinstance(resumed, bool):
            raise _invalid("resumed", "resumed must be a boolean")
        self._check_context(
            body.get("context"), EVENTS_CONTEXT_FIELDS if events else CONVERSIONS_CONTEXT_FIELDS
        )
        self._check_user(
            body.get("user"), EVENTS_USER_FIELDS if events else CONVERSIONS_USER_FIELDS
        )

    @staticmethod
    def _check_context(context: Any, fields: tuple[str, ...]) -> None:
        if context is None:
            return
        if not isinstance(context, dict):
            raise _invalid("context", "context must be an object")
        for key, val in context.items():
            param = f"context.{key}"
            if key not in fields:
                raise _invalid(param, f"Unknown parameter: {param}")
            if key == "fingerprint_confidence":
                if val is not None and (
                    isinstance(val, bool) or not isinstance(val, (int, float)) or not 0 <= val <= 1
                ):
                    raise _invalid(param, "fingerprint_confidence must be a number from 0 to 1")
            elif val is not None and not isinstance(val, str):
                raise _invalid(param, f"{param} must be a string")

    @staticmethod
    def _check_user(user: Any, fields: tuple[str, ...]) -> None:
        if user is None:
            return
        if not isinstance(user, dict):
            raise _invalid("user", "user must be an object")
        for key, val in user.items():
            param = f"user.{key}"
            if key not in fields:
                raise _invalid(param, f"Unknown parameter: {param}")
            if val is not None and not isinstance(val, str):
                raise _invalid(param, f"{param} must be a string")
        gender = user.get("gender")
        if gender is not None and gender not in GENDERS:
            raise _invalid("user.gender", "user.gender must be one of: male, female")
        birthdate = user.get("birthdate")
        if birthdate is not None and not _is_date(birthdate):
            raise _invalid("user.birthdate", "user.birthdate must be a date (YYYY-MM-DD)")

    def _triggers(self, body: dict[str, Any], event_id: str | None) -> None:
        plan = body.get("plan_id")
        if isinstance(plan, str) and plan.startswith("plan_missing"):
            raise _Refusal(
                404, "not_found", f"Plan {plan} was not found", "resource_missing", "plan_id"
            )
        product = body.get("product_id")
        if isinstance(product, str) and product.startswith("prod_missing"):
            raise _Refusal(
                404,
                "not_found",
                f"Product {product} was not found",
                "resource_missing",
                "product_id",
            )
        if event_id is None:
            return
        if event_id.startswith("whop-422"):
            raise _Refusal(
                422,
                "unprocessable_entity",
                "The event could not be processed",
                "parameter_invalid",
                "event_id",
            )
        once = {
            "whop-429": (429, "rate_limit_exceeded", f"Try again in {self.retry_seconds} seconds."),
            "whop-409": (
                409,
                "conflict",
                "A request with this Idempotency-Key is already being processed",
            ),
            "whop-500": (500, "internal_server_error", "Something went wrong"),
        }
        for prefix, (status, etype, message) in once.items():
            if event_id.startswith(prefix) and event_id not in self._tripped:
                self._tripped.add(event_id)
                raise _Refusal(status, etype, message)


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 10:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True

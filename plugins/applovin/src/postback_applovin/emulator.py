"""A local emulation of AppLovin's Axon Conversion API (``postback sandbox`` serves it under
``/applovin``).

It checks requests as the vendor documents them and answers with the documented status codes.
AppLovin documents no response bodies, so the emulator's JSON bodies are its own (a client must
not depend on them): ``{"status": <code>, "message": "...", "errors": [...]}``.

How a client triggers each answer:

=====================================================  ========================================
request                                                answer
=====================================================  ========================================
a valid batch                                          200 ``{"status": 200, "events": N}``;
                                                       every event is appended to ``received``
``Authorization`` missing, not the raw key (e.g.       401 "Authentication failed."
``Bearer <key>``), or a ``pixel_id`` the key does
not own (anything but the configured ``pixel_id``)
no ``pixel_id`` query parameter                        400
not ``POST``                                           405; other paths: 404
``Content-Type`` not ``application/json``, a body      400 (whole batch dropped)
that is not JSON, not ``{"events": [...]}`` nor a
bare array, empty, or over 100 events
any invalid event (unknown name, ``event_time`` not    400 naming every problem as
integer epoch ms, incomplete ``event_source_url``,     ``events[i].field: ...``; nothing from
``user_data`` without ``client_ip_address``,           the batch is kept ("Any invalid event
``client_user_agent``, ``esi`` or any of client_id,    fails the batch")
axwrt, alart, user_id, email, phone, a bad
``country_code``/``os``, missing per-event ``data``
such as a purchase's currency, value,
transaction_id or items with item_id and quantity,
bad ``measurement_partner_data``)
an event the client considers valid but whose          400, as above: exercises the client's
``dedupe_id`` or ``data.transaction_id`` starts with   bisection (the batch is split until that
``emulator-invalid``                                   event is alone and dead-lettered)
=====================================================  ========================================

Transient failures (429, 5xx, timeouts, garbage bodies) come from the sandbox's fault injection:
``Sandbox.set_fault("applovin", status=503, count=2)``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from postback.plugin import COUNTRIES, CURRENCIES, Emulator
from postback_applovin._spec import (
    ACCOUNTING_MODES,
    ATTRIBUTION_MODELS,
    AXON_EVENTS,
    DATA_REQUIRED,
    ESI_VALUES,
    IDENTIFIER_FIELDS,
    MAX_BATCH,
    MPD_BOOL_KEYS,
    MPD_KEYS,
    MPD_REQUIRED,
    MPD_STR_KEYS,
    MPD_TS_KEYS,
    NULL_DATA_EVENTS,
    OS_VALUES,
    QUANTITY_REQUIRED,
    url_problem,
)

__all__ = ["INVALID_TRIGGER", "AppLovinEmulator"]

#: dedupe_id or data.transaction_id prefix that makes the emulator refuse an event.
INVALID_TRIGGER = "emulator-invalid"

_EVENT_KEYS = frozenset(
    {
        "name",
        "event_time",
        "event_source_url",
        "data",
        "user_data",
        "measurement_partner_data",
        "dedupe_id",
    }
)
_USER_KEYS = frozenset(
    {
        "aleid",
        "alart",
        "axwrt",
        "client_id",
        "client_ip_address",
        "client_user_agent",
        "email",
        "esi",
        "phone",
        "user_id",
        "country_code",
        "ifa",
        "idfv",
        "os",
        "sid",
        "zip",
    }
)
_MIN_MS = 1_000_000_000_000  # 2001-09-09 in ms: smaller numbers are seconds


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_text(v: object) -> bool:
    return isinstance(v, str) and bool(v.strip())


class AppLovinEmulator(Emulator):
    """Axon Conversion API emulation: ``POST /v1/event?pixel_id=...`` (see module docstring)."""

    vendor = "applovin"

    @classmethod
    def demo_settings(cls) -> dict[str, Any]:
        return {
            "api_key": "sbx-axon-capi-7f3c9e21b4d86a05e1f2c3d4",
            "pixel_id": "sbx-axon-event-key-4d2a91",
        }

    @classmethod
    def demo_rejection(cls) -> dict[str, Any] | None:
        """An event this emulator refuses as the vendor would, for ``postback demo``."""
        return {"name": "purchase", "properties": {"transaction_id": "emulator-invalid-demo"}}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.rstrip("/") != "/v1/event":
            return self._answer(404, "Not found: the Conversion API is POST /v1/event")
        if request.method != "POST":
            return self._answer(405, "Method not allowed: use POST")
        key = request.headers.get("authorization")
        pixel = request.url.params.get("pixel_id")
        if key != self.settings.get("api_key"):
            hint = (
                ["send the raw Conversion API key, without 'Bearer '"]
                if key and key.lower().startswith("bearer ")
                else []
            )
            return self._answer(401, "Authentication failed.", hint)
        if not pixel:
            return self._answer(
                400,
                "There is an error with your request. This batch of events was dropped.",
                ["pixel_id: required query parameter"],
            )
        if pixel != self.settings.get("pixel_id"):
            return self._answer(
                401, "Authentication failed.", ["pixel_id: not a pixel of this API key"]
            )
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            return self._bad(["content-type: must be application/json"])
        try:
            body = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            return self._bad(["body: not JSON"])
        events = body.get("events") if isinstance(body, dict) else body
        if not isinstance(events, list):
            return self._bad(["events: required, a list of server events"])
        if not events:
            return self._bad(["events: must not be empty"])
        if len(events) > MAX_BATCH:
            return self._bad([f"events: at most {MAX_BATCH} per request, got {len(events)}"])
        errors: list[str] = []
        for i, event in enumerate(events):
            errors.extend(f"events[{i}].{e}" for e in self._check_event(event))
        if errors:
            return self._bad(errors)
        for event in events:
            self.received.append(
                {
                    **event,
                    "event_id": event.get("dedupe_id"),
                    "name": event["name"],
                    "pixel_id": pixel,
                }
            )
        return httpx.Response(200, json={"status": 200, "events": len(events)})

    # --- answers -------------------------------------------------------------------------------

    @staticmethod
    def _answer(status: int, message: str, errors: list[str] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"status": status, "message": message}
        if errors:
            body["errors"] = errors
        return httpx.Response(status, json=body)

    def _bad(self, errors: list[str]) -> httpx.Response:
        return self._answer(
            400, "There is an error with your request. This batch of events was dropped.", errors
        )

    # --- validation of one server event ------------------------------------------------------

    def _check_event(self, event: object) -> list[str]:
        if not isinstance(event, dict):
            return ["must be an object"]
        errs: list[str] = [f"{k}: unknown field" for k in event if k not in _EVENT_KEYS]
        name = event.get("name")
        if not isinstance(name, str) or name not in AXON_EVENTS:
            errs.append(f"name: {name!r} is not a supported event")
            name = None
        t = event.get("event_time")
        if not isinstance(t, int) or isinstance(t, bool) or t < _MIN_MS:
            errs.append("event_time: required, Unix epoch time in milliseconds (integer)")
        ud = event.get("user_data")
        esi = ud.get("esi") if isinstance(ud, dict) else None
        url = event.get("event_source_url")
        if not isinstance(url, str):
            errs.append("event_source_url: required, the complete URL where the event occurred")
        else:
            why = url_problem(url, web=esi != "app")
            if why:
                errs.append(f"event_source_url: {why}")
        dedupe = event.get("dedupe_id")
        if dedupe is not None and not _is_text(dedupe):
            errs.append("dedupe_id: must be a non-empty string")
        errs.extend(self._check_user(ud))
        if "data" not in event:
            errs.append("data: required ({} or null for page_view and app_open)")
        elif name is not None:
            errs.extend(self._check_data(name, event["data"]))
        if "measurement_partner_data" in event:
            errs.extend(self._check_mpd(event["measurement_partner_data"]))
        data = event.get("data")
        tid = data.get("transaction_id") if isinstance(data, dict) else None
        trigger = f"refused by the emulator's trigger (the {INVALID_TRIGGER!r} prefix)"
        if isinstance(dedupe, str) and dedupe.startswith(INVALID_TRIGGER):
            errs.append(f"dedupe_id: {trigger}")
        if isinstance(tid, str) and tid.startswith(INVALID_TRIGGER):
            errs.append(f"data.transaction_id: {trigger}")
        return errs

    @staticmethod
    def _check_user(ud: object) -> list[str]:
        if not isinstance(ud, dict):
            return ["user_data: required object"]
        errs = [f"user_data.{k}: unknown field" for k in ud if k not in _USER_KEYS]
        for k, v in ud.items():
            if k in _USER_KEYS and not _is_text(v):
                errs.append(f"user_data.{k}: must be a non-empty string")
        ip = ud.get("client_ip_address")
        if ip is None:
            errs.append("user_data.client_ip_address: required")
        elif isinstance(ip, str):
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                errs.append("user_data.client_ip_address: not an IPv4 or IPv6 address")
        if ud.get("client_user_agent") is None:
            errs.append("user_data.client_user_agent: required")
        if ud.get("esi") not in ESI_VALUES:
            errs.append("user_data.esi: required, 'web' or 'app'")
        if not any(ud.get(k) for k in IDENTIFIER_FIELDS):
            errs.append(
                "user_data: at least one of client_id, axwrt, alart, user_id, email or phone "
                "is required"
            )
        phone = ud.get("phone")
        if isinstance(phone, str) and not (
            re.fullmatch(r"[0-9a-f]{64}", phone) or re.fullmatch(r"\+[1-9][0-9]{6,14}", phone)
        ):
            errs.append(
                "user_data.phone: a SHA-256 hex digest, or E.164 with the + ('+11234567890')"
            )
        if "os" in ud and ud["os"] not in OS_VALUES:
            errs.append("user_data.os: must be ios, android or desktop_os")
        if "country_code" in ud and ud["country_code"] not in COUNTRIES:
            errs.append("user_data.country_code: not an ISO 3166 alpha-2 code")
        if ud.get("country_code") == "US" and "zip" in ud:
            z = ud["zip"]
            if not (isinstance(z, str) and len(z) == 5 and z.isdigit()):
                errs.append("user_data.zip: use only the first five digits for U.S. zip codes")
        return errs

    @staticmethod
    def _check_data(name: str, data: object) -> list[str]:
        if data is None:
            if name in NULL_DATA_EVENTS:
                return []
            return [f"data: required for {name}"]
        if name == "app_open" and data != {}:
            return ["data: app_open takes no data (send {} or null)"]
        if not isinstance(data, dict):
            return ["data: must be an object"]
        errs: list[str] = []
        for field in DATA_REQUIRED.get(name, ()):
            if field not in data or data[field] is None:
                errs.append(f"data.{field}: required for {name}")
        if "currency" in data and data["currency"] not in CURRENCIES:
            errs.append("data.currency: not an ISO 4217 code")
        for key in ("value", "shipping", "tax"):
            if key in data and not (_is_number(data[key]) and data[key] >= 0):
                errs.append(f"data.{key}: must be a non-negative number")
        for key in ("transaction_id", "search_term", "payment_type", "method", "user_id"):
            if key in data and not _is_text(data[key]):
                errs.append(f"data.{key}: must be a non-empty string")
        for key in ("items", "results"):
            if key not in data:
                continue
            items = data[key]
            if not isinstance(items, list) or (key == "items" and not items):
                errs.append(f"data.{key}: must be a non-empty list of items")
                continue
            for j, item in enumerate(items):
                where = f"data.{key}[{j}]"
                if not isinstance(item, dict):
                    errs.append(f"{where}: must be an object")
                    continue
                if not _is_text(item.get("item_id")):
                    errs.append(f"{where}.item_id: required string")
                q = item.get("quantity")
                if q is None:
                    if name in QUANTITY_REQUIRED:
                        errs.append(f"{where}.quantity: required for {name}")
                elif not isinstance(q, int) or isinstance(q, bool) or q < 1:
                    errs.append(f"{where}.quantity: must be a positive integer")
                for k in ("price", "discount"):
                    if k in item and not _is_number(item[k]):
                        errs.append(f"{where}.{k}: must be a number")
                if "item_category_id" in item and not (
                    isinstance(item["item_category_id"], int)
                    and not isinstance(item["item_category_id"], bool)
                ):
                    errs.append(f"{where}.item_category_id: must be an integer")
        return errs

    @staticmethod
    def _check_mpd(mpd: object) -> list[str]:
        base = "measurement_partner_data"
        if not isinstance(mpd, Mapping):
            return [f"{base}: must be an object"]
        errs = [f"{base}.{k}: unknown field" for k in mpd if k not in MPD_KEYS]
        errs += [f"{base}.{k}: required" for k in MPD_REQUIRED if mpd.get(k) is None]
        for k in MPD_BOOL_KEYS:
            if k in mpd and not isinstance(mpd[k], bool):
                errs.append(f"{base}.{k}: must be a boolean")
        if "attribution_model" in mpd and mpd["attribution_model"] not in ATTRIBUTION_MODELS:
            errs.append(f"{base}.attribution_model: not a supported model")
        if "accounting_mode" in mpd and mpd["accounting_mode"] not in ACCOUNTING_MODES:
            errs.append(f"{base}.accounting_mode: must be CASH or ACCRUAL")
        share = mpd.get("attribution_share")
        if share is not None and not (_is_number(share) and 0 <= share <= 1):
            errs.append(f"{base}.attribution_share: must be a number between 0 and 1")
        hours = mpd.get("attribution_lookback_window_hours")
        if hours is not None and not (_is_number(hours) and hours >= 0):
            errs.append(f"{base}.attribution_lookback_window_hours: must be a number")
        for k in MPD_STR_KEYS:
            if k in mpd and not _is_text(mpd[k]):
                errs.append(f"{base}.{k}: must be a string")
        for k in MPD_TS_KEYS:
            v = mpd.get(k)
            if v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
                errs.append(f"{base}.{k}: must be epoch milliseconds")
        return errs

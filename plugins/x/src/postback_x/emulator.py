"""A local emulation of X's ``POST /{version}/conversion_event`` for ``postback sandbox``.

It checks what X documents, in X's order, and answers as X does::

    wrong path or method, version not 11/12  -> 404 ROUTE_NOT_FOUND
    no/malformed OAuth header, unknown consumer key or access token, a method other than
      HMAC-SHA1, or a signature that does not verify (RFC 5849 base string rebuilt from
      the request as received, with oauthlib's signature functions)
                                             -> 401 UNAUTHORIZED_ACCESS
    a required parameter missing             -> 400 MISSING_PARAMETER  (one error per parameter)
    a bad enum, time format, window, hashed_device_id, IP address, integer, currency, bool,
      or click_window < view_through_window  -> 400 INVALID_PARAMETER  (every problem listed)
    an app_id/os_type pair it does not know  -> 404 MACT_APP_NOT_FOUND
    more than ``rate_limit`` requests in ``rate_window`` seconds
                                             -> 429 TOO_MANY_REQUESTS (x-rate-limit-reset says
                                                when the window ends)

Special iOS app ids trigger X's other documented errors on every request:

    403403403 -> 403 UNAUTHORIZED_CLIENT_APPLICATION     403000403 -> 403 ACCOUNT_LOCKED_OUT
                                                         404404404 -> 404 NO_PROVIDER_AVAILABLE_FOR_
    408408408 -> 408 CANCELLED_REQUEST                               THIS_CLIENT_APPLICATION
    423423423 -> 423 LOCK_ACQUISITION_TIMEOUT            429429429 -> 429 TOO_MANY_REQUESTS
    500500500 -> 500 INTERNAL_ERROR                      503503503 -> 503 SERVICE_UNAVAILABLE
                                                                      (retry-after: 1)

Known apps: ``333903271`` (IOS), ``com.example.postback`` (ANDROID), and the apps of the
emulator's settings (``app_id``/``os_type``, ``ios_app_id``, ``android_app_id``). Any other app
id is unknown (404).

Accepted conversions answer 200 with X's envelope ``{"data": {...}, "request": {"params":
{...}}}``; ``data.twitter_attribution`` is always present (null when X claims nothing) and
``data.tpn_attribution`` likewise. Which devices are attributed is deterministic:

    DEMO_IFA_X_CLICK  ea7583cd-a667-48bc-b806-42ecb2b48606  X, CLICK one hour before
    DEMO_IFA_X_VIEW   6d92078a-8246-4ba4-ae5b-76104861e7dc  X, VIEW 30 minutes before (none
                                                            when view_through_window is 0)
    DEMO_IFA_TPN      38400000-8cf0-11bd-b23e-10b96e40000d  X Audience Platform (tpn), CLICK
    DEMO_IFA_BOTH     b8e2c3a0-0c1d-4e7f-9a3b-5d6e7f8a9b0c  both: X 3 h before, tpn 1 h before
    DEMO_IFA_NONE     11111111-2222-4333-8444-555555555555  never attributed

(hashed with the emulator's production or development key, lower or upper case); any other
device is X-attributed (CLICK) when the first byte of its hash is below 32 (one in eight).
Every response after authentication carries ``x-rate-limit-limit/-remaining/-reset``.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils

from postback.plugin import Emulator
from postback_x.destination import (
    CLICK_WINDOWS,
    CONVERSION_TYPES,
    ENGAGEMENT_TYPES,
    OS_TYPES,
    VIEW_THROUGH_WINDOWS,
    format_time,
    hash_device_id,
    is_hashed_device_id,
)

__all__ = [
    "DEMO_IFA_BOTH",
    "DEMO_IFA_NONE",
    "DEMO_IFA_TPN",
    "DEMO_IFA_X_CLICK",
    "DEMO_IFA_X_VIEW",
    "XEmulator",
    "verify_oauth1",
]

DEMO_IFA_X_CLICK = "ea7583cd-a667-48bc-b806-42ecb2b48606"
DEMO_IFA_X_VIEW = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
DEMO_IFA_TPN = "38400000-8cf0-11bd-b23e-10b96e40000d"
DEMO_IFA_BOTH = "b8e2c3a0-0c1d-4e7f-9a3b-5d6e7f8a9b0c"
DEMO_IFA_NONE = "11111111-2222-4333-8444-555555555555"
_DEMO_DEVICES = {
    DEMO_IFA_X_CLICK: "x_click",
    DEMO_IFA_X_VIEW: "x_view",
    DEMO_IFA_TPN: "tpn",
    DEMO_IFA_BOTH: "both",
    DEMO_IFA_NONE: "none",
}

_REQUIRED = ("app_id", "os_type", "hashed_device_id", "conversion_type", "conversion_time")
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
_INT_RE = re.compile(r"^-?\d{1,18}\Z")
_FORM = "application/x-www-form-urlencoded"
_ERROR_APPS: dict[str, tuple[int, str, str]] = {
    "403403403": (403, "UNAUTHORIZED_CLIENT_APPLICATION",
                  "The client application making this request does not have access to X "
                  "Ads API"),
    "403000403": (403, "ACCOUNT_LOCKED_OUT", "This account is locked out"),
    "404404404": (404, "NO_PROVIDER_AVAILABLE_FOR_THIS_CLIENT_APPLICATION",
                  "No app event provider is available for this client application"),
    "408408408": (408, "CANCELLED_REQUEST", "The request was cancelled"),
    "423423423": (423, "LOCK_ACQUISITION_TIMEOUT", "Unable to acquire lock"),
    "429429429": (429, "TOO_MANY_REQUESTS", "Rate limit exceeded"),
    "500500500": (500, "INTERNAL_ERROR", "Internal error"),
    "503503503": (503, "SERVICE_UNAVAILABLE", "Service unavailable"),
}  # fmt: skip


def verify_oauth1(
    request: httpx.Request,
    *,
    consumer_key: str,
    consumer_secret: str,
    access_token: str,
    access_token_secret: str,
    path_prefixes: tuple[str, ...] = ("",),
) -> str | None:
    """Check an OAuth 1.0a HMAC-SHA1 ``Authorization`` header the way a server does.

    The signature base string is rebuilt from the request *as received* (its method, URL,
    query and form body) with oauthlib's RFC 5849 functions, independently of the client that
    signed it. ``path_prefixes`` are prefixes the client's URL path may have had before a
    proxy stripped them (the sandbox mounts the emulator under ``/x``). Returns ``None`` when
    the request verifies, else why not.
    """
    auth = request.headers.get("authorization", "")
    if not auth.startswith("OAuth "):
        return "no OAuth Authorization header"
    try:
        oauth = {
            k: oauth_utils.unescape(v) for k, v in oauth_utils.parse_authorization_header(auth)
        }
    except (ValueError, IndexError):
        return "malformed OAuth Authorization header"
    missing = [
        k
        for k in ("oauth_consumer_key", "oauth_token", "oauth_signature_method",
                  "oauth_signature", "oauth_timestamp", "oauth_nonce")
        if not oauth.get(k)
    ]  # fmt: skip
    if missing:
        return f"OAuth header lacks {', '.join(missing)}"
    if oauth.get("oauth_version", "1.0") != "1.0":
        return "oauth_version must be 1.0"
    if oauth["oauth_signature_method"] != "HMAC-SHA1":
        return "oauth_signature_method must be HMAC-SHA1"
    if not hmac.compare_digest(oauth["oauth_consumer_key"], consumer_key):
        return "unknown consumer key"
    if not hmac.compare_digest(oauth["oauth_token"], access_token):
        return "unknown access token"
    body: str | None = None
    if request.headers.get("content-type", "").startswith(_FORM) and request.content:
        body = request.content.decode("utf-8", "replace")
    try:
        params = oauth_signature.collect_parameters(
            uri_query=request.url.query.decode("ascii"),
            body=body or [],
            headers={"Authorization": auth},
            exclude_oauth_signature=True,
        )
        normalized = oauth_signature.normalize_parameters(params)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"request parameters are not properly encoded ({exc})"
    secrets = SimpleNamespace(
        client_secret=consumer_secret, resource_owner_secret=access_token_secret
    )
    for prefix in path_prefixes:
        url = request.url.copy_with(path=prefix + request.url.path, query=None)
        base = oauth_signature.signature_base_string(
            request.method.upper(), oauth_signature.base_string_uri(str(url)), normalized
        )
        expected = oauth_signature.sign_hmac_sha1_with_client(base, secrets)
        if hmac.compare_digest(str(expected), oauth["oauth_signature"]):
            return None
    return "signature does not match the request"


def _error(code: str, message: str, parameter: str | None = None) -> dict[str, str]:
    e = {"code": code, "message": message}
    if parameter:
        e["parameter"] = parameter
    return e


class XEmulator(Emulator):
    """X's MACT ``conversion_event`` endpoint, emulated (see the module docstring)."""

    vendor: ClassVar[str] = "x"
    api_versions: ClassVar[tuple[str, ...]] = ("11", "12")
    current_version: ClassVar[str] = "12"
    known_apps: ClassVar[Mapping[str, str]] = {
        "333903271": "IOS",
        "com.example.postback": "ANDROID",
        **{app: "IOS" for app in _ERROR_APPS},
    }

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        #: X's conversions limit: 60,000 requests per 15 minutes (tests may lower both).
        self.rate_limit = 60_000
        self.rate_window = 900.0
        self.clock: Callable[[], float] = time.time
        self._window_start: float | None = None
        self._window_count = 0
        self._lock = threading.Lock()
        self._devices: dict[str, str] = {}
        keys = [self.settings.get("hmac_key"), self.settings.get("hmac_key_development")]
        for key in keys:
            if not key:
                continue
            raw = base64.b64decode(str(key))
            for ifa, kind in _DEMO_DEVICES.items():
                for norm in ("lowercase", "uppercase"):
                    self._devices[hash_device_id(ifa, raw, norm)] = kind

    @classmethod
    def demo_settings(cls) -> dict[str, Any]:
        # Sandbox-only values: realistic in shape, useless anywhere else.
        return {
            "consumer_key": "sbxConsumerKey0postbackX1",
            "consumer_secret": "sbxConsumerSecret0postback0x0sandbox0only0000000000",
            "access_token": "1234567890-sbxAccessToken0postback0x0sandbox0only",
            "access_token_secret": "sbxAccessTokenSecret0postback0x0sandbox0only00",
            # 33-byte keys: 44 base64 characters without padding.
            "hmac_key": base64.b64encode(b"postback-x-sandbox-hmac-key-00001").decode(),
            "hmac_key_development": base64.b64encode(b"postback-x-sandbox-dev-hmac-key-1").decode(),
            "app_id": "333903271",
            "os_type": "IOS",
            "android_app_id": "com.example.postback",
        }

    @classmethod
    def demo_rejection(cls) -> dict[str, Any] | None:
        """An install for an app X does not know (404 MACT_APP_NOT_FOUND), for the demo."""
        return {"name": "install", "user": {"os": "ios"}, "vendors": {"x": {"app_id": "999999999"}}}

    # --- plumbing -------------------------------------------------------------------------

    def _apps(self) -> dict[str, str]:
        apps = dict(self.known_apps)
        app, os_type = self.settings.get("app_id"), self.settings.get("os_type")
        if app and os_type:
            apps[str(app)] = str(os_type).upper()
        for key, os_name in (("ios_app_id", "IOS"), ("android_app_id", "ANDROID")):
            if self.settings.get(key):
                apps[str(self.settings[key])] = os_name
        return apps

    def _rate_headers(self) -> tuple[bool, dict[str, str]]:
        """Count this request in the current window: (allowed, x-rate-limit-* headers)."""
        now = self.clock()
        with self._lock:
            if self._window_start is None or now >= self._window_start + self.rate_window:
                self._window_start, self._window_count = now, 0
            self._window_count += 1
            remaining = max(self.rate_limit - self._window_count, 0)
            reset = self._window_start + self.rate_window
            allowed = self._window_count <= self.rate_limit
        return allowed, {
            "x-rate-limit-limit": str(self.rate_limit),
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": str(int(reset + 0.999)),
        }

    def _respond(
        self,
        status: int,
        body: dict[str, Any],
        headers: Mapping[str, str] | None = None,
        version: str | None = None,
    ) -> httpx.Response:
        hdrs = {"x-current-api-version": self.current_version, **(headers or {})}
        if version and version != self.current_version:
            hdrs["x-api-warn"] = (
                f"Version {version} is deprecated; use version {self.current_version}"
            )
        return httpx.Response(status, json=body, headers=hdrs)

    def _errors(
        self,
        status: int,
        errors: list[dict[str, str]],
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        version: str | None = None,
    ) -> httpx.Response:
        body = {"errors": errors, "request": {"params": dict(params or {})}}
        return self._respond(status, body, headers, version)

    # --- the endpoint -----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if (
            len(parts) != 2
            or parts[1] != "conversion_event"
            or parts[0] not in self.api_versions
            or request.method != "POST"
        ):
            return self._errors(
                404, [_error("ROUTE_NOT_FOUND", "The requested resource could not be found")]
            )
        version = parts[0]

        why = verify_oauth1(
            request,
            consumer_key=str(self.settings.get("consumer_key", "")),
            consumer_secret=str(self.settings.get("consumer_secret", "")),
            access_token=str(self.settings.get("access_token", "")),
            access_token_secret=str(self.settings.get("access_token_secret", "")),
            path_prefixes=(
                "",
                request.headers.get("x-forwarded-prefix", "").rstrip("/"),
                f"/{self.vendor}",
            ),
        )
        if why is not None:
            return self._errors(
                401,
                [
                    _error(
                        "UNAUTHORIZED_ACCESS", f"This request is not properly authenticated: {why}"
                    )
                ],
                version=version,
            )
        allowed, rate = self._rate_headers()
        if not allowed:
            rate["retry-after"] = str(max(int(rate["x-rate-limit-reset"]) - int(self.clock()), 1))
            return self._errors(
                429,
                [_error("TOO_MANY_REQUESTS", "Rate limit exceeded")],
                headers=rate,
                version=version,
            )

        params, errors = self._params(request)
        if not errors:
            errors = self._check(params)
        if errors:
            return self._errors(400, errors, params, rate, version)

        app_id, os_type = params["app_id"], params["os_type"]
        if self._apps().get(app_id) != os_type:
            return self._errors(
                404,
                [_error("MACT_APP_NOT_FOUND",
                        f"No app found for app_id {app_id} and os_type {os_type}", "app_id")],
                params, rate, version,
            )  # fmt: skip
        if app_id in _ERROR_APPS:
            status, code, message = _ERROR_APPS[app_id]
            hdrs = dict(rate)
            if status == 503:
                hdrs["retry-after"] = "1"
            if status == 429:
                hdrs["x-rate-limit-remaining"] = "0"
            return self._errors(status, [_error(code, message)], params, hdrs, version)

        kind = self._kind(params["hashed_device_id"])
        twitter, tpn = self._attribution(kind, params)
        self.received.append(
            {"event_id": None, "name": params["conversion_type"], "attribution": kind,
             "version": version, **params}
        )  # fmt: skip
        return self._respond(200, self._envelope(params, twitter, tpn, version), rate, version)

    def _params(self, request: httpx.Request) -> tuple[dict[str, str], list[dict[str, str]]]:
        pairs = parse_qsl(request.url.query.decode("ascii", "replace"), keep_blank_values=True)
        if request.headers.get("content-type", "").startswith(_FORM) and request.content:
            pairs += parse_qsl(request.content.decode("utf-8", "replace"), keep_blank_values=True)
        params: dict[str, str] = {}
        errors = []
        for key, value in pairs:
            if key in params:
                errors.append(_error("INVALID_PARAMETER", f"{key} is given twice", key))
            params[key] = value
        return params, errors

    def _check(self, p: Mapping[str, str]) -> list[dict[str, str]]:
        errors = [
            _error("MISSING_PARAMETER", f'"{name}" is missing', name)
            for name in _REQUIRED
            if not p.get(name)
        ]

        def bad(name: str, message: str) -> None:
            errors.append(_error("INVALID_PARAMETER", message, name))

        def enum(name: str, allowed: tuple[str, ...]) -> None:
            if p.get(name) and p[name] not in allowed:
                bad(name, f"Expected enum value of: {', '.join(allowed)}, got {p[name]}")

        def when(name: str) -> None:
            value = p.get(name)
            if not value:
                return
            ok = bool(_TIME_RE.match(value))
            if ok:
                try:
                    datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    ok = False
            if not ok:
                bad(name, f"Expected ISO-8601 time with milliseconds like "
                          f"2014-05-22T02:38:28.103Z, got {value}")  # fmt: skip

        def integer(name: str, minimum: int | None = None) -> int | None:
            value = p.get(name)
            if value is None:
                return None
            if not _INT_RE.match(value) or (minimum is not None and int(value) < minimum):
                bad(name, f"Expected an integer, got {value}")
                return None
            return int(value)

        enum("os_type", OS_TYPES)
        enum("conversion_type", CONVERSION_TYPES)
        enum("non_twitter_engagement_type", ENGAGEMENT_TYPES)
        when("conversion_time")
        when("non_twitter_engagement_time")
        if p.get("hashed_device_id") and not is_hashed_device_id(p["hashed_device_id"]):
            bad("hashed_device_id",
                "Expected the base64 HMAC-SHA256 of the device id (44 characters)")  # fmt: skip
        click = integer("click_window")
        view = integer("view_through_window")
        if click is not None and click not in CLICK_WINDOWS:
            bad("click_window", f"Expected one of {', '.join(map(str, CLICK_WINDOWS))}, "
                                f"got {click}")  # fmt: skip
        if view is not None and view not in VIEW_THROUGH_WINDOWS:
            bad(
                "view_through_window",
                f"Expected one of {', '.join(map(str, VIEW_THROUGH_WINDOWS))}, got {view}",
            )
        click = 14 if click is None else click
        view = 1 if view is None else view
        if click in CLICK_WINDOWS and view in VIEW_THROUGH_WINDOWS and click < view:
            bad("click_window", "click_window must be greater than or equal to "
                                "view_through_window")  # fmt: skip
        integer("level")
        integer("number_items", 0)
        integer("price_micro")
        if p.get("price_currency") is not None and not re.match(r"^[A-Z]{3}$", p["price_currency"]):
            bad("price_currency", f"Expected an ISO 4217 currency code, got {p['price_currency']}")
        if p.get("user_payment_info") is not None and p["user_payment_info"] not in (
            "true",
            "false",
        ):
            bad("user_payment_info", f"Expected true or false, got {p['user_payment_info']}")
        if p.get("device_ip_address") is not None:
            try:
                ipaddress.ip_address(p["device_ip_address"])
            except ValueError:
                bad(
                    "device_ip_address",
                    f"Expected an IPv4 or IPv6 address, got {p['device_ip_address']}",
                )
        return errors

    # --- attribution ------------------------------------------------------------------------

    def _kind(self, hashed: str) -> str:
        kind = self._devices.get(hashed)
        if kind is not None:
            return kind
        return "x_click" if base64.b64decode(hashed)[0] < 32 else "none"

    def _attribution(
        self, kind: str, p: Mapping[str, str]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        when = datetime.fromisoformat(p["conversion_time"].replace("Z", "+00:00")).astimezone(UTC)
        ms = int(when.timestamp() * 1000)
        view_window = int(p.get("view_through_window", "1"))
        objective = "APP_INSTALLS" if p["conversion_type"] == "INSTALL" else "APP_ENGAGEMENTS"

        def node(
            engagement: str,
            before: timedelta,
            *,
            tpn: bool = False,
            name: str | None = "postback sandbox campaign",
        ) -> dict[str, Any]:
            at = format_time(ms - int(before.total_seconds() * 1000))
            return {
                ("country" if tpn else "country_code"): "US",
                "engagement_time": at,
                "engagement_type": engagement,
                "attribution_type": "PROMOTED",
                "promoted_properties": {
                    "campaign_id": "8fgzf" if tpn else "4ns44",
                    "line_item_id": "9hks2" if tpn else "3x44d",
                    "publisher_app_id": "512939461" if tpn else "333903271",
                    "account_id": "18ce54d4x5t",
                    "line_item_objective": objective,
                    "campaign_name": name,
                },
                "tweet_id": None if tpn else "1143463556537760000",
            }  # fmt: skip

        if kind == "x_click":
            return node("CLICK", timedelta(hours=1)), None
        if kind == "x_view":
            if view_window == 0:
                return None, None
            return node("VIEW", timedelta(minutes=30), name=None), None
        if kind == "tpn":
            return None, node("CLICK", timedelta(hours=1), tpn=True)
        if kind == "both":
            return (node("CLICK", timedelta(hours=3)),
                    node("CLICK", timedelta(hours=1), tpn=True))  # fmt: skip
        return None, None

    def _envelope(
        self,
        p: Mapping[str, str],
        twitter: dict[str, Any] | None,
        tpn: dict[str, Any] | None,
        version: str,
    ) -> dict[str, Any]:
        metadata = {
            k: p[k]
            for k in ("price_micro", "price_currency", "number_items", "level",
                      "user_payment_info", "device_ip_address")
            if k in p
        }  # fmt: skip
        return {
            "data": {
                "conversion_value_micro": int(p.get("price_micro", "0")),
                "view_through_window": int(p.get("view_through_window", "1")),
                "tpn_attribution": tpn,
                "conversion_time": p["conversion_time"],
                "click_window": int(p.get("click_window", "14")),
                "limit_ad_tracking": False,
                "event_metadata": metadata or None,
                "non_twitter_engagement_type": p.get("non_twitter_engagement_type"),
                "conversion_type": p["conversion_type"],
                "partner_client_id": "postback sandbox",
                "app_id": p["app_id"],
                "hashed_device_id": p["hashed_device_id"],
                "twitter_attribution": twitter,
                "os_type": p["os_type"],
                "non_twitter_engagement_time": p.get("non_twitter_engagement_time"),
            },
            "request": {
                "params": {
                    "version_number": version,
                    "limit_ad_tracking": "false",
                    "click_window": "14",
                    "view_through_window": "1",
                    **p,
                }
            },
        }

"""X (Twitter) Mobile App Conversion Tracking: ``POST {base}/{api_version}/conversion_event``.

One conversion per request. Every parameter goes in the query string, percent-encoded per
RFC 3986 (so ``:`` in timestamps, ``,`` and the ``+``/``=`` of base64 hashes are escaped), and
the request is signed with OAuth 1.0a HMAC-SHA1 (``oauthlib``) over exactly that query string.
The device's advertising id (``user.ifa``: IDFA or Android AdID) is sent as
``hashed_device_id`` = base64(HMAC-SHA256(X's partner key, normalised id)); an id that is
already hashed that way passes through.

X answers with ``twitter_attribution`` (and, historically, ``tpn_attribution`` for the X
Audience Platform): the campaign, line item and Tweet that drove the conversion, which becomes a
:class:`postback.Attribution` for the ``postback_on_attribution`` hook.

Sources: ``x-mobile-app-conversions.md`` and DIGEST.md section 2 (vendor docs of this repo).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import quote

import attrs
import httpx
import oauthlib.oauth1

from postback.plugin import (
    Attribution,
    Delivered,
    Destination,
    Event,
    Halt,
    Outcome,
    Prepared,
    Problem,
    RateHint,
    RateLimit,
    Rejected,
    Retry,
    RetryPolicy,
    Secret,
    Skip,
    SkipEvent,
    body_snippet,
    hmac_sha256_base64,
    is_ip_address,
    json_or_none,
    retry_after_seconds,
    setting,
    to_timestamp_ms,
)

__all__ = [
    "CONVERSION_TYPES",
    "DEFAULT_EVENT_MAP",
    "XDestination",
    "XSettingError",
    "XSettings",
    "format_time",
    "hash_device_id",
    "is_hashed_device_id",
    "normalize_device_id",
    "oauth1_authorization",
    "rfc3986_query",
]

#: Every ``conversion_type`` X accepts (x-mobile-app-conversions.md, "conversion_type").
CONVERSION_TYPES: Final = (
    "PURCHASE", "SIGN_UP", "INSTALL", "RE_ENGAGE", "UPDATE", "TUTORIAL_COMPLETE", "RESERVATION",
    "ADD_TO_CART", "ADD_TO_WISHLIST", "LOGIN", "CHECKOUT_INITIATED", "SEARCH", "LEVEL_ACHIEVED",
    "ACHIEVEMENT_UNLOCKED", "CONTENT_VIEW", "SHARE", "INVITE", "ADDED_PAYMENT_INFO",
    "SPENT_CREDITS", "RATED",
)  # fmt: skip
_CONVERSION_TYPE_SET = frozenset(CONVERSION_TYPES)

#: Canonical event name -> X ``conversion_type``. ``update``/``app_update`` are custom names
#: (postback has no canonical "app updated" event) for X's ``UPDATE``.
DEFAULT_EVENT_MAP: Final[Mapping[str, str]] = {
    "purchase": "PURCHASE",
    "sign_up": "SIGN_UP",
    "install": "INSTALL",
    "re_engage": "RE_ENGAGE",
    "update": "UPDATE",
    "app_update": "UPDATE",
    "tutorial_complete": "TUTORIAL_COMPLETE",
    "reservation": "RESERVATION",
    "add_to_cart": "ADD_TO_CART",
    "add_to_wishlist": "ADD_TO_WISHLIST",
    "login": "LOGIN",
    "begin_checkout": "CHECKOUT_INITIATED",
    "search": "SEARCH",
    "level_achieved": "LEVEL_ACHIEVED",
    "achievement_unlocked": "ACHIEVEMENT_UNLOCKED",
    "view_item": "CONTENT_VIEW",
    "share": "SHARE",
    "invite": "INVITE",
    "add_payment_info": "ADDED_PAYMENT_INFO",
    "spent_credits": "SPENT_CREDITS",
    "rate": "RATED",
}

OS_TYPES: Final = ("IOS", "ANDROID")
CLICK_WINDOWS: Final = (1, 7, 14, 30)
VIEW_THROUGH_WINDOWS: Final = (0, 1, 7, 14, 30)
ENGAGEMENT_TYPES: Final = ("CLICK", "VIEW")

#: ``user.os`` values that tell the ``os_type``.
_OS_ALIASES: Final[Mapping[str, str]] = {
    "ios": "IOS", "ipados": "IOS", "iphone": "IOS", "ipad": "IOS", "iphoneos": "IOS",
    "android": "ANDROID",
}  # fmt: skip

_UUID_RE = re.compile(
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
)
_HASHED_RE = re.compile(r"^[A-Za-z0-9+/]{43}=\Z")
_ZERO_IFA = "00000000-0000-0000-0000-000000000000"
_IOS_APP_ID_RE = re.compile(r"^[1-9][0-9]{0,11}\Z")
_ANDROID_APP_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+\Z")
_API_VERSION_RE = re.compile(r"^[1-9][0-9]{0,2}\Z")
_RFC3986_SAFE = "-._~"  # the unreserved set: everything else is percent-encoded

OPTION_KEYS: Final = frozenset(
    {
        "app_id",
        "os_type",
        "click_window",
        "view_through_window",
        "non_twitter_engagement_time",
        "non_twitter_engagement_type",
        "user_payment_info",
    }
)


# ------------------------------------------------------------------------------------------
# Small pure helpers (also used by the emulator and the tests)


def rfc3986_query(params: Iterable[tuple[str, str]]) -> str:
    """``k=v&...`` with keys and values percent-encoded per RFC 3986 (OAuth 1.0a, RFC 5849
    section 3.6): only ``A-Z a-z 0-9 - . _ ~`` stay literal, so the query on the wire is
    byte for byte what the signature base string encodes."""
    return "&".join(
        f"{quote(k, safe=_RFC3986_SAFE)}={quote(v, safe=_RFC3986_SAFE)}" for k, v in params
    )


def format_time(timestamp_ms: int) -> str:
    """Epoch milliseconds -> X's ISO-8601 UTC with milliseconds: ``2014-05-22T02:38:28.103Z``."""
    dt = datetime.fromtimestamp(timestamp_ms // 1000, tz=UTC)  # whole seconds: no float error
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{timestamp_ms % 1000:03d}Z"


def is_hashed_device_id(value: str) -> bool:
    """True for X's hashed form: standard base64 (with padding) of a 32-byte HMAC-SHA256."""
    if not _HASHED_RE.match(value):
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def normalize_device_id(ifa: str, how: str) -> str:
    """Prepare a raw IDFA/AdID for hashing: ``lowercase`` (X's audience rule for IDFAs:
    lower case with dashes; the default), ``uppercase`` (Apple's own display form), ``none``."""
    ifa = ifa.strip()
    if how == "lowercase":
        return ifa.lower()
    if how == "uppercase":
        return ifa.upper()
    return ifa


def hash_device_id(ifa: str, key: bytes, normalization: str = "lowercase") -> str:
    """X's ``hashed_device_id``: base64(HMAC-SHA256(key, normalised id)); hashed ids pass."""
    if is_hashed_device_id(ifa):
        return ifa
    return hmac_sha256_base64(key, normalize_device_id(ifa, normalization))


def _decode_key(value: str) -> bytes:
    return base64.b64decode(value.strip(), validate=True)


# ------------------------------------------------------------------------------------------
# Settings
#
# Enumerated settings are typed ``Literal[...]`` so that the core's converter reports a bad
# value at its own key path (``vendors.x.os_type``). Checks that need the value or another
# setting are attrs validators raising :class:`XSettingError`, which names the setting.


class XSettingError(ValueError):
    """A ``[vendors.x]`` setting is invalid. ``setting`` names it; ``message`` (the first
    argument, which the core reports at ``vendors.x.<setting>``) says how to fix it and never
    contains a secret's value."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.message = message

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}"


def _check_hmac_key(_: Any, attribute: attrs.Attribute[Any], value: Secret | None) -> None:
    if value is None:
        return
    try:
        key = _decode_key(value.reveal())
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        # Never put the value in the message: it is a secret.
        raise XSettingError(
            attribute.name,
            "must be the base64 HMAC key that X issued to you as a measurement partner (it "
            "does not decode as base64); paste it exactly as X delivered it",
        )


def _check_hmac_environment(instance: XSettings, _: attrs.Attribute[Any], value: str) -> None:
    if value == "development" and instance.hmac_key_development is None:
        raise XSettingError(
            "hmac_environment",
            "is 'development' but hmac_key_development is not set: add the development key "
            "X issued, or use hmac_environment = 'production'",
        )


def _app_id_problem(app_id: str, os_type: str | None) -> str | None:
    """Why ``app_id`` cannot be an app of ``os_type``, or None when it can."""
    if not app_id.strip():
        return "must not be empty"
    if os_type == "IOS" and not _IOS_APP_ID_RE.match(app_id):
        return (
            f"{app_id!r} is not an iOS app id: use the numeric App Store id, e.g. '333903271' "
            "(without the 'id' prefix)"
        )
    if os_type == "ANDROID" and not _ANDROID_APP_ID_RE.match(app_id):
        return f"{app_id!r} is not an Android app id: use the package name, e.g. 'com.example.app'"
    if os_type is None and not (_IOS_APP_ID_RE.match(app_id) or _ANDROID_APP_ID_RE.match(app_id)):
        return (
            f"{app_id!r} is neither an App Store id (e.g. '333903271') nor an Android package "
            "name (e.g. 'com.example.app')"
        )
    return None


def _check_app_id(instance: XSettings, _: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    why = _app_id_problem(value, instance.os_type)
    if why:
        raise XSettingError("app_id", why)


def _check_platform_app_id(
    os_type: str,
) -> Callable[[Any, attrs.Attribute[Any], str | None], None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is None:
            return
        why = _app_id_problem(value, os_type)
        if why:
            raise XSettingError(attribute.name, why)

    return check


def _check_api_version(_: Any, __: attrs.Attribute[Any], value: str) -> None:
    if not _API_VERSION_RE.match(value):
        raise XSettingError(
            "api_version", f"must be X's Ads API version number, e.g. '12'; got {value!r}"
        )


def _check_window(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool):
        raise XSettingError(attribute.name, f"must be a number of days, got {value!r}")


def _check_view_window(instance: XSettings, attribute: attrs.Attribute[Any], value: int) -> None:
    _check_window(instance, attribute, value)
    if value > instance.click_window:
        raise XSettingError(
            "view_through_window",
            f"must not exceed click_window ({instance.click_window}), got {value}: X requires "
            "click_window >= view_through_window",
        )


@attrs.frozen
class XSettings:
    """The ``[vendors.x]`` table (plus the settings every vendor takes).

    Secrets are :class:`postback.Secret`, so ``repr(settings)`` shows ``Secret('***')``.
    """

    consumer_key: Secret = setting(
        help="OAuth 1.0a consumer key (API key) of your X developer app approved for the Ads "
        "API and onboarded as a mobile measurement partner.",
        secret=True,
    )
    consumer_secret: Secret = setting(
        help="OAuth 1.0a consumer secret (API key secret) of that app.", secret=True
    )
    access_token: Secret = setting(
        help="OAuth 1.0a access token of a user with access to the advertiser's ads account.",
        secret=True,
    )
    access_token_secret: Secret = setting(
        help="OAuth 1.0a access token secret matching access_token.", secret=True
    )
    hmac_key: Secret = setting(
        help="The production HMAC key X issued to you (base64, as delivered) for hashed_device_id.",
        secret=True,
        validator=_check_hmac_key,
    )
    hmac_key_development: Secret | None = setting(
        help="The development HMAC key X issued to you (base64); used when "
        "hmac_environment = 'development'.",
        secret=True,
        default=None,
        validator=_check_hmac_key,
    )
    hmac_environment: Literal["production", "development"] = setting(
        help="Which HMAC key hashes device ids: 'production' (hmac_key) or 'development' "
        "(hmac_key_development).",
        default="production",
        validator=_check_hmac_environment,
    )
    os_type: Literal["IOS", "ANDROID", None] = setting(
        help="os_type, 'IOS' or 'ANDROID', for events that don't tell it (by the option "
        "vendors.x.os_type or by user.os).",
        default=None,
    )
    app_id: str | None = setting(
        help="Default app id: the numeric App Store id (iOS) or the package name (Android); "
        "per event: vendors.x.app_id.",
        default=None,
        validator=_check_app_id,
    )
    ios_app_id: str | None = setting(
        help="The iOS app (numeric App Store id) for events whose os_type is IOS; takes "
        "precedence over app_id for them.",
        default=None,
        validator=_check_platform_app_id("IOS"),
    )
    android_app_id: str | None = setting(
        help="The Android app (package name) for events whose os_type is ANDROID; takes "
        "precedence over app_id for them.",
        default=None,
        validator=_check_platform_app_id("ANDROID"),
    )
    api_version: str = setting(
        help="Ads API version in the path, /{api_version}/conversion_event.",
        default="12",
        validator=_check_api_version,
    )
    click_window: Literal[1, 7, 14, 30] = setting(
        help="Click attribution window in days: 1, 7, 14 or 30 (X's default 14).",
        default=14,
        validator=_check_window,
    )
    view_through_window: Literal[0, 1, 7, 14, 30] = setting(
        help="View-through attribution window in days: 0, 1, 7, 14 or 30 (X's default 1); "
        "at most click_window.",
        default=1,
        validator=_check_view_window,
    )
    device_id_normalization: Literal["lowercase", "uppercase", "none"] = setting(
        help="How user.ifa is prepared before hashing: 'lowercase' (IDFA/AdID lower case with "
        "dashes), 'uppercase' or 'none' (as given).",
        default="lowercase",
    )
    retry_unconfirmed: bool = setting(
        help="Retry requests whose outcome is unknown (read timeout, connection dropped after "
        "the request was sent, 500/502/504). true: at least once (a conversion may count "
        "twice, X has no dedupe key); false: at most once (such events go to the dead "
        "letters, to check and replay).",
        default=True,
    )


# ------------------------------------------------------------------------------------------
# Keep oauthlib's DEBUG records (they print the signature base string, which holds the consumer
# key and the access token) out of the logs while we sign; other users of oauthlib unaffected.

_signing = threading.local()


class _DuringSigning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_signing, "active", False)


_SIGNING_FILTER = _DuringSigning()
for _name in ("oauthlib.oauth1.rfc5849", "oauthlib.oauth1.rfc5849.signature", "oauthlib"):
    logging.getLogger(_name).addFilter(_SIGNING_FILTER)


def oauth1_authorization(
    url: str,
    *,
    consumer_key: str,
    consumer_secret: str,
    access_token: str,
    access_token_secret: str,
    nonce: str,
    timestamp: int,
    method: str = "POST",
) -> str:
    """The ``Authorization: OAuth ...`` value (HMAC-SHA1, RFC 5849) for ``method url``.

    ``url`` carries every parameter in its query string, already RFC 3986 encoded (see
    :func:`rfc3986_query`); oauthlib decodes it and re-encodes each name and value the same
    way for the signature base string, so the base string matches the bytes on the wire.
    """
    client = oauthlib.oauth1.Client(
        consumer_key,
        client_secret=consumer_secret,
        resource_owner_key=access_token,
        resource_owner_secret=access_token_secret,
        signature_method=oauthlib.oauth1.SIGNATURE_HMAC_SHA1,
        signature_type=oauthlib.oauth1.SIGNATURE_TYPE_AUTH_HEADER,
        nonce=nonce,
        timestamp=str(timestamp),
    )
    _signing.active = True
    try:
        signed_url, headers, _ = client.sign(url, http_method=method)
    finally:
        _signing.active = False
    if signed_url != url:  # header signatures never touch the URL; make sure of it
        raise RuntimeError("oauthlib changed the URL while signing")
    return str(headers["Authorization"])


# ------------------------------------------------------------------------------------------
# The destination


class XDestination(Destination):
    """X's Mobile App Conversion Tracking (MACT) ``conversion_event`` endpoint."""

    name = "x"
    settings_class = XSettings
    default_origin = "https://ads-api.x.com"
    default_event_map = DEFAULT_EVENT_MAP
    accepts_custom_events = False
    max_batch_size = 1  # no batch endpoint: one conversion per call
    #: "Conversions — Endpoint — 60,000 per 15-minute window" (DIGEST.md, X2 rate-limiting).
    default_rate_limit = RateLimit(60_000, 15 * 60)
    #: X has no idempotency key, so a retry may duplicate a conversion X did record: retry
    #: transient failures, but give up after a day (attribution windows are days long).
    retry_policy = RetryPolicy(
        max_attempts=12, max_age=24 * 3600.0, initial_backoff=1.0, max_backoff=300.0
    )
    default_concurrency = 8
    option_keys = OPTION_KEYS
    #: Advertising and attribution: sent only with the user's consent to ads.
    purposes = ("ads",)
    #: No dedupe key in the API: postback drops an event_id tracked again within 24 hours.
    default_dedupe_window = 86_400.0
    settings: XSettings

    def __init__(
        self,
        settings: XSettings,
        *,
        base_url: str | None = None,
        event_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings, base_url=base_url, event_map=event_map)
        key = (
            settings.hmac_key_development
            if settings.hmac_environment == "development" and settings.hmac_key_development
            else settings.hmac_key
        )
        self._hmac_key = _decode_key(key.reveal())
        self._build_skips()

    # --- naming -------------------------------------------------------------------------------

    def conversion_type(self, event_name: str) -> str | None:
        """X's ``conversion_type`` for a canonical name (``event_map`` values are upper-cased)."""
        mapped = self.vendor_event_name(event_name)
        return mapped.strip().upper() if mapped else None

    # --- resolution of per-event values -------------------------------------------------------

    def _os_type(self, event: Event) -> tuple[str | None, str]:
        """(os_type, where it came from): the option, else ``user.os``, else the setting."""
        opt = event.options_for(self.name).get("os_type")
        if isinstance(opt, str) and opt.strip().upper() in OS_TYPES:
            return opt.strip().upper(), "vendors.x.os_type"
        if event.user.os:
            derived = _OS_ALIASES.get(event.user.os.strip().lower())
            if derived:
                return derived, "user.os"
        if self.settings.os_type:
            return self.settings.os_type, "the os_type setting"
        return None, ""

    def _app_id(self, event: Event, os_type: str | None) -> tuple[str | None, str]:
        """(app_id, where it came from): the option, else the setting for the os_type
        (``ios_app_id`` / ``android_app_id``), else ``app_id``."""
        opt = event.options_for(self.name).get("app_id")
        if isinstance(opt, (str, int)) and not isinstance(opt, bool):
            return str(opt).strip(), "vendors.x.app_id"
        s = self.settings
        if os_type == "IOS" and s.ios_app_id:
            return s.ios_app_id, "the ios_app_id setting"
        if os_type == "ANDROID" and s.android_app_id:
            return s.android_app_id, "the android_app_id setting"
        if s.app_id:
            return s.app_id, "the app_id setting"
        return None, ""

    def _app_id_setting(self, os_type: str) -> str | None:
        """The app id the settings give for ``os_type``."""
        s = self.settings
        own = s.ios_app_id if os_type == "IOS" else s.android_app_id
        return own or s.app_id or None

    def _windows(self, event: Event) -> tuple[int, int]:
        opts = event.options_for(self.name)
        click = opts.get("click_window", self.settings.click_window)
        view = opts.get("view_through_window", self.settings.view_through_window)
        return click, view

    # --- validate -----------------------------------------------------------------------------

    def skip_without(self, event_name: str) -> tuple[str, Skip] | None:
        """A mapped event without ``user.ifa`` (and no per-event options) is skipped, and
        nothing else is said (``validate``'s first test)."""
        return ("ifa", self._skip_no_ifa) if event_name in self._mapped_ok else None

    def validate(self, event: Event) -> Iterable[Problem | Skip]:
        """What keeps X from taking ``event``.

        A :class:`~postback.Skip` (the event is fine, X cannot use it: X measures app
        conversions): no advertising id (``user.ifa``), the all-zero id of a device that limits
        ad tracking, no ``os_type`` (``user.os``, the option or the setting), no app id for
        that platform in the settings. A :class:`~postback.Problem` (malformed): an advertising
        id, IP address, option, level or item quantity of the wrong format, a negative value.

        Only presence and formats are checked here (the id is hashed at delivery), and once X
        knows it skips the event it stops: the formats of fields only X reads matter only for
        events X takes. Per-event options for X are always checked.
        """
        user = event.user
        ifa = user.ifa
        if not ifa and not event.vendor_options and event.name in self._mapped_ok:
            return self._only_no_ifa  # the common case of a web event: nothing else to say
        opts = event.options_for(self.name) if event.vendor_options else _NO_OPTIONS
        found: list[Problem | Skip] = list(self._option_problems(event, opts)) if opts else []
        if event.name not in self._mapped_ok:
            found.append(self._name_problem(event.name, self.vendor_event_name(event.name)))
        if not ifa:
            found.append(self._skip_no_ifa)
            return found
        if ifa.strip() == _ZERO_IFA:
            found.append(self._skip_zero_ifa)
            return found
        if not (_UUID_RE.match(ifa) or is_hashed_device_id(ifa)):
            found.append(
                Problem(
                    "user.ifa",
                    "must be an IDFA or Google advertising id (a UUID such as "
                    "'EA7583CD-A667-48BC-B806-42ECB2B48606') or an id already hashed for X "
                    "(base64 of HMAC-SHA256, 44 characters ending in '=')",
                )
            )
        if opts:
            os_type = self._os_type(event)[0]
        else:  # the common case, without the option: user.os, else the setting
            os_type = _OS_ALIASES.get(user.os.strip().lower()) if user.os else None
            os_type = os_type or self.settings.os_type
        if os_type is None:
            if opts.get("os_type") is None:
                found.append(self._skip_no_os)
                return found
        elif "app_id" not in opts and (no_app := self._skip_no_app.get(os_type)) is not None:
            found.append(no_app)
            return found
        if user.ip_address and not is_ip_address(user.ip_address):
            found.append(
                Problem(
                    "user.ip_address",
                    f"{user.ip_address!r} is not an IPv4 or IPv6 address "
                    "(e.g. '192.133.78.1' or '2001:db8::1')",
                )
            )
        if event.value_micros is not None and event.value_micros < 0:
            found.append(
                Problem(
                    "value",
                    "must not be negative: X's price_micro is the conversion's price (send "
                    "refunds elsewhere)",
                )
            )
        props = event.properties
        if props:
            found.extend(_property_problems(props))
        return found

    def _build_skips(self) -> None:
        """The skips X yields, built once (they are counted by reason); the event names
        mapped to a conversion_type X has."""
        self._mapped_ok = frozenset(
            name
            for name, mapped in self.event_map.items()
            if mapped.strip().upper() in _CONVERSION_TYPE_SET
        )
        elsewhere = (
            "or list the events X should get with events = [...] in [vendors.x] (X measures "
            "app conversions only)"
        )
        self._skip_no_ifa = Skip(
            "no device id",
            "user.ifa",
            "pass user={'ifa': ...} (the IDFA on iOS, the Google advertising id on Android), "
            + elsewhere,
            self.name,
        )
        self._only_no_ifa = (self._skip_no_ifa,)
        self._skip_zero_ifa = Skip(
            "ad tracking limited",
            "user.ifa",
            "nothing to fix: the all-zero advertising id (the user limited ad tracking) "
            "cannot be attributed",
            self.name,
        )
        self._skip_no_os = Skip(
            "no os_type",
            "user.os",
            "pass user={'os': 'ios'} (or 'android'), vendors={'x': {'os_type': 'IOS'}}, or set "
            "os_type in [vendors.x], " + elsewhere,
            self.name,
        )
        # Per platform, whether the settings give X an app id for it (they do not change).
        self._skip_no_app: dict[str, Skip] = {}
        for os_type, own in (("IOS", "ios_app_id"), ("ANDROID", "android_app_id")):
            app_id = self._app_id_setting(os_type)
            if app_id is None or _app_id_problem(app_id, os_type):
                self._skip_no_app[os_type] = Skip(
                    f"no {'iOS' if os_type == 'IOS' else 'Android'} app id",
                    f"vendors.{self.name}.app_id",
                    f"set {own} (or app_id) in [vendors.x] to the app's "
                    f"{'App Store id' if os_type == 'IOS' else 'package name'}, or pass "
                    "vendors={'x': {'app_id': ...}}",
                    self.name,
                )

    @staticmethod
    def _name_problem(event_name: str, mapped: str | None) -> Problem:
        if mapped is None:
            return Problem(
                "name",
                f"X has no conversion_type for {event_name!r}: map it in config, e.g. "
                f'[vendors.x.event_map] {event_name} = "PURCHASE" (X accepts '
                f"{', '.join(CONVERSION_TYPES)}), or don't send it to X",
            )
        return Problem(
            "name",
            f"event_map maps {event_name!r} to {mapped!r}, which is not an X "
            f"conversion_type; use one of {', '.join(CONVERSION_TYPES)}",
        )

    def _option_problems(self, event: Event, opts: Mapping[str, Any]) -> Iterator[Problem]:
        """Problems with ``vendors={'x': {...}}`` (only called when there are options)."""
        prefix = f"vendors.{self.name}"  # the core refuses keys not in option_keys
        opt_os = opts.get("os_type")
        if opt_os is not None and not (
            isinstance(opt_os, str) and opt_os.strip().upper() in OS_TYPES
        ):
            yield Problem(f"{prefix}.os_type", f"must be 'IOS' or 'ANDROID', got {opt_os!r}")
        opt_app = opts.get("app_id")
        field = f"{prefix}.app_id"
        if opt_app is not None:
            if isinstance(opt_app, bool) or not isinstance(opt_app, (str, int)):
                yield Problem(field, f"must be a string, got {type(opt_app).__name__}")
            else:
                why = _app_id_problem(str(opt_app).strip(), self._os_type(event)[0])
                if why:
                    yield Problem(field, why)

        # windows
        click, view = self._windows(event)
        good = True
        if not _is_int(click) or click not in CLICK_WINDOWS:
            good = False
            yield Problem(
                f"{prefix}.click_window",
                f"must be one of {', '.join(map(str, CLICK_WINDOWS))} (days), got {click!r}",
            )
        if not _is_int(view) or view not in VIEW_THROUGH_WINDOWS:
            good = False
            yield Problem(
                f"{prefix}.view_through_window",
                f"must be one of {', '.join(map(str, VIEW_THROUGH_WINDOWS))} (days), got {view!r}",
            )
        if good and view > click:
            field = (
                f"{prefix}.view_through_window"
                if "view_through_window" in opts or "click_window" not in opts
                else f"{prefix}.click_window"
            )
            yield Problem(
                field,
                f"click_window ({click}) must be greater than or equal to view_through_window "
                f"({view})",
            )

        # non-X engagement
        ntt = opts.get("non_twitter_engagement_type")
        if ntt is not None and not (
            isinstance(ntt, str) and ntt.strip().upper() in ENGAGEMENT_TYPES
        ):
            yield Problem(
                f"{prefix}.non_twitter_engagement_type", f"must be 'CLICK' or 'VIEW', got {ntt!r}"
            )
        nte = opts.get("non_twitter_engagement_time")
        if nte is not None:
            try:
                nte_ms = to_timestamp_ms(nte)
            except ValueError as exc:
                yield Problem(f"{prefix}.non_twitter_engagement_time", str(exc))
            else:
                if nte_ms > event.timestamp_ms:
                    yield Problem(
                        f"{prefix}.non_twitter_engagement_time",
                        "must be before the conversion: it is the time of the last non-X "
                        f"engagement prior to it ({format_time(nte_ms)} is after "
                        f"{format_time(event.timestamp_ms)})",
                    )
        upi = opts.get("user_payment_info")
        if upi is not None and not isinstance(upi, bool):
            yield Problem(f"{prefix}.user_payment_info", f"must be true or false, got {upi!r}")

    # --- transform ----------------------------------------------------------------------------

    def transform(self, event: Event) -> dict[str, str]:
        """The conversion's parameters, in X's documented order, as query-string strings."""
        ifa = event.user.ifa
        if ifa and ifa.strip() == _ZERO_IFA:
            # The all-zero IDFA/AdID means the user limited ad tracking (or denied ATT); its
            # hash is shared by every such device, so it can't be attributed to anyone.
            raise SkipEvent("user.ifa is the all-zero advertising id (ad tracking limited)")
        if not ifa:
            raise SkipEvent("no user.ifa: X needs the device's advertising id")
        conversion_type = self.conversion_type(event.name)
        if conversion_type is None:
            raise SkipEvent(f"X has no conversion_type for {event.name!r}")
        opts = event.options_for(self.name)
        os_type, _ = self._os_type(event)
        app_id, _ = self._app_id(event, os_type)
        click, view = self._windows(event)
        params: dict[str, str] = {
            "app_id": app_id or "",
            "os_type": os_type or "",
            "hashed_device_id": hash_device_id(
                ifa, self._hmac_key, self.settings.device_id_normalization
            ),
            "conversion_type": conversion_type,
            "conversion_time": format_time(event.timestamp_ms),
            "click_window": str(click),
            "view_through_window": str(view),
        }
        if event.user.ip_address:
            params["device_ip_address"] = event.user.ip_address
        level = _count(event.properties.get("level"))
        if level is not None:
            params["level"] = str(level)
        nte = opts.get("non_twitter_engagement_time")
        if nte is not None:
            params["non_twitter_engagement_time"] = format_time(to_timestamp_ms(nte))
        ntt = opts.get("non_twitter_engagement_type")
        if isinstance(ntt, str):
            params["non_twitter_engagement_type"] = ntt.strip().upper()
        number_items = _number_items(event.properties)
        if number_items is not None:
            params["number_items"] = str(number_items)
        if event.value_micros is not None:
            if event.currency:
                params["price_currency"] = event.currency.upper()
            params["price_micro"] = str(event.value_micros)
        upi = opts.get("user_payment_info")
        if isinstance(upi, bool):
            params["user_payment_info"] = "true" if upi else "false"
        return params

    # --- build_request ------------------------------------------------------------------------

    def endpoint(self) -> str:
        """``{origin}/{api_version}/conversion_event`` (``base_url`` replaces the origin)."""
        return self.url(f"/{self.settings.api_version}/conversion_event")

    def make_nonce(self) -> str:
        """A fresh OAuth nonce (tests replace it to make signatures reproducible)."""
        return secrets.token_hex(16)

    def now(self) -> int:
        """The OAuth timestamp, epoch seconds (tests replace it)."""
        return int(time.time())

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        if len(batch) != 1:
            raise ValueError(f"X takes one conversion per request, got {len(batch)}")
        params: Mapping[str, str] = batch[0].record
        url = f"{self.endpoint()}?{rfc3986_query(params.items())}"
        s = self.settings
        authorization = oauth1_authorization(
            url,
            consumer_key=s.consumer_key.reveal(),
            consumer_secret=s.consumer_secret.reveal(),
            access_token=s.access_token.reveal(),
            access_token_secret=s.access_token_secret.reveal(),
            nonce=self.make_nonce(),
            timestamp=self.now(),
        )
        # The query string goes on the wire exactly as signed (httpx keeps %XX escapes).
        return httpx.Request(
            "POST", url, headers={"authorization": authorization, "accept": "application/json"}
        )

    # --- parse_response -----------------------------------------------------------------------

    def parse_response(
        self, batch: Sequence[Prepared], response: httpx.Response
    ) -> Outcome | Sequence[Outcome]:
        status = response.status_code
        if 200 <= status < 300:
            data = json_or_none(response)
            body = data.get("data") if isinstance(data, Mapping) else None
            if not isinstance(body, Mapping):
                # X always answers {"data": {...}}, but a 2xx means the request was accepted:
                # resending could count the conversion twice, so it is delivered, with a note.
                snippet = body_snippet(response, self.redact, empty="<empty body>")
                return Delivered(
                    note=f"X answered HTTP {status} without its data envelope (no attribution "
                    f"read; not resent): {snippet}"
                )
            return Delivered(attribution=self.attribution(batch[0].event, body))

        errors = _errors(response)
        codes = {e["code"] for e in errors}
        what = _describe(status, errors, response)
        reason = self.redact(what)
        if status == 401:
            return Halt(
                f"X refused the OAuth 1.0a credentials ({reason}): check consumer_key, "
                "consumer_secret, access_token and access_token_secret in [vendors.x]",
                status,
            )
        if status == 403 and codes & _CLIENT_APP_CODES:
            # The developer app (these credentials) is refused: nothing on them can go.
            return Halt(
                f"X refused this client application ({reason}): the developer app must be "
                "approved for the Ads API and onboarded as a mobile measurement partner",
                status,
            )
        if status == 403:
            # One advertiser account or app is locked or out of the token's reach: hold that
            # app's events only; other apps on these credentials keep flowing.
            app = self.halt_scope(batch[0]) if batch else None
            return Halt(
                f"X refused the conversions of {app or 'this app'} ({reason}): the advertiser "
                "account may be locked, or the access token's user has no access to it; its "
                "events are held, other apps go on",
                status,
                scope=app,
            )
        if status == 404 and "NO_PROVIDER_AVAILABLE_FOR_THIS_CLIENT_APPLICATION" in codes:
            # Partner-wide: no conversion from this client application can succeed until X
            # onboards it, so keep the events queued rather than dead-lettering them all.
            return Halt(
                f"X has no measurement provider for this client application ({reason}): "
                "ask X to complete the partner onboarding of this developer app",
                status,
            )
        if status in (408, 423, 429, 500, 503) or status >= 500:
            after = retry_after_seconds(response)
            if after is None and status == 429:
                after = _seconds_until_reset(response)
            if status in (500, 502, 504):  # failed while processing: it may have been recorded
                return self.unconfirmed(reason, status, after)
            return Retry(reason, after)
        detail = (
            "; ".join(f"{e['parameter']}: {e['message']}" for e in errors if e.get("parameter"))
            or None
        )
        return Rejected(reason, status, self.redact(detail) if detail else None)

    def halt_scope(self, prepared: Prepared) -> str | None:
        """The app a conversion is for (``"app 333903271"``): a 403 for one advertiser's app
        holds that app's events only."""
        record = prepared.record
        app_id = record.get("app_id") if isinstance(record, Mapping) else None
        return f"app {app_id}" if app_id else None

    def attribution(self, event: Event, data: Mapping[str, Any]) -> Attribution | None:
        """The attribution in X's ``data``: X's own (``twitter_attribution``, network ``x``)
        or the Audience Platform's (``tpn_attribution``, network ``tpn``); when both claimed,
        the later engagement (last touch). ``raw`` is X's whole ``data`` object."""
        candidates: list[tuple[str, Mapping[str, Any]]] = [
            (network, node)
            for network, key in (("x", "twitter_attribution"), ("tpn", "tpn_attribution"))
            if isinstance(node := data.get(key), Mapping) and node
        ]
        if not candidates:
            return None
        built = [_attribution(self.name, event.event_id, n, node, data) for n, node in candidates]
        if len(built) == 2 and built[0].engagement_time and built[1].engagement_time:
            return built[1] if built[1].engagement_time > built[0].engagement_time else built[0]
        return built[0]

    def rate_hint(self, response: httpx.Response) -> RateHint | None:
        """``x-rate-limit-remaining`` / ``-reset`` (and the account-level twins): the tighter."""
        hints = []
        for prefix in ("x-rate-limit", "x-account-rate-limit"):
            remaining = response.headers.get(f"{prefix}-remaining")
            reset = response.headers.get(f"{prefix}-reset")
            if remaining is None or reset is None:
                continue
            try:
                hints.append(RateHint(int(remaining), float(reset)))
            except ValueError:
                continue
        return min(hints, key=lambda h: h.remaining) if hints else None


# ------------------------------------------------------------------------------------------
# Response helpers


_NO_OPTIONS: Mapping[str, Any] = {}
#: 403 codes about the developer app (the credentials), not one advertiser's account or app.
_CLIENT_APP_CODES = frozenset({"UNAUTHORIZED_CLIENT_APPLICATION", "READONLY_CLIENT_APPLICATION"})


def _property_problems(props: Mapping[str, Any]) -> list[Problem]:
    """Problems with the properties X reads: ``level``, ``number_items``, item quantities."""
    found: list[Problem] = []
    level = props.get("level")
    if level is not None and _count(level) is None:
        found.append(Problem("properties.level", f"must be a whole number >= 0, got {level!r}"))
    number_items = props.get("number_items")
    if number_items is not None:
        if _count(number_items) is None:
            found.append(
                Problem(
                    "properties.number_items",
                    f"must be a whole number >= 0, got {number_items!r}",
                )
            )
        return found
    items = props.get("items")
    if items.__class__ is list or (
        isinstance(items, Sequence) and not isinstance(items, (str, bytes))
    ):
        for i, item in enumerate(items):
            if item.__class__ is dict or isinstance(item, Mapping):
                qty = item.get("quantity")
            else:
                qty = None
            if qty is not None and _count(qty) is None:
                found.append(
                    Problem(
                        f"properties.items[{i}].quantity",
                        "must be a whole number >= 0 (X's number_items is the sum of "
                        f"the items' quantities), got {qty!r}",
                    )
                )
    return found


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: object) -> int | None:
    """A whole number >= 0 from an int or a digit string; None otherwise."""
    if _is_int(value):
        assert isinstance(value, int)
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _number_items(props: Mapping[str, Any]) -> int | None:
    """``properties.number_items``, else the sum of ``properties.items[].quantity`` (1 each)."""
    if props.get("number_items") is not None:
        return _count(props["number_items"])
    items = props.get("items")
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)) or not items:
        return None
    total = 0
    for item in items:
        qty = item.get("quantity") if isinstance(item, Mapping) else None
        n = 1 if qty is None else _count(qty)
        if n is None:
            return None
        total += n
    return total


def _errors(response: httpx.Response) -> list[dict[str, str]]:
    """X's ``{"errors": [{"code", "message", "parameter"?}]}``; [] for any other body."""
    data = json_or_none(response)
    raw = data.get("errors") if isinstance(data, Mapping) else None
    out: list[dict[str, str]] = []
    if isinstance(raw, list):
        for e in raw:
            if isinstance(e, Mapping):
                out.append(
                    {
                        "code": str(e.get("code") or "UNKNOWN"),
                        "message": str(e.get("message") or ""),
                        **({"parameter": str(e["parameter"])} if e.get("parameter") else {}),
                    }
                )
    return out


def _describe(status: int, errors: list[dict[str, str]], response: httpx.Response) -> str:
    if not errors:
        # the caller redacts the whole reason
        return f"HTTP {status}: {body_snippet(response, str, empty='<empty body>')}"
    parts = []
    for e in errors:
        text = e["code"]
        if e["message"]:
            text += f": {e['message']}"
        if e.get("parameter"):
            text += f" (parameter {e['parameter']})"
        parts.append(text)
    return f"HTTP {status} " + "; ".join(parts)


def _seconds_until_reset(response: httpx.Response) -> float | None:
    reset = response.headers.get("x-rate-limit-reset")
    if not reset:
        return None
    try:
        wait = float(reset) - time.time()
    except ValueError:
        return None
    return wait if wait > 0 else None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _str_or_none(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _attribution(
    vendor: str,
    event_id: str,
    network: str,
    node: Mapping[str, Any],
    data: Mapping[str, Any],
) -> Attribution:
    props = node.get("promoted_properties")
    promoted: Mapping[str, Any] = props if isinstance(props, Mapping) else {}
    return Attribution(
        vendor=vendor,
        event_id=event_id,
        network=network,
        attribution_type=_str_or_none(node.get("attribution_type")),
        engagement_type=_str_or_none(node.get("engagement_type")),
        engagement_time=_parse_time(node.get("engagement_time")),
        country_code=_str_or_none(node.get("country_code") or node.get("country")),
        account_id=_str_or_none(promoted.get("account_id")),
        campaign_id=_str_or_none(promoted.get("campaign_id")),
        campaign_name=_str_or_none(promoted.get("campaign_name")),
        ad_group_id=_str_or_none(promoted.get("line_item_id")),
        objective=_str_or_none(promoted.get("line_item_objective")),
        creative_id=_str_or_none(node.get("tweet_id")),
        publisher_app_id=_str_or_none(promoted.get("publisher_app_id")),
        raw=dict(data),
    )

"""AppLovin Axon Conversion API: ``POST {base}/v1/event?pixel_id=<Axon Event Key>``.

One request carries up to 100 server events as ``{"events": [...]}`` (or the bare array of the
vendor's example, ``payload_format = "array"``) with ``Authorization: <Conversion API key>``
(the raw key, no ``Bearer``). AppLovin answers 200 (all processed), 400 (an error: the *whole*
batch was dropped) or 401 (authentication failed); no body is documented.

Because one invalid event makes AppLovin drop its whole batch, every event is checked twice.
At ``track()`` time :meth:`AppLovinDestination.validate` checks presence and formats cheaply
(:mod:`postback_applovin.checks`): a missing required field skips AppLovin for that event (a
:class:`~postback.Skip`; the other vendors still get it), a malformed one refuses the event (a
:class:`~postback.Problem`). When the record is built for delivery,
:meth:`AppLovinDestination.transform` applies every rule with the full parsers, and an event Axon
would refuse (queued under an older configuration, or replayed) is dead-lettered alone. A 400
anyway is a :class:`~postback.RejectedBatch`: the engine splits the batch until the bad event
is alone and dead-letters it with AppLovin's reason, and the rest are delivered.

``aleid`` and ``alart`` (AppLovin's click ids, added to the landing page's URL after an ad
click) are read from ``context.url``'s query string when the app did not pass them; what the
app passes wins.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import httpx
import orjson

from postback.plugin import (
    COUNTRIES,
    ConfigError,
    ConfigProblem,
    Delivered,
    Destination,
    Event,
    Halt,
    Outcome,
    Prepared,
    Problem,
    RateLimit,
    Rejected,
    RejectedBatch,
    Retry,
    RetryPolicy,
    Secret,
    Skip,
    body_snippet,
    context_field,
    hash_email,
    hash_phone,
    is_sha256_hex,
    normalize_email,
    normalize_phone,
    retry_after_seconds,
    setting,
    to_micros,
)
from postback_applovin._spec import (
    ACCOUNTING_MODES,
    ATTRIBUTION_MODELS,
    AXON_EVENTS,
    DATA_REQUIRED,
    ESI_VALUES,
    IDENTIFIER_FIELDS,
    ITEMS_KEY,
    MAX_BATCH,
    MPD_BOOL_KEYS,
    MPD_KEYS,
    MPD_REQUIRED,
    MPD_STR_KEYS,
    MPD_TS_KEYS,
    NULL_DATA_EVENTS,
    USER_ID_IN_DATA,
    money,
    url_problem,
    whole_number,
)
from postback_applovin.checks import EventChecks, click_ids_from_url

__all__ = [
    "DEFAULT_EVENT_MAP",
    "AppLovinDestination",
    "AppLovinEventInvalid",
    "AppLovinSettings",
]

#: Canonical event name -> Axon's event name. Canonical names Axon has no event for are not
#: routed to AppLovin (Axon refuses unknown names, which drops the whole batch).
DEFAULT_EVENT_MAP: dict[str, str] = {
    "page_view": "page_view",
    "view_item": "view_item",
    "view_cart": "view_cart",
    "add_to_cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "begin_checkout": "begin_checkout",
    "add_payment_info": "add_payment_info",
    "purchase": "purchase",
    "lead": "generate_lead",
    "sign_up": "sign_up",
    "login": "login",
    "search": "search",
    "subscribe": "subscribe",
    "app_open": "app_open",
}

#: user.os (any case) -> Axon's ``os`` ("ios", "android" or "desktop_os").
_OS_MAP: dict[str, str] = {
    "ios": "ios",
    "ipados": "ios",
    "iphone": "ios",
    "iphone os": "ios",
    "ipad": "ios",
    "android": "android",
    "desktop_os": "desktop_os",
    "desktop": "desktop_os",
    "windows": "desktop_os",
    "win": "desktop_os",
    "macos": "desktop_os",
    "mac": "desktop_os",
    "mac os": "desktop_os",
    "mac os x": "desktop_os",
    "osx": "desktop_os",
    "os x": "desktop_os",
    "linux": "desktop_os",
    "ubuntu": "desktop_os",
    "chromeos": "desktop_os",
    "chrome os": "desktop_os",
    "cros": "desktop_os",
}

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_US_ZIP_RE = re.compile(r"^(\d{5})(?:[-\s]?\d{4})?\Z")
_ZIP_PLUS4_RE = re.compile(r"^(\d{5})-\d{4}\Z")
_EVENT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*\Z")
_DEDUPE_RE = re.compile(r"^[\x21-\x7e]{1,255}\Z")
_ITEM_STR_FIELDS: tuple[str, ...] = (
    "item_name",
    "item_variant_id",
    "item_brand",
    "item_category",
    "item_category2",
)
_ITEM_STR_FIELDS_2: tuple[str, ...] = ("item_list_id", "affiliation")
_MISSING = object()


class AppLovinEventInvalid(ValueError):
    """An event that Axon would refuse reached delivery (queued under an older configuration,
    or replayed): it is dead-lettered with this message instead of dropping a whole batch."""


def _check_pixel_id(_: object, __: attrs.Attribute[Any], value: str) -> None:
    if not value.strip() or any(c.isspace() for c in value):
        raise ValueError(
            "must be your Axon Event Key (Axon dashboard: Account > General > Keys), without spaces"
        )


def _check_source_url(_: object, __: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        why = url_problem(value, web=False)
        if why:
            raise ValueError(why)


def _check_region(_: object, __: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and value.strip().upper() not in COUNTRIES:
        raise ValueError(
            f"{value!r} is not an ISO 3166 alpha-2 region code (e.g. 'US', 'GB', 'DE')"
        )


def _check_extra_names(_: object, __: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if len(value) > 1 and all(len(name) == 1 for name in value):
        # A TOML string where a list belongs: the settings converter split it into letters.
        raise ValueError("must be a list of event names such as ['add_to_wishlist'], not a string")
    bad = [name for name in value if not _EVENT_NAME_RE.match(name)]
    if bad:
        raise ValueError(
            "not Axon event names (use snake_case such as 'add_to_wishlist'): "
            + ", ".join(map(repr, bad))
        )


def _event_map_problems(
    event_map: Mapping[str, str], known: frozenset[str], vendor: str
) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    for canonical, vendor_name in event_map.items():
        if vendor_name not in known:
            out.append(
                ConfigProblem(
                    f"vendors.{vendor}.event_map.{canonical}",
                    f"{vendor_name!r} is not an Axon event name, and Axon drops the whole "
                    f"batch for an unknown name; use one of {', '.join(sorted(AXON_EVENTS))} "
                    "(or list it in extra_event_names if AppLovin has added it)",
                )
            )
    return out


@attrs.frozen
class AppLovinSettings:
    """``[vendors.applovin]``: AppLovin's own settings (the common ones are the core's)."""

    api_key: Secret = setting(
        help="Conversion API key, sent raw in the Authorization header (no 'Bearer'). Ask "
        "your Axon representative or Support, or see Keys in the Axon dashboard.",
        secret=True,
    )
    pixel_id: str = setting(
        help="Your Axon Event Key (Axon dashboard: Account > General > Keys), sent as the "
        "pixel_id query parameter.",
        validator=_check_pixel_id,
    )
    payload_format: Literal["object", "array"] = setting(
        help="'object' sends {\"events\": [...]} as the API reference documents; 'array' sends "
        "the bare JSON array of the vendor's example (and stape's tag).",
        default="object",
    )
    empty_data: Literal["object", "null"] = setting(
        help="What page_view and app_open (events with no data to pass) send as the required "
        "'data': 'object' sends {} (the API reference marks data a required object); 'null' "
        "sends null, as the lead-gen documentation's page_view example does.",
        default="object",
    )
    esi: Literal["auto", "web", "app"] = setting(
        help="Event source indicator when neither the per-event option nor "
        "context.action_source says: 'auto' ('app' for app_open and for events with "
        "user.ifa/idfv but no context.url, else 'web'), 'web' or 'app'.",
        default="auto",
    )
    event_source_url: str | None = setting(
        help="Complete URL sent as event_source_url when an event has no context.url (e.g. "
        "'https://shop.example.com/' for purchases from a payment webhook).",
        default=None,
        validator=_check_source_url,
    )
    hash_pii: bool = setting(
        help="SHA-256 email and phone before they leave the process (true), or send them "
        "normalised but unhashed for Axon to hash (false).",
        default=True,
    )
    default_phone_region: str | None = setting(
        help="ISO 3166 alpha-2 region (e.g. 'US') for phone numbers given without a "
        "+country prefix.",
        default=None,
        validator=_check_region,
    )
    extra_event_names: tuple[str, ...] = setting(
        help="Axon event names to allow in event_map beyond the documented ones (for events "
        "AppLovin adds later).",
        default=(),
        validator=_check_extra_names,
    )


def _text(value: object) -> str | None:
    """A string field: str or int (not bool) -> stripped str; empty or other types -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _int(value: object) -> int | None:
    return whole_number(value)


def _number(value: object) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


class AppLovinDestination(Destination):
    """AppLovin Axon Conversion API (``postback-applovin``)."""

    name = "applovin"
    settings_class = AppLovinSettings
    default_origin = "https://b.applovin.com"
    default_event_map = DEFAULT_EVENT_MAP
    accepts_custom_events = False
    max_batch_size = MAX_BATCH
    #: Undocumented for the Conversion API; 1,000 requests/minute is the only Axon API limit
    #: published (Campaign Management API). Up to 100,000 events a minute at 100 per request.
    default_rate_limit = RateLimit(1000, 60)
    #: Retries are safe: a resent dedupe_id is merged (within 5 minutes) or ignored (later).
    retry_policy = RetryPolicy(
        max_attempts=20, max_age=24 * 3600.0, initial_backoff=1.0, max_backoff=300.0
    )
    #: Every event carries a dedupe_id (the event id unless given): a request whose outcome
    #: is unknown (no answer, 5xx) is safe to send again.
    idempotent = True
    default_concurrency = 4
    option_keys = frozenset({"esi", "dedupe_id", "measurement_partner_data"})
    fields = (
        context_field(
            "aleid",
            help="AppLovin's click id from the landing page URL (?aleid=) or the _axeid cookie.",
        ),
        context_field(
            "alart",
            help="AppLovin's attribution token from the landing page URL (?alart=) or the "
            "_axart cookie.",
        ),
        context_field("axwrt", help="The AppLovin Pixel's _axwrt cookie."),
    )
    #: Advertising and attribution: sent only with the user's consent to ads.
    purposes = ("ads",)
    version = "0.1.0"
    settings: AppLovinSettings

    def __init__(
        self,
        settings: AppLovinSettings,
        *,
        base_url: str | None = None,
        event_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings, base_url=base_url, event_map=event_map)
        #: Axon's event names, and those the settings add.
        self.known_names = AXON_EVENTS | frozenset(settings.extra_event_names)
        problems = _event_map_problems(self.event_map, self.known_names, self.name)
        if problems:
            raise ConfigError(problems)
        region = settings.default_phone_region
        #: The region of phone numbers given without a +country code, if any.
        self.phone_region = region.strip().upper() if region else None
        self._opt = f"vendors.{self.name}"
        self._checks = EventChecks(self)

    # --- validate / transform -------------------------------------------------------------------

    def validate(self, event: Event) -> Iterable[Problem | Skip]:
        """What keeps Axon from taking ``event``, checked cheaply at ``track()`` time: a
        :class:`~postback.Skip` for a missing required field (IP address, user agent, page
        URL, an identifier, or what this event type needs), a :class:`~postback.Problem` for a
        malformed one. See :mod:`postback_applovin.checks`."""
        return self._checks.findings(event)

    def transform(self, event: Event) -> dict[str, Any]:
        """The Axon server event. Raises :class:`AppLovinEventInvalid` (the event is
        dead-lettered with the reason) if the event became invalid after it was queued."""
        record, problems = self._build(event)
        if problems:
            raise AppLovinEventInvalid(
                "AppLovin would refuse this event (and drop its whole batch): "
                + "; ".join(f"{p.field}: {p.message}" for p in problems)
            )
        return record

    def _build(self, event: Event) -> tuple[dict[str, Any], list[Problem]]:
        problems: list[Problem] = []
        opts = event.options_for(self.name)  # the core refuses keys not in option_keys
        vname = self.vendor_event_name(event.name)
        if vname is None or vname not in self.known_names:
            problems.append(self.name_problem(event.name, vname))

        esi = self.esi(event, vname, opts, problems)
        url = self._source_url(event, esi, problems)

        dedupe: object = opts.get("dedupe_id", event.event_id)
        if not isinstance(dedupe, str) or not _DEDUPE_RE.match(dedupe):
            problems.append(
                Problem(
                    f"{self._opt}.dedupe_id",
                    "must be 1 to 255 printable ASCII characters without spaces (the same "
                    "dedupe_id as the Axon Pixel event, e.g. an order id)",
                )
            )
            dedupe = event.event_id

        record: dict[str, Any] = {
            "name": vname,
            "event_time": event.timestamp_ms,
            "event_source_url": url,
            "dedupe_id": dedupe,
            "user_data": self._user_data(event, esi, problems),
            "data": self._data(event, vname, problems) if vname else None,
        }
        if "measurement_partner_data" in opts:
            mpd = self.measurement(opts["measurement_partner_data"], problems)
            if mpd is not None:
                record["measurement_partner_data"] = mpd
        return record, problems

    # --- pieces ----------------------------------------------------------------------------------

    def name_problem(self, event_name: str, vname: str | None) -> Problem:
        """The problem of an event whose name Axon has no event for."""
        if vname is None:
            return Problem(
                "name",
                f"AppLovin has no event for {event_name!r}: map it in "
                f"[vendors.{self.name}.event_map] to one of "
                f"{', '.join(sorted(self.known_names))}, or do not send it to {self.name}",
            )
        return Problem(
            "name",
            f"{event_name!r} maps to {vname!r}, which is not an Axon event name (Axon "
            f"drops the whole batch for it); fix [vendors.{self.name}.event_map]",
        )

    def esi(
        self, event: Event, vname: str | None, opts: Mapping[str, Any], problems: list[Problem]
    ) -> str:
        """Event source indicator: the per-event option, else context.action_source ("app" ->
        app, anything else -> web), else the ``esi`` setting, else (auto) "app" for app_open
        and for events with a device id but no page URL, else "web"."""
        opt = opts.get("esi")
        if opt is not None:
            if isinstance(opt, str) and opt in ESI_VALUES:
                return opt
            problems.append(Problem(f"{self._opt}.esi", "must be 'web' or 'app'"))
        source = (event.context.action_source or "").strip().lower()
        if source:
            return "app" if source == "app" else "web"
        if self.settings.esi != "auto":
            return self.settings.esi
        if vname == "app_open":
            return "app"
        if (event.user.ifa or event.user.idfv) and not event.context.url:
            return "app"
        return "web"

    def _source_url(self, event: Event, esi: str, problems: list[Problem]) -> str | None:
        url = event.context.url
        if url is not None:
            why = url_problem(url, web=esi == "web")
            if why:
                problems.append(Problem("context.url", why))
            return url
        fallback = self.settings.event_source_url
        if fallback is None:
            problems.append(
                Problem(
                    "context.url",
                    "Axon requires event_source_url: pass context={'url': 'https://...'} (the "
                    "complete URL where the event happened) or set event_source_url in "
                    f"[vendors.{self.name}] for events without a page",
                )
            )
            return None
        why = url_problem(fallback, web=esi == "web")
        if why:
            problems.append(
                Problem(
                    "context.url",
                    f"is missing and the configured event_source_url fallback {why}",
                )
            )
        return fallback

    def _user_data(self, event: Event, esi: str, problems: list[Problem]) -> dict[str, Any]:
        u, ctx = event.user, event.context
        ud: dict[str, Any] = {}
        if u.ip_address is None:
            problems.append(
                Problem(
                    "user.ip_address",
                    "Axon requires the client's IP address (client_ip_address): pass "
                    "user={'ip_address': ...} from the request (IPv4 preferred)",
                )
            )
        else:
            try:
                ipaddress.ip_address(u.ip_address)
            except ValueError:
                problems.append(
                    Problem("user.ip_address", "is not an IPv4 or IPv6 address (e.g. 203.0.113.7)")
                )
            ud["client_ip_address"] = u.ip_address
        if u.user_agent is None:
            problems.append(
                Problem(
                    "user.user_agent",
                    "Axon requires the browser or device user agent (client_user_agent): pass "
                    "user={'user_agent': request.headers['User-Agent']}",
                )
            )
        else:
            ud["client_user_agent"] = u.user_agent
        from_url = click_ids_from_url(ctx.url)  # what the app passes wins
        for key in ("aleid", "alart", "axwrt"):
            value = ctx.get(key) or from_url.get(key)
            if value is not None:
                ud[key] = value
        if u.email is not None:
            if is_sha256_hex(u.email):
                ud["email"] = u.email.lower()
            elif not _EMAIL_RE.match(u.email):
                problems.append(
                    Problem(
                        "user.email",
                        "is not an email address (name@example.com) nor a SHA-256 hex digest",
                    )
                )
            else:
                ud["email"] = (
                    hash_email(u.email) if self.settings.hash_pii else normalize_email(u.email)
                )
        if u.phone is not None:
            try:
                if self.settings.hash_pii or is_sha256_hex(u.phone):
                    ud["phone"] = hash_phone(u.phone, self.phone_region, keep_plus=False)
                else:  # unhashed: E.164 with the +, as the vendor's example (+11234567890)
                    ud["phone"] = normalize_phone(u.phone, self.phone_region)
            except ValueError as exc:
                problems.append(
                    Problem(
                        "user.phone",
                        f"cannot be used ({exc}): pass it in international form "
                        "('+14155550123'), or set default_phone_region in "
                        f"[vendors.{self.name}] for national numbers",
                    )
                )
        if u.user_id is not None:
            ud["user_id"] = u.user_id
        if u.client_id is not None:
            ud["client_id"] = u.client_id
        if ctx.session_id is not None:
            ud["sid"] = ctx.session_id
        if u.ifa is not None:
            ud["ifa"] = u.ifa
        if u.idfv is not None:
            ud["idfv"] = u.idfv
        if u.os is not None:
            os_name = _OS_MAP.get(u.os.strip().lower())
            if os_name is not None:  # other values (tvos, ...) are left out: os is optional
                ud["os"] = os_name
        ud["esi"] = esi
        country: str | None = None
        if u.country is not None:
            country = u.country.strip().upper()
            if country in COUNTRIES:
                ud["country_code"] = country
            else:
                hint = " (the United Kingdom is 'GB')" if country == "UK" else ""
                problems.append(
                    Problem(
                        "user.country",
                        f"{u.country!r} is not an ISO 3166 alpha-2 country code such as 'US'{hint}",
                    )
                )
        if u.zip is not None:
            zip_code = u.zip.strip()
            if country == "US":
                m = _US_ZIP_RE.match(zip_code)
                if m is None:
                    problems.append(
                        Problem(
                            "user.zip",
                            "is not a US ZIP code: use 5 digits, or ZIP+4 such as '94105-1234'",
                        )
                    )
                else:
                    ud["zip"] = m.group(1)
            else:
                m = _ZIP_PLUS4_RE.match(zip_code) if country is None else None
                ud["zip"] = m.group(1) if m else zip_code
        if not any(u.get(f) or ctx.get(f) or from_url.get(f) for f in IDENTIFIER_FIELDS):
            problems.append(
                Problem(
                    "user",
                    "Axon needs at least one user identifier: user.client_id, user.user_id, "
                    "user.email, user.phone, context.axwrt or context.alart (context.aleid "
                    "alone is not enough)",
                )
            )
        return ud

    def _data(self, event: Event, vname: str, problems: list[Problem]) -> dict[str, Any] | None:
        if vname in NULL_DATA_EVENTS:
            return {} if self.settings.empty_data == "object" else None
        props = event.properties
        required = DATA_REQUIRED.get(vname, ())
        data: dict[str, Any] = {}
        if vname in USER_ID_IN_DATA and event.user.user_id:
            data["user_id"] = event.user.user_id
        if event.currency is not None:
            data["currency"] = event.currency
        elif "currency" in required:
            problems.append(
                Problem(
                    "currency",
                    f"Axon's {vname} needs a currency: pass currency='USD' (ISO 4217)",
                )
            )
        if event.value_micros is not None:
            if event.value_micros < 0:
                problems.append(Problem("value", "must not be negative"))
            data["value"] = money(event.value_micros)
        elif "value" in required:
            zero = " (0 for a lead without a value)" if vname == "generate_lead" else ""
            problems.append(
                Problem(
                    "value",
                    f"Axon's {vname} needs a value: pass value=49.99 and currency='USD'{zero}",
                )
            )
        tid = props.get("transaction_id")
        if tid is not None:
            text = _text(tid)
            if text is None:
                problems.append(
                    Problem("properties.transaction_id", "must be a non-empty string (order id)")
                )
            else:
                data["transaction_id"] = text
        elif "transaction_id" in required:
            problems.append(
                Problem(
                    "properties.transaction_id",
                    f"Axon's {vname} needs a transaction_id: pass "
                    "properties={'transaction_id': '<order id>'}",
                )
            )
        for key in ("shipping", "tax"):
            if props.get(key) is not None:
                amount = self._amount(props[key], f"properties.{key}", problems)
                if amount is not None:
                    data[key] = amount
        self._items(props, vname, required, data, problems)
        for key in ("search_term", "payment_type", "method"):
            raw = props.get(key)
            if raw is not None:
                text = _text(raw)
                if text is None:
                    problems.append(Problem(f"properties.{key}", "must be a non-empty string"))
                else:
                    data[key] = text
            elif key in required:
                problems.append(
                    Problem(
                        f"properties.{key}",
                        f"Axon's {vname} needs {key}: pass properties={{'{key}': '...'}}",
                    )
                )
        return data

    def _items(
        self,
        props: Mapping[str, Any],
        vname: str,
        required: Sequence[str],
        data: dict[str, Any],
        problems: list[Problem],
    ) -> None:
        src = "results" if vname == "search" and "results" in props else "items"
        raw = props.get(src)
        path = f"properties.{src}"
        example = "[{'item_id': 'SKU-1', 'quantity': 1, 'price': 9.99}]"
        if raw is None or (isinstance(raw, (list, tuple)) and not raw):
            if "items" in required:
                problems.append(
                    Problem(path, f"Axon's {vname} needs at least one item: items={example}")
                )
            return
        if not isinstance(raw, (list, tuple)):
            problems.append(Problem(path, f"must be a list of items such as {example}"))
            return
        data[ITEMS_KEY.get(vname, "items")] = [
            self._item(item, f"{path}[{i}]", problems) for i, item in enumerate(raw)
        ]

    def _item(self, raw: object, path: str, problems: list[Problem]) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            problems.append(
                Problem(path, "must be a dict such as {'item_id': 'SKU-1', 'quantity': 1}")
            )
            return {}
        out: dict[str, Any] = {}
        item_id = _text(raw.get("item_id"))
        if item_id is None:
            problems.append(
                Problem(f"{path}.item_id", "Axon requires item_id: the product's id as a string")
            )
        else:
            out["item_id"] = item_id

        def text_field(key: str, source: object) -> None:
            if source is None:
                return
            text = _text(source)
            if text is None:
                problems.append(Problem(f"{path}.{key}", "must be a non-empty string"))
            else:
                out[key] = text

        for key in _ITEM_STR_FIELDS:
            source = raw.get(key)
            if key == "item_variant_id" and source is None:
                source = raw.get("item_variant")  # GA4's name for it
            text_field(key, source)
        if raw.get("item_category_id") is not None:
            cat = _int(raw["item_category_id"])
            if cat is None:
                problems.append(
                    Problem(f"{path}.item_category_id", "must be an integer (a category id)")
                )
            else:
                out["item_category_id"] = cat
        for key in _ITEM_STR_FIELDS_2:
            text_field(key, raw.get(key))
        if raw.get("image_url") is not None:
            image = raw["image_url"]
            why = url_problem(image, web=True) if isinstance(image, str) else "must be a URL"
            if why:
                problems.append(Problem(f"{path}.image_url", why))
            else:
                out["image_url"] = image
        if raw.get("price") is not None:
            price = self._amount(raw["price"], f"{path}.price", problems)
            if price is not None:
                out["price"] = price
        if raw.get("discount") is not None:
            discount = self._amount(raw["discount"], f"{path}.discount", problems)
            if discount is not None:
                out["discount"] = discount
        quantity_raw = raw.get("quantity")
        if quantity_raw is None:
            out["quantity"] = 1  # Axon's default
        else:
            quantity = _int(quantity_raw)
            if quantity is None or quantity < 1:
                problems.append(Problem(f"{path}.quantity", "must be a whole number of at least 1"))
            else:
                out["quantity"] = quantity
        return out

    @staticmethod
    def _amount(value: object, path: str, problems: list[Problem]) -> int | float | None:
        try:
            micros = to_micros(value)
        except ValueError as exc:
            problems.append(Problem(path, f"{exc} (an amount in major units, e.g. 9.99)"))
            return None
        if micros < 0:
            problems.append(Problem(path, "must not be negative"))
            return None
        return money(micros)

    def measurement(self, raw: object, problems: list[Problem]) -> dict[str, Any] | None:
        """``measurement_partner_data`` as Axon takes it; what is wrong goes to ``problems``."""
        base = f"{self._opt}.measurement_partner_data"
        if not isinstance(raw, Mapping):
            problems.append(
                Problem(
                    base,
                    "must be a dict with is_claimable, attribution_model, attribution_share and "
                    "accounting_mode",
                )
            )
            return None
        for key in raw:
            if key not in MPD_KEYS:
                problems.append(
                    Problem(f"{base}.{key}", f"unknown key; Axon takes: {', '.join(MPD_KEYS)}")
                )
        for key in MPD_REQUIRED:
            if raw.get(key) is None:
                problems.append(Problem(f"{base}.{key}", "required by Axon"))
        out: dict[str, Any] = {}
        for key in MPD_KEYS:
            value = raw.get(key, _MISSING)
            if value is _MISSING or (value is None and key in MPD_REQUIRED):
                continue
            where = f"{base}.{key}"
            if key in MPD_BOOL_KEYS:
                if isinstance(value, bool):
                    out[key] = value
                else:
                    problems.append(Problem(where, "must be true or false"))
            elif key in ("attribution_model", "accounting_mode"):
                allowed = ATTRIBUTION_MODELS if key == "attribution_model" else ACCOUNTING_MODES
                if isinstance(value, str) and value.strip().upper() in allowed:
                    out[key] = value.strip().upper()
                else:
                    problems.append(Problem(where, f"must be one of {', '.join(sorted(allowed))}"))
            elif key == "attribution_share":
                share = _number(value)
                if share is None or not 0 <= share <= 1:
                    problems.append(
                        Problem(where, "must be a number from 0 to 1 (AppLovin's share of credit)")
                    )
                else:
                    out[key] = share
            elif key == "attribution_lookback_window_hours":
                if value is None:
                    continue  # empty: infinite lookback
                hours = _number(value)
                if hours is None or hours < 0:
                    problems.append(
                        Problem(where, "must be a number of hours (omit it for infinite lookback)")
                    )
                else:
                    out[key] = hours
            elif key in MPD_STR_KEYS:
                text = _text(value)
                if text is None:
                    problems.append(Problem(where, "must be a non-empty string"))
                else:
                    out[key] = text
            elif key in MPD_TS_KEYS:
                if value is None:
                    out[key] = None
                elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    out[key] = value
                else:
                    problems.append(Problem(where, "must be epoch milliseconds (an integer)"))
        return out

    # --- the request --------------------------------------------------------------------------

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        events = [p.record for p in batch]
        body: object = events if self.settings.payload_format == "array" else {"events": events}
        return httpx.Request(
            "POST",
            self.parsed_url("/v1/event", {"pixel_id": self.settings.pixel_id}),
            headers={
                "authorization": self.settings.api_key.reveal(),
                "content-type": "application/json",
            },
            content=orjson.dumps(body),
        )

    def parse_response(
        self, batch: Sequence[Prepared], response: httpx.Response
    ) -> Outcome | Sequence[Outcome]:
        status = response.status_code
        if status == 200:
            return Delivered()
        body = self._body_text(response)
        said = f": {body}" if body else ""
        if status in (401, 403):
            return Halt(
                f"AppLovin refused the credentials (HTTP {status}{said}); check api_key (the "
                f"raw Conversion API key, no 'Bearer') and pixel_id (your Axon Event Key) in "
                f"[vendors.{self.name}]",
                status,
            )
        if status == 400:
            return RejectedBatch(
                f"AppLovin refused the batch (HTTP 400, the batch was dropped){said}",
                400,
                likely_setting="payload_format",  # when every batch is refused the same way
            )
        if status == 413:
            return RejectedBatch(
                f"AppLovin refused the request as too large (HTTP 413){said}",
                413,
                likely_setting="batch_size",
            )
        if status in (404, 405) or 300 <= status < 400:
            where = response.headers.get("location")
            moved = f" (redirect to {where})" if where else ""
            return Halt(
                f"AppLovin's endpoint answered HTTP {status}{moved}: check base_url in "
                f"[vendors.{self.name}] (the path /v1/event is appended to it)",
                status,
            )
        if status in (408, 429) or status >= 500:
            return Retry(f"HTTP {status}{said}", retry_after_seconds(response))
        if 200 <= status < 300:
            # AppLovin documents only 200 ("all processed"), but any 2xx means the request was
            # taken: resending could count the events twice, so they are delivered, with a note.
            return Delivered(
                note=f"AppLovin answered HTTP {status} (only 200 is documented); not resent{said}"
            )
        return Rejected(f"AppLovin refused the events (HTTP {status}){said}", status, body or None)

    def _body_text(self, response: httpx.Response) -> str:
        """The response body as short text for reasons: never raises, never shows a secret."""
        return body_snippet(response, self.redact, limit=500)

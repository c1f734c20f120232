"""What AppLovin checks at ``track()`` time: presence (a Skip) and formats (a Problem), cheaply.

This runs on the application's thread, once for every event routed to AppLovin, so it never
builds the wire record, hashes an email or parses a phone number. It decides two things:

- **Skip** (a :class:`~postback.Skip`: the event is well formed, Axon cannot use it as given;
  the other vendors still get it): no client IP address, no user agent, no page URL (and no
  ``event_source_url`` fallback), no user identifier, or a field Axon requires for this event
  type missing: currency, value, transaction id, items (or an item's ``item_id``), search term.
- **Problem** (a :class:`~postback.Problem`: the event is malformed: ``track()`` refuses it):
  an IP address, URL, email, phone, country, ZIP, amount, quantity or item of the wrong type or
  format, a negative value, an unknown or bad per-event option, an event name Axon lacks.

:meth:`AppLovinDestination.transform` checks everything again when it builds the record at
delivery (with the full parsers), and an event Axon would still refuse is dead-lettered alone
instead of dropping its batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from postback.plugin import (
    COUNTRIES,
    MAX_VALUE,
    Event,
    Problem,
    Skip,
    is_ip_address,
    is_sha256_hex,
    to_micros,
)
from postback_applovin._spec import (
    DATA_REQUIRED,
    ESI_VALUES,
    MAX_WHOLE,
    NULL_DATA_EVENTS,
    url_problem,
    whole_number,
)

if TYPE_CHECKING:
    from postback_applovin.destination import AppLovinDestination

__all__ = ["EventChecks", "click_ids_from_url"]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+").fullmatch
#: The start of a complete http(s) URL without port or user info (scheme and host): with no
#: whitespace anywhere (:func:`_plain_web_url`), the common case, checked fast.
_WEB_URL_START = re.compile(r"https?://[^\s/?#:@]+(?:[/?#]|\Z)").match
_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
).fullmatch
_US_ZIP_RE = re.compile(r"(\d{5})(?:[-\s]?\d{4})?")
_DEDUPE_RE = re.compile(r"[\x21-\x7e]{1,255}")
#: Characters of a phone number written for humans: digits, +, spaces, dashes, dots, brackets.
_PHONE_RE = re.compile(r"\+?[\d\s().\-]{5,30}")
#: What each item key must be (keys not listed are left out of the record, unchecked).
_ITEM_TEXT = frozenset(
    {
        "item_id",
        "item_name",
        "item_variant_id",
        "item_variant",
        "item_brand",
        "item_category",
        "item_category2",
        "item_list_id",
        "affiliation",
    }
)
_NO_OPTIONS: Mapping[str, Any] = {}
_EXAMPLE_ITEMS = "[{'item_id': 'SKU-1', 'quantity': 1, 'price': 9.99}]"
#: What the app passes for an Axon ``data`` field, and how to pass it.
_DATA_FIELDS: Mapping[str, tuple[str, str]] = {
    "currency": ("currency", "pass currency='USD' (ISO 4217)"),
    "value": ("value", "pass value=49.99 and currency='USD'"),
    "transaction_id": (
        "properties.transaction_id",
        "pass properties={'transaction_id': '<order id>'}",
    ),
    "items": ("properties.items", f"pass properties={{'items': {_EXAMPLE_ITEMS}}}"),
    "search_term": ("properties.search_term", "pass properties={'search_term': '...'}"),
    "payment_type": ("properties.payment_type", "pass properties={'payment_type': '...'}"),
    "method": ("properties.method", "pass properties={'method': '...'}"),
}


def click_ids_from_url(url: str | None) -> dict[str, str]:
    """``aleid`` and ``alart`` from a page URL's query string (AppLovin adds them to the
    landing page after an ad click), for events whose ``context`` does not carry them."""
    if not url or ("aleid=" not in url and "alart=" not in url):
        return {}
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return {}
    out = {}
    for key in ("aleid", "alart"):
        values = query.get(key)
        if values and values[0].strip():
            out[key] = values[0].strip()
    return out


def _plain_web_url(url: str) -> bool:
    """``http(s)://host/...`` without whitespace, port or user info (anything else gets the
    full check): the host is matched, the rest only searched for whitespace."""
    return (
        _WEB_URL_START(url) is not None
        and " " not in url
        and "\t" not in url
        and "\n" not in url
        and "\r" not in url
    )


def _is_text(value: object) -> bool:
    """A string field: a non-blank str, or an int (not bool)."""
    if value.__class__ is str:
        return bool(value.strip())
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int) and not isinstance(value, bool)


def _is_amount(value: object) -> bool:
    """A non-negative amount in major units (a number or a decimal string): exactly what
    :meth:`AppLovinDestination._amount <postback_applovin.destination.AppLovinDestination._amount>`
    sends, through postback's :func:`~postback.plugin.to_micros` (below ``MAX_VALUE``, at
    most 64 characters as a string, not negative once rounded to micros)."""
    cls = value.__class__
    if (cls is float or cls is int) and 0 <= value < MAX_VALUE:  # type: ignore[operator]
        return True  # the common case (NaN is not in range): to_micros takes every such one
    try:
        micros = to_micros(value)
    except (ValueError, ArithmeticError):
        return False
    return micros >= 0


def _is_quantity(value: object) -> bool:
    """A whole number of at least 1 that the record can carry (:func:`whole_number`, as
    transform reads it)."""
    number = whole_number(value)
    return number is not None and number >= 1


def _is_category_id(value: object) -> bool:
    """An integer (or digits, or an integral float), within what the record can carry
    (:func:`whole_number`, as transform reads it)."""
    return whole_number(value) is not None


def _is_image_url(value: object) -> bool:
    return isinstance(value, str) and url_problem(value, web=True) is None


#: MAX_VALUE as a float (exact): a float compared with it needs no int conversion.
_MAX_AMOUNT = float(MAX_VALUE)
_AMOUNT = (
    f"must be a non-negative amount in major units below {MAX_VALUE:,} (a number, or a "
    "decimal string of at most 64 characters), e.g. 9.99"
)
#: What the properties Axon reads must be (other keys are not sent, so not checked).
_PROPERTY_KINDS: Mapping[str, str] = {
    "transaction_id": "text",
    "search_term": "text",
    "payment_type": "text",
    "method": "text",
    "shipping": "amount",
    "tax": "amount",
    "items": "items",
    "results": "items",
}
#: Item key -> (its check, what is wrong when it fails). Other keys are left out of the record.
_ITEM_CHECKS: Mapping[str, tuple[Callable[[object], bool], str]] = {
    **dict.fromkeys(_ITEM_TEXT, (_is_text, "must be a non-empty string")),
    "price": (_is_amount, _AMOUNT),
    "discount": (_is_amount, _AMOUNT),
    "quantity": (_is_quantity, "must be a whole number of at least 1, at most 19 digits"),
    "item_category_id": (
        _is_category_id,
        "must be an integer (a category id) of at most 19 digits",
    ),
    "image_url": (
        _is_image_url,
        "must be a complete URL with a scheme and a host, e.g. 'https://shop.example.com/a.png'",
    ),
}


class EventChecks:
    """The track-time checks of one AppLovin destination (its Skips are built once)."""

    def __init__(self, destination: AppLovinDestination) -> None:
        self.dest = destination
        self.vendor = vendor = destination.name
        self._opt = f"vendors.{vendor}"
        elsewhere = (
            f"or list the events AppLovin should get with events = [...] in [vendors.{vendor}]"
        )
        self._skip_no_ip = Skip(
            "no IP address",
            "user.ip_address",
            "pass user={'ip_address': ...} from the request (IPv4 preferred), " + elsewhere,
            vendor,
        )
        self._skip_no_ua = Skip(
            "no user agent",
            "user.user_agent",
            "pass user={'user_agent': request.headers['User-Agent']}, " + elsewhere,
            vendor,
        )
        self._skip_no_url = Skip(
            "no page URL",
            "context.url",
            "pass context={'url': 'https://...'} (the complete URL where the event happened), "
            f"or set event_source_url in [vendors.{vendor}] for events without a page, "
            + elsewhere,
            vendor,
        )
        fallback = destination.settings.event_source_url
        self._fallback_is_web = fallback is None or url_problem(fallback, web=True) is None
        self._skip_no_identifier = Skip(
            "no user identifier",
            "user",
            "pass one of user.client_id, user.user_id, user.email, user.phone, context.axwrt "
            "or context.alart (context.aleid alone is not enough), " + elsewhere,
            vendor,
        )
        self._skip_no_item_id = Skip(
            "item without item_id",
            "properties.items",
            "give every item its product id: items=[{'item_id': 'SKU-1', ...}]",
            vendor,
        )
        #: (Axon event, data field) -> the skip for that field missing.
        self._skip_missing: dict[tuple[str, str], Skip] = {}
        #: Axon event -> (needs currency, needs value, the properties it requires).
        self._plans: dict[str, tuple[bool, bool, tuple[str, ...]]] = {}
        self._elsewhere = elsewhere

    # --- the whole check ---------------------------------------------------------------------

    def findings(self, event: Event) -> list[Problem | Skip]:
        """Every Skip and Problem AppLovin has with ``event`` (written for speed: it runs in
        every ``track()`` routed to AppLovin)."""
        found: list[Problem | Skip] = []
        opts = _NO_OPTIONS
        if event.vendor_options:
            opts = event.options_for(self.vendor)
            if opts:
                found.extend(self._option_problems(opts))
        dest = self.dest
        vname = dest.event_map.get(event.name)
        if vname is None or vname not in dest.known_names:
            found.append(dest.name_problem(event.name, vname))
        user, ctx = event.user, event.context

        ip = user.ip_address
        if ip is None:
            found.append(self._skip_no_ip)
        elif _IPV4(ip) is None and not is_ip_address(ip):
            found.append(
                Problem("user.ip_address", "is not an IPv4 or IPv6 address (e.g. 203.0.113.7)")
            )
        if user.user_agent is None:
            found.append(self._skip_no_ua)
        url = ctx.url
        if url is None:
            self._check_fallback(event, vname, opts, found)
        elif not _plain_web_url(url):
            esi = dest.esi(event, vname, opts, [])
            why = url_problem(url, web=esi == "web")
            if why:
                found.append(Problem("context.url", why))
        email = user.email
        if not (
            email
            or user.user_id
            or user.client_id
            or user.phone
            or ctx.get("axwrt")
            or ctx.get("alart")
            or "alart" in click_ids_from_url(url)
        ):
            found.append(self._skip_no_identifier)
        if email is not None and _EMAIL(email) is None and not is_sha256_hex(email):
            found.append(
                Problem(
                    "user.email",
                    "is not an email address (name@example.com) nor a SHA-256 hex digest",
                )
            )
        if user.phone is not None:
            self._check_phone(user.phone, found)
        if user.country is not None or user.zip is not None:
            self._check_place(user.country, user.zip, found)
        if vname is not None and vname not in NULL_DATA_EVENTS:
            self._check_data(event, vname, found)
        return found

    # --- pieces --------------------------------------------------------------------------------

    def _check_fallback(
        self, event: Event, vname: str | None, opts: Mapping[str, Any], found: list[Problem | Skip]
    ) -> None:
        """An event without ``context.url``: the ``event_source_url`` setting stands in."""
        fallback = self.dest.settings.event_source_url
        if fallback is None:
            found.append(self._skip_no_url)
        elif not self._fallback_is_web and self.dest.esi(event, vname, opts, []) == "web":
            why = url_problem(fallback, web=True)
            found.append(
                Problem(
                    "context.url", f"is missing and the configured event_source_url fallback {why}"
                )
            )

    def _check_phone(self, phone: str, found: list[Problem | Skip]) -> None:
        if is_sha256_hex(phone):
            return
        if not _PHONE_RE.fullmatch(phone) or sum(c.isdigit() for c in phone) < 5:
            found.append(
                Problem(
                    "user.phone",
                    "is not a phone number: pass it in international form ('+14155550123')",
                )
            )
        elif not phone.lstrip().startswith("+") and self.dest.phone_region is None:
            found.append(
                Problem(
                    "user.phone",
                    "has no +country code: pass it in international form ('+14155550123'), "
                    f"or set default_phone_region in [vendors.{self.vendor}] for national "
                    "numbers",
                )
            )

    @staticmethod
    def _check_place(
        country: str | None, zip_code: str | None, found: list[Problem | Skip]
    ) -> None:
        code = country.strip().upper() if country is not None else None
        if code is not None and code not in COUNTRIES:
            hint = " (the United Kingdom is 'GB')" if code == "UK" else ""
            found.append(
                Problem(
                    "user.country",
                    f"{country!r} is not an ISO 3166 alpha-2 country code such as 'US'{hint}",
                )
            )
        if zip_code is not None and code == "US" and not _US_ZIP_RE.fullmatch(zip_code.strip()):
            found.append(
                Problem(
                    "user.zip",
                    "is not a US ZIP code: use 5 digits, or ZIP+4 such as '94105-1234'",
                )
            )

    def _missing(self, vname: str, key: str) -> Skip:
        skip = self._skip_missing.get((vname, key))
        if skip is None:
            field, how = _DATA_FIELDS[key]
            zero = (
                " (0 for a lead without a value)"
                if (vname, key) == ("generate_lead", "value")
                else ""
            )
            skip = self._skip_missing[(vname, key)] = Skip(
                f"{vname} without {key.replace('_', ' ')}",
                field,
                f"Axon's {vname} requires it: {how}{zero}, {self._elsewhere}",
                self.vendor,
            )
        return skip

    def _check_data(self, event: Event, vname: str, found: list[Problem | Skip]) -> None:
        """The event's ``data``: what this Axon event requires, and the formats of what the
        properties hold (only the keys present are looked at)."""
        plan = self._plans.get(vname)
        if plan is None:
            required = DATA_REQUIRED.get(vname, ())
            plan = self._plans[vname] = (
                "currency" in required,
                "value" in required,
                tuple(k for k in required if k not in ("currency", "value")),
            )
        needs_currency, needs_value, required_props = plan
        if needs_currency and event.currency is None:
            found.append(self._missing(vname, "currency"))
        micros = event.value_micros
        if micros is None:
            if needs_value:
                found.append(self._missing(vname, "value"))
        elif micros < 0:
            found.append(Problem("value", "must not be negative"))
        props = event.properties
        items_key = "results" if vname == "search" and "results" in props else "items"
        for key, raw in props.items():
            kind = _PROPERTY_KINDS.get(key)
            if kind is None or raw is None:
                continue
            if kind == "text":
                if not _is_text(raw):
                    found.append(Problem(f"properties.{key}", "must be a non-empty string"))
            elif kind == "amount":
                if not _is_amount(raw):
                    found.append(Problem(f"properties.{key}", _AMOUNT))
            elif key == items_key:
                self._check_items(raw, key, found)
        for key in required_props:
            raw = props.get(items_key if key == "items" else key)
            if raw is None or (key == "items" and not raw):
                found.append(self._missing(vname, key))

    def _check_items(self, items: object, key: str, found: list[Problem | Skip]) -> None:
        if items.__class__ is not list and not isinstance(items, (list, tuple)):
            found.append(
                Problem(f"properties.{key}", f"must be a list of items such as {_EXAMPLE_ITEMS}")
            )
            return
        checks = _ITEM_CHECKS
        for i, item in enumerate(items):
            if item.__class__ is dict and len(item) == 3 and "quantity" in item and "price" in item:
                # The common shape, accepted without a call per key: item_id, quantity and
                # price and nothing else (a third key that is not item_id fails the str test);
                # an item_id string, a whole quantity of at least 1, a non-negative price
                # below MAX_VALUE (what the send side's to_micros takes; anything else, and
                # any other shape, gets the checks below).
                item_id = item.get("item_id")
                quantity = item["quantity"]
                price = item["price"]
                if (
                    item_id.__class__ is str
                    and item_id.strip()
                    and quantity.__class__ is int
                    and 1 <= quantity <= MAX_WHOLE
                    and (price.__class__ is float or price.__class__ is int)
                    and 0.0 <= price < _MAX_AMOUNT
                ):
                    continue
            if item.__class__ is not dict and not isinstance(item, Mapping):
                found.append(
                    Problem(
                        f"properties.{key}[{i}]",
                        "must be a dict such as {'item_id': 'SKU-1', 'quantity': 1}",
                    )
                )
                continue
            if item.get("item_id") is None and self._skip_no_item_id not in found:
                found.append(self._skip_no_item_id)
            for name, value in item.items():
                check = checks.get(name)
                if check is not None and value is not None and not check[0](value):
                    found.append(Problem(f"properties.{key}[{i}].{name}", check[1]))

    def _option_problems(self, opts: Mapping[str, Any]) -> list[Problem]:
        """Problems with ``vendors={'applovin': {...}}`` (only called when there are options;
        the core refuses keys not in ``option_keys``)."""
        problems: list[Problem] = []
        esi = opts.get("esi")
        if esi is not None and not (isinstance(esi, str) and esi in ESI_VALUES):
            problems.append(Problem(f"{self._opt}.esi", "must be 'web' or 'app'"))
        dedupe = opts.get("dedupe_id")
        if dedupe is not None and not (isinstance(dedupe, str) and _DEDUPE_RE.fullmatch(dedupe)):
            problems.append(
                Problem(
                    f"{self._opt}.dedupe_id",
                    "must be 1 to 255 printable ASCII characters without spaces (the same "
                    "dedupe_id as the Axon Pixel event, e.g. an order id)",
                )
            )
        if "measurement_partner_data" in opts:
            self.dest.measurement(opts["measurement_partner_data"], problems)
        return problems

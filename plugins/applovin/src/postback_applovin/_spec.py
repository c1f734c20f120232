"""What AppLovin's Axon Conversion API accepts: event names, per-event data, enums, formats.

Shared by the destination (which validates canonical events against these rules at ``track()``
time) and the emulator (which validates the wire records the same way the vendor documents).
Sources: applovin-conversion-api.txt and the AppLovin section of DIGEST.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import urlsplit

__all__ = [
    "ACCOUNTING_MODES",
    "ATTRIBUTION_MODELS",
    "AXON_EVENTS",
    "DATA_REQUIRED",
    "ESI_VALUES",
    "IDENTIFIER_FIELDS",
    "ITEMS_KEY",
    "MAX_BATCH",
    "MAX_WHOLE",
    "MPD_BOOL_KEYS",
    "MPD_KEYS",
    "MPD_REQUIRED",
    "MPD_STR_KEYS",
    "MPD_TS_KEYS",
    "NULL_DATA_EVENTS",
    "OS_VALUES",
    "QUANTITY_REQUIRED",
    "USER_ID_IN_DATA",
    "money",
    "url_problem",
    "whole_number",
]

#: Events per request: "Maximum batch size is 100" [seed].
MAX_BATCH = 100

#: Axon's event names. Stape's standard list [DIGEST A4]; "any other event names will cause the
#: event to fail", and one failed event drops the whole batch.
AXON_EVENTS: frozenset[str] = frozenset(
    {
        "page_view",
        "view_item",
        "view_cart",
        "add_to_cart",
        "remove_from_cart",
        "begin_checkout",
        "add_payment_info",
        "generate_lead",
        "purchase",
        "login",
        "sign_up",
        "search",
        "subscribe",
        "app_open",
    }
)

#: Events sent with ``"data": null``: app_open has "no data object" [seed]; the lead-gen docs
#: send ``data: null`` for page_view [DIGEST A2].
NULL_DATA_EVENTS: frozenset[str] = frozenset({"page_view", "app_open"})

#: Required ``data`` fields per event (Axon "Events and objects" [DIGEST A10, A2]).
#: ``items`` means a non-empty list of items (``results`` for search is optional).
DATA_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "purchase": ("currency", "items", "transaction_id", "value"),
    "begin_checkout": ("currency", "items", "value"),
    "view_item": ("items",),
    "add_to_cart": ("items",),
    "remove_from_cart": ("items",),
    "add_payment_info": ("currency",),
    "generate_lead": ("currency", "value"),
    "search": ("search_term",),
}

#: Events whose items need a ``quantity`` (the client fills 1 when it is missing) [DIGEST].
QUANTITY_REQUIRED: frozenset[str] = frozenset({"purchase", "add_to_cart", "remove_from_cart"})

#: Events whose documented data includes ``user_id`` [DIGEST A10]; the client copies
#: ``user.user_id`` into ``data`` for them, as the vendor's own example does.
USER_ID_IN_DATA: frozenset[str] = frozenset(
    {"view_item", "add_to_cart", "begin_checkout", "purchase", "add_payment_info"}
)

#: Where an event's items go: ``results`` for search (as stape sends them), else ``items``.
ITEMS_KEY: Mapping[str, str] = {"search": "results"}

#: "At least one of client_id, axwrt, alart, user_id, email, or phone" [seed].
IDENTIFIER_FIELDS: tuple[str, ...] = ("client_id", "axwrt", "alart", "user_id", "email", "phone")

ESI_VALUES: frozenset[str] = frozenset({"web", "app"})
OS_VALUES: frozenset[str] = frozenset({"ios", "android", "desktop_os"})

# measurement_partner_data [seed table]
ACCOUNTING_MODES: frozenset[str] = frozenset({"CASH", "ACCRUAL"})
ATTRIBUTION_MODELS: frozenset[str] = frozenset(
    {
        "LAST_CLICK",
        "FIRST_CLICK",
        "LINEAR",
        "TIME_DECAY",
        "CUSTOM_MULTI_TOUCH",
        "LAST_NON_DIRECT_TOUCH",
        "CLICKS_AND_VIEWS_ENHANCED",
        "ANY_CLICK",
    }
)
#: Required keys (``attribution_lookback_window_hours`` is "required" but "leave empty for
#: infinite lookback", so it may be absent).
MPD_REQUIRED: tuple[str, ...] = (
    "is_claimable",
    "attribution_model",
    "attribution_share",
    "accounting_mode",
)
MPD_STR_KEYS: tuple[str, ...] = ("campaign_id", "creative_set_id")
MPD_TS_KEYS: tuple[str, ...] = (
    "first_purchase_ts",
    "first_visit_ts",
    "last_purchase_ts",
    "last_visit_ts",
)
MPD_BOOL_KEYS: tuple[str, ...] = ("is_claimable", "is_new_customer", "is_new_visitor")
#: Every key, in the order they are sent.
MPD_KEYS: tuple[str, ...] = (
    "is_claimable",
    "attribution_model",
    "attribution_lookback_window_hours",
    "attribution_share",
    "accounting_mode",
    "campaign_id",
    "creative_set_id",
    "first_purchase_ts",
    "first_visit_ts",
    "is_new_customer",
    "is_new_visitor",
    "last_purchase_ts",
    "last_visit_ts",
)

_MICROS = Decimal(1_000_000)
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*\Z")


def money(micros: int) -> int | float:
    """Exact micros -> a JSON number in major units: ``49_990_000`` -> ``49.99``, ``30_000_000``
    -> ``30``. The float is the nearest double to the exact decimal, so it prints as written."""
    if micros % 1_000_000 == 0:
        return micros // 1_000_000
    return float(Decimal(micros) / _MICROS)


#: Whole numbers in the record (an item's quantity and category id) are JSON integers, which
#: the request's encoder (orjson) and Axon carry in 64 bits.
_MIN_WHOLE = -(2**63)
MAX_WHOLE = 2**63 - 1


def whole_number(value: object) -> int | None:
    """``value`` as the whole number the record carries: an int (not bool), an integral
    float, or a string of ASCII digits; ``None`` for anything else, and for a number beyond a
    signed 64-bit integer (which would fail the whole batch's request, not this event)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():  # (not NaN or an infinity)
        if not _MIN_WHOLE <= value <= MAX_WHOLE:
            return None
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        # ASCII only ("²".isdigit() is true, and int() refuses it); the length before int()
        digits = text.lstrip("0")  # int() counts leading zeros against its 4300-digit limit
        if not (text.isascii() and text.isdigit()) or len(digits) > 19:
            return None
        number = int(digits or "0")
    else:
        return None
    return number if _MIN_WHOLE <= number <= MAX_WHOLE else None


def url_problem(url: str, *, web: bool) -> str | None:
    """Why ``url`` is not a complete URL for ``event_source_url``, or ``None`` when it is.

    A complete URL has a scheme and a host. Web events need http(s); app events may also use an
    app's own scheme (``myapp://checkout``).
    """
    example = "e.g. 'https://shop.example.com/product?id=42'"
    if any(c.isspace() for c in url):
        return f"must be a complete URL without spaces (percent-encode them), {example}"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return f"is not a valid URL; use a complete URL, {example}"
    if not parts.scheme or not _SCHEME_RE.match(parts.scheme) or not parts.netloc:
        return f"must be a complete URL with a scheme and a host, {example}"
    if web and parts.scheme.lower() not in ("http", "https"):
        return f"must be an http(s) URL for a web event, {example}"
    return None

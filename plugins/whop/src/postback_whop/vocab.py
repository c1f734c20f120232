"""Whop's vocabulary: event names, enums, accepted fields and currency lists.

Everything here comes from the Whop section of ``vendor-docs/DIGEST.md``, the vendor page
``whop-create-conversion.txt`` and ``specs/whop_conversions_events_fragment.openapi.json``.
Both the destination and the emulator read these tables, so they cannot drift apart.
"""

from __future__ import annotations

__all__ = [
    "ACTION_SOURCES",
    "API_PATHS",
    "API_SHAPES",
    "CONVERSIONS_CONTEXT_FIELDS",
    "CONVERSIONS_CURRENCIES",
    "CONVERSIONS_EVENT_NAMES",
    "CONVERSIONS_TOP_FIELDS",
    "CONVERSIONS_USER_FIELDS",
    "CUSTOM_NAME_MAX",
    "ENVIRONMENTS",
    "EVENTS_CONTEXT_FIELDS",
    "EVENTS_CURRENCIES",
    "EVENTS_TOP_FIELDS",
    "EVENTS_USER_FIELDS",
    "GENDERS",
    "IDEMPOTENCY_KEY_MAX",
    "ORIGINS",
    "STANDARD_EVENT_NAMES",
]

#: The two API shapes: the current ``POST /api/v1/events`` and the legacy ``/conversions``.
API_SHAPES: tuple[str, ...] = ("events", "conversions")
API_PATHS: dict[str, str] = {"events": "/api/v1/events", "conversions": "/api/v1/conversions"}

#: Hosts per ``environment`` setting (DIGEST: W4 ``environment.py``, W5 agent instructions).
ENVIRONMENTS: tuple[str, ...] = ("production", "sandbox")
ORIGINS: dict[str, str] = {
    "production": "https://api.whop.com",
    "sandbox": "https://sandbox-api.whop.com",
}

#: Standard event names of ``POST /events`` (any other string is a custom event there).
STANDARD_EVENT_NAMES: frozenset[str] = frozenset(
    {
        "lead",
        "submit_application",
        "contact",
        "complete_registration",
        "schedule",
        "view_content",
        "add_to_cart",
    }
)

#: The ``event_name`` enum of the legacy ``POST /conversions``.
CONVERSIONS_EVENT_NAMES: frozenset[str] = frozenset(
    {"lead", "submit_application", "contact", "complete_registration", "schedule", "custom"}
)

#: ``custom_name``: "Maximum 35 chars for this value."
CUSTOM_NAME_MAX = 35
#: ``Idempotency-Key``: "Keys are unique strings up to 255 bytes."
IDEMPOTENCY_KEY_MAX = 255

ACTION_SOURCES: tuple[str, ...] = (
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
)

GENDERS: tuple[str, ...] = ("male", "female")

#: The currency enum of the legacy ``/conversions`` (the docs page's list, ending with kzt:
#: DIGEST "The docs' currency list also ends with kzt", confirmed in whopsdk-python 0.0.40).
# fmt: off
CONVERSIONS_CURRENCIES: frozenset[str] = frozenset([
    "usd", "sgd", "inr", "aud", "brl", "cad", "dkk", "eur", "nok", "gbp", "sek", "chf", "hkd",
    "huf", "jpy", "mxn", "myr", "pln", "czk", "nzd", "aed", "eth", "ape", "cop", "ron", "thb",
    "bgn", "idr", "dop", "php", "try", "krw", "twd", "vnd", "pkr", "clp", "uyu", "ars", "zar",
    "dzd", "tnd", "mad", "kes", "kwd", "jod", "all", "xcd", "amd", "bsd", "bhd", "bob", "bam",
    "khr", "crc", "xof", "egp", "etb", "gmd", "ghs", "gtq", "gyd", "ils", "jmd", "mop", "mga",
    "mur", "mdl", "mnt", "nad", "ngn", "mkd", "omr", "pyg", "pen", "qar", "rwf", "sar", "rsd",
    "lkr", "tzs", "ttd", "uzs", "rub", "btc", "cny", "usdt", "kzt",
])
# fmt: on

#: The currency enum of ``POST /events``: the conversions list plus awg, whop_usd and xau.
EVENTS_CURRENCIES: frozenset[str] = CONVERSIONS_CURRENCIES | {"awg", "whop_usd", "xau"}

#: ``context`` fields each shape accepts (all strings, except ``fingerprint_confidence``).
CONVERSIONS_CONTEXT_FIELDS: tuple[str, ...] = (
    "ad_campaign_id",
    "ad_id",
    "ad_set_id",
    "fbclid",
    "fbp",
    "ga",
    "gclid",
    "ig_sid",
    "ip_address",
    "ttclid",
    "ttp",
    "user_agent",
    "utm_campaign",
    "utm_content",
    "utm_id",
    "utm_medium",
    "utm_source",
    "utm_term",
)
EVENTS_CONTEXT_FIELDS: tuple[str, ...] = (
    "ad_campaign_id",
    "ad_id",
    "ad_set_id",
    "fbc",
    "fbclid",
    "fbp",
    "fingerprint",
    "fingerprint_confidence",
    "ga",
    "gbraid",
    "gclid",
    "ig_sid",
    "ip_address",
    "language",
    "li_fat_id",
    "msclkid",
    "rdt_cid",
    "sc",
    "sccid",
    "screen_resolution",
    "timezone",
    "ttclid",
    "ttp",
    "twclid",
    "user_agent",
    "utm_campaign",
    "utm_content",
    "utm_id",
    "utm_medium",
    "utm_source",
    "utm_term",
    "wbraid",
)

#: ``user`` fields each shape accepts (all strings; ``gender`` is male|female).
CONVERSIONS_USER_FIELDS: tuple[str, ...] = (
    "anonymous_id",
    "external_id",
    "user_id",
    "member_id",
    "membership_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "name",
    "username",
    "birthdate",
    "gender",
    "city",
    "state",
    "postal_code",
    "country",
)
EVENTS_USER_FIELDS: tuple[str, ...] = (
    *CONVERSIONS_USER_FIELDS,
    "linked_anonymous_id",
    "linked_wuid",
)

#: Top-level body fields each shape accepts.
CONVERSIONS_TOP_FIELDS: frozenset[str] = frozenset(
    {
        "company_id",
        "event_name",
        "action_source",
        "context",
        "currency",
        "custom_name",
        "event_id",
        "event_time",
        "plan_id",
        "product_id",
        "referrer_url",
        "url",
        "user",
        "value",
    }
)
EVENTS_TOP_FIELDS: frozenset[str] = (CONVERSIONS_TOP_FIELDS - {"company_id"}) | {
    "account_id",
    "app_id",
    "app_build_id",
    "duration",
    "resumed",
    "title",
    "source",
}

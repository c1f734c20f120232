"""Every validation rule: a valid purchase, changed one way, gives exactly the expected finding.

Two kinds (README, "Skip or refuse"): a required field that is missing is a Skip (AppLovin is
left out of the event, the other vendors get it), a field of the wrong type or format is a
Problem (the event is refused). Either way, the event never reaches a batch: transform refuses
it too (for events queued under an older version, or replayed), and the event is dead-lettered
alone rather than dropping its batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from postback.destination import Skip
from postback.errors import InvalidEvent, Problem
from postback.events import MAX_VALUE
from postback.plugin import Prepared
from postback.tracker import Tracker
from postback_applovin import AppLovinEventInvalid

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """Set (or with value=DELETE, remove) a dotted key of the track() keywords."""

    def mutate(kw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = kw
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node, dict) else node[int(p)]
        if value is DELETE:
            if isinstance(node, dict):
                node.pop(last, None)
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


DELETE = object()


def _all(*mutations: Mutation) -> Mutation:
    def mutate(kw: dict[str, Any]) -> None:
        for m in mutations:
            m(kw)

    return mutate


def _opts(options: dict[str, Any]) -> Mutation:
    return _set("vendors", {"applovin": options})


MPD_OK = {
    "is_claimable": True,
    "attribution_model": "LAST_CLICK",
    "attribution_share": 1,
    "accounting_mode": "CASH",
}

# (id, mutation, field, fragment of the message)
RULES: list[tuple[str, Mutation, str, str]] = [
    # event name
    (
        "unmapped-name",
        _all(_set("name", "install"), _opts({})),
        "name",
        "AppLovin has no event for 'install'",
    ),
    # event_source_url
    ("url-missing", _set("context", None), "context.url", "context={'url': 'https://...'}"),
    (
        "url-incomplete",
        _set("context.url", "shop.example.com/thanks"),
        "context.url",
        "complete URL with a scheme and a host",
    ),
    (
        "url-spaces",
        _set("context.url", "https://shop.example.com/a b"),
        "context.url",
        "without spaces",
    ),
    (
        "url-web-needs-http",
        _set("context.url", "fitapp://thanks"),
        "context.url",
        "http(s) URL for a web event",
    ),
    (
        "url-bad-port",
        _set("context.url", "https://shop.example.com:99999/"),
        "context.url",
        "not a valid URL",
    ),
    # user_data
    ("ip-missing", _set("user.ip_address", DELETE), "user.ip_address", "no IP address"),
    (
        "ip-invalid",
        _set("user.ip_address", "203.0.113"),
        "user.ip_address",
        "not an IPv4 or IPv6 address",
    ),
    ("ua-missing", _set("user.user_agent", DELETE), "user.user_agent", "user agent"),
    (
        "no-identifier",
        _all(_set("user.email", DELETE), _set("context.aleid", "AL-1")),
        "user",
        "no user identifier",
    ),
    ("email-invalid", _set("user.email", "jane.example.com"), "user.email", "not an email address"),
    (
        "phone-national-without-region",
        _set("user.phone", "020 7946 0958"),
        "user.phone",
        "default_phone_region",
    ),
    ("phone-too-short", _set("user.phone", "+1 415"), "user.phone", "international form"),
    ("country-invalid", _set("user.country", "XX"), "user.country", "not an ISO 3166"),
    ("country-uk", _set("user.country", "UK"), "user.country", "'GB'"),
    (
        "us-zip-invalid",
        _all(_set("user.country", "US"), _set("user.zip", "9410")),
        "user.zip",
        "5 digits",
    ),
    # data: purchase
    (
        "value-missing",
        _all(_set("value", None), _set("currency", None)),
        "value",
        "purchase without value",
    ),
    (
        "currency-missing",
        _all(_set("value", None), _set("currency", None)),
        "currency",
        "purchase without currency",
    ),
    ("value-negative", _set("value", -1), "value", "must not be negative"),
    (
        "transaction-id-missing",
        _set("properties.transaction_id", DELETE),
        "properties.transaction_id",
        "purchase without transaction id",
    ),
    (
        "transaction-id-type",
        _set("properties.transaction_id", {"id": 1}),
        "properties.transaction_id",
        "non-empty string",
    ),
    (
        "items-missing",
        _set("properties.items", DELETE),
        "properties.items",
        "purchase without items",
    ),
    ("items-empty", _set("properties.items", []), "properties.items", "purchase without items"),
    (
        "items-not-list",
        _set("properties.items", "SKU-1"),
        "properties.items",
        "must be a list of items",
    ),
    ("item-not-dict", _set("properties.items", ["SKU-1"]), "properties.items[0]", "must be a dict"),
    (
        "item-id-missing",
        _set("properties.items", [{"price": 1}]),
        "properties.items",
        "item without item_id",
    ),
    (
        "item-id-type",
        _set("properties.items", [{"item_id": ["x"]}]),
        "properties.items[0].item_id",
        "non-empty string",
    ),
    (
        "item-quantity-zero",
        _set("properties.items", [{"item_id": "a", "quantity": 0}]),
        "properties.items[0].quantity",
        "at least 1",
    ),
    (
        "item-quantity-fraction",
        _set("properties.items", [{"item_id": "a", "quantity": 1.5}]),
        "properties.items[0].quantity",
        "whole number",
    ),
    (
        "item-price-not-number",
        _set("properties.items", [{"item_id": "a", "price": "cheap"}]),
        "properties.items[0].price",
        "amount in major units",
    ),
    (
        "item-price-negative",
        _set("properties.items", [{"item_id": "a", "price": -2}]),
        "properties.items[0].price",
        "non-negative amount",
    ),
    (
        "item-discount-not-number",
        _set("properties.items", [{"item_id": "a", "discount": True}]),
        "properties.items[0].discount",
        "non-negative amount",
    ),
    (
        "item-image-url",
        _set("properties.items", [{"item_id": "a", "image_url": "/img/a.png"}]),
        "properties.items[0].image_url",
        "complete URL",
    ),
    (
        "item-category-id",
        _set("properties.items", [{"item_id": "a", "item_category_id": "x"}]),
        "properties.items[0].item_category_id",
        "integer",
    ),
    (
        "item-name-type",
        _set("properties.items", [{"item_id": "a", "item_name": {"x": 1}}]),
        "properties.items[0].item_name",
        "non-empty string",
    ),
    (
        "shipping-invalid",
        _set("properties.shipping", "free"),
        "properties.shipping",
        "amount in major units",
    ),
    ("tax-negative", _set("properties.tax", -0.5), "properties.tax", "non-negative amount"),
    # data: other events
    (
        "begin-checkout-items",
        _all(_set("name", "begin_checkout"), _set("properties.items", DELETE)),
        "properties.items",
        "begin_checkout without items",
    ),
    (
        "view-item-items",
        _all(_set("name", "view_item"), _set("properties", {})),
        "properties.items",
        "view_item without items",
    ),
    (
        "add-to-cart-items",
        _all(_set("name", "add_to_cart"), _set("properties", {})),
        "properties.items",
        "add_to_cart without items",
    ),
    (
        "remove-from-cart-items",
        _all(_set("name", "remove_from_cart"), _set("properties", {})),
        "properties.items",
        "remove_from_cart without items",
    ),
    (
        "lead-value",
        _all(_set("name", "lead"), _set("value", None), _set("currency", None)),
        "value",
        "generate_lead without value",
    ),
    (
        "lead-currency",
        _all(_set("name", "lead"), _set("value", None), _set("currency", None)),
        "currency",
        "generate_lead without currency",
    ),
    (
        "add-payment-info-currency",
        _all(_set("name", "add_payment_info"), _set("value", None), _set("currency", None)),
        "currency",
        "add_payment_info without currency",
    ),
    (
        "search-term-missing",
        _all(_set("name", "search"), _set("properties", {})),
        "properties.search_term",
        "search without search term",
    ),
    (
        "search-term-type",
        _all(_set("name", "search"), _set("properties", {"search_term": [1]})),
        "properties.search_term",
        "non-empty string",
    ),
    (
        "search-results-not-list",
        _all(_set("name", "search"), _set("properties", {"search_term": "x", "results": 3})),
        "properties.results",
        "must be a list",
    ),
    # per-event options
    ("option-esi", _opts({"esi": "tv"}), "vendors.applovin.esi", "'web' or 'app'"),
    (
        "option-dedupe-id",
        _opts({"dedupe_id": "has space"}),
        "vendors.applovin.dedupe_id",
        "printable ASCII",
    ),
    (
        "mpd-not-dict",
        _opts({"measurement_partner_data": "LAST_CLICK"}),
        "vendors.applovin.measurement_partner_data",
        "must be a dict",
    ),
    (
        "mpd-required",
        _opts({"measurement_partner_data": {"is_claimable": True}}),
        "vendors.applovin.measurement_partner_data.attribution_model",
        "required by Axon",
    ),
    (
        "mpd-unknown-key",
        _opts({"measurement_partner_data": {**MPD_OK, "credit": 1}}),
        "vendors.applovin.measurement_partner_data.credit",
        "unknown key",
    ),
    (
        "mpd-model",
        _opts({"measurement_partner_data": {**MPD_OK, "attribution_model": "LAST"}}),
        "vendors.applovin.measurement_partner_data.attribution_model",
        "LAST_CLICK",
    ),
    (
        "mpd-accounting",
        _opts({"measurement_partner_data": {**MPD_OK, "accounting_mode": "DEFERRED"}}),
        "vendors.applovin.measurement_partner_data.accounting_mode",
        "ACCRUAL, CASH",
    ),
    (
        "mpd-share",
        _opts({"measurement_partner_data": {**MPD_OK, "attribution_share": 1.5}}),
        "vendors.applovin.measurement_partner_data.attribution_share",
        "from 0 to 1",
    ),
    (
        "mpd-bool",
        _opts({"measurement_partner_data": {**MPD_OK, "is_claimable": "yes"}}),
        "vendors.applovin.measurement_partner_data.is_claimable",
        "true or false",
    ),
    (
        "mpd-lookback",
        _opts({"measurement_partner_data": {**MPD_OK, "attribution_lookback_window_hours": -1}}),
        "vendors.applovin.measurement_partner_data.attribution_lookback_window_hours",
        "hours",
    ),
    (
        "mpd-ts",
        _opts({"measurement_partner_data": {**MPD_OK, "first_visit_ts": "2026-01-01"}}),
        "vendors.applovin.measurement_partner_data.first_visit_ts",
        "epoch milliseconds",
    ),
    (
        "mpd-campaign-id",
        _opts({"measurement_partner_data": {**MPD_OK, "campaign_id": 1.5}}),
        "vendors.applovin.measurement_partner_data.campaign_id",
        "non-empty string",
    ),
]


#: The rules whose finding is a Skip: a required field is missing (the rest are Problems).
SKIPS = {
    "url-missing",
    "ip-missing",
    "ua-missing",
    "no-identifier",
    "value-missing",
    "currency-missing",
    "transaction-id-missing",
    "items-missing",
    "items-empty",
    "item-id-missing",
    "begin-checkout-items",
    "view-item-items",
    "add-to-cart-items",
    "remove-from-cart-items",
    "lead-value",
    "lead-currency",
    "add-payment-info-currency",
    "search-term-missing",
}


def test_base_event_is_valid(destination, event_from, purchase_kwargs) -> None:
    assert list(destination.validate(event_from(purchase_kwargs))) == []


@pytest.mark.parametrize(
    ("rule", "mutation", "field", "fragment"), RULES, ids=[r[0] for r in RULES]
)
def test_rule(destination, event_from, purchase_kwargs, rule, mutation, field, fragment) -> None:
    mutation(purchase_kwargs)
    found = list(destination.validate(event_from(purchase_kwargs)))
    if rule in SKIPS:
        assert not [f for f in found if isinstance(f, Problem)], found  # well formed
        hits = [f for f in found if isinstance(f, Skip) and f.field == field]
        assert hits, f"no skip at {field!r}; got {found}"
        assert any(fragment in f"{s.reason} {s.fix}" for s in hits), hits
        assert all(s.vendor == "applovin" and s.fix for s in hits)
    else:
        hits = [f for f in found if isinstance(f, Problem) and f.field == field]
        assert hits, f"no problem at {field!r}; got {found}"
        assert any(fragment in p.message for p in hits), hits
    # The same event can never reach a batch: transform refuses it too.
    with pytest.raises(AppLovinEventInvalid, match=field.replace(".", r"\.").replace("[", r"\[")):
        destination.transform(event_from(purchase_kwargs))


def test_every_finding_is_reported_at_once(destination, event_from) -> None:
    event = event_from(
        {
            "name": "purchase",
            "user": {"email": "nope", "phone": "12", "country": "ZZ"},
            "context": {"url": "example.com"},
            "properties": {"items": [{"quantity": -1, "price": "x"}, "bad"]},
            "vendors": {"applovin": {"esi": "desktop", "extra": 1}},
        }
    )
    found = list(destination.validate(event))  # the core refuses vendors.applovin.extra
    assert {f.field for f in found if isinstance(f, Problem)} == {
        "vendors.applovin.esi",
        "context.url",
        "user.email",
        "user.phone",
        "user.country",
        "properties.items[0].price",
        "properties.items[0].quantity",
        "properties.items[1]",
    }
    assert {f.field for f in found if isinstance(f, Skip)} == {
        "user.ip_address",
        "user.user_agent",
        "currency",
        "value",
        "properties.transaction_id",
        "properties.items",
    }


def test_event_map_to_unknown_name_is_a_problem_too(
    make_destination, event_from, purchase_kwargs
) -> None:
    dest = make_destination(
        extra_event_names=["add_to_wishlist"], event_map={"add_to_wishlist": "add_to_wishlist"}
    )
    purchase_kwargs["name"] = "add_to_wishlist"
    assert list(dest.validate(event_from(purchase_kwargs))) == []
    dest.event_map["add_to_wishlist"] = "wishlist"  # changed behind the config's back
    problems = list(dest.validate(event_from(purchase_kwargs)))
    assert [p.field for p in problems] == ["name"]
    assert "not an Axon event name" in problems[0].message


def test_aleid_alone_is_not_an_identifier(destination, event_from, purchase_kwargs) -> None:
    del purchase_kwargs["user"]["email"]
    purchase_kwargs["context"]["aleid"] = "AL-1"
    [skip] = destination.validate(event_from(purchase_kwargs))
    assert isinstance(skip, Skip) and skip.field == "user"
    for key, where in [
        ("client_id", "user"),
        ("user_id", "user"),
        ("phone", "user"),
        ("axwrt", "context"),
        ("alart", "context"),
    ]:
        kw = {**purchase_kwargs, where: {**purchase_kwargs.get(where, {})}}
        kw[where][key] = "+14155550123" if key == "phone" else "id-123456"
        assert list(destination.validate(event_from(kw))) == [], key


def test_unknown_os_is_left_out_not_refused(destination, event_from, purchase_kwargs) -> None:
    purchase_kwargs["user"]["os"] = "tvOS"
    event = event_from(purchase_kwargs)
    assert list(destination.validate(event)) == []
    assert "os" not in destination.transform(event)["user_data"]


def test_quantity_defaults_to_one(destination, event_from, purchase_kwargs) -> None:
    purchase_kwargs["properties"]["items"] = [{"item_id": "a"}]
    items = destination.transform(event_from(purchase_kwargs))["data"]["items"]
    assert items == [{"item_id": "a", "quantity": 1}]


def test_zip_plus4_without_country_is_cut(destination, event_from, purchase_kwargs) -> None:
    purchase_kwargs["user"]["zip"] = "10001-0001"
    ud = destination.transform(event_from(purchase_kwargs))["user_data"]
    assert ud["zip"] == "10001"
    assert "country_code" not in ud


@pytest.mark.parametrize(
    ("setting", "context", "user", "name", "esi"),
    [
        ("auto", {"url": "https://a.example/"}, {}, "purchase", "web"),
        ("auto", {"url": "https://a.example/", "action_source": "app"}, {}, "purchase", "app"),
        ("app", {"url": "https://a.example/", "action_source": "website"}, {}, "purchase", "web"),
        ("app", {"url": "https://a.example/"}, {}, "purchase", "app"),
        ("web", {"url": "https://a.example/"}, {"ifa": "x"}, "purchase", "web"),
        ("auto", {}, {"ifa": "x"}, "purchase", "app"),
        ("auto", {"url": "https://a.example/"}, {"idfv": "x"}, "purchase", "web"),
        ("auto", {"url": "https://a.example/"}, {}, "app_open", "app"),
    ],
)
def test_esi_rule(
    make_destination, event_from, purchase_kwargs, setting, context, user, name, esi
) -> None:
    dest = make_destination(esi=setting, event_source_url="https://fallback.example/")
    purchase_kwargs.update(name=name, context=context)
    purchase_kwargs["user"].update(user)
    record = dest.transform(event_from(purchase_kwargs))
    assert record["user_data"]["esi"] == esi
    # the per-event option beats everything
    purchase_kwargs["vendors"] = {"applovin": {"esi": "web" if esi == "app" else "app"}}
    record = dest.transform(event_from(purchase_kwargs))
    assert record["user_data"]["esi"] != esi


def test_fallback_url_must_suit_a_web_event(make_destination, event_from, purchase_kwargs) -> None:
    dest = make_destination(event_source_url="fitapp://home")
    purchase_kwargs["context"] = {}
    problems = list(dest.validate(event_from(purchase_kwargs)))
    assert [p.field for p in problems] == ["context.url"]
    assert "fallback" in problems[0].message
    purchase_kwargs["context"] = {"action_source": "app"}
    assert list(dest.validate(event_from(purchase_kwargs))) == []


def test_messages_never_echo_personal_data(destination, event_from, purchase_kwargs) -> None:
    purchase_kwargs["user"].update(email="secret.person@", phone="5550199", ip_address="10.0.0.999")
    text = " ".join(str(p) for p in destination.validate(event_from(purchase_kwargs)))
    assert "secret.person" not in text
    assert "5550199" not in text
    assert "10.0.0.999" not in text


def test_track_skips_applovin_for_an_event_it_cannot_use() -> None:
    tracker = Tracker.from_config(
        {
            "postback": {"queue": "memory://", "workers": False},
            "vendors": {"applovin": {"api_key": "k", "pixel_id": "p"}},
        }
    )
    try:
        event_id = tracker.track("purchase", user={"email": "a@b.co"}, value=5, currency="USD")
        assert event_id
        assert tracker.stats()["applovin"]["queue_depth"] == 0
        assert tracker.stats()["applovin"]["skips"] == {"no IP address": 1}  # the first counts
        route = tracker.explain("purchase", user={"email": "a@b.co"}, value=5, currency="USD")
        assert route.vendors["applovin"].status == "skipped"
        assert {s.field for s in route.vendors["applovin"].skips} == {
            "context.url",
            "user.ip_address",
            "user.user_agent",
            "properties.transaction_id",
            "properties.items",
        }
    finally:
        tracker.close(timeout=0)


def test_strict_mode_refuses_it_listing_every_missing_field() -> None:
    tracker = Tracker.from_config(
        {
            "postback": {"queue": "memory://", "workers": False, "strict": True},
            "vendors": {"applovin": {"api_key": "k", "pixel_id": "p"}},
        }
    )
    try:
        with pytest.raises(InvalidEvent) as info:
            tracker.track("purchase", user={"email": "a@b.co"}, value=5, currency="USD")
        problems = info.value.problems
        assert {p.vendor for p in problems} == {"applovin"}
        assert {p.field for p in problems} == {
            "context.url",
            "user.ip_address",
            "user.user_agent",
            "properties.transaction_id",
            "properties.items",
        }
        assert tracker.stats()["applovin"]["queue_depth"] == 0
    finally:
        tracker.close(timeout=0)


def test_click_ids_are_read_from_the_page_url(destination, event_from, purchase_kwargs) -> None:
    purchase_kwargs["context"]["url"] = (
        "https://shop.example.com/p?utm_source=x&aleid=AL-9&alart=AR-3"
    )
    record = destination.transform(event_from(purchase_kwargs))
    assert (record["user_data"]["aleid"], record["user_data"]["alart"]) == ("AL-9", "AR-3")


def test_click_ids_the_app_passes_win_over_the_url(
    destination, event_from, purchase_kwargs
) -> None:
    purchase_kwargs["context"]["url"] = "https://shop.example.com/p?aleid=FROM-URL&alart=AR-3"
    purchase_kwargs["context"]["aleid"] = "FROM-APP"
    record = destination.transform(event_from(purchase_kwargs))
    assert (record["user_data"]["aleid"], record["user_data"]["alart"]) == ("FROM-APP", "AR-3")


def test_alart_in_the_url_is_an_identifier(destination, event_from, purchase_kwargs) -> None:
    del purchase_kwargs["user"]["email"]
    purchase_kwargs["context"]["url"] = "https://shop.example.com/p?alart=AR-3"
    assert list(destination.validate(event_from(purchase_kwargs))) == []
    purchase_kwargs["context"]["url"] = "https://shop.example.com/p?aleid=AL-9"  # not enough
    [skip] = destination.validate(event_from(purchase_kwargs))
    assert isinstance(skip, Skip) and skip.reason == "no user identifier"


def test_unmapped_events_are_not_routed() -> None:
    tracker = Tracker.from_config(
        {
            "postback": {"queue": "memory://", "workers": False},
            "vendors": {"applovin": {"api_key": "k", "pixel_id": "p"}},
        }
    )
    try:
        for name in ("install", "share", "level_achieved", "my_custom_event"):
            _event, targets = tracker.prepare(name, user={"user_id": "u"})
            assert targets == [], name
    finally:
        tracker.close(timeout=0)


def test_phone_normalisation_in_both_hashing_modes(
    make_destination, event_from, purchase_kwargs
) -> None:
    import hashlib

    purchase_kwargs["user"]["phone"] = "+1 (415) 555-0123"
    raw = make_destination(hash_pii=False).transform(event_from(purchase_kwargs))
    assert raw["user_data"]["phone"] == "+14155550123"  # E.164 with the +, as Axon's example
    hashed = make_destination().transform(event_from(purchase_kwargs))
    assert hashed["user_data"]["phone"] == hashlib.sha256(b"14155550123").hexdigest()


def test_unknown_options_are_the_core_s_to_refuse(destination) -> None:
    """AppLovin declares its option_keys; the core refuses any other key, once."""
    from postback.routing import option_problems

    (found,) = option_problems(destination, {"click_id": "x", "esi": "web"})
    assert (found.field, found.vendor) == ("vendors.applovin.click_id", "applovin")
    assert "unknown option for applovin" in found.message and "dedupe_id" in found.message


# Amounts: track() accepts exactly what transform sends (postback's to_micros: below
# MAX_VALUE, a string of at most 64 characters, not negative). Before, track() took any finite
# amount, and an item priced 1e12 was dead-lettered at send time ("plugin error in transform").

#: (amount, whether AppLovin can send it)
AMOUNTS: list[tuple[object, bool]] = [
    (0, True),
    (9.99, True),
    (MAX_VALUE - 1, True),
    (float(MAX_VALUE - 1), True),
    (999_999_999_999.5, True),
    (str(MAX_VALUE - 1), True),
    ("999999999999.999999", True),
    (Decimal("999999999999.999999"), True),
    ("0." + "0" * 61 + "1", True),  # 64 characters, rounds to 0 micros
    ("-1e-9", True),  # rounds to 0 micros: not negative
    (MAX_VALUE, False),
    (1e12, False),
    ("1e13", False),
    (1e308, False),
    (Decimal("1e12"), False),
    ("999999999999.9999995", False),  # rounds up to MAX_VALUE in micros
    (10**30, False),
    (-1, False),
    (-0.5, False),
    ("-2", False),
    ("0." + "0" * 62 + "1", False),  # 65 characters
    ("1" * 65, False),
    (float("inf"), False),
    (float("nan"), False),
    (True, False),
    ("cheap", False),
]

#: Where an amount goes: (track() keyword path, the field a problem names).
AMOUNT_FIELDS = [
    ("properties.items.0.price", "properties.items[0].price"),
    ("properties.items.0.discount", "properties.items[0].discount"),
    ("properties.shipping", "properties.shipping"),
    ("properties.tax", "properties.tax"),
]


@pytest.mark.parametrize(("path", "field"), AMOUNT_FIELDS, ids=[f[1] for f in AMOUNT_FIELDS])
@pytest.mark.parametrize(("amount", "sendable"), AMOUNTS, ids=[repr(a[0])[:30] for a in AMOUNTS])
def test_an_amount_validate_accepts_is_an_amount_transform_sends(
    destination, event_from, purchase_kwargs, path, field, amount, sendable
) -> None:
    _set(path, amount)(purchase_kwargs)
    event = event_from(purchase_kwargs)
    problems = [f for f in destination.validate(event) if isinstance(f, Problem)]
    try:
        record = destination.transform(event)
    except AppLovinEventInvalid as exc:
        assert field in str(exc)
        sent = False
    else:
        sent = True
        data = record["data"]
        assert (data["items"][0] if "items." in path else data)[path.rsplit(".", 1)[1]] >= 0
    assert sent is sendable
    assert [p.field for p in problems] == ([] if sendable else [field])
    if not sendable:
        assert "non-negative amount in major units below 1,000,000,000,000" in problems[0].message


@pytest.mark.parametrize(
    "amount", [MAX_VALUE, 1e12, "1e13", 1e308, -1, "0." + "0" * 62 + "1"], ids=repr
)
def test_track_refuses_an_item_price_applovin_cannot_send(purchase_kwargs, amount) -> None:
    tracker = Tracker.from_config(
        {
            "postback": {"queue": "memory://", "workers": False},
            "vendors": {"applovin": {"api_key": "k", "pixel_id": "p"}},
        }
    )
    try:
        _set("properties.items.0.price", amount)(purchase_kwargs)
        with pytest.raises(InvalidEvent) as info:
            tracker.track(**purchase_kwargs)
        assert [(p.vendor, p.field) for p in info.value.problems] == [
            ("applovin", "properties.items[0].price")
        ]
        assert tracker.stats()["applovin"]["queue_depth"] == 0
        _set("properties.items.0.price", MAX_VALUE - 1)(purchase_kwargs)
        assert tracker.track(**purchase_kwargs)
        assert tracker.stats()["applovin"]["queue_depth"] == 1
    finally:
        tracker.close(timeout=0)


# Whole numbers (an item's quantity and category id) are JSON integers in the request: track()
# takes exactly what transform sends, and nothing that would fail the batch's request (orjson
# carries 64 bits) or raise in the check itself (int() of 5000 digits, or of "²").

#: (value, whether it is a quantity AppLovin can send, and a category id)
WHOLE_NUMBERS: list[tuple[object, bool, bool]] = [
    (1, True, True),
    ("3", True, True),
    (" 7 ", True, True),
    (2.0, True, True),
    (2**63 - 1, True, True),
    (str(2**63 - 1), True, True),
    ("0" * 30 + "5", True, True),
    (0, False, True),
    (2**63, False, False),
    (str(2**63), False, False),
    ("9" * 30, False, False),
    ("9" * 5000, False, False),
    ("0" * 4300 + "5", True, True),  # int() counts leading zeros against its digit limit
    ("0" * 5000, False, True),
    (1e300, False, False),
    ("²", False, False),
    ("-1", False, False),
    (True, False, False),
]


@pytest.mark.parametrize(
    ("key", "column"), [("quantity", 1), ("item_category_id", 2)], ids=["quantity", "category"]
)
@pytest.mark.parametrize("row", WHOLE_NUMBERS, ids=[repr(r[0])[:24] for r in WHOLE_NUMBERS])
def test_a_whole_number_validate_accepts_is_one_the_request_carries(
    destination, event_from, purchase_kwargs, key, column, row
) -> None:
    value, sendable = row[0], row[column]
    _set(f"properties.items.0.{key}", value)(purchase_kwargs)
    event = event_from(purchase_kwargs)
    field = f"properties.items[0].{key}"
    problems = [f for f in destination.validate(event) if isinstance(f, Problem)]
    assert [p.field for p in problems] == ([] if sendable else [field])
    if sendable:
        record = destination.transform(event)
        assert destination.build_request([Prepared(event, record)]).content
    else:
        with pytest.raises(AppLovinEventInvalid, match=re.escape(field)):
            destination.transform(event)

"""The shared request-context rules: client ip under each proxy setup, fields, opt-out, merge."""

from __future__ import annotations

import attrs
import pytest

from postback import ConfigError
from postback.events import CONTEXT_FIELDS, USER_FIELDS
from postback.fields import KNOWN_ELSEWHERE
from postback.integrations import (
    RequestContext,
    RequestContextSettings,
    RequestInfo,
    extract_request_context,
    merge_request_context,
)
from postback.integrations._context import (
    CLICK_ID_PARAMETERS,
    COOKIE_FIELDS,
    EXCLUDABLE,
    MAX_VALUE_LENGTH,
    UTM_PARAMETERS,
    LazyRequestContext,
    bind_request_context,
    client_ip,
    current_request_context,
)

#: Context fields: the core's, and AppLovin's (its plugin declares them).
APPLOVIN = {name for (group, name), dist in KNOWN_ELSEWHERE.items() if dist == "postback-applovin"}
DIRECT = RequestContextSettings()
ONE_HOP = RequestContextSettings(trusted_proxy_hops=1)
TWO_HOPS = RequestContextSettings(trusted_proxy_hops=2)
PROXIES = RequestContextSettings.from_mapping(
    {"trusted_proxies": ["10.0.0.0/8", "192.0.2.10"]}, where="t"
)


@pytest.mark.parametrize(
    ("peer", "forwarded", "settings", "expected"),
    [
        # No proxy configured: the header is ignored, whatever it says.
        ("203.0.113.5", ["6.6.6.6"], DIRECT, "203.0.113.5"),
        ("203.0.113.5", [], DIRECT, "203.0.113.5"),
        # One proxy: the right-most entry (what our proxy saw), not what the client wrote.
        ("10.0.0.2", ["6.6.6.6, 203.0.113.5"], ONE_HOP, "203.0.113.5"),
        ("10.0.0.2", ["6.6.6.6", "203.0.113.5"], ONE_HOP, "203.0.113.5"),  # two header lines
        ("10.0.0.2", ["9.9.9.9, 203.0.113.5, 10.0.0.1"], TWO_HOPS, "203.0.113.5"),
        # Fewer entries than proxies: the request did not come through them.
        ("203.0.113.5", [], ONE_HOP, "203.0.113.5"),
        ("10.0.0.2", ["203.0.113.5"], TWO_HOPS, "10.0.0.2"),
        # Garbage where the proxy should have written an address: no ip rather than a guess.
        ("10.0.0.2", ["unknown"], ONE_HOP, None),
        # Ports, brackets, quotes and IPv4-mapped IPv6 are normalised.
        ("10.0.0.2", ["203.0.113.5:51234"], ONE_HOP, "203.0.113.5"),
        ("10.0.0.2", ['"[2001:db8::1]:443"'], ONE_HOP, "2001:db8::1"),
        ("::ffff:203.0.113.5", [], DIRECT, "203.0.113.5"),
        # Trusted proxy list: right-most untrusted entry; only if the peer is trusted.
        ("10.1.2.3", ["6.6.6.6, 203.0.113.5, 192.0.2.10"], PROXIES, "203.0.113.5"),
        ("203.0.113.9", ["6.6.6.6"], PROXIES, "203.0.113.9"),
        ("10.1.2.3", ["10.9.9.9"], PROXIES, "10.9.9.9"),
        ("10.1.2.3", ["203.0.113.5, junk, 10.9.9.9"], PROXIES, None),
        # A peer that is not an address at all (unix socket, test client).
        ("testclient", [], DIRECT, None),
        (None, [], DIRECT, None),
    ],
)
def test_client_ip(peer, forwarded, settings, expected):
    assert client_ip(peer, forwarded, settings) == expected


RFC7239_ONE_HOP = RequestContextSettings(trusted_proxy_hops=1, forwarded_header="forwarded")
RFC7239_TWO_HOPS = RequestContextSettings(trusted_proxy_hops=2, forwarded_header="forwarded")
RFC7239_PROXIES = attrs.evolve(PROXIES, forwarded_header="forwarded")


@pytest.mark.parametrize(
    ("peer", "forwarded", "settings", "expected"),
    [
        # RFC 7239: for= among other parameters, quoted IPv6 with a port, any case.
        ("10.0.0.2", ["for=192.0.2.60;proto=http;by=203.0.113.43"], RFC7239_ONE_HOP, "192.0.2.60"),
        ("10.0.0.2", ['for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'], RFC7239_ONE_HOP,
         "2001:db8::1"),
        ("10.0.0.2", ['for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'], RFC7239_TWO_HOPS,
         "192.0.2.60"),
        ("10.0.0.2", ["For=\"192.0.2.61:8080\";Proto=https"], RFC7239_ONE_HOP, "192.0.2.61"),
        ("10.0.0.2", ["proto=https; for=192.0.2.62"], RFC7239_ONE_HOP, "192.0.2.62"),
        ("10.0.0.2", ["for=192.0.2.60", "for=198.51.100.17"], RFC7239_ONE_HOP, "198.51.100.17"),
        # A quoted value may hold a comma or a semicolon; it does not split the element.
        ("10.0.0.2", ['for=192.0.2.60;ext="a,b;c"'], RFC7239_ONE_HOP, "192.0.2.60"),
        # Obfuscated and unknown identifiers, or no for=, name no address: nothing is guessed.
        ("10.0.0.2", ["for=_hidden, for=192.0.2.60"], RFC7239_TWO_HOPS, None),
        ("10.0.0.2", ["for=unknown"], RFC7239_ONE_HOP, None),
        ("10.0.0.2", ["proto=https"], RFC7239_ONE_HOP, None),
        # Fewer elements than proxies: the peer.
        ("10.0.0.2", ["for=192.0.2.60"], RFC7239_TWO_HOPS, "10.0.0.2"),
        # A client's unclosed quote would swallow what the proxies appended to its line
        # (nginx: $http_forwarded, for=$remote_addr): the header is refused, not read.
        ("10.0.0.1", ['for=6.6.6.6, for=", for=1.1.1.1, for=10.0.0.1'], RFC7239_TWO_HOPS, None),
        ("10.0.0.1", ['for=6.6.6.6, for=", for=1.1.1.1'], RFC7239_ONE_HOP, None),
        ("10.0.0.1", ['for="1.1.1.1\\", for=1.1.1.1'], RFC7239_ONE_HOP, None),
        ("10.1.2.3", ['for=", for=203.0.113.5'], RFC7239_PROXIES, None),
        # Trusted proxy list: right-most element that is not a proxy.
        ("10.1.2.3", ['for=6.6.6.6, for=203.0.113.5, for="192.0.2.10:80"'], RFC7239_PROXIES,
         "203.0.113.5"),
        ("10.1.2.3", ["for=203.0.113.5, for=_proxy2"], RFC7239_PROXIES, None),
        ("203.0.113.9", ["for=6.6.6.6"], RFC7239_PROXIES, "203.0.113.9"),
    ],
)  # fmt: skip
def test_client_ip_from_an_rfc_7239_forwarded_header(peer, forwarded, settings, expected):
    assert client_ip(peer, forwarded, settings) == expected


def test_the_header_name_is_kept_lower_case_however_it_is_given():
    # Header names are case-insensitive: the settings hold the name once, lower-cased, so
    # reading a request compares it as it is (no lower() per request).
    settings = RequestContextSettings(trusted_proxy_hops=1, forwarded_header="Forwarded")
    assert settings.forwarded_header == "forwarded"
    assert client_ip("10.0.0.1", ["for=203.0.113.5"], settings) == "203.0.113.5"


def full_request(**overrides):
    fields = {
        "remote_addr": "10.0.0.2",
        "forwarded": ["203.0.113.5"],
        "user_agent": "Mozilla/5.0 (test)",
        "url": "https://shop.example/buy?gclid=G1&utm_source=news",
        "referrer": "https://news.example/",
        "accept_language": "de-CH, de;q=0.9, en;q=0.8",
        "query": [
            ("gclid", "G1"),
            ("ScCid", "S1"),
            ("utm_source", "news"),
            ("utm_source", "second"),
            ("aleid", "from-url"),
            ("other", "x"),
        ],
        "cookies": {
            "_axeid": "from-cookie",
            "_axart": "ART",
            "_axwrt": "WRT",
            "_fbp": "fb.1.2.3",
            "_ttp": "TTP",
            "unrelated": "1",
        },
    }
    fields.update(overrides)
    return RequestInfo(**fields)


def test_every_field_is_extracted_into_canonical_names():
    got = extract_request_context(full_request(), ONE_HOP)
    assert got.user == {"ip_address": "203.0.113.5", "user_agent": "Mozilla/5.0 (test)"}
    assert got.context == {
        "url": "https://shop.example/buy?gclid=G1&utm_source=news",
        "referrer_url": "https://news.example/",
        "language": "de-CH",
        "gclid": "G1",
        "sccid": "S1",  # Snap's ScCid: parameter names are case-insensitive
        "utm_source": "news",  # the first occurrence counts
        "aleid": "from-url",  # a fresh click in the URL beats the cookie
        "alart": "ART",
        "axwrt": "WRT",
        "fbp": "fb.1.2.3",
        "ttp": "TTP",
    }
    assert set(got.user) <= set(USER_FIELDS)
    assert set(got.context) <= set(CONTEXT_FIELDS) | APPLOVIN


def test_every_mapped_name_is_a_canonical_field():
    mapped = {*CLICK_ID_PARAMETERS.values(), *UTM_PARAMETERS.values(), *COOKIE_FIELDS.values()}
    assert mapped | {"url", "referrer_url", "language"} <= set(CONTEXT_FIELDS) | APPLOVIN
    assert {"ip_address", "user_agent"} <= set(USER_FIELDS)
    assert {"aleid", "alart", "axwrt"} == APPLOVIN <= mapped


def test_applovin_cookies_fill_the_context_when_the_url_has_no_click():
    got = extract_request_context(full_request(query=[]), DIRECT)
    assert got.context["aleid"] == "from-cookie"
    assert got.user["ip_address"] == "10.0.0.2"


def test_exclude_fields_and_groups():
    settings = RequestContextSettings.from_mapping(
        {"exclude": ["ip_address", "user_agent", "utm", "cookies", "language"]}, where="t"
    )
    got = extract_request_context(full_request(), settings)
    assert got.user == {}
    assert set(got.context) == {"url", "referrer_url", "gclid", "sccid", "aleid"}
    assert "click_ids" in EXCLUDABLE


def test_junk_values_are_dropped():
    got = extract_request_context(
        full_request(
            user_agent="x" * (MAX_VALUE_LENGTH + 1), query=[("gclid", "  ")], accept_language="*"
        ),
        DIRECT,
    )
    assert "user_agent" not in got.user
    assert "gclid" not in got.context
    assert "language" not in got.context


def test_settings_report_every_problem_at_once():
    with pytest.raises(ConfigError) as info:
        RequestContextSettings.from_mapping(
            {
                "exclude": ["ip_adress"],
                "trusted_proxy_hops": -1,
                "trusted_proxies": ["not-an-ip"],
                "forwarded_header": "",
                "proxy": 1,
            },
            where="POSTBACK_REQUEST_CONTEXT",
        )
    text = str(info.value)
    assert len(info.value.problems) == 5
    for fragment in (
        "ip_adress",
        "trusted_proxy_hops",
        "not-an-ip",
        "forwarded_header",
        "POSTBACK_REQUEST_CONTEXT.proxy",
    ):
        assert fragment in text


def test_hops_and_proxy_list_are_exclusive():
    with pytest.raises(ConfigError, match="not both"):
        RequestContextSettings.from_mapping(
            {"trusted_proxy_hops": 1, "trusted_proxies": ["10.0.0.0/8"]}, where="t"
        )


def test_coerce_accepts_objects_mappings_and_none():
    assert RequestContextSettings.coerce(None, where="t") == DIRECT
    assert RequestContextSettings.coerce(ONE_HOP, where="t") is ONE_HOP
    assert RequestContextSettings.coerce({"forwarded_header": "X-Real-IP"}, where="t") == (
        attrs.evolve(DIRECT, forwarded_header="x-real-ip")
    )
    with pytest.raises(ConfigError, match="must be a dict"):
        RequestContextSettings.coerce(["exclude"], where="t")  # type: ignore[arg-type]


def test_explicit_values_win_and_none_removes():
    derived = RequestContext(
        user={"ip_address": "203.0.113.5", "user_agent": "UA"},
        context={"utm_source": "news", "gclid": "G1"},
    )
    user, context = merge_request_context(
        derived, {"email": "a@b.co", "user_agent": None}, {"utm_source": "mine"}
    )
    assert user == {"ip_address": "203.0.113.5", "user_agent": None, "email": "a@b.co"}
    assert context == {"utm_source": "mine", "gclid": "G1"}
    assert merge_request_context(None, None, None) == (None, None)
    # Not a mapping: passed through, so that track() reports it.
    assert merge_request_context(derived, "oops", None)[0] == "oops"  # type: ignore[arg-type]


def test_lazy_context_reads_the_request_once_and_only_when_asked():
    calls = []

    def read():
        calls.append(1)
        return full_request()

    lazy = LazyRequestContext(ONE_HOP, read)
    assert current_request_context() is None
    with bind_request_context(lazy):
        assert calls == []
        assert current_request_context().user["ip_address"] == "203.0.113.5"
        assert current_request_context() is current_request_context()
    assert calls == [1]
    assert current_request_context() is None


def test_every_click_id_parameter_is_a_click_id_field_track_checks():
    from postback.normalize import CLICK_ID_FIELDS

    assert set(CLICK_ID_PARAMETERS.values()) == CLICK_ID_FIELDS

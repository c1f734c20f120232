"""Request context for the web integrations: who sent a request and which click brought them.

Flask, Starlette/FastAPI and Django all fill an event's context the same way, from this module:

==================  ========================================================================
field               where it comes from
==================  ========================================================================
``ip_address``      the socket peer, or the ``X-Forwarded-For`` entry your proxy setup makes
                    trustworthy (``trusted_proxy_hops`` or ``trusted_proxies``; neither is
                    set by default, so a client cannot forge its address); or the ``for=``
                    of the RFC 7239 ``Forwarded`` element, with ``forwarded_header``
``user_agent``      the ``User-Agent`` header
``url``             the full request URL (left out unless it is a complete http(s) URL: a
                    forged ``Host`` header must not make a vendor refuse the event)
``referrer_url``    the ``Referer`` header
``language``        the first tag of ``Accept-Language``
click ids           query parameters ``gclid gbraid wbraid fbclid ttclid twclid msclkid
                    li_fat_id rdt_cid sccid aleid alart`` (names are case-insensitive, so
                    Snap's ``ScCid`` counts)
``utm_*``           ``utm_source utm_medium utm_campaign utm_content utm_term utm_id``
cookies             AppLovin's ``_axeid`` -> ``aleid``, ``_axart`` -> ``alart``, ``_axwrt``
                    -> ``axwrt``; Meta's ``_fbp``/``_fbc`` -> ``fbp``/``fbc``; TikTok's
                    ``_ttp`` -> ``ttp``; Google's ``_ga`` -> ``ga``
==================  ========================================================================

``ip_address`` and ``user_agent`` go to the event's ``user``, the rest to its ``context``.
AppLovin's fields are declared by its plugin: without it installed they are not filled.

Consent comes from the request too (:func:`merge_request_consent`): ``Sec-GPC: 1`` (Global
Privacy Control) opts out of the purposes ``[consent] gpc`` names (``ads`` by default), and a
``consent_reader`` setting (a callable taking the framework's request and returning
``{purpose: bool}`` or ``None``) reads the app's own consent cookie or CMP state. The reader
beats GPC (it holds the user's explicit choice); ``track(consent=...)`` beats both. A
click id in the URL wins over the cookie that stored an earlier click. Values longer than
:data:`MAX_VALUE_LENGTH` characters are dropped (they are not ids; they are junk or attacks), and so
are click ids, ``utm_*`` values and cookies with a control character (``track()`` refuses such
a click id; a client must not make it raise). ``track()`` strips those from a user agent.

Any field can be switched off with ``exclude``, and so can a whole source: ``click_ids`` and
``utm`` (those query parameters) or ``cookies``. What the application passes to ``track()``
always wins: a key it gives (even with the value ``None``, which means "send nothing")
replaces the request-derived one.

The settings (:class:`RequestContextSettings`, with their checks) and the names of the query
parameters and cookies read are :mod:`postback.integrations._context_settings`, re-exported here.

Extraction is lazy: the integrations bind a :class:`LazyRequestContext` per request (a
contextvar set and reset, nothing parsed), and the headers are read only when ``track()`` is
called during that request.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import attrs

from postback.integrations._forwarded import forwarded_for
from postback.normalize import CLICK_ID_FIELDS, Unreadable, has_control, read_mapping

if TYPE_CHECKING:
    from postback.consent import ConsentSettings
    from postback.fields import FieldSet

__all__ = [
    "CLICK_ID_PARAMETERS",
    "COOKIE_FIELDS",
    "EXCLUDABLE",
    "MAX_VALUE_LENGTH",
    "SOURCES",
    "UTM_PARAMETERS",
    "LazyRequestContext",
    "RequestContext",
    "RequestContextSettings",
    "RequestInfo",
    "bind_request_context",
    "client_ip",
    "current_request_context",
    "extract_request_context",
    "merge_request_consent",
    "merge_request_context",
]

from postback.integrations._context_settings import (
    CLICK_ID_PARAMETERS,
    COOKIE_FIELDS,
    EXCLUDABLE,
    MAX_VALUE_LENGTH,
    SOURCES,
    UTM_PARAMETERS,
    RequestContextSettings,
)

log = logging.getLogger("postback")


# --------------------------------------------------------------------------------------------
# Extraction


@attrs.frozen
class RequestInfo:
    """What every framework can tell about a request, already read from its own objects.

    ``forwarded`` holds the values of the configured forwarding header, one per header line,
    in the order received.
    """

    remote_addr: str | None
    forwarded: Sequence[str] = ()
    user_agent: str | None = None
    url: str | None = None
    referrer: str | None = None
    accept_language: str | None = None
    query: Iterable[tuple[str, str]] = ()
    cookies: Mapping[str, str] = attrs.field(factory=dict)
    #: The request carried ``Sec-GPC: 1`` (Global Privacy Control).
    gpc: bool = False
    #: What the ``consent_reader`` returned for this request.
    consent: Mapping[str, bool] | None = None


@attrs.frozen
class RequestContext:
    """The request-derived part of an event: ``user`` fields and ``context`` fields, and the
    user's consent signals (``gpc``, and ``consent`` from the ``consent_reader``)."""

    user: Mapping[str, str] = attrs.field(factory=dict)
    context: Mapping[str, str] = attrs.field(factory=dict)
    gpc: bool = False
    consent: Mapping[str, bool] | None = None


def gpc_header(value: str | None) -> bool:
    """Whether a ``Sec-GPC`` header value is an opt-out (the spec's only value is ``"1"``)."""
    return value is not None and value.strip() == "1"


#: What :func:`read_consent` gives when the ``consent_reader`` raised: every purpose refused.
_READER_FAILED: Mapping[str, bool] = MappingProxyType({})


def read_consent(settings: RequestContextSettings, request: Any) -> Mapping[str, bool] | None:
    """The ``consent_reader``'s answer for ``request`` (``None`` without a reader).

    A reader that raises is logged and refuses every purpose for the request (as a
    ``postback_consent`` hook that raises): it reads what the client sent (a cookie), and no
    client may make ``track()`` raise, nor get an event sent that its consent may refuse."""
    reader = settings.consent_reader
    if reader is None:
        return None
    try:
        return reader(request)
    except Exception:
        log.exception(
            "the consent_reader raised: this request's events count every consent purpose as "
            "refused"
        )
        return _READER_FAILED


def _parse_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a header entry or a peer: strips quotes, brackets and ports."""
    if not text:
        return None
    value = text.strip().strip('"')
    if value.startswith("["):  # "[2001:db8::1]:443"
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # "203.0.113.7:51234"
        value = value.split(":", 1)[0]
    value = value.split("%", 1)[0]  # zone index: fe80::1%eth0
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def client_ip(
    remote_addr: str | None, forwarded: Sequence[str], settings: RequestContextSettings
) -> str | None:
    """The client's address under ``settings``' proxy setup, or ``None`` if unknowable.

    With no proxy settings the socket peer is the client: forwarding headers are ignored,
    because anyone can send them. With ``trusted_proxy_hops = n`` the client is the n-th
    forwarded entry from the right (the peer if there are fewer entries: the request did not
    pass the proxies). With ``trusted_proxies`` the header is read only when the peer is a
    trusted proxy, and the client is the right-most entry that is not one. A ``Forwarded``
    header (RFC 7239) counts its elements the same way and reads each one's ``for=`` node;
    an ``unknown`` or obfuscated (``_hidden``) node, or none, is not an address.
    """
    peer = _parse_ip(remote_addr)
    if not settings.trusted_proxy_hops and not settings.trusted_proxies:
        return str(peer) if peer is not None else None
    entries: Sequence[str | None]
    if settings.forwarded_header == "forwarded":  # RFC 7239: for=...;proto=..., ...
        nodes = forwarded_for(forwarded)
        if nodes is None:
            return None  # a malformed header (an unclosed quote): trust none of it
        entries = nodes
    else:
        entries = [e for value in forwarded for e in value.split(",") if e.strip()]
    if settings.trusted_proxy_hops:
        if len(entries) < settings.trusted_proxy_hops:
            return str(peer) if peer is not None else None
        addr = _parse_ip(entries[-settings.trusted_proxy_hops])
        return str(addr) if addr is not None else None
    networks = settings.trusted_proxies
    if peer is None or not any(peer in net for net in networks):
        return str(peer) if peer is not None else None
    hop = peer
    for entry in reversed(entries):
        addr = _parse_ip(entry)
        if addr is None:
            return None  # garbage where a proxy should have written an address: trust nothing
        hop = addr
        if not any(addr in net for net in networks):
            return str(addr)
    return str(hop)  # every hop was a trusted proxy: the left-most is the best we know


def _usable(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_VALUE_LENGTH:
        return None
    return value


def _usable_id(value: str | None, field: str) -> str | None:
    """The value of ``context.<field>`` from a query parameter or a cookie, or ``None``: for
    a click id, one with a control character or other non-printable (which ``track()``
    refuses); for a campaign parameter, one with a control character (``春\u3000セール`` is
    text). A client writes these, and no client may make ``track()`` raise."""
    value = _usable(value)
    if value is None:
        return None
    if field in CLICK_ID_FIELDS:
        return value if value.isprintable() else None
    return None if has_control(value) else value


_SPACE = re.compile(r"\s").search


def _page_url(value: str | None) -> str | None:
    """The request's URL if it is a complete ``http(s)://host[:port]/...`` URL, else ``None``.

    The URL is rebuilt from the ``Host`` header, which any client writes: ``shop.example:abc``
    or ``user:pw@shop.example`` give a URL without a host or with a port that is not one,
    which a vendor (AppLovin) refuses as a malformed event, failing ``track()``. Whitespace
    (a path's ``%20`` that the ASGI server decoded) is percent-encoded again.
    """
    url = _usable(value)
    if url is None:
        return None
    if _SPACE(url) is not None:  # Starlette's URL keeps the space uvicorn decoded (%20)
        url = "".join(quote(c) if c.isspace() else c for c in url)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number from 0 to 65535
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return url


def extract_request_context(info: RequestInfo, settings: RequestContextSettings) -> RequestContext:
    """Turn what a framework read from a request into canonical ``user``/``context`` fields."""
    wanted = settings.enabled_fields
    user: dict[str, str] = {}
    context: dict[str, str] = {}
    if "ip_address" in wanted:
        ip = client_ip(info.remote_addr, info.forwarded, settings)
        if ip:
            user["ip_address"] = ip
    if "user_agent" in wanted and (ua := _usable(info.user_agent)):
        user["user_agent"] = ua
    if "url" in wanted and (url := _page_url(info.url)):
        context["url"] = url
    if "referrer_url" in wanted and (ref := _usable(info.referrer)):
        context["referrer_url"] = ref
    if "language" in wanted and info.accept_language:
        first = info.accept_language.split(",", 1)[0].split(";", 1)[0]
        if (lang := _usable(first)) and lang != "*":
            context["language"] = lang
    excluded = settings.exclude
    if "cookies" not in excluded:
        for cookie, field in COOKIE_FIELDS.items():
            if field in wanted and (val := _usable_id(info.cookies.get(cookie), field)):
                context[field] = val
    parameters: dict[str, str] = {}
    if "click_ids" not in excluded:
        parameters.update(CLICK_ID_PARAMETERS)
    if "utm" not in excluded:
        parameters.update(UTM_PARAMETERS)
    from_query: dict[str, str] = {}
    for key, raw in info.query if parameters else ():
        target = parameters.get(key.lower())
        if target is not None and target in wanted and (val := _usable_id(raw, target)):
            from_query.setdefault(target, val)  # the first occurrence of a parameter counts
    context.update(from_query)  # a fresh click in the URL beats one a cookie stored
    return RequestContext(user=user, context=context, gpc=info.gpc, consent=info.consent)


class LazyRequestContext:
    """A request's context, extracted on first use and then kept for the rest of the request.

    ``read`` turns the framework's request into a :class:`RequestInfo`; it runs at most once.
    """

    __slots__ = ("_read", "_resolved", "_settings")

    def __init__(self, settings: RequestContextSettings, read: Callable[[], RequestInfo]):
        self._settings = settings
        self._read = read
        self._resolved: RequestContext | None = None

    def resolve(self) -> RequestContext:
        if self._resolved is None:
            self._resolved = extract_request_context(self._read(), self._settings)
        return self._resolved


_current: contextvars.ContextVar[LazyRequestContext | None] = contextvars.ContextVar(
    "postback_request_context", default=None
)


@contextmanager
def bind_request_context(lazy: LazyRequestContext | None) -> Iterator[None]:
    """Make ``lazy`` the current request's context (in this thread or task) inside the block."""
    token = _current.set(lazy)
    try:
        yield
    finally:
        _current.reset(token)


def current_request_context() -> RequestContext | None:
    """The context of the request being handled, if a postback middleware bound one."""
    lazy = _current.get()
    return lazy.resolve() if lazy is not None else None


def merge_request_context(
    derived: RequestContext | None,
    user: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
    fields: FieldSet | None = None,
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """``track()``'s ``user`` and ``context`` with request-derived fields filled in.

    Explicit keys win, including explicit ``None`` (which sends nothing for that field).
    Arguments that are not mappings pass through untouched so that ``track()`` reports them.
    ``fields``: the tracker's (``tracker.host.fields``); a request-derived field it does not
    accept is left out (AppLovin's ``aleid`` when its plugin is not installed).
    """
    if derived is None:
        return user, context
    from_user, from_context = derived.user, derived.context
    if fields is not None:
        if not from_user.keys() <= fields.user:
            from_user = {k: v for k, v in from_user.items() if k in fields.user}
        if not from_context.keys() <= fields.context:
            from_context = {k: v for k, v in from_context.items() if k in fields.context}
    if from_user and (user is None or isinstance(user, Mapping)):
        user = {**from_user, **(user or {})}
    if from_context and (context is None or isinstance(context, Mapping)):
        context = {**from_context, **(context or {})}
    return user, context


def merge_request_consent(
    derived: RequestContext | None, consent: object, settings: ConsentSettings
) -> Any:
    """``track()``'s ``consent`` with the request's signals filled in: ``Sec-GPC: 1`` denies
    the purposes of ``[consent] gpc``, the ``consent_reader``'s answer overrides that (a
    reader that raised denies every known purpose, ``[consent] purposes``), and the app's own
    ``consent`` overrides both, key by key. Returns ``consent`` untouched when
    the request says nothing (or when it is not a mapping, or one whose reading raises, so
    that ``track()`` reports it); a dict subclass is read as the plain dict it holds."""
    if derived is None or (not derived.gpc and derived.consent is None):
        return consent
    if consent is not None:
        if not isinstance(consent, Mapping):
            return consent
        try:
            consent = read_mapping(consent)  # once, keys plain: no override of its own runs
        except Unreadable:
            return consent
    merged: dict[Any, Any] = {}
    if derived.gpc:
        merged.update(dict.fromkeys(settings.gpc, False))
    if derived.consent is _READER_FAILED:
        merged.update(dict.fromkeys(settings.purposes or settings.gpc, False))
    elif derived.consent is not None:
        if not isinstance(derived.consent, Mapping):
            raise TypeError(
                "consent_reader must return a mapping of purpose to True/False (or None), "
                f"got {type(derived.consent).__name__}"
            )
        merged.update(derived.consent)
    if consent:
        merged.update(consent)
    return merged if merged or consent is not None else None

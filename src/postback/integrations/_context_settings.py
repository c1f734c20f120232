"""The settings of request-context extraction (:class:`RequestContextSettings`): what an
integration may fill from a request, which proxies it trusts and how it reads consent, with
the checks that refuse a bad value naming the setting; and the names of the query parameters
and cookies it reads.

Reading a request with these settings is :mod:`postback.integrations._context`, which
re-exports every name in this module's ``__all__``.
"""

from __future__ import annotations

import importlib
import inspect
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from postback.errors import ConfigError, ConfigProblem

__all__ = [
    "CLICK_ID_PARAMETERS",
    "COOKIE_FIELDS",
    "EXCLUDABLE",
    "MAX_VALUE_LENGTH",
    "SOURCES",
    "UTM_PARAMETERS",
    "RequestContextSettings",
]

#: Query parameters that carry an ad click id, by their lower-case name -> Context field.
CLICK_ID_PARAMETERS: Mapping[str, str] = {
    name: name
    for name in (
        "gclid", "gbraid", "wbraid", "fbclid", "ttclid", "twclid", "msclkid", "li_fat_id",
        "rdt_cid", "sccid", "aleid", "alart",
    )
}  # fmt: skip
#: Campaign parameters, by their lower-case name -> Context field.
UTM_PARAMETERS: Mapping[str, str] = {
    name: name
    for name in ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "utm_id")
}
#: First-party cookies set by the vendors' pixels -> Context field.
COOKIE_FIELDS: Mapping[str, str] = {
    "_axeid": "aleid",
    "_axart": "alart",
    "_axwrt": "axwrt",
    "_fbp": "fbp",
    "_fbc": "fbc",
    "_ttp": "ttp",
    "_ga": "ga",
}
_HEADER_USER_FIELDS = ("ip_address", "user_agent")
_HEADER_CONTEXT_FIELDS = ("url", "referrer_url", "language")
#: Sources that ``exclude`` can switch off as a whole.
SOURCES: frozenset[str] = frozenset({"click_ids", "utm", "cookies"})
#: Every name ``exclude`` accepts: the fields this module fills and the sources.
EXCLUDABLE: frozenset[str] = frozenset(
    {
        *_HEADER_USER_FIELDS,
        *_HEADER_CONTEXT_FIELDS,
        *SOURCES,
        *CLICK_ID_PARAMETERS.values(),
        *UTM_PARAMETERS.values(),
        *COOKIE_FIELDS.values(),
    }
)
#: Longer request-derived values are dropped rather than stored.
MAX_VALUE_LENGTH = 2048


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


_ASYNC_READER = (
    "must be a plain function, not an async one: it is called inside track(), which reads the "
    "request's cookies or headers without awaiting (request.cookies.get(...))"
)


def _check_reader_is_plain(reader: object) -> None:
    """An ``async def`` consent reader would hand ``track()`` a coroutine on every request:
    refused when the settings are made, not at the first event."""
    if reader is not None and inspect.iscoroutinefunction(reader):
        raise ConfigError([ConfigProblem("consent_reader", _ASYNC_READER)])


def _header_name(name: str) -> str:
    """A header name as the settings hold it: lower-case (header names are case-insensitive)."""
    return name.lower()


# --------------------------------------------------------------------------------------------
# Settings


@attrs.frozen
class RequestContextSettings:
    """How an integration reads the request context.

    ``trusted_proxy_hops``: how many reverse proxies (load balancer, nginx, ...) stand in front
    of the app and append to ``X-Forwarded-For``; the client address is that many entries from
    the right (only safe when the app cannot be reached except through them).
    ``trusted_proxies``: the addresses or networks of your proxies instead; the header is read
    only when the peer is one of them, and the client is the right-most entry that is not.
    Set at most one; with neither the socket peer is the client and forwarding headers are
    ignored. ``forwarded_header`` names the header to read (``X-Real-IP`` or
    ``CF-Connecting-IP`` work with ``trusted_proxy_hops = 1``; ``Forwarded`` is parsed as
    RFC 7239, ``for=`` of each element). ``exclude`` lists fields not
    to fill, or sources not to read (``click_ids``, ``utm``, ``cookies``).
    ``consent_reader``: a callable taking the framework's request (Flask's ``request``,
    Starlette's ``HTTPConnection``, Django's ``HttpRequest``) and returning the user's consent
    as ``{purpose: bool}`` (from the app's consent cookie or CMP), or ``None`` when unknown;
    called at most once per request, when an event is tracked. A ``"module:function"``
    string is imported (for Django settings).
    """

    exclude: frozenset[str] = frozenset()
    trusted_proxy_hops: int = 0
    trusted_proxies: tuple[IPNetwork, ...] = ()
    forwarded_header: str = attrs.field(default="x-forwarded-for", converter=_header_name)
    consent_reader: Callable[[Any], Mapping[str, bool] | None] | None = attrs.field(
        default=None, validator=lambda _s, _a, reader: _check_reader_is_plain(reader)
    )

    @property
    def enabled_fields(self) -> frozenset[str]:
        """The fields this configuration may fill (a group excludes a *source*, not fields:
        ``cookies`` stops reading cookies, an ``aleid`` in the URL still counts)."""
        return frozenset(EXCLUDABLE - SOURCES - self.exclude)

    @classmethod
    def coerce(
        cls, value: RequestContextSettings | Mapping[str, Any] | None, *, where: str
    ) -> RequestContextSettings:
        """Accept settings, a mapping of the same keys, or ``None`` (defaults).

        ``where`` names the setting in error messages (``POSTBACK_REQUEST_CONTEXT``).
        Raises :class:`~postback.ConfigError` listing every problem.
        """
        if value is None:
            return cls()
        if isinstance(value, RequestContextSettings):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError([ConfigProblem(where, f"must be a dict, got {type(value).__name__}")])
        return cls.from_mapping(value, where=where)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, where: str) -> RequestContextSettings:
        """Validate a mapping with the keys of this class; every problem at once."""
        problems: list[ConfigProblem] = []
        known = [a.name for a in attrs.fields(cls)]
        for key in raw:
            if key not in known:
                problems.append(
                    ConfigProblem(f"{where}.{key}", f"unknown setting; known: {', '.join(known)}")
                )
        exclude = _parse_exclude(raw.get("exclude", ()), f"{where}.exclude", problems)
        hops = raw.get("trusted_proxy_hops", 0)
        if not isinstance(hops, int) or isinstance(hops, bool) or hops < 0:
            problems.append(
                ConfigProblem(
                    f"{where}.trusted_proxy_hops",
                    f"must be a whole number of proxies (0 when clients connect directly), "
                    f"got {hops!r}",
                )
            )
            hops = 0
        proxies = _parse_networks(
            raw.get("trusted_proxies", ()), f"{where}.trusted_proxies", problems
        )
        if hops and proxies:
            problems.append(
                ConfigProblem(
                    where,
                    "set either trusted_proxy_hops (how many proxies) or trusted_proxies "
                    "(which addresses), not both",
                )
            )
        header = raw.get("forwarded_header", "x-forwarded-for")
        if not isinstance(header, str) or not header.strip():
            problems.append(
                ConfigProblem(
                    f"{where}.forwarded_header",
                    f"must be a header name such as 'X-Forwarded-For', got {header!r}",
                )
            )
            header = "x-forwarded-for"
        reader = raw.get("consent_reader")
        if isinstance(reader, str) and ":" in reader:  # "myapp.consent:read" (Django settings)
            module, _, attribute = reader.partition(":")
            try:
                reader = getattr(importlib.import_module(module), attribute)
            except (ImportError, AttributeError) as exc:
                problems.append(
                    ConfigProblem(f"{where}.consent_reader", f"cannot import {reader!r}: {exc}")
                )
                reader = None
        if reader is not None and not callable(reader):
            problems.append(
                ConfigProblem(
                    f"{where}.consent_reader",
                    "must be a function taking the request and returning {purpose: bool} "
                    f"(or None), got {type(reader).__name__}",
                )
            )
        elif reader is not None and inspect.iscoroutinefunction(reader):
            problems.append(ConfigProblem(f"{where}.consent_reader", _ASYNC_READER))
            reader = None
        if problems:
            raise ConfigError(problems)
        return cls(
            exclude=exclude,
            trusted_proxy_hops=hops,
            trusted_proxies=proxies,
            forwarded_header=header.strip().lower(),
            consent_reader=reader,  # type: ignore[arg-type]  # checked: callable or None
        )


def _parse_exclude(value: object, path: str, problems: list[ConfigProblem]) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        problems.append(
            ConfigProblem(path, f"must be a list of field names, got {type(value).__name__}")
        )
        return frozenset()
    names = list(value)
    unknown = [n for n in names if n not in EXCLUDABLE]
    if unknown:
        problems.append(
            ConfigProblem(
                path,
                f"unknown field(s) {', '.join(map(repr, unknown))}; excludable: "
                f"{', '.join(sorted(EXCLUDABLE))}",
            )
        )
    return frozenset(n for n in names if n in EXCLUDABLE)


def _parse_networks(
    value: object, path: str, problems: list[ConfigProblem]
) -> tuple[IPNetwork, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        problems.append(
            ConfigProblem(
                path,
                f"must be a list of addresses or networks (e.g. ['10.0.0.0/8']), got "
                f"{type(value).__name__}",
            )
        )
        return ()
    out: list[IPNetwork] = []
    for item in value:
        try:
            out.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            problems.append(ConfigProblem(path, f"{item!r} is not an IP address or network (CIDR)"))
    return tuple(out)

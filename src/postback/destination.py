"""The vendor contract: a :class:`Destination` speaks one vendor's API, without doing any I/O.

A vendor plugin subclasses :class:`Destination` and registers the class through the
``postback_register_destinations`` hook. The core instantiates it once per tracker with the
vendor's validated settings, then drives it through four sans-I/O steps::

    validate(event)            -> problems, skips   (at track() time, on the caller's thread)
    transform(event)           -> wire record       (at delivery time, per event)
    build_request(batch)       -> httpx.Request     (one request per batch of records)
    parse_response(batch, rsp) -> outcome(s)        (per event: Delivered / Retry / Rejected ...)

The delivery engine owns everything with side effects: the queue, the connection pool, rate
limits, retries, dead letters. So every vendor gets them the same way and a vendor's tests need
no network (``httpx.MockTransport`` with the vendor's :class:`Emulator`).

What ``parse_response`` returns (``Delivered``, ``Retry``, ``Rejected`` ...) lives in
:mod:`postback.outcomes` and is re-exported here, so ``from postback.destination import
Delivered`` keeps working.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import httpx

from postback.errors import Problem
from postback.events import Event
from postback.fields import EventField
from postback.outcomes import (
    NOT_SENT,
    DeadLettered,
    Delivered,
    Halt,
    Outcome,
    Rejected,
    RejectedBatch,
    Reported,
    Retry,
    Skipped,
)
from postback.redaction import Redactor

__all__ = [
    "NOT_SENT",
    "DeadLettered",
    "Delivered",
    "Destination",
    "Emulator",
    "Halt",
    "KeyStore",
    "MemoryKeyStore",
    "Outcome",
    "Prepared",
    "RateHint",
    "RateLimit",
    "Rejected",
    "RejectedBatch",
    "Reported",
    "Retry",
    "RetryPolicy",
    "Secret",
    "Skip",
    "SkipEvent",
    "Skipped",
    "config_warnings",
    "new_prepared",
    "setting",
]


# ------------------------------------------------------------------------------------------
# Settings


@attrs.frozen(repr=False, eq=True)
class Secret:
    """A secret setting (API key, token). Its repr and str never show the value.

    Read the value with :meth:`reveal` only where it goes on the wire.
    """

    _value: str

    def reveal(self) -> str:
        """The secret value. Call it only to put the secret on the wire."""
        return self._value

    def fingerprint(self) -> str:
        """A short, stable, non-reversible id for logs and rate-limit keys."""
        return hashlib.sha256(self._value.encode("utf-8", "surrogatepass")).hexdigest()[:12]

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def setting(
    *,
    help: str,
    default: Any = attrs.NOTHING,
    secret: bool = False,
    factory: Any = None,
    validator: Any = None,
    converter: Any = None,
) -> Any:
    """Declare a field of a vendor's settings class (an ``attrs`` class).

    ``help`` documents the setting in ``postback plugins``, ``config check`` and the reference
    docs; ``secret=True`` marks it for redaction (type it as :class:`Secret`).
    """
    kwargs: dict[str, Any] = {"metadata": {"help": help, "secret": secret}}
    if factory is not None:
        kwargs["factory"] = factory
    elif default is not attrs.NOTHING:
        kwargs["default"] = default
    if validator is not None:
        kwargs["validator"] = validator
    if converter is not None:
        kwargs["converter"] = converter
    return attrs.field(**kwargs)


@attrs.frozen
class RateLimit:
    """At most ``requests`` requests per ``per_seconds`` seconds, per vendor and credential."""

    requests: int
    per_seconds: float

    def __str__(self) -> str:
        return f"{self.requests}/{self.per_seconds:g}s"


@attrs.frozen
class RetryPolicy:
    """How a vendor's transient failures are retried.

    Backoff is exponential with full jitter: attempt *n* waits a random time in
    ``[0, min(max_backoff, initial_backoff * 2**n)]`` unless the vendor said when (Retry-After).
    After ``max_attempts`` attempts or once an event is older than ``max_age`` seconds it goes
    to the dead-letter store with the last error.
    """

    max_attempts: int = 20
    max_age: float = 24 * 3600.0
    initial_backoff: float = 1.0
    max_backoff: float = 300.0


@attrs.frozen
class RateHint:
    """What a response says about the vendor's rate limit (e.g. X's ``x-rate-limit-*``)."""

    remaining: int
    reset_at: float  # epoch seconds


# ------------------------------------------------------------------------------------------
# What validate() and transform() say besides a record (outcomes: postback.outcomes)


def _check_skip_reason(_skip: Skip, _attribute: attrs.Attribute[str], given: str) -> None:
    """Refuse a :class:`Skip` without a reason: it would be counted and logged as ``''``."""
    reason: object = given  # (typed str, but a plugin may pass anything)
    if isinstance(reason, str) and reason.strip():
        return
    what = "be a str" if not isinstance(reason, str) else "not be empty or blank"
    error = TypeError if not isinstance(reason, str) else ValueError
    raise error(
        f"Skip(reason={reason!r}): the reason must {what}; pass a short, stable text saying why "
        "this vendor cannot use the event (it is counted and logged per vendor and reason), "
        "e.g. Skip('no device id', field='user.ifa', fix=\"pass user={'ifa': ...}\")"
    )


@attrs.frozen
class Skip:
    """What :meth:`Destination.validate` yields when this vendor cannot use an event *as
    given*, although the event itself is well formed: its identifier is missing (X: a device
    id), or a field the vendor requires for this event type is absent.

    The event then goes to every other vendor and skips this one; nothing raises (unless the
    tracker is strict). A malformed event (a wrong type, a bad format) is a
    :class:`~postback.Problem` instead, which refuses the event.

    ``reason`` is short and stable (it is counted per vendor and reason, and logged once per
    process with ``fix``), e.g. ``"no device id"``; ``field`` names the canonical field that
    would fix it (``"user.ifa"``); ``fix`` says how (``"pass user={'ifa': ...}, or list the
    events X should get with events = [...]"``). The core sets ``vendor``. An empty or blank
    ``reason`` (or one that is not a str) is refused here, at construction: a
    ``postback_validate`` building one fails as a plugin error naming the vendor.
    """

    reason: str = attrs.field(validator=_check_skip_reason)
    field: str = ""
    fix: str = ""
    vendor: str | None = None

    def __str__(self) -> str:
        where = f"{self.vendor}: " if self.vendor else ""
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.reason}"


class SkipEvent(Exception):
    """Raise from ``transform`` (or a ``postback_transform`` wrapper) to not send an event
    to this vendor, e.g. for lack of consent. It is recorded as skipped, not dead-lettered."""


@attrs.frozen
class Prepared:
    """An event with the wire record its vendor's ``transform`` made from it."""

    event: Event
    record: Any


_set_prepared_event = Prepared.__dict__["event"].__set__
_set_prepared_record = Prepared.__dict__["record"].__set__


def new_prepared(event: Event, record: Any) -> Prepared:
    """``Prepared(event, record)`` with its slots filled directly: the lanes make one per event,
    and attrs' frozen ``__init__`` (each field through ``object.__setattr__``) costs twice as
    much."""
    prepared: Prepared = object.__new__(Prepared)
    _set_prepared_event(prepared, event)
    _set_prepared_record(prepared, record)
    return prepared


# ------------------------------------------------------------------------------------------
# A small durable memory for vendors (e.g. "report one conversion per user")


class KeyStore:
    """Keys a vendor remembers for good, stored in the tracker's queue (so across restarts).

    ``remember(key)`` is atomic: it returns True only for the first caller, which makes
    "at most once per key" safe with several requests in flight. Note that ``transform`` runs
    again on every delivery attempt (retries, replays): remember *which event* claimed a key
    (e.g. ``remember(f"{key}={event_id}")`` next to ``remember(key)``), or a retry of the
    claiming event would be skipped as a repeat.
    """

    def remember(self, key: str) -> bool:
        raise NotImplementedError

    def forget(self, key: str) -> None:
        raise NotImplementedError

    def forget_prefix(self, prefix: str) -> None:
        """Forget every key that starts with ``prefix`` (taken literally)."""
        raise NotImplementedError


class MemoryKeyStore(KeyStore):
    """The default before a tracker binds its queue's store: a set in memory."""

    def __init__(self) -> None:
        self._keys: set[str] = set()

    def remember(self, key: str) -> bool:
        if key in self._keys:
            return False
        self._keys.add(key)
        return True

    def forget(self, key: str) -> None:
        self._keys.discard(key)

    def forget_prefix(self, prefix: str) -> None:
        self._keys -= {k for k in self._keys if k.startswith(prefix)}


# ------------------------------------------------------------------------------------------
# The destination base class


class Destination:
    """Base class of a vendor. Subclass it, set the class attributes, implement the steps.

    Class attributes:

    ``name``
        The vendor name: the entry-point name and the ``[vendors.NAME]`` config table.
    ``settings_class``
        An ``attrs`` class of the vendor's own settings (declare fields with :func:`setting`).
        Settings every vendor takes (``base_url``, ``events``, ``event_map``, ``rate_limit``,
        ``concurrency``, ``timeout``, ``batch_size``, ``retry``) are handled by the core.
    ``default_origin``
        The vendor's origin (``https://b.applovin.com``); ``base_url`` replaces it.
    ``default_event_map``
        Canonical event name -> the vendor's name. Only these events (plus the config's
        ``event_map``) are routed to the vendor unless ``accepts_custom_events`` is true.
    ``max_batch_size``
        Events per request (1 for vendors without a batch endpoint).
    ``default_rate_limit``, ``retry_policy``, ``default_concurrency``
        Delivery defaults from the vendor's docs; users override them in config.
    ``option_keys``
        The per-event options ``track(vendors={NAME: {...}})`` accepts; the core refuses any
        other key (a problem naming the vendor), so ``validate`` sees only these.
    ``fields``
        The ``user`` and ``context`` fields the vendor adds to the event
        (:func:`~postback.plugin.user_field`, :func:`~postback.plugin.context_field`): with
        the plugin installed, ``track(user={"telegram_user_id": ...})`` accepts them; read
        one with ``event.user.get("telegram_user_id")`` (:mod:`postback.fields`).
    ``extra_currencies``
        Upper-case currency codes beyond ISO 4217 the vendor takes (Whop: ``ETH``, ``BTC``).
        ``track()`` accepts them when a configured vendor declares them; every vendor that
        does not is skipped for such an event.
    ``idempotent``
        True when the vendor recognises a request sent again (an idempotency key or a dedupe
        id on every event), so that a request whose outcome is unknown is safe to retry.
    ``purposes``
        The consent purposes the vendor needs (``("ads",)``: an advertising or attribution
        vendor); an event goes to it only when all are granted (:mod:`postback.consent`).
        ``[vendors.NAME] purposes`` overrides it.
    ``default_dedupe_window``
        Seconds within which postback itself drops an ``event_id`` tracked again for this
        vendor (:mod:`postback.dedupe`); set it when the vendor has no dedupe key of its own
        (``None``, the default: the vendor dedupes). ``[vendors.NAME] dedupe_window``
        overrides it.
    """

    name: ClassVar[str]
    settings_class: ClassVar[type[Any]]
    default_origin: ClassVar[str] = ""
    default_event_map: ClassVar[Mapping[str, str]] = {}
    accepts_custom_events: ClassVar[bool] = False
    max_batch_size: ClassVar[int] = 1
    default_rate_limit: ClassVar[RateLimit | None] = None
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()
    default_concurrency: ClassVar[int] = 8
    option_keys: ClassVar[frozenset[str]] = frozenset()
    fields: ClassVar[Sequence[EventField]] = ()
    idempotent: ClassVar[bool] = False
    extra_currencies: ClassVar[frozenset[str]] = frozenset()
    purposes: ClassVar[tuple[str, ...]] = ("ads",)
    default_dedupe_window: ClassVar[float | None] = None
    version: ClassVar[str] = ""

    def __init__(
        self,
        settings: Any,
        *,
        base_url: str | None = None,
        event_map: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/") if base_url else None
        self.event_map: dict[str, str] = {**self.default_event_map, **(event_map or {})}
        #: Durable per-vendor memory; the tracker binds it to its queue.
        self.store: KeyStore = MemoryKeyStore()

    # --- routing and naming -----------------------------------------------------------------

    def origin(self) -> str:
        """Where requests go: ``base_url`` when configured, else the vendor's origin."""
        return self.base_url or self.default_origin

    def url(self, path: str) -> str:
        """``origin() + path``: ``base_url`` replaces the origin and keeps the vendor's path."""
        return self.origin() + path

    def parsed_url(self, path: str, params: Mapping[str, str] | None = None) -> httpx.URL:
        """:meth:`url` of ``path`` (with ``params`` as its query string) as an ``httpx.URL``,
        parsed once per destination and kept. Pass it to ``httpx.Request`` in
        ``build_request``: httpx then skips parsing the URL, about 25 of the 270 µs of CPU
        httpx spends on a one-event request (docs/performance.md). For a fixed path and
        fixed parameters; a URL that varies per request (a signed one) is built as a string."""
        key = (path, tuple(params.items()) if params else ())
        cache: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] | None
        cache = self.__dict__.get("_parsed_urls")
        if cache is None:
            cache = self.__dict__["_parsed_urls"] = {}
        found = cache.get(key)
        if found is None:
            text = self.url(path)
            found = httpx.URL(text, params=params) if params else httpx.URL(text)
            if len(cache) < 64:  # a plugin passing varying parameters must not grow it
                cache[key] = found
        return found

    def supports(self, event_name: str) -> bool:
        """Whether events of this name go to this vendor when its ``events`` filter is unset."""
        return event_name in self.event_map or self.accepts_custom_events

    def vendor_event_name(self, event_name: str) -> str | None:
        """The vendor's name for a canonical event, or ``None`` when it has none."""
        mapped = self.event_map.get(event_name)
        if mapped is None and self.accepts_custom_events:
            return event_name
        return mapped

    def credential_id(self) -> str:
        """A non-secret id of the credentials in use, to key rate limits (per credential)."""
        parts = [
            getattr(self.settings, a.name).fingerprint()
            for a in attrs.fields(type(self.settings))
            if isinstance(getattr(self.settings, a.name, None), Secret)
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12] if parts else "-"

    def config_warnings(self, events: frozenset[str] | None) -> Iterable[tuple[str, str]]:
        """Yield ``(setting, message)`` for a configuration that works but likely does not do
        what the user wants (e.g. event names the vendor silently drops). ``events`` is the
        vendor's ``events`` filter (``None``: unset). Shown by ``postback config check`` and
        ``postback doctor`` (see :func:`config_warnings`); never an error."""
        return ()

    def check_config(self) -> Iterable[tuple[str, str]]:
        """Yield ``(setting, message)`` for problems that need the whole configuration (e.g. an
        ``event_map`` naming an event the vendor does not know). Called once when the config
        is loaded, so the problems are reported together with all others; ``setting`` is
        relative to ``[vendors.NAME]`` (``"event_map.lead"``), or ``""`` for the table."""
        return ()

    # --- the four sans-I/O steps ---------------------------------------------------------------

    def validate(self, event: Event) -> Iterable[Problem | Skip]:
        """Yield what keeps this vendor from sending ``event``, in two kinds:

        - :class:`~postback.Problem` (``Problem(field, message)``): the event is *malformed*
          for this vendor: a value of the wrong type or format (an IP address that is not one,
          an item that is not a dict, an unknown per-event option). A programming error:
          ``track()`` refuses the whole event with :class:`~postback.InvalidEvent`.
        - :class:`~postback.Skip` (``Skip(reason, field=..., fix=...)``): the event is well
          formed but this vendor cannot use it *as given*: its identifier is missing (X: a
          device id) or a field it requires for this event type is absent. The vendor is left
          out of this event, the others get it, and the skip is counted and logged once.

        Runs at ``track()`` time on the caller's thread, once per routed vendor: check only
        presence and formats, cheaply (no hashing, no parsing, no wire record); ``transform``
        checks again at delivery. The core sets ``vendor`` on both kinds. Yield Skips you build
        once (in ``__init__``): they are compared by value and counted by ``reason``.
        """
        return ()

    def skip_without(self, event_name: str) -> tuple[str, Skip] | None:
        """``(user field, skip)`` when this vendor skips every ``event_name`` event that lacks
        that user field (``"ifa"``, or a field it declares) and has no per-event options: its
        :meth:`validate` then yields that one Skip (built once) and nothing else. ``None`` (the
        default): no such field, or not for this name.

        A promise to the router, which then leaves the vendor out of such events without
        calling ``validate`` (a web event at a vendor of app installs, on every ``track()``);
        the skip is counted, logged and reported as if ``validate`` had yielded it. Asked once
        per event name; ``explain()`` and a strict tracker call ``validate`` as before."""
        return None

    def transform(self, event: Event) -> Any:
        """Map a canonical event to this vendor's wire record (a JSON-able dict, usually)."""
        raise NotImplementedError

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        """Build the one HTTP request that carries ``batch`` (at most ``max_batch_size``)."""
        raise NotImplementedError

    def parse_response(
        self, batch: Sequence[Prepared], response: httpx.Response
    ) -> Outcome | Sequence[Outcome]:
        """Read the vendor's response into one outcome for the batch, or one per event."""
        raise NotImplementedError

    def classify_exception(self, exc: Exception) -> Outcome:
        """What a transport error means.

        A request that was never (completely) written (:data:`NOT_SENT`: refused connection,
        connect timeout, ...) is retried. After any other ``httpx.TransportError`` (a read
        timeout, a connection closed before the response, a response too large to read) the
        vendor may or may not have recorded the events: :meth:`unconfirmed` decides.
        """
        text = self.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if isinstance(exc, NOT_SENT):
            return Retry(f"not sent: {text}")
        if isinstance(exc, httpx.TransportError):
            return self.unconfirmed(f"no answer: {text}")
        return Retry(text)

    def unconfirmed(
        self, reason: str, status: int | None = None, after: float | None = None
    ) -> Outcome:
        """The outcome of a failure after which the vendor may have recorded the events (no
        answer after the request was written; a 500, 502 or 504 for most vendors).

        Retried when the destination is :attr:`idempotent` (a repeat is recognised), or when
        its settings' ``retry_unconfirmed`` is true (at least once, the default; a repeat may
        count twice). With ``retry_unconfirmed = false`` the events go to the dead letters with
        ``reason`` (at most once).
        """
        if self.idempotent or getattr(self.settings, "retry_unconfirmed", True):
            return Retry(reason, after)
        return Rejected(
            f"{reason}; not retried (retry_unconfirmed = false): the vendor may have recorded "
            "it, check before replaying",
            status,
        )

    def halt_scope(self, prepared: Prepared) -> str | None:
        """What a :class:`Halt` with a ``scope`` covers, for this event (e.g. ``"app 42"``):
        events of a halted scope are held without being sent. ``None`` (the default): the
        vendor halts only as a whole."""
        return None

    def rate_hint(self, response: httpx.Response) -> RateHint | None:
        """Read the vendor's rate-limit headers, if it sends any, so the lane slows early."""
        return None

    def erase_user(self, user: Mapping[str, str]) -> None:
        """Forget what this vendor keeps about a person being erased (``tracker.erase()``),
        e.g. the marks it put in :attr:`store`. ``user``: the identifiers given, as
        ``track()`` stores them (``user_id``, ``email``, ``phone``, and each ``user=`` field
        by its name). The default keeps nothing, so forgets nothing.

        It is called for a disabled vendor too (``enabled = false``), whose secrets may be the
        empty placeholders of keys never given (``VendorConfig.unchecked_secrets``): forget
        what is kept locally (:attr:`store`); never send a request from here."""

    def redact(self, text: str) -> str:
        """Remove every secret setting's value from ``text``, in every form it can take on the
        wire (percent-encoded, JSON-escaped, base64) or in a vendor's echo of the request
        (``\\/``, ``\\u003d``, ``&amp;``; see :mod:`postback.redaction`), and any trailing
        prefix of one (a snippet cut before it was redacted). For logs, reasons and dry runs."""
        return self.redactor().redact(text)

    def snippet(self, text: str, limit: int = 500) -> str:
        """``text`` (a response body) redacted, *then* whitespace-collapsed and cut to
        ``limit`` characters: the form for a reason's or note's excerpt of a response."""
        return self.redactor().snippet(text, limit)

    def redactor(self) -> Redactor:
        """The :class:`~postback.redaction.Redactor` of this destination's secret settings."""
        cached: tuple[object, Redactor] | None = self.__dict__.get("_redactor")
        if cached is not None and cached[0] is self.settings:
            return cached[1]
        secrets: list[str] = []
        if self.settings is not None and attrs.has(type(self.settings)):
            for a in attrs.fields(type(self.settings)):
                secrets += _revealed(getattr(self.settings, a.name, None))
        redactor = Redactor(secrets)
        self.__dict__["_redactor"] = (self.settings, redactor)
        return redactor

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} -> {self.origin()}>"


def _revealed(value: object) -> list[str]:
    """The text of every :class:`Secret` in a setting's value: the value itself, or the items
    of a list, tuple or set, or the values of a dict (``spare_keys: list[Secret]``)."""
    if isinstance(value, Secret):
        text = value.reveal()
        return [text] if text else []
    if isinstance(value, list | tuple | set | frozenset):
        return [text for item in value for text in _revealed(item)]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _revealed(item)]
    return []


def config_warnings(
    destinations: Mapping[str, Destination], events: Mapping[str, frozenset[str] | None]
) -> list[tuple[str, str]]:
    """Every destination's :meth:`Destination.config_warnings`, as ``(key path, message)``
    (``"vendors.mobana.event_map"``), for ``config check`` and ``doctor``. ``events`` maps a
    vendor to its ``events`` filter. A plugin that fails here yields a warning saying so."""
    out: list[tuple[str, str]] = []
    for name, dest in destinations.items():
        try:
            for setting_name, message in dest.config_warnings(events.get(name)):
                key = f"vendors.{name}" + (f".{setting_name}" if setting_name else "")
                out.append((key, dest.redact(message)))  # (it may quote a secret it checks)
        except Exception as exc:  # a plugin's bug must not hide the others' warnings
            said = dest.redact(repr(exc))
            out.append((f"vendors.{name}", f"the plugin failed to check its config: {said}"))
    return out


# ------------------------------------------------------------------------------------------
# Emulators: the sandbox side of a vendor


class Emulator:
    """A local emulation of one vendor's API, sans-I/O: ``handle(request) -> response``.

    A vendor plugin registers its emulator class through ``postback_register_emulators``.
    ``postback sandbox`` serves every registered emulator under ``/<vendor>`` on loopback;
    tests use ``httpx.MockTransport(emulator.handle)`` directly. An emulator checks requests
    the way its vendor's docs say (auth, required fields, formats) and answers as the vendor
    does (status codes, error bodies, attribution).

    ``settings`` are the vendor settings the emulator expects the client to use (credentials
    it accepts, app ids it knows); :meth:`demo_settings` gives the ones the demo uses.
    Every event the emulator accepted is appended to :attr:`received` as a dict with at least
    ``event_id`` (or ``None`` when the vendor's wire format has no id) and ``name``.
    """

    vendor: ClassVar[str]

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings: dict[str, Any] = dict(settings or self.demo_settings())
        self.received: list[dict[str, Any]] = []
        self.requests = 0

    @classmethod
    def demo_settings(cls) -> dict[str, Any]:
        """Vendor settings (secrets included, sandbox-only values) that this emulator accepts."""
        return {}

    @classmethod
    def demo_rejection(cls) -> dict[str, Any] | None:
        """Changes to a demo event that make this emulator refuse it as the vendor would
        (e.g. ``{"user": {"telegram_user_id": "9990000400"}}``), so ``postback demo`` can show
        a vendor-side rejection; ``name`` may be set too. ``None``: the demo shows none."""
        return None

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request as the vendor would."""
        raise NotImplementedError

"""The Whop destination: canonical events -> ``POST /api/v1/events`` (or legacy ``/conversions``).

Whop tracks one conversion or engagement event per request (no batch endpoint), authenticated
with ``Authorization: Bearer <api key>``. Two API shapes are spoken, chosen by the ``api``
setting (see DIGEST.md, Whop, "Endpoint status"):

``events`` (the default; Whop's current public contract)
    ``POST {origin}/api/v1/events`` with ``account_id``. ``event_name`` is free-form: the seven
    standard names, or any other string for a custom event.
``conversions`` (legacy, kept as a fallback)
    ``POST {origin}/api/v1/conversions`` with ``company_id`` and the ``event_name`` enum
    ``lead, submit_application, contact, complete_registration, schedule, custom``; anything
    else is sent as ``custom`` with ``custom_name`` (at most 35 characters). Its ``context``
    takes a smaller set of fields, and only those are sent.

The canonical ``event_id`` is sent as ``event_id`` and as the ``Idempotency-Key`` header, so a
retry (after a timeout, a 5xx or a crash) is replayed by Whop instead of counted twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

import attrs
import httpx
import orjson

from postback.plugin import (
    COUNTRIES,
    CURRENCIES,
    Delivered,
    Destination,
    Event,
    Halt,
    Outcome,
    Prepared,
    Problem,
    RateLimit,
    Rejected,
    Retry,
    RetryPolicy,
    Secret,
    Skip,
    is_sha256_hex,
    normalize_phone,
    retry_after_seconds,
    seconds_from_message,
    setting,
    user_field,
)
from postback_whop.vocab import (
    ACTION_SOURCES,
    API_PATHS,
    CONVERSIONS_CONTEXT_FIELDS,
    CONVERSIONS_CURRENCIES,
    CONVERSIONS_EVENT_NAMES,
    CUSTOM_NAME_MAX,
    EVENTS_CONTEXT_FIELDS,
    EVENTS_CURRENCIES,
    IDEMPOTENCY_KEY_MAX,
    ORIGINS,
    STANDARD_EVENT_NAMES,
)

__all__ = ["WhopDestination", "WhopSettings", "error_summary", "iso_utc_ms", "whop_error"]

ApiShape = Literal["events", "conversions"]
Environment = Literal["production", "sandbox"]
ActionSource = Literal[
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
]
CustomEventFormat = Literal["name", "custom"]
UserIdAs = Literal["auto", "user_id", "external_id"]

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_GENDERS = {"male": "male", "m": "male", "female": "female", "f": "female"}
#: Whop's own user ids look like ``user_xxxxxxxxxxxxx`` (the contract's example).
_WHOP_USER_ID_PREFIX = "user_"
#: Per-event options only ``POST /events`` accepts.
_EVENTS_ONLY_OPTIONS = frozenset(
    {"app_id", "app_build_id", "fingerprint", "fingerprint_confidence"}
)
#: How many characters of an unreadable response body go into a reason.
_BODY_SNIPPET = 300


class SettingInvalid(Exception):
    """A Whop setting has a bad value (the config loader reports the message).

    Deliberately not a ``ValueError``: the config loader prints the message of other
    exception types, and only a generic "invalid value" for ``ValueError``.
    """


def _check_account_id(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.strip() or any(c.isspace() for c in value):
        raise SettingInvalid(
            f"{attribute.name}: must be your Whop account (company) id such as "
            f"'biz_xxxxxxxxxxxxxx', without spaces; got {value!r}"
        )


def _check_api_version_date(
    _: object, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is None:
        return
    if _DATE_RE.match(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return
    raise SettingInvalid(
        f"{attribute.name}: must be a date such as '2026-09-25' (YYYY-MM-DD), got {value!r}"
    )


def _check_region(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and value.upper() not in COUNTRIES:
        raise SettingInvalid(
            f"{attribute.name}: must be an ISO 3166-1 alpha-2 country code such as 'US', "
            f"got {value!r}"
        )


@attrs.frozen
class WhopSettings:
    """The ``[vendors.whop]`` table (plus the settings every vendor takes)."""

    api_key: Secret = setting(
        help="Whop API key (company API key, company-scoped JWT, app API key or OAuth token) "
        "with the event:create permission; sent as 'Authorization: Bearer <key>'.",
        secret=True,
    )
    account_id: str = setting(
        help="The Whop account (company) the events belong to, 'biz_...'. Sent as account_id "
        "(api = 'events') or company_id (api = 'conversions').",
        validator=_check_account_id,
    )
    api: ApiShape = setting(
        help="'events' (POST /api/v1/events, Whop's current API) or 'conversions' (the legacy "
        "POST /api/v1/conversions).",
        default="events",
    )
    environment: Environment = setting(
        help="'production' (https://api.whop.com) or 'sandbox' (https://sandbox-api.whop.com); "
        "base_url overrides both.",
        default="production",
    )
    api_version_date: str | None = setting(
        help="Pins a dated Whop API version (YYYY-MM-DD), sent as the Api-Version-Date header. "
        "Default: not sent (Whop's current version).",
        default=None,
        validator=_check_api_version_date,
    )
    action_source: ActionSource | None = setting(
        help="action_source for events whose context has none (email, website, app, phone_call, "
        "chat, physical_store, system_generated, business_messaging, other). Default: omitted.",
        default=None,
    )
    custom_event_format: CustomEventFormat = setting(
        help="How api = 'events' sends events without a Whop standard name: 'name' (event_name "
        "is the name itself, Whop's current contract) or 'custom' (event_name = 'custom' with "
        "custom_name). api = 'conversions' always uses 'custom'.",
        default="name",
    )
    send_custom_events: bool = setting(
        help="Route every event to Whop when no 'events' filter is set, those without a Whop "
        "standard name as custom events. Default false: only the mapped standard events.",
        default=False,
    )
    user_id_as: UserIdAs = setting(
        help="Where user.user_id goes: 'auto' (Whop ids 'user_...' to user.user_id, any other "
        "id to user.external_id unless that is set), 'user_id' or 'external_id'.",
        default="auto",
    )
    phone_region: str | None = setting(
        help="ISO 3166-1 alpha-2 region for phone numbers written without +country code "
        "(e.g. 'US'). Default: such numbers are refused.",
        default=None,
        validator=_check_region,
    )


def whop_error(response: httpx.Response) -> dict[str, Any] | None:
    """The ``error`` object of a Whop error body, or ``None`` when the body is not one."""
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return None
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else None


def error_summary(response: httpx.Response) -> tuple[str, str | None]:
    """(a one-line reason, the param Whop blames) from a Whop error response.

    Whop answers ``{"error": {"type", "message", "code"?, "param"?}}``; anything else (an HTML
    page from a proxy, an empty body) is summarised from its first characters.
    """
    status = response.status_code
    err = whop_error(response)
    if err is not None:
        etype = err.get("type")
        code = err.get("code")
        message = err.get("message")
        param = err.get("param")
        head = " ".join(str(x) for x in (etype, code) if isinstance(x, str) and x)
        parts = [f"Whop {status}" + (f" {head}" if head else "")]
        if isinstance(message, str) and message:
            parts.append(message)
        reason = ": ".join(parts)
        if isinstance(param, str) and param:
            return f"{reason} (param: {param})", param
        return reason, None
    text = response.text.strip() if response.content else ""
    if not text:
        return f"Whop {status} with an empty body", None
    snippet = " ".join(text.split())[:_BODY_SNIPPET]
    return f"Whop {status} (not a Whop error body): {snippet}", None


class WhopDestination(Destination):
    """Delivers canonical events to Whop, one event per request."""

    name = "whop"
    settings_class = WhopSettings
    #: Whop's codes beyond ISO 4217 (crypto, Whop's own balance, the lev Bulgaria retired):
    #: track() takes them when Whop is configured; vendors that do not take them skip.
    extra_currencies = frozenset(c.upper() for c in EVENTS_CURRENCIES) - CURRENCIES
    default_origin = ORIGINS["production"]
    #: Canonical -> Whop standard names. Events not listed here go to Whop only when routed
    #: explicitly (the ``events`` filter, ``event_map``, ``vendors={"whop": {...}}`` or
    #: ``send_custom_events``), as custom events.
    default_event_map = {
        "lead": "lead",
        "submit_application": "submit_application",
        "contact": "contact",
        "sign_up": "complete_registration",
        "complete_registration": "complete_registration",
        "schedule": "schedule",
        "view_item": "view_content",
        "page_view": "view_content",
        "view_content": "view_content",
        "add_to_cart": "add_to_cart",
    }
    accepts_custom_events = False
    max_batch_size = 1
    #: "600 requests/minute per API operation per API credential" (DIGEST, W5).
    default_rate_limit = RateLimit(600, 60)
    #: Whop replays a stored success for an Idempotency-Key for 24 h: give up a little before,
    #: so a late retry can never be counted twice.
    retry_policy = RetryPolicy(
        max_attempts=20, max_age=23 * 3600.0, initial_backoff=1.0, max_backoff=300.0
    )
    #: Every request carries Idempotency-Key = event id: a request sent again is recognised,
    #: so one whose outcome is unknown (no answer, 5xx) is safe to retry.
    idempotent = True
    #: Advertising and attribution: sent only with the user's consent to ads.
    purposes = ("ads",)
    default_concurrency = 8
    option_keys = frozenset(
        {
            "plan_id",
            "product_id",
            "action_source",
            "custom_name",
            "app_id",
            "app_build_id",
            "fingerprint",
            "fingerprint_confidence",
        }
    )
    fields = (
        user_field(
            "member_id",
            help="The Whop member id (mber_...) of the user, sent as user.member_id.",
        ),
    )
    settings: WhopSettings

    # --- routing and naming -------------------------------------------------------------------

    def origin(self) -> str:
        """``base_url`` if set, else the host of the configured ``environment``."""
        return self.base_url or ORIGINS[self.settings.environment]

    def supports(self, event_name: str) -> bool:
        return event_name in self.event_map or self.settings.send_custom_events

    def vendor_event_name(self, event_name: str) -> str:
        """Whop's name for a canonical event: the mapped name, else the event's own name
        (Whop takes any other name as a custom event)."""
        return self.event_map.get(event_name, event_name)

    def wire_name(self, event: Event) -> tuple[str, str | None]:
        """(``event_name``, ``custom_name``) as this destination's API shape wants them."""
        mapped = self.vendor_event_name(event.name)
        option = event.options_for(self.name).get("custom_name")
        custom = option if isinstance(option, str) and option else None
        if mapped == "custom":
            return "custom", custom or event.name
        if self.settings.api == "conversions":
            if mapped in CONVERSIONS_EVENT_NAMES:
                return mapped, None
            return "custom", custom or mapped
        if mapped in STANDARD_EVENT_NAMES:
            return mapped, None
        if self.settings.custom_event_format == "custom":
            return "custom", custom or mapped
        return custom or mapped, None

    # --- validation ---------------------------------------------------------------------------

    def validate(self, event: Event) -> Iterable[Problem | Skip]:
        """A :class:`~postback.Skip` for a currency this API shape does not take (Whop
        cannot use the value; the other vendors get the event); a :class:`~postback.Problem`
        for what is malformed for Whop: an option, a name too long, an action source, a
        birthdate, gender, email or phone of the wrong format."""
        api = self.settings.api
        opts = event.options_for(self.name)
        problems: list[Problem | Skip] = []
        add = problems.append
        vendor_path = f"vendors.{self.name}"

        # Per-event options (the core refuses keys not in option_keys): right types, accepted
        # by this API shape.
        for key, val in opts.items():
            path = f"{vendor_path}.{key}"
            if key not in self.option_keys:
                continue
            if key in _EVENTS_ONLY_OPTIONS and api == "conversions":
                add(
                    Problem(
                        path,
                        "is only accepted by Whop's events API; remove it or set api = 'events'",
                    )
                )
                continue
            if key == "fingerprint_confidence":
                if isinstance(val, bool) or not isinstance(val, (int, float)) or not 0 <= val <= 1:
                    add(Problem(path, f"must be a number from 0 to 1, got {val!r}"))
            elif key == "action_source":
                continue  # checked with context.action_source below
            elif not isinstance(val, str) or not val.strip():
                add(Problem(path, f"must be a non-empty string, got {val!r}"))

        # Event name: custom names are at most 35 characters.
        mapped = self.vendor_event_name(event.name)
        event_name, custom_name = self.wire_name(event)
        name_option = opts.get("custom_name")
        is_custom = custom_name is not None or event_name not in STANDARD_EVENT_NAMES
        if name_option is not None and not is_custom:
            add(
                Problem(
                    f"{vendor_path}.custom_name",
                    f"only applies to custom events; {event.name!r} is sent as Whop's "
                    f"standard {event_name!r}",
                )
            )
        shown = custom_name if custom_name is not None else event_name
        if is_custom and not shown.strip():
            add(
                Problem(
                    "name",
                    f"{event.name!r} is mapped to an empty Whop event name: fix "
                    f"[vendors.{self.name}.event_map]",
                )
            )
        elif is_custom and len(shown) > CUSTOM_NAME_MAX:
            if isinstance(name_option, str) and name_option:
                field = f"{vendor_path}.custom_name"
                how = "shorten it"
            elif mapped != event.name:
                field = "name"
                how = f"map {event.name!r} to a shorter name in [vendors.{self.name}.event_map]"
            else:
                field = "name"
                how = (
                    f"map it to a shorter name in [vendors.{self.name}.event_map] or pass "
                    f"vendors={{'{self.name}': {{'custom_name': '...'}}}}"
                )
            add(
                Problem(
                    field,
                    f"Whop custom event names are at most {CUSTOM_NAME_MAX} "
                    f"characters; {shown!r} has {len(shown)}: {how}",
                )
            )

        # Where the event came from.
        source = opts.get("action_source", event.context.action_source)
        if source is not None and source not in ACTION_SOURCES:
            where = vendor_path if "action_source" in opts else "context"
            field = f"{where}.action_source"
            add(
                Problem(
                    field,
                    f"{source!r} is not one of Whop's action sources: " + ", ".join(ACTION_SOURCES),
                )
            )

        # Money: Whop's lower-case currency enum (depends on the API shape).
        if event.currency is not None:
            allowed = EVENTS_CURRENCIES if api == "events" else CONVERSIONS_CURRENCIES
            if event.currency.lower() not in allowed:
                add(
                    Skip(
                        f"currency {event.currency} not accepted",
                        "currency",
                        f"Whop's {api} API takes only: {', '.join(sorted(allowed))}; convert "
                        "the value to one of them, or list the events Whop should get with "
                        "events = [...] in [vendors.whop]",
                        self.name,
                    )
                )

        # Dedupe key: Idempotency-Key is at most 255 bytes.
        if len(event.event_id.encode()) > IDEMPOTENCY_KEY_MAX:
            add(
                Problem(
                    "event_id",
                    f"Whop's Idempotency-Key is at most {IDEMPOTENCY_KEY_MAX} "
                    "bytes; use a shorter event_id",
                )
            )

        # Plan and product ids: properties (or the per-event options above).
        for key in ("plan_id", "product_id"):
            val = event.properties.get(key)
            if (
                val is not None
                and key not in opts
                and (not isinstance(val, str) or not val.strip())
            ):
                add(
                    Problem(
                        f"properties.{key}",
                        f"must be a Whop id string such as "
                        f"'{'plan' if key == 'plan_id' else 'prod'}_xxxxxxxxxxxxx', "
                        f"got {val!r}",
                    )
                )

        # The user's profile, as Whop's contract types it.
        user = event.user
        if user.birthdate is not None and not _is_date(user.birthdate):
            add(
                Problem(
                    "user.birthdate",
                    "Whop wants a real date as YYYY-MM-DD (e.g. '1990-01-15')",
                )
            )
        if user.gender is not None and user.gender.lower() not in _GENDERS:
            add(
                Problem(
                    "user.gender",
                    f"Whop accepts only 'male' or 'female' (or 'm'/'f'), got {user.gender!r}; "
                    "leave it out for other values",
                )
            )
        if user.email is not None and not (
            _EMAIL_RE.match(user.email) or is_sha256_hex(user.email)
        ):
            add(Problem("user.email", "is not an email address (name@domain)"))
        if user.phone is not None and not is_sha256_hex(user.phone):
            try:
                normalize_phone(user.phone, self.settings.phone_region)
            except ValueError as exc:
                hint = "Whop wants E.164 such as '+14155550123'"
                if self.settings.phone_region is None:
                    hint += " (or set phone_region to accept national numbers)"
                add(Problem("user.phone", f"{exc}; {hint}"))
        return problems

    # --- transform ----------------------------------------------------------------------------

    def transform(self, event: Event) -> dict[str, Any]:
        """The JSON body for this event (fields Whop does not have are left out).

        Re-checks the event, so that a replayed event that the current settings refuse (say,
        after switching ``api``) is dead-lettered with the reason instead of sent.
        """
        problems = list(self.validate(event))
        if problems:
            raise ValueError("Whop refuses this event: " + "; ".join(str(p) for p in problems))
        settings = self.settings
        api = settings.api
        opts = event.options_for(self.name)
        event_name, custom_name = self.wire_name(event)

        body: dict[str, Any] = {}
        body["account_id" if api == "events" else "company_id"] = settings.account_id
        body["event_name"] = event_name
        if custom_name is not None:
            body["custom_name"] = custom_name
        body["event_id"] = event.event_id
        body["event_time"] = iso_utc_ms(event.timestamp_ms)
        source = opts.get("action_source") or event.context.action_source or settings.action_source
        if source:
            body["action_source"] = source
        if event.value_micros is not None:
            body["value"] = event.value_micros / 1_000_000
        if event.currency is not None:
            body["currency"] = event.currency.lower()
        for key in ("plan_id", "product_id"):
            val = opts.get(key, event.properties.get(key))
            if isinstance(val, str) and val.strip():
                body[key] = val.strip()
        if event.context.url:
            body["url"] = event.context.url
        if event.context.referrer_url:
            body["referrer_url"] = event.context.referrer_url
        if api == "events":
            for key in ("app_id", "app_build_id"):
                if opts.get(key):
                    body[key] = opts[key]
        context = self._context(event, opts)
        if context:
            body["context"] = context
        user = self._user(event)
        if user:
            body["user"] = user
        return body

    def _context(self, event: Event, opts: Mapping[str, Any]) -> dict[str, Any]:
        fields = (
            EVENTS_CONTEXT_FIELDS if self.settings.api == "events" else CONVERSIONS_CONTEXT_FIELDS
        )
        ctx = event.context
        out: dict[str, Any] = {}
        for key in fields:
            if key == "ip_address":
                val: Any = event.user.ip_address
            elif key == "user_agent":
                val = event.user.user_agent
            elif key in ("fingerprint", "fingerprint_confidence"):
                val = opts.get(key)
            else:
                val = ctx.get(key)
            if val is not None:
                out[key] = val
        return out

    def _user(self, event: Event) -> dict[str, Any]:
        u = event.user
        out: dict[str, Any] = {}
        external_id = u.external_id
        user_id: str | None = None
        if u.user_id is not None:
            mode = self.settings.user_id_as
            if mode == "user_id" or (mode == "auto" and u.user_id.startswith(_WHOP_USER_ID_PREFIX)):
                user_id = u.user_id
            elif external_id is None:
                external_id = u.user_id
        values: dict[str, str | None] = {
            "anonymous_id": u.anonymous_id,
            "external_id": external_id,
            "user_id": user_id,
            "member_id": u.get("member_id"),
            "membership_id": u.membership_id,
            "email": u.email,
            "phone": (
                u.phone
                if u.phone is None or is_sha256_hex(u.phone)
                else normalize_phone(u.phone, self.settings.phone_region)
            ),
            "first_name": u.first_name,
            "last_name": u.last_name,
            "name": u.name,
            "username": u.username,
            "birthdate": u.birthdate,
            "gender": _GENDERS[u.gender.lower()] if u.gender is not None else None,
            "city": u.city,
            "state": u.state,
            "postal_code": u.zip,
            "country": u.country,
        }
        for key, val in values.items():
            if val is not None:
                out[key] = val
        return out

    # --- request and response -----------------------------------------------------------------

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        if len(batch) != 1:
            raise ValueError(f"Whop takes one event per request, got {len(batch)}")
        prepared = batch[0]
        headers = {
            "authorization": f"Bearer {self.settings.api_key.reveal()}",
            "content-type": "application/json",
            "accept": "application/json",
            "idempotency-key": prepared.event.event_id,
        }
        if self.settings.api_version_date:
            headers["api-version-date"] = self.settings.api_version_date
        return httpx.Request(
            "POST",
            self.parsed_url(API_PATHS[self.settings.api]),
            headers=headers,
            content=orjson.dumps(prepared.record),
        )

    def parse_response(
        self, batch: Sequence[Prepared], response: httpx.Response
    ) -> Outcome | Sequence[Outcome]:
        status = response.status_code
        if 200 <= status < 300:
            return self._success(response)
        reason, _param = error_summary(response)
        reason = self.redact(reason)
        if status in (401, 403):
            hint = (
                "check api_key"
                if status == 401
                else "check that the key has the event:create permission for account_id"
            )
            return Halt(f"{reason} ({hint})", status)
        should_retry = response.headers.get("x-should-retry", "").strip().lower()
        transient = status in (408, 409, 429) or status >= 500
        if should_retry == "true":
            transient = True
        elif should_retry == "false":
            transient = False
        if transient:
            return Retry(reason, self._retry_after(response, reason))
        detail = self.redact(response.text[: _BODY_SNIPPET * 2]) if response.content else None
        if status == 404 and whop_error(response) is None:
            reason += f" (no such endpoint? check base_url and api = '{self.settings.api}')"
        return Rejected(reason, status, detail)

    def _success(self, response: httpx.Response) -> Outcome:
        if not response.content.strip():
            return Delivered()
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            # Not Whop's usual answer, but a 2xx means the request was accepted: never resent.
            snippet = " ".join(response.text.split())[:_BODY_SNIPPET]
            return Delivered(
                note=f"Whop answered HTTP {response.status_code} with an unreadable body (no id "
                f"read; not resent): {snippet}"
            )
        ref = body.get("id") if isinstance(body, dict) else None
        return Delivered(vendor_ref=ref if isinstance(ref, str) else None)

    @staticmethod
    def _retry_after(response: httpx.Response, reason: str) -> float | None:
        """The longest wait Whop asked for: Retry-After / retry-after-ms, or the 429 message
        ("Try again in 12 seconds.")."""
        waits = [
            w
            for w in (retry_after_seconds(response), seconds_from_message(reason))
            if w is not None
        ]
        return max(waits) if waits else None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} api={self.settings.api!r} "
            f"-> {self.url(API_PATHS[self.settings.api])}>"
        )


def iso_utc_ms(timestamp_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds: ``2023-12-01T05:00:00.401Z``."""
    seconds, ms = divmod(timestamp_ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def _is_date(value: str) -> bool:
    if not _DATE_RE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True

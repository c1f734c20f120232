"""Mobana conversions: ``POST https://{app_id}.mobana.ai/conversion``.

Mobana links post-install conversions to the attribution of an install through the install ID
that its app SDK generated (``Mobana.getInstallId()``). One conversion per request, a JSON body
``{installId, name, value?, flowSessionId?, timestamp?}`` and the app key in ``X-App-Key``
(see ``vendor-docs/mobana-conversion.txt`` and section 1 of ``vendor-docs/DIGEST.md``).

What this module decides where Mobana's docs are silent or uncertain (each is documented in the
plugin's README):

* **Currency.** Mobana has no currency field: ``value`` is in the app's currency. An event in
  another currency is converted with a fixed rate from ``rates`` when one is configured, and
  Mobana is otherwise skipped for it at ``track()`` time (a :class:`~postback.Skip`; the other
  vendors get it). It never sends a number in the wrong currency.
* **Skip or refuse.** An event without ``user.install_id`` (a web event, say) or in a currency
  without a rate is one Mobana cannot use: a Skip. A malformed install ID, an empty mapped
  name or a bad option is a :class:`~postback.Problem`, which refuses the event.
* **installId.** Dash-separated groups of hex digits, at most 36 characters. That accepts the
  SDK's UUIDs and the docs' own shortened example ``520e8400-c466-a554-40e0-0``;
  ``install_id_format = "uuid"`` accepts only canonical UUIDs.
* **Responses.** Mobana says it always answers ``{"success": true}`` ("silent success"); a
  2xx without it is still delivered (never resent: it may have counted), with a warning
  note. 401/403 halt the lane (bad app key), 429 and 5xx are
  retried, other 4xx are rejected with Mobana's body.
* **Duplicates.** Mobana has no dedupe key. A retry after an attempt whose outcome is unknown
  (read timeout, dropped connection, 500/502/504) can count a repeatable conversion twice.
  ``retry_unconfirmed = false`` sends such events to the dead letters instead (at most once).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import attrs
import httpx
import orjson

from postback.plugin import (
    CURRENCIES,
    CURRENCY_EXPONENT,
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
    json_or_none,
    retry_after_seconds,
    setting,
    user_field,
)

__all__ = [
    "CONVERSION_PATH",
    "MobanaDestination",
    "MobanaSettings",
    "SettingError",
    "UnsendableEvent",
    "install_id_problem",
    "rate_problems",
]

#: Mobana's conversion endpoint, appended to ``https://{app_id}.mobana.ai`` or ``base_url``.
CONVERSION_PATH = "/conversion"
#: The documented maximum length of an install ID (the ``/activity`` docs; DIGEST.md section 1).
MAX_INSTALL_ID = 36
#: Values of the ``install_id_format`` setting.
INSTALL_ID_FORMATS = ("loose", "uuid")

_APP_ID_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_LOOSE_INSTALL_ID_RE = re.compile(r"^[0-9A-Fa-f]+(?:-[0-9A-Fa-f]+)*\Z")
_UUID_RE = re.compile(
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
)
_INSTALL_ID_EXAMPLE = "'550e8400-e29b-41d4-a716-446655440000'"
_SNIPPET = 300
_DETAIL = 1000


# ------------------------------------------------------------------------------------------
# Settings
#
# Converters only normalise (they never raise); validators say what is wrong. The core's config
# loader runs each attrs validator on its own and reports its message at the setting's key
# path (``vendors.mobana.currency: must be ...``).


class SettingError(ValueError):
    """A bad setting: ``str()`` says "must be <expected>; got <value>"."""

    def __init__(self, expected: str, got: object) -> None:
        shown = got if isinstance(got, str | int | float | Decimal) else type(got).__name__
        super().__init__(f"must be {expected}; got {shown!r}")


def _check_app_id(instance: Any, attribute: Any, value: object) -> None:
    if not isinstance(value, str) or not _APP_ID_RE.match(value):
        raise SettingError(
            "your Mobana app ID, the subdomain of https://{app_id}.mobana.ai: letters, digits "
            "and dashes, e.g. 'a1b2c3d4'",
            value,
        )


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _check_currency(instance: Any, attribute: Any, value: object) -> None:
    if not isinstance(value, str) or value not in CURRENCIES:
        raise SettingError(
            "the ISO 4217 code of the currency your Mobana app reports revenue in, e.g. 'USD'",
            value,
        )


def _to_decimal(value: object) -> Decimal | None:
    """A rate as an exact Decimal (floats through their shortest repr), or None."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _convert_rates(value: object) -> object:
    """Upper-case the codes and read the rates as Decimals; leave what is bad for the
    validator to report."""
    if not isinstance(value, Mapping):
        return value
    out: dict[Any, Any] = {}
    for code, rate in value.items():
        dec = _to_decimal(rate)
        out[_upper(code)] = dec if dec is not None and dec.is_finite() and dec > 0 else rate
    return out


def rate_problems(rates: object, app_currency: str | None = None) -> list[str]:
    """Every problem of a ``rates`` table, each as ``"XXX: must be ...; got ..."``."""
    if not isinstance(rates, Mapping):
        return [str(SettingError('a table of currency = rate, e.g. { EUR = "1.08" }', rates))]
    problems: list[str] = []
    for code, rate in rates.items():
        if not isinstance(code, str) or code.strip().upper() not in CURRENCIES:
            problems.append(
                f"{code}: {SettingError('an ISO 4217 currency code such as EUR', code)}"
            )
            continue
        dec = _to_decimal(rate)
        if dec is None or not dec.is_finite() or dec <= 0:
            problems.append(
                f"{code}: "
                + str(
                    SettingError(
                        f"a positive number, what 1 {code} is worth in the app currency "
                        f'(e.g. {code} = "1.08"; a string keeps the rate exact)',
                        rate,
                    )
                )
            )
        elif code.strip().upper() == app_currency and dec != 1:
            problems.append(f"{code}: is the app currency itself (its rate is always 1): remove it")
    return problems


def _check_rates(instance: Any, attribute: Any, value: object) -> None:
    problems = rate_problems(value, getattr(instance, "currency", None))
    if problems:
        raise ValueError("; ".join(problems))


def _check_install_id_format(instance: Any, attribute: Any, value: object) -> None:
    if value not in INSTALL_ID_FORMATS:
        raise SettingError("'loose' or 'uuid'", value)


@attrs.frozen
class MobanaSettings:
    """The ``[vendors.mobana]`` table (the common settings are handled by the core)."""

    app_id: str = setting(
        help="Your Mobana app ID (Dashboard -> Your App), e.g. 'a1b2c3d4'. Requests go to "
        "https://{app_id}.mobana.ai/conversion unless base_url is set.",
        validator=_check_app_id,
    )
    app_key: Secret = setting(
        help="The app key, sent as X-App-Key (Dashboard -> App Settings -> Integration). "
        'Use "${MOBANA_APP_KEY}".',
        secret=True,
    )
    currency: str = setting(
        help="ISO 4217 currency your Mobana app reports revenue in. Mobana has no currency "
        "field: values are sent as amounts in this currency.",
        default="USD",
        converter=_upper,
        validator=_check_currency,
    )
    #: Currency code -> exact :class:`~decimal.Decimal` rate into the app currency.
    rates: Mapping[str, Any] = setting(
        help='Fixed conversion rates into the app currency, e.g. { EUR = "1.08" } (1 EUR = '
        "1.08 USD). An event in another currency without a rate is refused.",
        factory=dict,
        converter=_convert_rates,
        validator=_check_rates,
    )
    # A plain str checked by a validator (not a Literal), so that a bad value is reported
    # together with the other settings' problems.
    install_id_format: str = setting(
        help="'loose': hex digits in dash-separated groups, at most 36 characters (accepts the "
        "docs' example); 'uuid': only canonical UUIDs, as the SDK generates.",
        default="loose",
        validator=_check_install_id_format,
    )
    retry_unconfirmed: bool = setting(
        help="Retry requests whose outcome is unknown (read timeout, dropped connection, "
        "500/502/504). true: at least once (a repeatable conversion may count twice); false: "
        "at most once (such events go to the dead letters to check and replay).",
        default=True,
    )


# ------------------------------------------------------------------------------------------
# Validation helpers


class UnsendableEvent(ValueError):
    """A queued event that can no longer be sent as it is (e.g. the ``rates`` table changed
    since it was tracked). The engine dead-letters it with this message; fix the config and
    replay it."""


def install_id_problem(install_id: str | None, fmt: str = "loose") -> str | None:
    """Why ``install_id`` is not a usable Mobana install ID, or ``None`` when it is."""
    if not install_id:
        return (
            "Mobana needs the install ID its app SDK generated (Mobana.getInstallId()): pass "
            "user={'install_id': ...}, or keep this event from Mobana with "
            "vendors={'mobana': False} or [vendors.mobana] events = [...]"
        )
    shown = install_id if len(install_id) <= 60 else install_id[:57] + "..."
    if len(install_id) > MAX_INSTALL_ID:
        return (
            f"is {len(install_id)} characters long; a Mobana install ID has at most "
            f"{MAX_INSTALL_ID} (a UUID such as {_INSTALL_ID_EXAMPLE}); got {shown!r}"
        )
    if fmt == "uuid":
        if not _UUID_RE.match(install_id):
            return (
                "must be the UUID the Mobana SDK generated (Mobana.getInstallId()), e.g. "
                f"{_INSTALL_ID_EXAMPLE} (install_id_format = 'uuid'); got {shown!r}"
            )
    elif not _LOOSE_INSTALL_ID_RE.match(install_id):
        return (
            "must be the install ID the Mobana SDK generated (Mobana.getInstallId()): hex "
            f"digits in dash-separated groups, such as {_INSTALL_ID_EXAMPLE}; got {shown!r}"
        )
    return None


def _json_number(value: Decimal) -> int | float:
    """A JSON number with the decimal's exact digits: an int when whole, else the float whose
    shortest repr is those digits (exact up to 15 significant digits, e.g. 49.99)."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


# ------------------------------------------------------------------------------------------
# The destination


class MobanaDestination(Destination):
    """Mobana's ``/conversion`` endpoint: one conversion per request, linked to an install."""

    name = "mobana"
    settings_class = MobanaSettings
    #: A template: :meth:`origin` fills in ``app_id`` (``base_url`` replaces it).
    default_origin = "https://{app_id}.mobana.ai"
    #: Empty: a conversion's Mobana name is its canonical name unless ``event_map`` says
    #: otherwise (name conversion types in the Dashboard as the events you track).
    default_event_map = {}
    accepts_custom_events = True
    max_batch_size = 1
    # No rate limit is documented (DIGEST.md section 1, [uncertain]): a polite default.
    default_rate_limit = RateLimit(50, 1.0)
    default_concurrency = 4
    # No dedupe key at Mobana: retry for a while (at most about 40 minutes of backoff), then
    # dead-letter. max_age counts from when the event was queued (not its own timestamp, which
    # may be weeks old in a backfill): a week of trying at most.
    retry_policy = RetryPolicy(
        max_attempts=10, max_age=7 * 24 * 3600.0, initial_backoff=5.0, max_backoff=1800.0
    )
    option_keys = frozenset({"flow_session_id"})
    fields = (
        user_field(
            "install_id",
            help="The app install's Mobana id (Mobana.getInstallId() in the app); "
            "events without one skip Mobana.",
        ),
    )
    #: Advertising and attribution: sent only with the user's consent to ads.
    purposes = ("ads",)
    #: No dedupe key in the API: postback drops an event_id tracked again within 24 hours.
    default_dedupe_window = 86_400.0
    version = "0.1.0"
    settings: MobanaSettings

    # --- routing ---------------------------------------------------------------------------

    def origin(self) -> str:
        """``base_url`` when set, else ``https://{app_id}.mobana.ai``."""
        return self.base_url or f"https://{self.settings.app_id}.mobana.ai"

    # --- validate --------------------------------------------------------------------------

    def __init__(
        self,
        settings: MobanaSettings,
        *,
        base_url: str | None = None,
        event_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings, base_url=base_url, event_map=event_map)
        self._skip_no_install_id = Skip(
            "no install id",
            "user.install_id",
            "pass user={'install_id': ...} (Mobana.getInstallId() in the app), or list the "
            "events Mobana should get with events = [...] in [vendors.mobana]",
            self.name,
        )
        self._only_no_install_id = (self._skip_no_install_id,)
        self._skip_currency: dict[str, Skip] = {}

    def config_warnings(self, events: frozenset[str] | None) -> Iterable[tuple[str, str]]:
        """Warn when neither ``event_map`` nor ``events`` is configured: every event then goes
        out under its canonical name (``sign_up``), and Mobana answers success for any name
        but drops those not configured in its Dashboard (often ``signup``)."""
        if not self.event_map and events is None:
            yield (
                "event_map",
                "no event_map and no events filter: every tracked event goes to Mobana under "
                "its canonical name (e.g. 'sign_up'), and Mobana answers success but drops "
                "names not configured in Dashboard -> Settings -> Conversions. Map each "
                "conversion to its Dashboard name ([vendors.mobana.event_map] sign_up = "
                '"signup"; purchase = "purchase" if it is the same) or list the events '
                'to send (events = ["purchase"])',
            )

    def skip_without(self, event_name: str) -> tuple[str, Skip] | None:
        """An event without ``user.install_id`` (and no per-event options) is skipped, and
        nothing else is said (``validate``'s first test)."""
        return ("install_id", self._skip_no_install_id)

    def validate(self, event: Event) -> Iterable[Problem | Skip]:
        """A :class:`~postback.Skip` when Mobana cannot use the event (no install ID, a value
        in a currency without a rate); a :class:`~postback.Problem` when it is malformed (an
        install ID of the wrong format, an empty mapped name, a bad option). Once it knows it
        skips the event it stops checking, except the per-event options for Mobana."""
        install_id = event.user.get("install_id")
        if not install_id and not event.vendor_options:
            return self._only_no_install_id  # the common case of a web event
        options = event.options_for(self.name) if event.vendor_options else None
        found: list[Problem | Skip] = []
        if options:
            found.extend(self._option_problems(options))
        if not install_id:
            found.append(self._skip_no_install_id)
            return found
        vendor_name = self.event_map.get(event.name)
        if vendor_name is not None and not vendor_name.strip():
            found.append(
                Problem(
                    "name",
                    f"{event.name!r} maps to an empty Mobana conversion name: fix "
                    f'[vendors.mobana.event_map] {event.name} = "<name in the Dashboard>"',
                )
            )
        why = install_id_problem(install_id, self.settings.install_id_format)
        if why is not None:
            found.append(Problem("user.install_id", why))
        if event.value_micros is not None:
            currency = event.currency
            if currency is not None and currency != self.settings.currency:
                skip = self._currency_skip(currency)
                if skip is not None:
                    found.append(skip)
        return found

    def _currency_skip(self, currency: str) -> Skip | None:
        """The skip for a value in ``currency`` (None when a rate converts it); one per code."""
        skip = self._skip_currency.get(currency)
        if skip is None and currency not in self.settings.rates:
            app = self.settings.currency
            skip = self._skip_currency[currency] = Skip(
                f"no rate for {currency}",
                "currency",
                f"Mobana records values in the app currency {app} and has no currency field: "
                f"convert the value to {app} before tracking, or add a fixed rate: "
                f'[vendors.mobana.rates] {currency} = "<value of 1 {currency} in {app}>"',
                self.name,
            )
        return skip

    def _option_problems(self, options: Mapping[str, Any]) -> list[Problem]:
        problems: list[Problem] = []
        for key, val in options.items():  # the core refuses keys not in option_keys
            if (
                key == "flow_session_id"
                and val is not None
                and (not isinstance(val, str) or not val.strip())
            ):
                problems.append(
                    Problem(
                        "vendors.mobana.flow_session_id",
                        "must be the non-empty sessionId string from the app's startFlow() "
                        f"result, or be left out; got {val!r}",
                    )
                )
        return problems

    def _currency_problem(self, currency: str | None) -> str | None:
        app = self.settings.currency
        if currency is None or currency == app or currency in self.settings.rates:
            return None
        return (
            f"Mobana has no currency field and records values in the app currency {app} "
            f"([vendors.mobana] currency); this event is in {currency}. Convert the value to "
            f"{app} before tracking, or add a fixed rate: [vendors.mobana.rates] "
            f'{currency} = "<value of 1 {currency} in {app}>"'
        )

    def mobana_value(self, event: Event) -> Decimal | None:
        """The event's value in the app currency, exactly (``None`` without a value).

        A value in another currency is multiplied by its fixed rate and rounded half-to-even
        to the app currency's minor unit (cents for USD). Raises :class:`UnsendableEvent`
        when there is no rate for it.
        """
        value = event.value
        if value is None:
            return None
        if event.currency is None or event.currency == self.settings.currency:
            return value
        rate: Decimal | None = self.settings.rates.get(event.currency)
        if rate is None:
            raise UnsendableEvent(self._currency_problem(event.currency) or "no rate")
        exponent = CURRENCY_EXPONENT.get(self.settings.currency, 2)
        return (value * rate).quantize(Decimal(1).scaleb(-exponent), ROUND_HALF_EVEN)

    # --- transform / request ------------------------------------------------------------------

    def transform(self, event: Event) -> dict[str, Any]:
        """The JSON body Mobana's SDK sends; absent optional fields are left out."""
        why = install_id_problem(event.user.get("install_id"), self.settings.install_id_format)
        if why is not None:
            raise UnsendableEvent(f"user.install_id: {why}")
        name = self.vendor_event_name(event.name)
        if not name or not name.strip():
            raise UnsendableEvent(
                f"name: {event.name!r} maps to no Mobana conversion name; fix "
                "[vendors.mobana.event_map]"
            )
        record: dict[str, Any] = {"installId": event.user.get("install_id"), "name": name}
        value = self.mobana_value(event)
        if value is not None:
            record["value"] = _json_number(value)
        flow = event.options_for(self.name).get("flow_session_id")
        if isinstance(flow, str) and flow.strip():
            record["flowSessionId"] = flow
        record["timestamp"] = event.timestamp_ms
        return record

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        if len(batch) != 1:
            raise ValueError(f"Mobana takes one conversion per request, got {len(batch)}")
        return httpx.Request(
            "POST",
            self.parsed_url(CONVERSION_PATH),
            headers={
                "content-type": "application/json",
                "x-app-key": self.settings.app_key.reveal(),
            },
            content=orjson.dumps(batch[0].record),
        )

    # --- responses -------------------------------------------------------------------------

    def parse_response(
        self, batch: Sequence[Prepared], response: httpx.Response
    ) -> Outcome | Sequence[Outcome]:
        status = response.status_code
        message, detail = self._read_body(response)
        if 200 <= status < 300:
            data = json_or_none(response)
            if isinstance(data, dict) and data.get("success") is True:
                return Delivered()
            # Mobana always says {"success": true}, but a 2xx means the request was accepted:
            # resending could count the conversion twice, so it is delivered, with a note.
            return Delivered(
                note=f'Mobana answered HTTP {status} without {{"success": true}} (not resent): '
                f"{message or '(empty body)'}"
            )
        if status in (401, 403):
            return Halt(
                f"Mobana refused the app key (HTTP {status}: {message or 'Unauthorized'}); "
                "check [vendors.mobana] app_key (Dashboard -> App Settings -> Integration) "
                "and app_id",
                status,
            )
        if status == 429:
            return Retry(
                f"Mobana is rate limiting (HTTP 429: {message or 'Too Many Requests'})",
                retry_after_seconds(response),
            )
        if status == 503:  # unavailable: the conversion was not recorded
            return Retry(
                f"Mobana is unavailable (HTTP 503: {message or 'Service Unavailable'})",
                retry_after_seconds(response),
            )
        if status >= 500 or status == 408:
            return self._unconfirmed(
                f"Mobana failed (HTTP {status}: {message or 'no body'})",
                status,
                retry_after_seconds(response),
            )
        if 300 <= status < 400:
            where = response.headers.get("location", "?")
            return Rejected(
                f"Mobana redirected (HTTP {status} to {where}): check base_url / app_id",
                status,
                detail,
            )
        hint = ""
        if status == 404:
            hint = " (check [vendors.mobana] app_id and base_url: the path is /conversion)"
        return Rejected(
            f"Mobana refused the conversion (HTTP {status}: {message or 'no body'}){hint}",
            status,
            detail,
        )

    def _unconfirmed(self, reason: str, status: int | None, after: float | None) -> Outcome:
        """A failure after which Mobana may or may not have recorded the conversion."""
        if self.settings.retry_unconfirmed:
            return Retry(reason, after)
        return Rejected(
            f"{reason}; not retried (retry_unconfirmed = false): Mobana may have recorded it, "
            "check the Dashboard before replaying",
            status,
        )

    def classify_exception(self, exc: Exception) -> Outcome:
        text = self.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            return Retry(f"could not reach Mobana: {text}")  # never sent: safe to retry
        if isinstance(exc, httpx.TransportError):
            return self._unconfirmed(f"no answer from Mobana: {text}", None, None)
        return Retry(text)

    def _read_body(self, response: httpx.Response) -> tuple[str, str | None]:
        """(short message, full body for the dead letter), secrets removed. Never raises."""
        try:
            text = response.text
        except Exception:  # undecodable bytes
            text = response.content.decode("utf-8", "replace")
        text = self.redact(text.strip())
        if not text:
            return "", None
        message = text
        data = json_or_none(response)
        if isinstance(data, dict):
            parts = [str(data[k]) for k in ("error", "message") if isinstance(data.get(k), str)]
            if parts:
                message = self.redact(": ".join(dict.fromkeys(parts)))
        message = " ".join(message.split())
        if len(message) > _SNIPPET:
            message = message[: _SNIPPET - 3] + "..."
        return message, text[:_DETAIL]

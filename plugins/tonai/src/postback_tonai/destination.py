"""Ton AI conversion reporting: ``POST {base}/api/v2/openapi/{product}/event/report/conversion``.

Ton AI (https://docs.ton.ai) runs "exchange" and advertiser campaigns for Telegram mini apps. A
*conversion* is a new user that such a campaign brought in; the app reports it with the user's
Telegram id and nothing else::

    POST https://app.ton.ai/api/v2/openapi/exchange/event/report/conversion
    x-api-key: <App Key>
    content-type: application/json
    accept: application/json

    {"eventType": "conversion", "eventData": {"telegramUserId": "1728125519"}}

Success is HTTP 200 ``{"status": "success"}``. Nothing else is documented (no error shapes, no
rate limits, no idempotency key), so the choices below are ours; README.md lists them and
DIGEST.md section 4 has the evidence:

* Only ``user.telegram_user_id`` is ever sent ("transmit only essential information"). An event
  without one is skipped for Ton AI (a :class:`~postback.Skip`: the other vendors get it); one
  that is not a Telegram user id (an ``@username``, a group id) is a
  :class:`~postback.Problem`, which refuses the event.
* Which canonical events count as Ton AI's conversion is the vendor's ``events`` filter. Every
  canonical event *can* be one (``default_event_map`` maps them all to ``"conversion"``), but
  without a filter only ``sign_up`` is routed here (:attr:`TonAIDestination.default_events`).
* Retries are short and bounded as Ton AI asks ("you may retry shortly, but avoid excessive
  retries"): network errors, 408, 429 and 5xx, at most 5 attempts within 10 minutes.
* ``once_per_user`` (default true: Ton AI defines a conversion as a new user from an exchange
  task) reports at most one conversion per Telegram user, remembered in the tracker's queue
  store (so across restarts, and across hosts that share a Redis queue); false sends every
  routed event. An erase forgets the marks naming the person's Telegram user id, those of
  every environment and product.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final, Literal

import attrs
import httpx
import orjson

from postback.plugin import (
    CANONICAL_EVENTS,
    ConfigError,
    ConfigProblem,
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
    SkipEvent,
    body_snippet,
    json_or_none,
    retry_after_seconds,
    setting,
    user_field,
)

__all__ = [
    "CONVERSION",
    "ENVIRONMENTS",
    "PRODUCTS",
    "TonAIDestination",
    "TonAISettings",
    "check_telegram_user_id",
    "conversion_path",
]

#: The only ``eventType`` the conversion endpoint takes.
CONVERSION: Final = "conversion"

#: ``environment`` setting -> origin (DIGEST.md section 4, "Endpoint / auth").
ENVIRONMENTS: Final[Mapping[str, str]] = {
    "production": "https://app.ton.ai",
    "staging": "https://staging.ton.ai",
}

#: ``product`` setting -> path segment: the exchange product, or the advertiser ("ad") product.
PRODUCTS: Final = ("exchange", "ad")

#: Telegram user ids fit in a signed 64-bit integer (Telegram Bot API: "a 64-bit integer or
#: double-precision float type are safe for storing this identifier").
_MAX_TELEGRAM_ID: Final = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+")
_SNIPPET = 300

#: Every (environment, product) a once-per-user mark may be stored under, for an erase: today
#: every value the settings take. A value ever dropped from ENVIRONMENTS or PRODUCTS must still
#: be listed here by hand (marks stored under it must stay erasable).
_MARK_SCOPES: Final = tuple(itertools.product(ENVIRONMENTS, PRODUCTS))


def _user_key(environment: str, product: str, telegram_id: str) -> str:
    """The store key of a once-per-user claim (the claiming event's key extends it)."""
    return f"{environment}/{product}/tg:{telegram_id}"


def conversion_path(product: str) -> str:
    """The documented path for ``product`` (``exchange`` or ``ad``)."""
    return f"/api/v2/openapi/{product}/event/report/conversion"


def check_telegram_user_id(value: str | None) -> str | None:
    """Why ``value`` is not a usable Telegram user id, or ``None`` when it is one.

    A Telegram user id is a positive integer written as decimal digits: ``"1728125519"``.
    """
    if value is None or value == "":
        return (
            "is required: Ton AI identifies the converted user only by their Telegram user id; "
            "pass user={'telegram_user_id': '1728125519'} (initData user.id in a mini app, "
            "message.from.id in a bot)"
        )
    shown = repr(value[:40] + ("..." if len(value) > 40 else ""))
    if value.startswith("@"):
        return (
            f"{shown} looks like a Telegram username; Ton AI needs the numeric user id "
            "(e.g. '1728125519'), not the @username"
        )
    if value.startswith("-") and _DIGITS.fullmatch(value[1:]):
        return (
            f"{shown} is negative: that is a Telegram group or channel id; Ton AI needs the "
            "id of the user who converted (a positive number)"
        )
    if not _DIGITS.fullmatch(value):
        return (
            f"{shown} is not a Telegram user id: it must be the numeric id written as digits "
            "only (e.g. '1728125519')"
        )
    if value.startswith("0"):
        return (
            f"{shown} starts with 0: a Telegram user id is a positive number without leading "
            "zeros (e.g. '1728125519')"
        )
    if len(value) > 19 or int(value) > _MAX_TELEGRAM_ID:
        return (
            f"{shown} is too large for a Telegram user id (they fit in a signed 64-bit "
            "integer); check that it is not another identifier"
        )
    return None


@attrs.frozen
class TonAISettings:
    """The ``[vendors.tonai]`` settings of Ton AI (the common ones come from the core)."""

    api_key: Secret = setting(
        help="The App Key from the Ton AI dashboard (sent as the x-api-key header).",
        secret=True,
    )
    product: Literal["exchange", "ad"] = setting(
        help="Which Ton AI product the conversions belong to: 'exchange' (exchange campaigns, "
        "/api/v2/openapi/exchange/...) or 'ad' (advertiser campaigns, /api/v2/openapi/ad/...).",
        default="exchange",
        validator=attrs.validators.in_(PRODUCTS),
    )
    environment: Literal["production", "staging"] = setting(
        help="'production' (https://app.ton.ai) or 'staging' (https://staging.ton.ai); "
        "base_url overrides both.",
        default="production",
        validator=attrs.validators.in_(tuple(ENVIRONMENTS)),
    )
    once_per_user: bool = setting(
        help="Report at most one conversion per Telegram user, remembered in the queue store "
        "across restarts (a conversion Ton AI refused is forgotten so a later one is sent). "
        "On by default: Ton AI's conversion is a new user; false sends every routed event.",
        default=True,
    )
    retry_unconfirmed: bool = setting(
        help="Retry requests whose outcome is unknown (read timeout, connection dropped after "
        "the request was sent, 500/502/504). true: at least once (a conversion may count "
        "twice, Ton AI has no dedupe key); false: at most once (such events go to the dead "
        "letters, to check and replay).",
        default=True,
    )


class TonAIDestination(Destination):
    """Report conversions to Ton AI (sans-I/O; the delivery engine sends the requests)."""

    name = "tonai"
    settings_class = TonAISettings
    default_origin = ENVIRONMENTS["production"]
    #: Ton AI has a single event type, so any canonical event *may* count as its conversion:
    #: the ``events`` filter picks which (config validation accepts any of these names).
    default_event_map: ClassVar[Mapping[str, str]] = {
        n: CONVERSION for n in sorted(CANONICAL_EVENTS)
    }
    #: What is routed here when the config sets no ``events`` filter: a new user signing up.
    default_events: ClassVar[frozenset[str]] = frozenset({"sign_up"})
    accepts_custom_events = False
    max_batch_size = 1  # one conversion per request: the endpoint has no batch form
    default_rate_limit = RateLimit(600, 60)  # undocumented; a polite 10/s (README, DIGEST §4)
    retry_policy = RetryPolicy(max_attempts=5, max_age=600.0, initial_backoff=5.0, max_backoff=60.0)
    default_concurrency = 4
    option_keys: ClassVar[frozenset[str]] = frozenset()
    fields = (
        user_field(
            "telegram_user_id",
            help="The Telegram user's numeric id (initData user.id in a mini app, "
            "message.from.id in a bot); the only thing Ton AI receives.",
        ),
    )
    #: Advertising and attribution: sent only with the user's consent to ads.
    purposes = ("ads",)
    #: No dedupe key in the API: postback drops an event_id tracked again within 24 hours.
    default_dedupe_window = 86_400.0
    version = "0.1.0"
    settings: TonAISettings

    def __init__(
        self,
        settings: TonAISettings,
        *,
        base_url: str | None = None,
        event_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings, base_url=base_url, event_map=event_map)
        #: The events the config mapped itself (routed even without an ``events`` filter).
        self.configured_events: frozenset[str] = frozenset(event_map or ())
        self._skip_no_telegram_id = Skip(
            "no Telegram user id",
            "user.telegram_user_id",
            "pass user={'telegram_user_id': '1728125519'} (initData user.id in a mini app, "
            "message.from.id in a bot), or list the events Ton AI should get with "
            "events = [...] in [vendors.tonai]",
            self.name,
        )
        key = settings.api_key.reveal()
        if key != key.strip() or any(c.isspace() or ord(c) < 32 for c in key):
            raise ConfigError(
                [
                    ConfigProblem(
                        "vendors.tonai.api_key",
                        "contains spaces, tabs or line breaks (often a trailing newline from "
                        "the environment variable or secret file); set it to the App Key alone",
                    )
                ]
            )

    # --- routing -----------------------------------------------------------------------------

    def origin(self) -> str:
        """``base_url`` if set, else the origin of the configured ``environment``."""
        return self.base_url or ENVIRONMENTS[self.settings.environment]

    def supports(self, event_name: str) -> bool:
        """Without an ``events`` filter: ``sign_up`` and whatever ``event_map`` names."""
        return event_name in self.default_events or event_name in self.configured_events

    # --- validate ----------------------------------------------------------------------------

    def skip_without(self, event_name: str) -> tuple[str, Skip] | None:
        """An event mapped to ``"conversion"`` without ``user.telegram_user_id`` (and no
        per-event options, which the core refuses for Ton AI) is skipped, and nothing else is
        said; another name is also a Problem, so ``validate`` runs."""
        if self.vendor_event_name(event_name) != CONVERSION:
            return None
        return ("telegram_user_id", self._skip_no_telegram_id)

    def validate(self, event: Event) -> Iterable[Problem | Skip]:
        """A :class:`~postback.Skip` without ``user.telegram_user_id``; a
        :class:`~postback.Problem` for one that is not a Telegram user id, a name not mapped
        to ``"conversion"``, or any per-event option (Ton AI takes none)."""
        telegram_id = event.user.get("telegram_user_id")
        if not telegram_id:
            yield self._skip_no_telegram_id
        else:
            why = check_telegram_user_id(telegram_id)
            if why is not None:
                yield Problem("user.telegram_user_id", why)
        mapped = self.vendor_event_name(event.name)
        if mapped is None:
            yield Problem(
                "name",
                f"{event.name!r} is not mapped to Ton AI's conversion: add "
                f'{event.name} = "conversion" to [vendors.tonai.event_map] '
                f"(and to [vendors.tonai] events) if it counts as one",
            )
        elif mapped != CONVERSION:
            yield Problem(
                "name",
                f"[vendors.tonai.event_map] maps {event.name!r} to {mapped!r}, but Ton AI's "
                f'conversion report only takes eventType "conversion": map it to "conversion"',
            )

    # --- transform ---------------------------------------------------------------------------

    def _keys(self, telegram_id: str, event_id: str) -> tuple[str, str]:
        """(user key, owner key) in the store, scoped by environment and product."""
        scope = _user_key(self.settings.environment, self.settings.product, telegram_id)
        return scope, f"{scope}/event:{event_id}"

    def transform(self, event: Event) -> dict[str, Any]:
        telegram_id = event.user.get("telegram_user_id")
        why = check_telegram_user_id(telegram_id)
        if why is not None or telegram_id is None:
            # Only reachable for events queued without this plugin's validation (an older
            # version, a replay): the event cannot be sent, so it goes to the dead letters.
            raise ValueError(f"user.telegram_user_id {why}")
        if self.settings.once_per_user:
            self._claim_user(telegram_id, event.event_id)
        return {"eventType": CONVERSION, "eventData": {"telegramUserId": telegram_id}}

    def _claim_user(self, telegram_id: str, event_id: str) -> None:
        """Let one event per Telegram user through; raise SkipEvent for the others.

        ``transform`` runs again on every attempt (retries, a halted lane, a replayed dead
        letter), so the event that claimed the user must keep passing: it is the *owner*, and
        the store remembers which event that is. The owner key is written first, so a crash in
        between can at worst send a duplicate, never lose the user's conversion.
        """
        user_key, owner_key = self._keys(telegram_id, event_id)
        first_sight = self.store.remember(owner_key)
        if self.store.remember(user_key):
            return  # this event claims the user
        if not first_sight:
            return  # seen before and never released: the owner, on a retry or a replay
        self.store.forget(owner_key)
        raise SkipEvent(
            "once_per_user: a conversion for this Telegram user was already reported "
            "(or is being reported) to Ton AI"
        )

    def _release_user(self, batch: Sequence[Prepared]) -> None:
        """Ton AI refused the conversion for good: let a later one for the user through."""
        if not self.settings.once_per_user:
            return
        for p in batch:
            telegram_id = p.event.user.get("telegram_user_id")
            if telegram_id:
                user_key, owner_key = self._keys(telegram_id, p.event.event_id)
                self.store.forget(user_key)
                self.store.forget(owner_key)

    def erase_user(self, user: Mapping[str, str]) -> None:
        """An erased person's once-per-user marks name their Telegram user id: forget them
        (so a later conversion of theirs counts as a new user's).

        Those of every environment and product, not only the configured ones: the app may
        have run with other settings before. Both settings take a few fixed values (validated
        since the plugin's first version), so these are a few exact keys and prefixes.
        """
        telegram_id = user.get("telegram_user_id")
        if telegram_id:
            for environment, product in _MARK_SCOPES:
                user_key = _user_key(environment, product, telegram_id)
                self.store.forget(user_key)
                self.store.forget_prefix(f"{user_key}/")

    # --- request / response ------------------------------------------------------------------

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        if len(batch) != 1:
            raise ValueError(f"Ton AI takes one conversion per request, got {len(batch)}")
        return httpx.Request(
            "POST",
            self.parsed_url(conversion_path(self.settings.product)),
            headers={
                "x-api-key": self.settings.api_key.reveal(),
                "content-type": "application/json",
                "accept": "application/json",
            },
            content=orjson.dumps(batch[0].record),
        )

    def parse_response(
        self, batch: Sequence[Prepared], response: httpx.Response
    ) -> Outcome | Sequence[Outcome]:
        status = response.status_code
        if 200 <= status < 300:
            body = json_or_none(response)
            if not isinstance(body, dict):
                # Not Ton AI's JSON, but a 2xx means the request was accepted: resending could
                # count the conversion twice, so it is delivered, with a note.
                return Delivered(
                    note=f"Ton AI answered HTTP {status} without a JSON body (expected "
                    f'{{"status": "success"}}; not resent): {self._snippet(response)}'
                )
            result = body.get("status")
            if isinstance(result, str) and result.lower() == "success":
                return Delivered()
            self._release_user(batch)
            return Rejected(
                f"Ton AI did not accept the conversion (HTTP {status}, status "
                f"{result!r}): {self._message(response, body)}",
                status,
                detail=self._snippet(response),
            )
        if status in (401, 403):
            return Halt(
                f"Ton AI refused the API key (HTTP {status}: {self._message(response)}); check "
                f"[vendors.tonai] api_key is the App Key of this account for the "
                f"{self.settings.environment!r} environment and the {self.settings.product!r} "
                "product",
                status,
            )
        if status in (408, 429) or status >= 500:
            reason = f"HTTP {status}: {self._message(response)}"
            if status in (500, 502, 504):  # failed while processing: it may have been recorded
                return self.unconfirmed(reason, status, retry_after_seconds(response))
            return Retry(reason, retry_after_seconds(response))
        if 300 <= status < 400:
            where = response.headers.get("location", "?")
            self._release_user(batch)
            return Rejected(
                f"Ton AI answered with a redirect (HTTP {status} to {where}); check base_url "
                "and environment in [vendors.tonai]",
                status,
            )
        self._release_user(batch)
        return Rejected(
            f"Ton AI refused the conversion (HTTP {status}): {self._message(response)}",
            status,
            detail=self._snippet(response),
        )

    # --- helpers -----------------------------------------------------------------------------

    def _snippet(self, response: httpx.Response) -> str:
        return body_snippet(response, self.redact, limit=_SNIPPET, empty="(empty body)")

    def _message(self, response: httpx.Response, body: object = None) -> str:
        """The vendor's error message if its JSON body has one, else a snippet of the body."""
        if body is None:
            body = json_or_none(response)
        if isinstance(body, dict):
            for key in ("message", "msg", "error", "detail", "errorMessage"):
                value = body.get(key)
                if isinstance(value, str) and value.strip():
                    return self.redact(value.strip()[:_SNIPPET])
        return self._snippet(response)

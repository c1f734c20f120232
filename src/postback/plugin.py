"""The plugin SDK: the one module a vendor plugin imports (besides ``postback`` itself).

::

    from postback.plugin import (
        Delivered, Destination, Emulator, Event, Prepared, Retry, Secret, hookimpl, setting,
    )

Everything a vendor needs is here, grouped by what it is for; the rest of ``postback``
(``postback.delivery``, ``postback.config``, ``postback.tracker`` ...) is the host's
internals, which may change in any release. ``tests/test_plugin_sdk.py`` keeps the first-party
plugins and the scaffold to this module.

- Registering: :data:`hookimpl` (``postback_register_destinations`` and
  ``postback_register_emulators`` return classes; see :mod:`postback.hookspecs`).
- The contract: :class:`Destination`, :class:`Emulator`, :class:`Prepared`,
  :class:`KeyStore`, and the canonical model (:class:`Event`, :class:`User`,
  :class:`Context`, :class:`Attribution`, :data:`CANONICAL_EVENTS`, :func:`to_micros` and
  its bound :data:`MAX_VALUE`, :func:`to_timestamp_ms`).
- Fields the vendor adds to the event: :func:`user_field`, :func:`context_field` (an
  :class:`EventField` each, listed in ``Destination.fields``).
- Settings: :func:`setting`, :class:`Secret`, :class:`RateLimit`, :class:`RetryPolicy`,
  :class:`ConfigError` / :class:`ConfigProblem` for settings that need each other.
- Validation: :class:`Problem` (a malformed event) and :class:`Skip` (this vendor cannot use
  the event as given); :class:`SkipEvent` to skip from ``transform``.
- Outcomes: :class:`Delivered`, :class:`Retry`, :class:`Rejected`, :class:`RejectedBatch`,
  :class:`Halt` (and :data:`Outcome`), :class:`RateHint`, :data:`NOT_SENT`.
- Responses: :func:`json_or_none`, :func:`body_snippet`, :func:`retry_after_seconds`,
  :func:`seconds_from_message`, :class:`StatusOutcomes` / :data:`DEFAULT_STATUS_OUTCOMES`.
- Personal data: normalising and hashing (:func:`hash_email`, :func:`normalize_phone`,
  :func:`hmac_sha256_base64` ...), format checks (:func:`is_ip_address`,
  :func:`is_sha256_hex`), and ISO tables (:data:`COUNTRIES`, :data:`CURRENCIES`,
  :data:`CURRENCY_EXPONENT`).
"""

from __future__ import annotations

from postback.destination import (
    NOT_SENT,
    Delivered,
    Destination,
    Emulator,
    Halt,
    KeyStore,
    Outcome,
    Prepared,
    RateHint,
    RateLimit,
    Rejected,
    RejectedBatch,
    Retry,
    RetryPolicy,
    Secret,
    Skip,
    SkipEvent,
    setting,
)
from postback.errors import ConfigError, ConfigProblem, Problem
from postback.events import (
    CANONICAL_EVENTS,
    MAX_VALUE,
    Attribution,
    Context,
    Event,
    User,
    to_micros,
    to_timestamp_ms,
)
from postback.fields import EventField, context_field, user_field
from postback.hookspecs import hookimpl
from postback.iso import COUNTRIES, CURRENCIES, CURRENCY_EXPONENT
from postback.pii import (
    hash_email,
    hash_phone,
    hmac_sha256,
    hmac_sha256_base64,
    is_ip_address,
    is_sha256_hex,
    normalize_email,
    normalize_phone,
    phone_digits,
    sha256_hex,
)
from postback.responses import (
    DEFAULT_STATUS_OUTCOMES,
    MAX_RETRY_AFTER,
    OutcomeKind,
    StatusOutcomes,
    body_snippet,
    json_or_none,
    retry_after_seconds,
    seconds_from_message,
)

__all__ = [
    "CANONICAL_EVENTS",
    "COUNTRIES",
    "CURRENCIES",
    "CURRENCY_EXPONENT",
    "DEFAULT_STATUS_OUTCOMES",
    "MAX_RETRY_AFTER",
    "MAX_VALUE",
    "NOT_SENT",
    "Attribution",
    "ConfigError",
    "ConfigProblem",
    "Context",
    "Delivered",
    "Destination",
    "Emulator",
    "Event",
    "EventField",
    "Halt",
    "KeyStore",
    "Outcome",
    "OutcomeKind",
    "Prepared",
    "Problem",
    "RateHint",
    "RateLimit",
    "Rejected",
    "RejectedBatch",
    "Retry",
    "RetryPolicy",
    "Secret",
    "Skip",
    "SkipEvent",
    "StatusOutcomes",
    "User",
    "body_snippet",
    "context_field",
    "hash_email",
    "hash_phone",
    "hmac_sha256",
    "hmac_sha256_base64",
    "hookimpl",
    "is_ip_address",
    "is_sha256_hex",
    "json_or_none",
    "normalize_email",
    "normalize_phone",
    "phone_digits",
    "retry_after_seconds",
    "seconds_from_message",
    "setting",
    "sha256_hex",
    "to_micros",
    "to_timestamp_ms",
    "user_field",
]

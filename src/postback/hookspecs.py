"""Hook specifications: every point where a plugin takes part in postback.

A plugin is a module or object with functions decorated by ``postback.hookimpl``, named like
the specs below. Vendor plugins are found through the ``postback`` entry-point group; in-process
plugins (an app's attribution listener, a consent filter) are passed as
``Tracker.from_config(config, plugins=[...])``. Both take part in the same hooks.

Lifecycle of one event::

    register_destinations  (once per tracker; register_emulators, register_queues too)
    consent                (track(), caller's thread; firstresult; per routed vendor, only
                           when a plugin implements it) -> False leaves that vendor out
    validate               (track(), caller's thread; all implementations run)
                           -> a Problem refuses the event; a Skip leaves that vendor out
                              (reported to on_delivery as Skipped, attempt 0)
    -- queued durably --
    transform              (delivery worker; firstresult)
    deliver                (delivery worker; firstresult)
    on_attribution         (when a vendor returned attribution; all run)
    on_delivery            (every attempt's final word, per event; all run: metrics, audit)

Call semantics follow pytest's conventions: an *all-run* hook collects a list of results; a
*firstresult* hook stops at the first non-``None`` result. The core ships a ``trylast``
implementation of ``postback_transform`` and ``postback_deliver`` that delegates to the
vendor's :class:`~postback.Destination`, so another plugin can take over (``tryfirst``) or wrap
them (``@hookimpl(wrapper=True)``) without any knowledge of vendor names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import httpx

    from postback.delivery.queue import QueueBackend
    from postback.destination import Destination, Emulator, Outcome, Prepared, Reported, Skip
    from postback.errors import Problem
    from postback.events import Attribution, Event

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("postback")
#: The marker a plugin uses to implement hooks: ``from postback import hookimpl``.
hookimpl = pluggy.HookimplMarker("postback")


@hookspec
def postback_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    """Register the vendor :class:`~postback.Destination` classes this plugin provides.

    :param register: call it once per destination class, e.g. ``register(MobanaDestination)``.

    Called once when a tracker's plugin host starts. Registering a name twice raises
    :class:`~postback.PluginError` naming both plugins. A destination is only *used* when the
    configuration has a ``[vendors.NAME]`` table for it.
    """


@hookspec
def postback_register_emulators(register: Callable[[type[Emulator]], None]) -> None:
    """Register local emulations of vendor APIs for ``postback sandbox`` and tests.

    :param register: call it once per :class:`~postback.Emulator` subclass.

    Each emulator is served under ``/<vendor>`` by the sandbox; ``postback demo`` points the
    vendor's ``base_url`` there.
    """


@hookspec
def postback_register_queues(register: Callable[[QueueBackend], None]) -> None:
    """Register queue backends: where events wait for delivery, chosen by ``[postback] queue``.

    :param register: call it once per :class:`~postback.delivery.queue.QueueBackend` (its URL
        schemes, capabilities, an example URL and a function that opens a queue).

    Called once when a tracker's plugin host starts; the core registers ``memory://``,
    ``sqlite://`` and ``redis://`` through this hook too. Registering a scheme twice raises
    :class:`~postback.PluginError` naming both plugins. Run
    :class:`postback.testing.QueueContract` against a new backend; see the how-to "Write a
    queue backend".
    """


@hookspec(firstresult=True)
def postback_consent(
    event: Event, destination: Destination, consent: Mapping[str, bool] | None
) -> bool | None:
    """Decide whether ``event`` may go to ``destination``'s vendor, for a consent-management
    platform (CMP) integration that knows the user's choices better than the app's call.

    :param event: the normalised canonical event (``event.user`` says who it is about).
    :param destination: a vendor the event is routed to; its needed purposes are in
        ``[vendors.NAME] purposes`` or ``destination.purposes``.
    :param consent: what the app passed as ``track(consent=...)`` (with the web
        integrations, merged with ``Sec-GPC`` and their ``consent_reader``), or ``None``.
    :return: ``True`` (send it), ``False`` (leave this vendor out: a skip with reason
        ``"consent"``), or ``None`` (no opinion: the purposes and ``[consent] policy``
        decide).

    firstresult: the first implementation that returns ``True`` or ``False`` decides. It is
    asked only when ``consent`` does not already deny a purpose the vendor needs (an
    explicit ``False`` from the app always wins). Runs inside ``track()`` (and
    ``explain()``) on the caller's thread, once per routed vendor: keep it fast, with no
    I/O (read the CMP's state once per request, e.g. in a ``consent_reader``). An exception
    is logged and counts as ``False``: when in doubt, nothing is sent.
    """


@hookspec
def postback_validate(event: Event, destination: Destination) -> Iterable[Problem | Skip] | None:
    """Check ``event`` before it is queued for ``destination``'s vendor.

    :param event: the normalised canonical event.
    :param destination: the vendor the event is routed to.
    :return: an iterable of findings (empty or ``None`` when all is well), each one of:

        - :class:`~postback.Problem`: the event is malformed for this vendor (a wrong type or
          format). Any problem, from any implementation and any vendor, makes ``track()`` raise
          one :class:`~postback.InvalidEvent` that lists every problem; nothing is queued.
        - :class:`~postback.Skip`: the event is well formed but this vendor cannot use it as
          given (its identifier, or a field it requires for this event type, is missing). The
          vendor is left out of this event and the other vendors get it; the skip is counted
          per vendor and reason, logged once, and reported to ``postback_on_delivery`` as
          :class:`~postback.Skipped`. With ``[postback] strict = true`` a skip is a problem.

    All implementations run (all-run); their findings are collected. Runs on the caller's
    thread inside ``track()`` (and ``explain()``), so keep it fast and free of I/O: check
    presence and formats, do not build wire records. The core's implementation calls
    ``destination.validate(event)``; the core sets ``vendor`` on findings that have none.
    A plugin may add findings (e.g. a ``Skip`` for lack of consent) without knowing vendors'
    rules.
    """


@hookspec(firstresult=True)
def postback_transform(event: Event, destination: Destination) -> Any:
    """Turn ``event`` into ``destination``'s wire record (the vendor's JSON object, usually).

    :param event: the canonical event, read back from the queue.
    :param destination: the vendor it is being delivered to.
    :return: the record, or ``None`` to let the next implementation decide.
    :raises postback.SkipEvent: to not send this event to this vendor (recorded as skipped).

    firstresult: the first non-``None`` result wins. Runs on the delivery worker, also on
    replay, so a fixed plugin re-delivers dead letters from the stored canonical event. The
    core's ``trylast`` implementation calls ``destination.transform(event)``; wrap it with
    ``@hookimpl(wrapper=True)`` to enrich or filter records.
    """


@hookspec(firstresult=True)
def postback_deliver(
    destination: Destination,
    batch: Sequence[Prepared],
    send: Callable[[httpx.Request], httpx.Response],
) -> Sequence[Outcome] | None:
    """Deliver one batch of prepared events and say what happened to each.

    :param destination: the vendor.
    :param batch: events with their wire records, at most ``destination.max_batch_size``.
    :param send: sends an ``httpx.Request`` through the engine's HTTP client (an
        ``httpx.Client`` of the calling thread) and returns the response, read. The vendor's
        ``timeout`` bounds the whole exchange, and a body over 1 MiB is not read. Transport
        errors propagate as ``httpx.TransportError``; ``send`` never resends a request.
    :return: one outcome per event of ``batch``, in order; or ``None`` to pass.

    firstresult. The core's ``trylast`` implementation builds the request with
    ``destination.build_request``, sends it, and reads the response with
    ``destination.parse_response``; a transport error is classified by
    ``destination.classify_exception`` (not sent: retried; sent but unanswered: an
    *unconfirmed* failure, see ``Destination.unconfirmed``).

    Any other exception (from ``build_request``, ``parse_response`` or this hook) is a bug in
    a plugin, not a vendor outage: the batch's events go to the dead letters at once, with
    the exception's last traceback line as the reason (the whole traceback is logged the
    first time), and delivery goes on with the next batch. Replay them once it is fixed.
    """


@hookspec
def postback_on_attribution(attribution: Attribution, event: Event) -> None:
    """A vendor attributed a delivered event (e.g. X names the campaign and tweet).

    :param attribution: what the vendor said, normalised (``attribution.raw`` keeps the rest).
    :param event: the canonical event it is about.

    Notification (all run). Called on the delivery worker thread: store it or hand it off,
    don't block. An exception here is logged and does not affect delivery. It runs in the
    process that delivers: with ``workers = "process"`` that is the tracker's delivery child
    (which rebuilt your in-process plugins), with ``workers = false`` the ``postback worker``.
    """


@hookspec
def postback_on_delivery(
    vendor: str, event: Event, outcome: Reported, attempt: int, latency: float
) -> None:
    """The final word on every delivery attempt at every event, for metrics and audit logs.

    :param vendor: the vendor name.
    :param event: the canonical event.
    :param outcome: what became of the event at this attempt, one of:

        - :class:`~postback.Delivered`: the vendor took it (terminal).
        - :class:`~postback.Retry`: it will be tried again; ``after`` is the delay the engine
          chose (the vendor's, bounded by ``max_age``, or the backoff).
        - :class:`~postback.DeadLettered`: it went to the dead-letter store (terminal);
          ``reason`` is what the store records, ``cause`` the vendor's
          :class:`~postback.Rejected`, or the last :class:`~postback.Retry` when
          ``max_attempts`` or ``max_age`` ran out, or ``None`` when a plugin raised.
        - :class:`~postback.Skipped`: not sent to this vendor on purpose (terminal): a
          :class:`~postback.Skip` from validation at ``track()`` (``attempt`` is 0), or
          :class:`~postback.SkipEvent` from ``transform`` at delivery.
        - :class:`~postback.Halt`: the vendor refused our credentials; the event stays
          queued, this attempt is not counted, and it is reported again when it is retried.

    :param attempt: the attempt's number, 1 for the first, as the queue counts them (a
        halted attempt does not count, so the next one has the same number).
    :param latency: seconds the batch's request(s) took (0 when none was sent, and for a
        skip at ``track()``).

    Each event gets exactly one call per attempt, after the queue has recorded the outcome,
    so the calls add up to ``tracker.stats()``: ``delivered``, ``retried``, ``dead`` and
    ``skipped`` count the calls with those outcomes (except a stored event that could not be
    read back, which is dead-lettered without a call: there is no event to pass). Nothing is
    reported for events given back unattempted (shutdown).

    Notification (all run). An exception here is logged and does not affect delivery.
    Delivery outcomes are reported on the delivery worker thread, in the process that
    delivers (with ``workers = "process"`` the delivery child, with ``workers = false`` the
    ``postback worker``). Skips at ``track()`` are reported in the process that tracked the
    event, inside ``track()`` before it returns (on the caller's thread; for an
    ``AsyncTracker`` that writes on its writer thread, that thread), and only when some plugin
    implements this hook: keep the implementation quick. ``stats()`` counts those skips too
    (per vendor and reason).
    """

"""The :class:`Tracker`: what an application holds and calls ``track()`` on.

``track()`` validates the event synchronously (the canonical event, then each vendor it is
routed to: see :mod:`postback.routing` for who gets it and who is skipped), stores it durably
in the queue for the vendors that can use it, notifies the tracker's deliverer and returns the
event id. It never waits on a vendor. The deliverer (:mod:`postback.delivery.deliverer`, chosen
once from ``[postback] workers``) delivers on background threads or from a child process that
start on the first ``track()``, or leaves delivery to another process; ``flush()`` waits for
it, ``close()`` stops it, and an exit hook flushes for a bounded time (``[postback]
exit_timeout``, default 2 s) and leaves the rest queued for the next start. After ``fork()``
(gunicorn ``--preload``) a child starts its own delivery lazily; those exit and fork hooks are
:mod:`postback.exit_hooks`. :func:`auto_workers` says what ``workers = "auto"`` means here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from postback import exit_hooks
from postback.config import Config, Workers, build_config, read_config
from postback.consent import ConsentGate, checked_consent
from postback.dedupe import Deduper
from postback.delivery.deliverer import Deliverer, choose_deliverer
from postback.delivery.engine import DeliveryEngine, FlushReport
from postback.delivery.erase import (
    ErasureReport,
    Person,
    disabled_keepers,
    erasable_user,
    erase_person,
)
from postback.delivery.ledgers import open_ledger
from postback.delivery.mode import DeliveryMode
from postback.delivery.queue import Queue, QueueKeyStore
from postback.delivery.registry import open_queue
from postback.delivery.spec import child_spec_problem, tracker_spec
from postback.destination import Destination, Skipped
from postback.encryption import keyring_from_env
from postback.errors import InvalidEvent, TrackerClosed
from postback.events import Event, make_event
from postback.ledger import EventStatus, LedgerWriter
from postback.plugins import PluginHost
from postback.routing import Explanation, Router
from postback.skips import SkipLedger
from postback.storable import stored_form
from postback.telemetry import register as register_telemetry
from postback.telemetry import retire as retire_telemetry
from postback.telemetry import sdk_configured, stamp

__all__ = ["Tracker", "auto_workers", "auto_workers_why"]

log = logging.getLogger("postback")


def _needs(configured: tuple[str, ...] | None, destination: Destination) -> tuple[str, ...]:
    """The purposes a vendor needs: ``[vendors.NAME] purposes`` when set (``[]`` too: none),
    else its plugin's."""
    return tuple(destination.purposes) if configured is None else configured


#: What ``close()`` gives the deliverer to stop, beyond its flush (``deliverer.stop(wait=1.0)``
#: waits for the coordinator, then the lanes), for a second ``close()`` to wait on. With
#: ``workers = "process"``: the flush's reply grace (1 s), then 1 s and the stop grace (5 s).
_STOP_WAITS = 7.0


class Tracker:
    """Send conversion events to every configured vendor, durably and in the background.

    Create one per process with :meth:`from_config` and share it between threads.
    """

    def __init__(
        self,
        config: Config,
        host: PluginHost,
        *,
        queue: Queue | None = None,
        transport: Any = None,
        create_queue: bool = True,
    ) -> None:
        #: Why ``workers = "auto"`` chose this tracker's mode (``config check`` shows it), or
        #: None when the config named the mode itself.
        self.auto_workers_reason: str | None = None
        if config.core.workers == "auto":
            workers, self.auto_workers_reason = auto_workers_why(config, host, transport)
            config = attrs.evolve(
                config, core=attrs.evolve(config.core, workers=Workers.parse(workers))
            )
        self.config = config
        self.host = host
        #: How this tracker delivers: chosen here, once; nothing re-reads ``workers``.
        self.mode = DeliveryMode.from_workers(config.core.workers)
        self.destinations: dict[str, Destination] = {}
        for name, vc in config.vendors.items():
            if vc.enabled:
                self.destinations[name] = vc.make_destination(host.destinations[name])
        self._filters = {name: config.vendors[name].events for name in self.destinations}
        self.queue = queue or open_queue(
            config.core.queue,
            config.base_dir,
            max_size=config.core.max_queue_size,
            synchronous=config.core.sqlite_synchronous,
            delivers_on_threads=self.mode.delivers,
            registry=host.queues,
            create=create_queue,
        )
        for name, dest in self.destinations.items():
            dest.store = QueueKeyStore(self.queue, name)
        #: The delivery ledger (:meth:`status`), written in batches off the hot paths.
        self.ledger = LedgerWriter(
            open_ledger(
                self.queue,
                retention=config.core.ledger_retention,
                max_entries=config.core.ledger_max_entries,
            )
        )
        self.engine = DeliveryEngine(
            self.queue,
            host,
            [(d, config.vendors[n]) for n, d in self.destinations.items()],
            transport=transport,
            ca_bundle=config.core.ca_bundle,
            ledger=self.ledger,
            dead_letter_retention=config.core.dead_letter_retention,
        )
        #: Where this tracker's events are delivered from, chosen here, once, from the mode
        #: (:mod:`postback.delivery.deliverer`); the engine's lanes count what is tracked.
        self.deliverer: Deliverer = choose_deliverer(
            self.mode, self.engine, lambda: tracker_spec(config, self.queue.url, host)
        )
        self._raise = config.core.on_invalid == "raise"
        self._default_currency = config.core.default_currency
        #: Currency codes beyond ISO 4217 that a configured vendor takes (Whop's ETH, ...).
        self._extra_currencies: frozenset[str] = frozenset().union(
            *(d.extra_currencies for d in self.destinations.values())
        )
        #: Skip counts (per vendor and reason) of this process, written to the queue in batches.
        self.skips = SkipLedger(self.queue, self.ledger)
        #: Who the user's consent lets an event reach (purposes per vendor, policy, plugin).
        self.consent_gate = ConsentGate(
            config.consent,
            {n: _needs(config.vendors[n].purposes, d) for n, d in self.destinations.items()},
            host.consent_hook(),
        )
        #: Seals stored events when ``POSTBACK_ENCRYPTION_KEYS`` is set (postback.encryption).
        self._keyring = keyring_from_env()
        self.router = Router(
            self.destinations,
            self._filters,
            host.validate,
            self.skips,
            strict=config.core.strict,
            raise_invalid=self._raise,
            on_skip=self._report_skip if self.engine.notify_delivery else None,
            disabled=[n for n, vc in config.vendors.items() if not vc.enabled],
            direct=host.only_core_validates,
            gate=self.consent_gate,
        )
        windows = {
            n: w
            for n, d in self.destinations.items()
            if (w := _pick(config.vendors[n].dedupe_window, d.default_dedupe_window))
        }
        #: Local dedupe of given event ids for vendors without a dedupe key (None: none).
        self.dedupe = Deduper(windows) if windows else None
        self._purposes = config.consent.purposes
        # Its counters and queue, for the app's OpenTelemetry meters (until close()).
        register_telemetry(self.engine, self.skips)
        self._closed = False
        self._close_lock = threading.Lock()
        self._close_done = threading.Event()  # set once close() has released everything
        self._closer: int | None = None  # the thread running close()
        exit_hooks.keep(self)

    @classmethod
    def from_config(
        cls,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        plugins: Iterable[object] = (),
        transport: Any = None,
        load_entry_points: bool = True,
    ) -> Tracker:
        """Build a tracker from a TOML file, a pyproject.toml, or a dict of the same shape.

        ``plugins`` are in-process plugins (objects or modules with ``@hookimpl`` functions).
        ``transport`` replaces the HTTP transport (``httpx.MockTransport`` in tests).
        Raises :class:`~postback.ConfigError` listing every problem.
        """
        raw, source, base_dir = read_config(config)
        return cls.from_raw(
            raw,
            source=source,
            base_dir=base_dir,
            plugins=plugins,
            transport=transport,
            load_entry_points=load_entry_points,
        )

    @classmethod
    def from_raw(
        cls,
        raw: Mapping[str, Any],
        *,
        source: str | None = None,
        base_dir: Path | None = None,
        plugins: Iterable[object] = (),
        transport: Any = None,
        load_entry_points: bool = True,
        disable: Iterable[str] | None = None,
        environ: Mapping[str, str] | None = None,
        create_queue: bool = True,
    ) -> Tracker:
        """Build a tracker from a raw configuration mapping (as :func:`postback.config.read_config`
        returns it): the plugin host, then the validated config. The one place that does it:
        :meth:`from_config` and the ``workers = "process"`` child both come here. ``environ``
        holds the ``POSTBACK_*`` overrides (default: ``os.environ``; the child passes none:
        its raw config already has its parent's). ``create_queue=False`` refuses a queue that
        does not exist yet (a ``sqlite://`` file) with a QueueError, for a command that reads
        stored events."""
        host = PluginHost(plugins, load_entry_points=load_entry_points, disable=disable)
        broken = {name: info.error for name, info in host.infos.items() if info.error}
        cfg = build_config(
            raw,
            host.destinations,
            source=source,
            base_dir=base_dir,
            broken=broken,
            queues=host.queues,
            environ=environ,
        )
        return cls(cfg, host, transport=transport, create_queue=create_queue)

    # --- the hot path ----------------------------------------------------------------------------

    def route(self, event: Event) -> list[Destination]:
        """The vendors an event goes to before validation: configured, enabled, mapped (or in
        their ``events`` filter), not opted out."""
        return self.router.route(event)

    def prepare(self, name: object, **fields: Any) -> tuple[Event, list[Destination]]:
        """Validate without queueing: the normalised event and the vendors that would get it
        (those that skip it left out; ``consent=`` as for ``track()``).

        Raises :class:`~postback.InvalidEvent` as ``track()`` would with ``on_invalid =
        "raise"``, skips included when ``strict``. Nothing is counted or logged.
        """
        consent = fields.pop("consent", None)
        event = make_event(
            name,
            default_currency=self._default_currency,
            extra_currencies=self._extra_currencies,
            fields=self.host.fields,
            **fields,
        )
        stored_form(event)
        if consent is not None:
            consent, bad = checked_consent(consent, self._purposes)
            if bad:
                raise InvalidEvent(event.name, bad)
        explanation = self.router.explain(event, consent)
        if explanation.error is not None:
            raise explanation.error
        problems = explanation.all_problems  # with on_invalid = "log", error stays None
        if problems:
            raise InvalidEvent(event.name, problems)
        return event, [self.destinations[v] for v in explanation.queued]

    def explain(
        self,
        name: str,
        *,
        user: Mapping[str, Any] | None = None,
        value: float | int | str | Any = None,
        currency: str | None = None,
        event_id: str | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        vendors: Mapping[str, Any] | None = None,
        consent: Mapping[str, bool] | None = None,
    ) -> Explanation:
        """What ``track()`` would do with these arguments, per configured vendor: routed,
        skipped and why (a vendor the user's ``consent`` does not cover is skipped with reason
        ``consent``), refused and why, or not routed (not mapped, filtered out, opted out,
        disabled). Queues, counts, logs and reports nothing; never raises for the event's
        content (a malformed event is explained, with ``error`` set). Local dedupe is not
        consulted: it would have to remember the id."""
        try:
            event = make_event(
                name,
                user=user,
                value=value,
                currency=currency,
                event_id=event_id,
                timestamp=timestamp,
                context=context,
                properties=properties,
                vendors=vendors,
                default_currency=self._default_currency,
                extra_currencies=self._extra_currencies,
                fields=self.host.fields,
            )
        except InvalidEvent as exc:
            return Router.malformed(exc.event_name, exc, self.config.vendors)
        if consent is not None:
            consent, bad = checked_consent(consent, self._purposes)
            if bad:
                bad_consent = InvalidEvent(event.name, bad)
                return Router.malformed(event.name, bad_consent, self.destinations)
        try:
            stored_form(event)
        except InvalidEvent as exc:
            return Router.malformed(event.name, exc, self.destinations)
        return self.router.explain(event, consent)

    def track(
        self,
        name: str,
        *,
        user: Mapping[str, Any] | None = None,
        value: float | int | str | Any = None,
        currency: str | None = None,
        event_id: str | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        vendors: Mapping[str, Any] | None = None,
        consent: Mapping[str, bool] | None = None,
    ) -> str:
        """Validate an event, queue it durably for every vendor that can use it, return its id.

        A vendor that cannot use the event as given (its identifier, or a field it requires,
        is missing) is skipped: the others get it, and the skip is counted in :meth:`stats`,
        logged once and reported to ``postback_on_delivery``. A malformed event raises
        :class:`~postback.InvalidEvent` listing every problem, per vendor and field (and so
        does a skip with ``[postback] strict = true``); with ``on_invalid = "log"`` problems
        are logged instead. Returns once the event is stored; never waits on a vendor.

        ``consent`` is the user's decision per purpose (``{"ads": False}``); a vendor needing
        a purpose not granted (by it, or by ``[consent] policy`` for one it leaves out) is not
        queued, a skip with reason ``"consent"``. A vendor without a dedupe key that got this
        ``event_id`` within its ``dedupe_window`` is a skip with reason ``"duplicate"``.
        """
        if self._closed:
            raise TrackerClosed("this tracker was closed; create a new one with from_config()")
        try:
            event = make_event(
                name,
                user=user,
                value=value,
                currency=currency,
                event_id=event_id,
                timestamp=timestamp,
                context=context,
                properties=properties,
                vendors=vendors,
                default_currency=self._default_currency,
                extra_currencies=self._extra_currencies,
                fields=self.host.fields,
            )
        except InvalidEvent as exc:
            if self._raise:
                raise
            log.warning(
                "dropped invalid event %r: %s", exc.event_name, "; ".join(map(str, exc.problems))
            )
            return event_id if isinstance(event_id, str) and event_id else ""
        # Serialised first: what the queue cannot store, or a vendor cannot send (a lone
        # surrogate, NaN, more than MAX_EVENT_BYTES), is refused naming its field.
        try:
            payload = stored_form(event)
        except InvalidEvent as exc:
            if self._raise:
                raise
            log.warning(
                "dropped invalid event %r: %s", exc.event_name, "; ".join(map(str, exc.problems))
            )
            return event.event_id
        if consent is not None:
            consent, bad = checked_consent(consent, self._purposes)
            if bad:
                if self._raise:
                    raise InvalidEvent(event.name, bad)
                log.warning("dropped event %r: %s", event.name, "; ".join(map(str, bad)))
                return event.event_id
        names = self.router.admit(event, consent)
        if not names:
            return event.event_id
        # With a span active (OpenTelemetry), its trace context goes with the event.
        payload = stamp(payload)
        if self._keyring is not None:  # POSTBACK_ENCRYPTION_KEYS: stored sealed
            payload = self._keyring.seal(payload)
        # The queue's clock is when we accepted the event (retry max_age counts from it), not
        # the event's own time, which may be long ago for backfilled events.
        created_ms = time.time_ns() // 1_000_000
        dedupe = self.dedupe
        if (
            dedupe is not None
            and event_id is not None  # a generated id is new anyway
            and (windows := dedupe.windows_for(names)) is not None
        ):
            dups = self.queue.put_unique(
                event.event_id, event.name, created_ms, names, payload, windows
            )
            if dups:
                self.router.report(event, dedupe.skips(dups))
                names = [n for n in names if n not in dups]
                if not names:
                    return event.event_id
        else:
            self.queue.put(event.event_id, event.name, created_ms, names, payload)
        lanes = self.engine.lanes
        for n in names:
            lanes[n].stats.tracked += 1
        if self.closed:  # close() ran meanwhile (another thread): it stays queued, unwoken
            return event.event_id
        self.deliverer.notify(names)
        return event.event_id

    def status(self, event_id: str) -> EventStatus:
        """Where ``event_id`` stands for each vendor, from the delivery ledger (any process's
        deliveries, on any host sharing a Redis queue): queued, attempts with their times and
        notes, delivered (with the vendor's id or attribution), skipped and why,
        dead-lettered and why. See docs/explanation/ledger.md for what is kept, and how long."""
        self._check_open()
        return self.ledger.status(event_id)

    def erase(
        self,
        *,
        user_id: str | int | None = None,
        email: str | None = None,
        phone: str | int | None = None,
        phone_region: str | None = None,
        user: Mapping[str, str | int] | None = None,
    ) -> ErasureReport:
        """Erase a person: every event of theirs still queued (spool, log, retries) is dropped
        by every deliverer before it reaches a vendor, and their dead letters are deleted.
        Matches an event whose user has any of the identifiers given, as ``track()`` stores
        them (email trimmed and lower-cased, or its SHA-256 hex; phone by its E.164 form, a
        national one read in ``phone_region`` or the vendors' ``default_phone_region``);
        ``user``: other ids, core (``ifa``) or declared by a plugin (``telegram_user_id``).
        An event being sent at that moment finishes; the report says how many. Events tracked
        after the erase are delivered as usual. See docs/how-to/erase.md."""
        self._check_open()
        regions = (phone_region,) if phone_region else ()
        ids = erasable_user(user or {}, self.host.fields)
        person = Person(user_id, email, phone, regions, ids)
        off, failed = disabled_keepers(self.config.vendors, self.host.destinations, self.queue)
        here = self.engine.sending_here()
        vendors = [*self.destinations.values(), *off]
        report = erase_person(self.queue, self.engine.erasures, here, person, vendors)
        if failed:
            report = attrs.evolve(report, not_forgotten=(*report.not_forgotten, *failed))
        return report

    def _check_open(self) -> None:
        """Raise :class:`~postback.TrackerClosed` once :meth:`close` was called (its queue and
        ledger are released: reading them would fail in a way that names neither)."""
        if self._closed:
            raise TrackerClosed("this tracker was closed; create a new one with from_config()")

    def _report_skip(self, vendor: str, event: Event, outcome: Skipped) -> None:
        self.host.on_delivery(vendor, event, outcome, 0, 0.0)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float | None = 10.0) -> bool:
        """Start delivering now instead of on the first ``track()`` (e.g. at app start-up).

        With ``workers = "process"``, waits at most ``timeout`` seconds for the delivery
        process to be ready and returns whether it is; otherwise returns True at once (with
        ``workers = false``, or no vendor enabled, there is nothing to start).
        """
        self._check_open()
        self.deliverer.start()
        return self.deliverer.ready(timeout)

    def flush(
        self, timeout: float | None = 10.0, *, abort: threading.Event | None = None
    ) -> FlushReport:
        """Deliver what is queued, waiting at most ``timeout`` seconds; a report per vendor.

        Setting ``abort`` (from another thread) ends the wait within about 0.2 s; the report
        then says what is left. Delivery goes on either way: only the wait ends.
        With ``workers = "process"``, the child's report may take up to 1 s more
        (``timing.REPLY_GRACE``), never longer: a child that cannot answer is not waited for.
        After :meth:`close` (which flushed), raises :class:`~postback.TrackerClosed`."""
        self._check_open()
        return self.deliverer.flush(timeout, None if abort is None else abort.is_set)

    def close(self, timeout: float | None = 10.0) -> FlushReport | None:
        """Flush for at most ``timeout`` seconds, stop the workers, release the queue.

        What could not be delivered in time stays queued (``sqlite://``) for the next start.
        A second call (another thread's, the exit hook's) returns None once the first has
        finished, or its own ``timeout`` (and the time the first may spend stopping) has
        passed: at exit, a close running on a daemon thread is not cut short.
        """
        with self._close_lock:
            first = not self._closed
            if first:
                self._closed = True
                self._closer = threading.get_ident()
        if not first:
            if self._closer != threading.get_ident():  # (called from within that close: no)
                stopping = _STOP_WAITS + self.engine.settle_time()
                self._close_done.wait(None if timeout is None else timeout + stopping)
            return None
        report = None
        deliverer = self.deliverer
        try:
            if (
                self.engine.lanes
                and deliverer.flushes_on_close
                and (timeout is None or timeout > 0)
            ):
                report = deliverer.flush(timeout)
        finally:
            deliverer.stop(wait=1.0)
            if report is not None:  # with what settled as it stopped (at-most-once requests)
                with contextlib.suppress(Exception):  # uncounted: the flush's report stands
                    report = report.then(deliverer.report_after_stop())
            self.skips.close()
            self.ledger.close()
            retire_telemetry(self.engine)
            self.queue.close()
            exit_hooks.release(self)
            self._close_done.set()
        if report is not None and not report.complete:
            left = {v: r.pending for v, r in report.vendors.items() if r.pending}
            log.info("closed with undelivered events left in the queue: %s", left)
        return report

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-vendor counters: tracked, delivered, retried, dead, skipped, queue depth,
        latency percentiles (seconds), and the halt reason if the vendor refused our key.

        ``skips`` counts, per reason, the events this process left out of that vendor at
        ``track()`` (a :class:`~postback.Skip`); ``skipped`` adds them to the events skipped
        at delivery (``SkipEvent`` from ``transform``). After :meth:`close`, raises
        :class:`~postback.TrackerClosed` (``close()`` returns the last flush's report)."""
        self._check_open()
        stats = self.deliverer.stats()
        for vendor, reasons in self.skips.totals().items():
            vendor_stats = stats.get(vendor)
            if vendor_stats is not None:
                vendor_stats["skips"] = reasons
                vendor_stats["skipped"] = vendor_stats.get("skipped", 0) + sum(reasons.values())
        for vendor_stats in stats.values():
            vendor_stats.setdefault("skips", {})
        return stats

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _after_fork(self) -> None:
        self.queue.after_fork()
        self.deliverer.after_fork()
        self.skips.after_fork()
        self.ledger.after_fork()
        self._close_lock = threading.Lock()
        self._close_done = threading.Event()
        self._closer = None

    def __repr__(self) -> str:
        return (
            f"<Tracker vendors={sorted(self.destinations)} queue={self.queue.url!r}"
            f"{' closed' if self._closed else ''}>"
        )


#: Hooks that run where delivery runs: an in-process plugin implementing one expects to be
#: called in the app's own process, so ``workers = "auto"`` keeps delivery there.
_DELIVERY_HOOKS = (
    "postback_transform",
    "postback_deliver",
    "postback_on_attribution",
    "postback_on_delivery",
)


def auto_workers(config: Config, host: PluginHost, transport: Any = None) -> bool | str:
    """What ``workers = "auto"`` (the default) means for this tracker: ``"process"`` where
    delivering from a child process changes nothing the app can see, else ``True`` (threads).

    A child process is used when the queue is a ``sqlite://`` file (which the child shares),
    no ``transport`` was passed (it could not reach the child), no in-process plugin
    implements a hook that runs at delivery (it would run in the child, not in the app), the
    in-process plugins can be rebuilt in the child, the app set no OpenTelemetry SDK (whose
    exporters would not see the child's spans and metrics), and the process is not running
    pytest (where tests mock HTTP with respx or read their own plugins' calls in-process).
    docs/deployment.md explains the choice and what it costs.
    """
    return auto_workers_why(config, host, transport)[0]


def auto_workers_why(
    config: Config, host: PluginHost, transport: Any = None
) -> tuple[bool | str, str]:
    """:func:`auto_workers` and why, in a phrase (``postback config check`` shows it)."""
    if not config.core.queue.startswith("sqlite:"):
        return True, "the queue is not a sqlite:// file a child process could share"
    if transport is not None:
        return True, "an HTTP transport was passed in-process"
    if "pytest" in sys.modules:
        return True, "running under pytest"
    if not sys.executable:
        return True, "no Python executable to start a child process with"
    if sdk_configured():  # the app's OpenTelemetry SDK exports the lanes' spans and metrics
        return True, "the app set an OpenTelemetry SDK, which must see the deliveries"
    for plugin in host.in_process:
        for hook in _DELIVERY_HOOKS:
            if callable(getattr(plugin, hook, None)):
                return True, f"an in-process plugin implements {hook}"
    if host.in_process and child_spec_problem(host) is not None:
        return True, "an in-process plugin cannot be sent to a child process"
    return "process", "a sqlite:// queue and nothing that must run in this process"


def _pick(configured: float | None, default: float | None) -> float:
    """A vendor's dedupe window: the config's (0: off), else its destination's default."""
    return (configured if configured is not None else default) or 0.0

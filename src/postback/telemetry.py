"""OpenTelemetry, natively: spans per delivery attempt and per-vendor metrics.

Duties, and nothing else:

- carry the trace context of the code that called ``track()`` through the queue with the
  event (:func:`stamp` appends ``"_traceparent"`` to the stored payload when a span is
  active; :func:`carried` reads it back), so that a delivery can link to that trace;
- a span per delivery attempt (:meth:`Telemetry.attempt`): one claimed batch sent to one
  vendor, with its size, attempt number, outcome, HTTP status, and a link to the trace of
  each event's ``track()``. The span is current while the batch is sent, so OpenTelemetry's
  httpx instrumentation (the requests go through httpx) nests its client spans under it;
- metrics per vendor (attribute ``postback.vendor``): events tracked, delivered, retried,
  skipped and dead-lettered (observable counters read from the lanes' own counters: nothing
  is added to ``track()``), delivery duration (a histogram), queue depth and age of the oldest
  queued event (observable gauges, reported by the process that delivers);
- :func:`httpx_request_hook`, for OpenTelemetry's httpx instrumentation: a delivery's client
  span keeps the names of its URL's query, not their values (X's API takes hashed
  identifiers and the user's IP address there).

As libraries instrumented natively do, postback depends on ``opentelemetry-api`` only (the
``postback[otel]`` extra), takes its tracer and meter from the global providers whenever they
change, and does nothing when the application configured no SDK: no span is started, no
instrument is created, and ``track()`` pays one look at the current span (see
docs/how-to/opentelemetry.md for the figures). Without ``opentelemetry-api`` installed every
function here is a no-op. Nothing is configured in postback's own settings.
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from postback.encryption import open_payload

if TYPE_CHECKING:
    from postback.delivery.engine import DeliveryEngine
    from postback.delivery.lanes import Lane
    from postback.delivery.queue import Claimed, QueueDepth
    from postback.delivery.settle import Verdict
    from postback.delivery.stats import VendorStats
    from postback.skips import SkipLedger

try:
    from opentelemetry import metrics, trace
    from opentelemetry.context import Context

    #: Whether ``opentelemetry-api`` is installed (the ``postback[otel]`` extra).
    HAVE_API = True
except ImportError:  # pragma: no cover - the otel extra is not installed
    HAVE_API = False

__all__ = [
    "DELIVERY_EXTENSION",
    "HAVE_API",
    "SCOPE",
    "Attempt",
    "carried",
    "http_status",
    "httpx_request_hook",
    "register",
    "retire",
    "sdk_configured",
    "stamp",
    "telemetry",
    "writer_context",
]

#: The instrumentation scope postback's spans and metrics come from.
SCOPE = "postback"
_PREFIX = b',"_traceparent":"'
_SUFFIX_LEN = len(_PREFIX) + 55 + 2  # the prefix, "00-<32>-<16>-<2>", the closing '"}'
MAX_LINKS = 128  # the SDK's default span link limit


def _version() -> str:
    try:
        return importlib.metadata.version("postback")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from source
        return "0"


# --- trace context through the queue ------------------------------------------------------------


def _context_var() -> Any:
    """The ContextVar holding OpenTelemetry's current context, when the API keeps it in the
    standard runtime context (else None: :func:`stamp` then always asks the API)."""
    try:
        from opentelemetry import context as otel_context
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    except ImportError:  # pragma: no cover - an API without that module
        return None
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    return getattr(runtime, "_current_context", None)


if HAVE_API:
    _current_span = trace.get_current_span
    #: OpenTelemetry's current context; empty (nothing attached: no span, no baggage) in an
    #: application that never started a span, where stamp() then reads nothing else.
    _current_context = _context_var()
    _no_context = _current_context is None

    def stamp(payload: bytes) -> bytes:
        """``payload`` (an event's stored JSON object) with the current span's trace context
        appended as ``"_traceparent"`` (W3C form), or unchanged when no span is active."""
        if not _no_context and not _current_context.get():
            return payload  # an empty context holds no span
        ctx = _current_span().get_span_context()
        if not ctx.is_valid:
            return payload
        return b'%s,"_traceparent":"00-%032x-%016x-%02x"}' % (
            payload[:-1],
            ctx.trace_id,
            ctx.span_id,
            ctx.trace_flags,
        )

    def carried(payload: bytes) -> trace.SpanContext | None:
        """The trace context :func:`stamp` stored with an event, or None."""
        if payload[-_SUFFIX_LEN : -_SUFFIX_LEN + len(_PREFIX)] != _PREFIX:
            return None
        tp = payload[-57:-2]
        try:
            ctx = trace.SpanContext(
                int(tp[3:35], 16),
                int(tp[36:52], 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(int(tp[53:55], 16)),
            )
        except ValueError:
            return None
        return ctx if ctx.is_valid else None

    def writer_context() -> bool:
        """Whether a span is active here: the caller should carry its context to the thread
        that stores the event (``AsyncTracker``'s writer)."""
        return bool(_current_span().get_span_context().is_valid)

    def http_status(status: int) -> None:
        """Note a vendor's HTTP status on the delivery span, if one is recording."""
        span = _current_span()
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)

else:  # pragma: no cover - the otel extra is not installed

    def stamp(payload: bytes) -> bytes:
        return payload

    def carried(payload: bytes) -> trace.SpanContext | None:
        return None

    def writer_context() -> bool:
        return False

    def http_status(status: int) -> None:
        return None


# --- providers ------------------------------------------------------------------------------------


def _is_noop(provider: object) -> bool:
    """Whether ``provider`` is the API's own (no SDK configured behind it)."""
    mod = type(provider).__module__
    return mod.startswith(("opentelemetry.trace", "opentelemetry.metrics"))


def sdk_configured() -> bool:
    """Whether the application set a tracer or meter provider (an SDK) globally."""
    if not HAVE_API:
        return False
    return not (_is_noop(trace.get_tracer_provider()) and _is_noop(metrics.get_meter_provider()))


# --- httpx's client spans -----------------------------------------------------------------------

#: The ``httpx.Request.extensions`` key that marks a request postback sends to a vendor (its
#: value is the vendor's name).
DELIVERY_EXTENSION = "postback.vendor"
#: What a query value is replaced with in a delivery's client span.
REDACTED = "REDACTED"


def httpx_request_hook(span: Any, request: Any) -> None:
    """A ``request_hook`` for OpenTelemetry's httpx instrumentation::

        HTTPXClientInstrumentor().instrument(request_hook=postback.telemetry.httpx_request_hook)

    The instrumentation records every request's whole URL (``url.full``, or ``http.url``).
    For a request postback sends to a vendor, the span gets the URL with each query value
    replaced by ``REDACTED`` (the names stay, for debugging): X's API takes its fields in the
    query string, hashed identifiers and the user's IP address among them, which would
    otherwise be kept by every trace backend. The span also gets ``postback.vendor``. Other
    requests (the application's own) are left as they are.
    """
    extensions = getattr(request, "extensions", None)
    vendor = extensions.get(DELIVERY_EXTENSION) if extensions else None
    if vendor is None or not span.is_recording():
        return
    span.set_attribute(DELIVERY_EXTENSION, vendor)
    url = request.url
    query = url.query.decode("ascii", "replace") if isinstance(url.query, bytes) else url.query
    if not query:
        return
    # A part without "=" is a value, not a name. The URL before the query is the one the
    # instrumentation recorded: it removed any user name and password from it.
    names = "&".join(
        f"{name}={REDACTED}" if sep else REDACTED
        for name, sep, _ in (part.partition("=") for part in query.split("&") if part)
    )
    recorded = getattr(span, "attributes", None) or {}
    for key in ("url.full", "http.url"):
        value = recorded.get(key)
        if isinstance(value, str):
            span.set_attribute(key, f"{value.partition('?')[0]}?{names}")


# --- per-delivery-attempt spans -------------------------------------------------------------------


class Attempt:
    """One delivery attempt of a batch: its span (current while it is open) and its
    duration. Used as a context manager around sending; :meth:`settled` adds the outcome."""

    __slots__ = ("_histogram", "_scope", "_span", "_vendor")

    def __init__(self, span: Any, histogram: Any, vendor: str) -> None:
        self._span = span
        self._histogram = histogram
        self._vendor = vendor
        self._scope: Any = None

    def __enter__(self) -> Attempt:
        if self._span is not None:
            self._scope = trace.use_span(self._span, end_on_exit=True, record_exception=True)
            self._scope.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._scope is not None:
            self._scope.__exit__(*exc)

    def settled(self, verdicts: Sequence[Verdict], seconds: float) -> None:
        """The batch's verdicts (one per event, in order) and how long sending took."""
        if self._histogram is not None:
            self._histogram.record(seconds, {"postback.vendor": self._vendor})
        span = self._span
        if span is None:
            return
        counts: dict[str, int] = {}
        reason = None
        for v in verdicts:
            kind = _outcome_name(v.reported)
            counts[kind] = counts.get(kind, 0) + 1
            if reason is None and kind in ("dead_lettered", "retried", "halted"):
                reason = getattr(v.reported, "reason", None)
        span.set_attribute("postback.outcome", next(iter(counts)) if len(counts) == 1 else "mixed")
        for kind, n in counts.items():
            span.set_attribute(f"postback.outcome.{kind}", n)
        if reason is not None and "delivered" not in counts:
            span.set_status(trace.StatusCode.ERROR, str(reason)[:200])


_NOOP_ATTEMPT = Attempt(None, None, "")


def _outcome_name(reported: object) -> str:
    from postback.outcomes import DeadLettered, Delivered, Halt, Retry, Skipped

    if isinstance(reported, Delivered):
        return "delivered"
    if isinstance(reported, Retry):
        return "retried"
    if isinstance(reported, DeadLettered):
        return "dead_lettered"
    if isinstance(reported, Skipped):
        return "skipped"
    if isinstance(reported, Halt):
        return "halted"
    return type(reported).__name__.lower()


# --- the instruments, per pair of global providers ------------------------------------------------


class Telemetry:
    """The tracer and instruments made from one pair of global providers."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        version = _version()
        self.tracer = (
            None if _is_noop(tracer_provider) else tracer_provider.get_tracer(SCOPE, version)
        )
        self.duration = None
        if not _is_noop(meter_provider):
            meter = meter_provider.get_meter(SCOPE, version)
            self.duration = meter.create_histogram(
                "postback.delivery.duration",
                unit="s",
                description="Time to send one batch to a vendor and read its answer",
                # Seconds, not the SDK's default buckets (made for milliseconds).
                explicit_bucket_boundaries_advisory=[
                    0.005,
                    0.01,
                    0.025,
                    0.05,
                    0.1,
                    0.25,
                    0.5,
                    1.0,
                    2.5,
                    5.0,
                    10.0,
                    30.0,
                ],
            )
            for field, name, what in (
                ("tracked", "postback.events.tracked", "Events queued for the vendor"),
                ("delivered", "postback.events.delivered", "Events the vendor accepted"),
                ("retried", "postback.events.retried", "Delivery attempts to be retried"),
                ("skipped", "postback.events.skipped", "Events the vendor could not use"),
                ("dead", "postback.events.dead_lettered", "Events put in the dead letters"),
            ):
                meter.create_observable_counter(
                    name, [_counter_callback(field)], unit="{event}", description=what
                )
            meter.create_observable_gauge(
                "postback.queue.depth",
                [_depth_callback],
                unit="{event}",
                description="Events waiting for the vendor (new, due, backing off, in flight)",
            )
            meter.create_observable_gauge(
                "postback.queue.oldest_age",
                [_oldest_callback],
                unit="s",
                description="Age of the oldest event waiting for the vendor",
            )

    def attempt(self, lane: Lane, batch: Sequence[tuple[Claimed, Any]]) -> Attempt:
        """The span (and duration) of sending ``batch`` to ``lane``'s vendor once."""
        if self.tracer is None:
            return Attempt(None, self.duration, lane.name) if self.duration else _NOOP_ATTEMPT
        links: list[trace.Link] = []
        seen: set[int] = set()
        for c, _ in batch:
            ctx = carried(open_payload(c.payload))
            if ctx is not None and ctx.span_id not in seen and len(links) < MAX_LINKS:
                seen.add(ctx.span_id)
                links.append(trace.Link(ctx))
        span = self.tracer.start_span(
            f"postback deliver {lane.name}",
            # The lanes' threads have no context of their own: a root span, linked to the
            # traces that tracked its events (a batch has many), as messaging consumers do.
            context=Context(),
            kind=trace.SpanKind.INTERNAL,
            links=links,
            attributes={
                "postback.vendor": lane.name,
                "postback.batch.size": len(batch),
                "postback.delivery.attempt": max(c.attempts for c, _ in batch) + 1,
            },
        )
        return Attempt(span, self.duration, lane.name)


_lock = threading.RLock()
_state: Telemetry | None = None


def telemetry() -> Telemetry | None:
    """The instruments for the current global providers; None without ``opentelemetry-api``.

    Rebuilt when the application sets other providers (cheap to check: two globals)."""
    global _state
    if not HAVE_API:
        return None
    tp, mp = trace.get_tracer_provider(), metrics.get_meter_provider()
    state = _state
    if state is not None and state.tracer_provider is tp and state.meter_provider is mp:
        return state
    with _lock:
        state = _state
        if state is None or state.tracer_provider is not tp or state.meter_provider is not mp:
            state = _state = Telemetry(tp, mp)
    return state


def attempt(lane: Lane, batch: Sequence[tuple[Claimed, Any]]) -> Attempt:
    """:meth:`Telemetry.attempt` with the current providers (a no-op without an SDK)."""
    state = telemetry()
    return _NOOP_ATTEMPT if state is None else state.attempt(lane, batch)


# --- observable instruments: read the engines of this process -------------------------------------

#: The engines of this process's open trackers, with their skip ledgers.
_engines: weakref.WeakKeyDictionary[DeliveryEngine, SkipLedger | None] = weakref.WeakKeyDictionary()
#: Counts of engines gone (closed and collected), so that the counters never go down.
_retired: dict[tuple[str, str], int] = {}
#: Seconds one count of the queue serves the gauges (both read it in one collection).
DEPTH_TTL = 0.5
_depth_cache: tuple[float, list[tuple[str, QueueDepth, int]]] | None = None
_FIELDS = ("tracked", "delivered", "retried", "skipped", "dead")


def register(engine: DeliveryEngine, skips: SkipLedger | None = None) -> None:
    """Report ``engine``'s counters (and ``skips``, the events its tracker skipped at
    ``track()``) and its queue to the meters, until :func:`retire`."""
    if HAVE_API:
        with _lock:
            _engines[engine] = skips
        telemetry()  # the instruments, now: the meters show the vendors before any delivery


def retire(engine: DeliveryEngine) -> None:
    """``engine``'s tracker closed: keep its counts (counters never go down), forget it."""
    with _lock:
        if engine not in _engines:
            return
        skips = _engines.pop(engine)
        stats = {name: lane.stats for name, lane in engine.lanes.items()}
        for field in _FIELDS:
            for name, n in _counts(stats, skips, field):
                _retired[(field, name)] = _retired.get((field, name), 0) + n


def _counts(
    stats: dict[str, VendorStats], skips: SkipLedger | None, field: str
) -> Iterator[tuple[str, int]]:
    for name, s in stats.items():
        yield name, getattr(s, field)
    if field == "skipped" and skips is not None:
        for name, reasons in skips.totals().items():
            yield name, sum(reasons.values())


def _counter_callback(field: str) -> Any:
    def observe(options: Any) -> Iterator[Any]:
        with _lock:
            totals = {v: n for (f, v), n in _retired.items() if f == field}
            engines = list(_engines.items())
        for engine, skips in engines:
            stats = {name: lane.stats for name, lane in list(engine.lanes.items())}
            for name, n in _counts(stats, skips, field):
                totals[name] = totals.get(name, 0) + n
        return (metrics.Observation(n, {"postback.vendor": v}) for v, n in totals.items())

    return observe


def _depths() -> Iterator[tuple[str, QueueDepth, int]]:
    """``(vendor, depth, now_ms)`` from each engine whose lanes run here (the queue's gauges
    come from the process that delivers), counted once for both gauges of a collection."""
    global _depth_cache
    now = time.monotonic()
    cached = _depth_cache
    if cached is not None and now - cached[0] < DEPTH_TTL:
        return iter(cached[1])
    with _lock:
        engines = [e for e in _engines if e.delivering and e.lanes]
    rows = []
    for engine in engines:
        now_ms = int(time.time() * 1000)
        for vendor, d in engine.queue.depth(list(engine.lanes), now_ms).items():
            rows.append((vendor, d, now_ms))
    _depth_cache = (now, rows)
    return iter(rows)


def _depth_callback(options: Any) -> Iterator[Any]:
    for vendor, d, _ in _depths():
        yield metrics.Observation(d.pending, {"postback.vendor": vendor})


def _oldest_callback(options: Any) -> Iterator[Any]:
    for vendor, d, now_ms in _depths():
        if d.oldest_ms is None and d.pending:
            continue  # a backend that cannot tell: no figure rather than a wrong one
        age = 0.0 if d.oldest_ms is None else max(now_ms - d.oldest_ms, 0) / 1000.0
        yield metrics.Observation(age, {"postback.vendor": vendor})

"""OpenTelemetry, natively (postback.telemetry): spans per delivery attempt linked to the trace
that tracked the event, per-vendor metrics, a no-op without an SDK; threads, the delivery child
process and AsyncTracker. Read with the SDK's in-memory span exporter and metric reader, set as
the global providers the way an application sets them."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from postback import AsyncTracker, Tracker, telemetry
from postback.delivery.memory import MemoryQueue
from postback.destination import Prepared
from postback.event_codec import dumps_event, loads_event
from postback.events import make_event
from postback.hookspecs import hookimpl
from postback.sandbox import Sandbox
from postback.testing.example import ExampleDestination
from postback.tracker import auto_workers

pytestmark = pytest.mark.timeout(120)
DELIVER = "postback deliver example"


def _reset_globals() -> None:
    """Forget the global providers (the API sets them once per process; tests set their own)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None


def _forget_other_trackers() -> None:
    """The counters are per process: start from this test's trackers only."""
    gc.collect()
    telemetry._engines.clear()
    telemetry._retired.clear()
    telemetry._depth_cache = None


@attrs.define
class Otel:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer: trace.Tracer

    def deliveries(self) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == DELIVER]

    def points(self, name: str) -> dict[str, Any]:
        """The data points of metric ``name`` (postback's scope), by vendor."""
        data = self.reader.get_metrics_data()
        out: dict[str, Any] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                if sm.scope.name != "postback":
                    continue
                for m in sm.metrics:
                    if m.name == name:
                        for p in m.data.data_points:
                            out[p.attributes["postback.vendor"]] = p
        return out

    def values(self, name: str) -> dict[str, Any]:
        return {v: p.value for v, p in self.points(name).items()}


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    _reset_globals()
    _forget_other_trackers()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    try:
        yield Otel(exporter, reader, tracer_provider.get_tracer("the-app"))
    finally:
        _reset_globals()
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.fixture
def no_sdk() -> Iterator[None]:
    _reset_globals()
    yield
    _reset_globals()


def _event_payload() -> bytes:
    return dumps_event(make_event("sign_up", user={"email": "a@b.co"}, event_id="e1"))


# --- trace context through the queue ----------------------------------------------------------


def test_the_trace_context_goes_with_the_event_only_when_a_span_is_active(otel: Otel) -> None:
    payload = _event_payload()
    assert telemetry.stamp(payload) is payload  # no span: the stored bytes are untouched
    assert telemetry.carried(payload) is None
    with otel.tracer.start_as_current_span("request") as span:
        stamped = telemetry.stamp(payload)
    ctx = telemetry.carried(stamped)
    assert ctx is not None and ctx.is_remote
    assert (ctx.trace_id, ctx.span_id) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
    )
    assert json.loads(stamped)["_traceparent"].startswith("00-")
    assert loads_event(stamped) == loads_event(payload)  # the event reads back the same


def test_without_an_sdk_nothing_is_stamped_started_or_measured(no_sdk: None) -> None:
    payload = _event_payload()
    with trace.get_tracer("the-app").start_as_current_span("request"):  # the API's no-op
        assert telemetry.stamp(payload) is payload
    state = telemetry.telemetry()
    assert state is not None and state.tracer is None and state.duration is None
    assert not telemetry.sdk_configured()


def test_a_span_context_attached_without_an_sdk_is_stamped(no_sdk: None) -> None:
    """The empty-context fast path never hides a span: one attached with the API alone (a
    context propagated from a request, say) is carried; baggage alone is not a span."""
    from opentelemetry import baggage
    from opentelemetry import context as otel_context

    payload = _event_payload()
    remote = trace.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=trace.TraceFlags(1))
    with trace.use_span(trace.NonRecordingSpan(remote)):
        stamped = telemetry.stamp(payload)
    ctx = telemetry.carried(stamped)
    assert ctx is not None and (ctx.trace_id, ctx.span_id) == (0xABC, 0xDEF)
    token = otel_context.attach(baggage.set_baggage("tenant", "t1"))
    try:
        assert telemetry.stamp(payload) is payload
    finally:
        otel_context.detach(token)
    assert telemetry.stamp(payload) is payload


def test_without_an_sdk_delivery_works_and_starts_no_span(
    no_sdk: None, make_tracker: Callable[..., Tracker]
) -> None:
    t = make_tracker()
    t.track("sign_up", user={"email": "a@b.co"})
    assert t.flush(timeout=10)["example"].delivered == 1
    assert telemetry.attempt(t.engine.lanes["example"], []) is telemetry._NOOP_ATTEMPT


# --- spans --------------------------------------------------------------------------------------


def test_a_span_per_delivery_attempt_links_to_the_trace_that_tracked_the_event(
    otel: Otel, make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(vendor={"batch_size": 10, "linger": 0.2})
    with otel.tracer.start_as_current_span("POST /checkout") as request:
        t.track("sign_up", user={"email": "a@b.co"}, event_id="in-a-request")
    t.track("sign_up", user={"email": "b@b.co"}, event_id="outside")
    assert t.flush(timeout=10)["example"].delivered == 2
    [span] = otel.deliveries()
    assert span.attributes is not None
    assert span.attributes["postback.vendor"] == "example"
    assert span.attributes["postback.batch.size"] == 2
    assert span.attributes["postback.delivery.attempt"] == 1
    assert span.attributes["postback.outcome"] == "delivered"
    assert span.attributes["postback.outcome.delivered"] == 2
    assert span.attributes["http.response.status_code"] == 200
    assert span.parent is None  # a root span of its own, linked to the tracking trace
    ctx = request.get_span_context()
    assert [(ln.context.trace_id, ln.context.span_id) for ln in span.links] == [
        (ctx.trace_id, ctx.span_id)
    ]
    # The vendor never sees the carried context.
    assert all("_traceparent" not in json.dumps(r) for r in sandbox.received("example"))


def test_retried_and_dead_lettered_attempts_say_so(
    otel: Otel, make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(vendor={"batch_size": 1})
    sandbox.set_fault("example", status=503, count=1)
    with otel.tracer.start_as_current_span("request"):
        t.track("sign_up", user={"email": "a@b.co"}, event_id="retried")
    assert t.flush(timeout=10)["example"].delivered == 1
    first, second = sorted(otel.deliveries(), key=lambda s: s.start_time or 0)
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["postback.outcome"] == "retried"
    assert first.attributes["http.response.status_code"] == 503
    assert first.status.status_code is trace.StatusCode.ERROR
    assert (first.attributes["postback.delivery.attempt"], second.attributes["postback.delivery.attempt"]) == (1, 2)  # fmt: skip
    assert second.attributes["postback.outcome"] == "delivered"
    assert first.links[0].context.trace_id == second.links[0].context.trace_id  # both attempts

    otel.spans.clear()
    sandbox.set_fault("example", status=422, count=1)
    t.track("sign_up", user={"email": "c@b.co"}, event_id="refused")
    assert t.flush(timeout=10)["example"].dead == 1
    [span] = otel.deliveries()
    assert span.attributes is not None
    assert span.attributes["postback.outcome"] == "dead_lettered"
    assert span.attributes["http.response.status_code"] == 422
    assert span.links == ()  # tracked outside any span: nothing to link


def test_httpx_instrumentation_nests_its_client_span_under_the_delivery_span(
    otel: Otel, make_tracker: Callable[..., Tracker]
) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument()  # the global provider, as an app does
    try:
        t = make_tracker()
        t.track("sign_up", user={"email": "a@b.co"})
        assert t.flush(timeout=10)["example"].delivered == 1
    finally:
        instrumentor.uninstrument()
    [deliver] = otel.deliveries()
    clients = [s for s in otel.spans.get_finished_spans() if s.kind is trace.SpanKind.CLIENT]
    assert len(clients) == 1 and clients[0].parent is not None
    assert clients[0].parent.span_id == deliver.context.span_id


class _QueriedDestination(ExampleDestination):
    """The example vendor, with personal data in its URL's query (as X's API takes it)."""

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        request = super().build_request(batch)
        request.url = request.url.copy_merge_params(
            {"device_ip_address": "203.0.113.7", "hashed_id": "c2VjcmV0LWlk"}
        )
        return request


class _Queried:
    @staticmethod
    @hookimpl
    def postback_register_destinations(register: Callable[[type[Any]], None]) -> None:
        register(_QueriedDestination)


@pytest.mark.parametrize("hooked", [False, True])
def test_the_httpx_request_hook_keeps_a_deliverys_query_values_out_of_the_client_span(
    otel: Otel, sandbox: Sandbox, tmp_path: Path, hooked: bool
) -> None:
    """OpenTelemetry's httpx instrumentation records the whole URL of a request; with
    ``request_hook=telemetry.httpx_request_hook`` a delivery's query values are replaced
    (the names stay) and the span names the vendor. The app's own requests keep theirs."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(request_hook=telemetry.httpx_request_hook if hooked else None)
    try:
        t = Tracker.from_config(
            {
                "postback": {"queue": f"sqlite:///{tmp_path}/q.db", "workers": True},
                "vendors": {"example": sandbox.vendor_config("example")},
            },
            plugins=[_Queried()],
            load_entry_points=False,
        )
        try:
            t.track("sign_up", user={"email": "a@b.co"})
            assert t.flush(timeout=10)["example"].delivered == 1
        finally:
            t.close(timeout=1)
        with httpx.Client() as client:  # the app's own request, with a query of its own
            client.get(f"{sandbox.base_url('example')}/health?ip=198.51.100.9")
    finally:
        instrumentor.uninstrument()
    spans = [s for s in otel.spans.get_finished_spans() if s.kind is trace.SpanKind.CLIENT]
    urls = [
        str((s.attributes or {}).get("url.full") or (s.attributes or {}).get("http.url"))
        for s in spans
    ]
    delivery, own = urls
    assert "ip=198.51.100.9" in own  # not ours to change
    if not hooked:
        assert "device_ip_address=203.0.113.7" in delivery  # what the hook is for
        return
    assert "203.0.113.7" not in delivery and "c2VjcmV0LWlk" not in delivery, delivery
    assert "device_ip_address=REDACTED" in delivery and "/v1/events?" in delivery, delivery
    assert (spans[0].attributes or {}).get("postback.vendor") == "example"


def test_async_tracker_carries_the_context_to_its_writer_thread(
    otel: Otel, tmp_path: Path, sandbox: Sandbox
) -> None:
    cfg = {
        # "full": each put fsyncs, so AsyncTracker writes on its writer thread, not the loop
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db", "sqlite_synchronous": "full"},
        "vendors": {"example": sandbox.vendor_config("example")},
    }
    import postback.testing.example as example

    async def run() -> trace.SpanContext:
        async with AsyncTracker.from_config(cfg, plugins=[example], load_entry_points=False) as at:
            assert not at._inline
            with otel.tracer.start_as_current_span("async request") as span:
                await at.track("sign_up", user={"email": "a@b.co"})
            report = await at.flush(timeout=10)
            assert report["example"].delivered == 1
            return span.get_span_context()

    ctx = asyncio.run(run())
    [span] = otel.deliveries()
    assert [ln.context.span_id for ln in span.links] == [ctx.span_id]


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_per_vendor(
    otel: Otel, make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(vendor={"batch_size": 1})
    sandbox.set_fault("example", status=503, count=1)
    for i in range(3):
        t.track("sign_up", user={"email": f"u{i}@x.co"})
    assert t.flush(timeout=10)["example"].delivered == 3
    sandbox.set_fault("example", status=422, count=1)
    t.track("sign_up", user={"email": "dead@x.co"})
    t.track("sign_up", user={"phone": "+14155550100"})  # no email: example skips it at track()
    t.flush(timeout=10)
    assert otel.values("postback.events.tracked") == {"example": 4}
    assert otel.values("postback.events.delivered") == {"example": 3}
    assert otel.values("postback.events.retried") == {"example": 1}
    assert otel.values("postback.events.dead_lettered") == {"example": 1}
    assert otel.values("postback.events.skipped") == {"example": 1}
    duration = otel.points("postback.delivery.duration")["example"]
    assert duration.count == 5 and duration.sum > 0  # one per request sent
    assert otel.values("postback.queue.depth") == {"example": 0}
    assert otel.values("postback.queue.oldest_age") == {"example": 0.0}


def test_queue_depth_and_oldest_age_while_a_vendor_is_halted(
    otel: Otel, make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker()
    sandbox.set_fault("example", status=401)  # the key is refused: the lane pauses, keeps all
    for i in range(3):
        t.track("sign_up", user={"email": f"u{i}@x.co"})
    t.flush(timeout=1)
    time.sleep(0.05)
    assert otel.values("postback.queue.depth") == {"example": 3}
    assert otel.values("postback.queue.oldest_age")["example"] >= 0.05


def test_counters_never_go_down_when_a_tracker_goes(
    otel: Otel, tmp_path: Path, sandbox: Sandbox
) -> None:
    import postback.testing.example as example

    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db"},
        "vendors": {"example": sandbox.vendor_config("example")},
    }
    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    t.track("sign_up", user={"email": "a@b.co"})
    t.flush(timeout=10)
    t.close()
    assert not telemetry._engines  # it is gone, and its counts stay
    assert otel.values("postback.events.delivered") == {"example": 1}
    t2 = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    t2.track("sign_up", user={"email": "b@b.co"})
    t2.flush(timeout=10)
    assert otel.values("postback.events.delivered") == {"example": 2}
    t2.close()


def test_a_memory_queue_tells_the_age_of_its_oldest_event() -> None:
    q = MemoryQueue()
    assert q.depth(["v"], 0)["v"].oldest_ms is None
    q.put("a", "purchase", 1_000, ["v"], b"{}")
    q.put("b", "purchase", 2_000, ["v"], b"{}")
    assert q.depth(["v"], 3_000)["v"].oldest_ms == 1_000
    assert len(q.claim("v", 10, 3_000)) == 2
    assert q.depth(["v"], 3_000)["v"].oldest_ms == 1_000  # in flight still counts


def test_auto_workers_keeps_delivery_in_the_app_when_it_set_an_sdk(
    otel: Otel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import postback.testing.example as example
    from postback.config import build_config
    from postback.plugins import PluginHost

    host = PluginHost([example], load_entry_points=False)
    cfg = build_config(
        {"postback": {"queue": f"sqlite:///{tmp_path}/q.db"}, "vendors": {"example": {"api_key": "k"}}},
        host.destinations,
    )  # fmt: skip
    monkeypatch.delitem(sys.modules, "pytest")
    assert auto_workers(cfg, host) is True
    _reset_globals()
    assert auto_workers(cfg, host) == "process"


# --- the delivery child process -----------------------------------------------------------------

SITECUSTOMIZE = """
import json, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

class FileExporter(SpanExporter):
    def export(self, spans):
        with open(os.environ["POSTBACK_TEST_SPANS"], "a") as f:
            for s in spans:
                f.write(json.dumps({
                    "name": s.name,
                    "pid": os.getpid(),
                    "attributes": dict(s.attributes),
                    "links": [[l.context.trace_id, l.context.span_id] for l in s.links],
                }) + "\\n")
        return SpanExportResult.SUCCESS

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
trace.set_tracer_provider(provider)
"""


def test_the_delivery_child_process_exports_spans_linked_to_the_parent_trace(
    otel: Otel,
    make_tracker: Callable[..., Tracker],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A child set up with the SDK, as `opentelemetry-instrument` sets up every Python process
    # it starts (through sitecustomize on PYTHONPATH, which the child inherits).
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    out = tmp_path / "spans.jsonl"
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("POSTBACK_TEST_SPANS", str(out))
    t = make_tracker(core={"workers": "process"})
    with otel.tracer.start_as_current_span("POST /signup") as request:
        t.track("sign_up", user={"email": "a@b.co"})
    assert t.flush(timeout=30)["example"].delivered == 1
    spans = [json.loads(line) for line in out.read_text().splitlines()]
    [span] = [s for s in spans if s["name"] == DELIVER]
    assert span["pid"] == t.deliverer.process.pid
    ctx = request.get_span_context()
    assert span["links"] == [[ctx.trace_id, ctx.span_id]]
    assert span["attributes"]["postback.outcome"] == "delivered"
    assert otel.deliveries() == []  # the parent delivered nothing itself


def test_a_sqlite_queue_tells_the_age_of_its_oldest_event(tmp_path: Path) -> None:
    from postback.delivery.queue import Settlement
    from postback.delivery.registry import open_queue

    q = open_queue(f"sqlite:///{tmp_path}/q.db")
    try:
        assert q.acquire_delivery()
        q.put("a", "purchase", 1_000, ["v"], b"{}")
        q.put("b", "purchase", 2_000, ["v"], b"{}")
        assert q.depth(["v"], 3_000)["v"].oldest_ms == 1_000  # unread
        [first] = q.claim("v", 1, 3_000)
        assert q.depth(["v"], 3_000)["v"].oldest_ms == 1_000  # in flight
        q.settle("v", [Settlement(first, "retry", 60_000, "busy", 1)], 3_000)
        [second] = q.claim("v", 1, 3_000)
        assert second.event_id == "b"
        q.settle("v", [Settlement(second, "done", 0, None, 1)], 3_000)
        assert q.depth(["v"], 3_000)["v"].oldest_ms == 1_000  # waiting to be retried
    finally:
        q.release_delivery()
        q.close()


@pytest.mark.parametrize(
    ("url", "hidden", "kept"),
    [
        # What the instrumentation already removed (a user name and password) stays removed.
        ("https://user:s3cret-pw@vendor.example/v1/events?a=1", "s3cret-pw", "a=REDACTED"),
        # A value without a name is a value: it is not shown as the name of one.
        ("https://vendor.example/v1/events?c2VjcmV0LWlk&a=1", "c2VjcmV0LWlk", "a=REDACTED"),
    ],
)
def test_the_httpx_request_hook_hides_what_the_instrumentation_hid_and_bare_values(
    otel: Otel, url: str, hidden: str, kept: str
) -> None:
    from opentelemetry.instrumentation.httpx import RequestInfo
    from opentelemetry.util.http import redact_url

    request = httpx.Request("POST", url, extensions={telemetry.DELIVERY_EXTENSION: "example"})
    info = RequestInfo(b"POST", request.url, request.headers, request.stream, request.extensions)
    recorded = {"url.full": redact_url(str(request.url)), "http.url": redact_url(str(request.url))}
    with otel.tracer.start_as_current_span(
        "POST", kind=trace.SpanKind.CLIENT, attributes=recorded
    ) as span:
        telemetry.httpx_request_hook(span, info)
    (finished,) = otel.spans.get_finished_spans()
    for key in ("url.full", "http.url"):
        shown = str((finished.attributes or {})[key])
        assert hidden not in shown and kept in shown, shown
        assert shown.startswith("https://") and "/v1/events?" in shown, shown

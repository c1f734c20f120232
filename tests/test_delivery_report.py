"""What the engine tells postback_on_delivery and the stats, attempt by attempt; plugin bugs;
hostile Retry-After; exit bounded by exit_timeout; respx and OpenTelemetry see deliveries."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
import orjson
import pytest
import respx

import postback.testing.example as example
from postback import (
    DeadLettered,
    Delivered,
    Destination,
    Halt,
    Prepared,
    Rejected,
    Retry,
    SkipEvent,
    Skipped,
    Tracker,
    hookimpl,
)
from postback.destination import new_prepared
from postback.sandbox import Sandbox
from postback.testing.example import ExampleDestination


class Recorder:
    """An in-process plugin that records every postback_on_delivery call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, Any]] = []
        self._lock = threading.Lock()

    @hookimpl
    def postback_on_delivery(
        self, vendor: str, event: Any, outcome: Any, attempt: int, latency: float
    ) -> None:
        with self._lock:
            self.calls.append((event.event_id, type(outcome).__name__, attempt, outcome))

    def of(self, event_id: str) -> list[tuple[str, int]]:
        return [(kind, attempt) for eid, kind, attempt, _ in self.calls if eid == event_id]

    def count(self, kind: str) -> int:
        return sum(1 for _, k, _, _ in self.calls if k == kind)


def agree(recorder: Recorder, stats: dict[str, Any]) -> None:
    """The stats count exactly the hook's calls of each kind."""
    assert stats["delivered"] == recorder.count("Delivered")
    assert stats["retried"] == recorder.count("Retry")
    assert stats["dead"] == recorder.count("DeadLettered")
    assert stats["skipped"] == recorder.count("Skipped")


def test_attempt_numbers_up_to_delivery(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", status=503, count=2)
    rec = Recorder()
    t = make_tracker(plugins=[rec])
    eid = t.track("sign_up", user={"email": "a@x.co"})
    assert t.flush(timeout=10).complete
    assert rec.of(eid) == [("Retry", 1), ("Retry", 2), ("Delivered", 3)]
    agree(rec, t.stats()["example"])


def test_retries_that_run_out_are_one_dead_letter_with_the_last_retry_as_cause(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", status=503)
    rec = Recorder()
    t = make_tracker(
        plugins=[rec],
        vendor={"retry": {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.02}},
    )
    eid = t.track("sign_up", user={"email": "a@x.co"})
    assert t.flush(timeout=10).complete
    assert rec.of(eid) == [("Retry", 1), ("Retry", 2), ("DeadLettered", 3)]
    dead = rec.calls[-1][3]
    assert isinstance(dead, DeadLettered) and isinstance(dead.cause, Retry)
    assert dead.reason.startswith("gave up after 3 attempts: HTTP 503")
    stats = t.stats()["example"]
    agree(rec, stats)
    assert (stats["dead"], stats["retried"]) == (1, 2)


def test_a_rejected_event_is_reported_dead_lettered_with_the_rejection(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", status=422, count=1)
    rec = Recorder()
    t = make_tracker(plugins=[rec])
    eid = t.track("sign_up", user={"email": "a@x.co"})
    assert t.flush(timeout=10).complete
    assert rec.of(eid) == [("DeadLettered", 1)]
    dead = rec.calls[-1][3]
    assert isinstance(dead.cause, Rejected) and dead.reason == "HTTP 422"
    agree(rec, t.stats()["example"])


def test_control_characters_in_a_vendors_answer_are_written_out_in_logs_and_dead_letters(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A vendor's answer quoted in a reason went raw into the log line and the stored dead
    letter: ESC sequences clear or retitle the terminal that shows the log, U+202E reverses
    the text after it. They are written out (``\\u001b``) wherever the reason goes."""
    hostile = "bad \x1b[2J\x1b]0;pwned\x07 \x1b[31mRED \u202eevil"
    sandbox.set_fault("example", status=400, count=1, body=hostile)
    rec = Recorder()
    t = make_tracker(plugins=[rec])
    with caplog.at_level(logging.INFO, logger="postback"):
        eid = t.track("sign_up", user={"email": "a@x.co"})
        assert t.flush(timeout=10).complete
    dead = rec.calls[-1][3]
    assert rec.of(eid) == [("DeadLettered", 1)]
    (letter,) = t.queue.dead_letters(None, None, 10)
    for text in (caplog.text, dead.reason, letter.reason):
        assert "pwned" in text or "bad" in text, text
        assert not any(c in text for c in "\x1b\x07\u202e"), repr(text)
    assert "\\u001b[2J" in letter.reason and "\\u202eevil" in letter.reason


class SkipTests:
    """Skips events whose email starts with "skip" (as a consent filter would)."""

    @hookimpl(wrapper=True)
    def postback_transform(self, event: Any, destination: Destination) -> Any:
        if event.user.email and event.user.email.startswith("skip"):
            raise SkipEvent("no consent for ads")
        return (yield)


def test_a_skip_from_transform_is_reported_skipped(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    rec = Recorder()
    t = make_tracker(plugins=[rec, SkipTests()])
    skipped = t.track("sign_up", user={"email": "skip@x.co"})
    sent = t.track("sign_up", user={"email": "a@x.co"})
    assert t.flush(timeout=10).complete
    assert rec.of(skipped) == [("Skipped", 1)] and rec.of(sent) == [("Delivered", 1)]
    outcome = next(o for eid, _, _, o in rec.calls if eid == skipped)
    assert outcome == Skipped("no consent for ads")
    agree(rec, t.stats()["example"])


class BlankSkips:
    """Raises SkipEvent with a blank message (a plugin author's slip)."""

    @hookimpl(wrapper=True)
    def postback_transform(self, event: Any, destination: Destination) -> Any:
        if event.user.email:
            raise SkipEvent("   ")
        return (yield)


def test_a_skip_without_a_reason_is_reported_under_its_type_not_a_blank(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    rec = Recorder()
    t = make_tracker(plugins=[rec, BlankSkips()])
    eid = t.track("sign_up", user={"email": "a@x.co"})
    assert t.flush(timeout=10).complete
    assert next(o for e, _, _, o in rec.calls if e == eid) == Skipped("SkipEvent")
    agree(rec, t.stats()["example"])


def test_halted_attempts_are_reported_and_not_counted(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    rec = Recorder()
    t = make_tracker(plugins=[rec], vendor={"api_key": "wrong-key-123"})
    eid = t.track("sign_up", user={"email": "a@x.co"})
    report = t.flush(timeout=1)
    assert not report.complete and report["example"].pending == 1
    assert rec.of(eid) == [("Halt", 1)]
    assert isinstance(rec.calls[0][3], Halt)


# --- a plugin's bug --------------------------------------------------------------------------


class BuggyDestination(ExampleDestination):
    """The example vendor, with a bug for events whose email starts with "bug"."""

    name = "buggy"
    max_batch_size = 1

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        if batch[0].event.user.email.startswith("bug-build"):
            return {}["no such key"]  # type: ignore[no-any-return]
        request = super().build_request(batch)
        return httpx.Request(
            "POST",
            str(request.url).replace("/buggy/", "/example/"),
            headers=request.headers,
            content=request.content,
        )

    def parse_response(self, batch: Sequence[Prepared], response: httpx.Response) -> Any:
        if batch[0].event.user.email.startswith("bug-parse"):
            raise ZeroDivisionError(f"division by zero near {self.settings.api_key.reveal()}")
        return super().parse_response(batch, response)


class BuggyPlugin:
    @hookimpl
    def postback_register_destinations(self, register: Callable[[type], None]) -> None:
        register(BuggyDestination)


def test_a_plugins_bug_dead_letters_its_events_and_nothing_else(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    settings = sandbox.vendor_config("example")
    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db"},
        "vendors": {
            "buggy": {**settings, "base_url": settings["base_url"].replace("/example", "/buggy")}
        },
    }
    t = Tracker.from_config(cfg, plugins=[example, BuggyPlugin(), rec], load_entry_points=False)
    try:
        with caplog.at_level(logging.WARNING, logger="postback"):
            build = [t.track("sign_up", user={"email": f"bug-build{i}@x.co"}) for i in range(2)]
            parse = t.track("sign_up", user={"email": "bug-parse@x.co"})
            fine = [t.track("sign_up", user={"email": f"ok{i}@x.co"}) for i in range(3)]
            report = t.flush(timeout=10)
        assert report.complete
        assert report["buggy"].delivered == 3 and report["buggy"].dead == 3
        for eid in build:
            assert rec.of(eid) == [("DeadLettered", 1)]  # at once: no retry of a bug
        reasons = {eid: o.reason for eid, k, _, o in rec.calls if k == "DeadLettered"}
        assert reasons[build[0]] == "plugin error in postback_deliver: KeyError: 'no such key'"
        assert reasons[parse].startswith("plugin error in postback_deliver: ZeroDivisionError")
        assert settings["api_key"] not in reasons[parse] and "***" in reasons[parse]
        assert {eid for eid in fine if rec.of(eid) == [("Delivered", 1)]} == set(fine)
        # The whole traceback once per distinct bug, secrets removed; a line after that.
        assert caplog.text.count("Traceback (most recent call last)") == 2
        assert "build_request" in caplog.text and settings["api_key"] not in caplog.text
        letters = {d.event_id: d.reason for d in t.queue.dead_letters("buggy")}
        assert letters[build[1]] == reasons[build[1]]
    finally:
        t.close(timeout=1)


class NotAnOutcome(ExampleDestination):
    """Answers with the vendor's JSON results (which echo the key) instead of outcomes."""

    name = "buggy"

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        request = super().build_request(batch)
        url = str(request.url).replace("/buggy/", "/example/")
        return httpx.Request("POST", url, headers=request.headers, content=request.content)

    def parse_response(self, batch: Sequence[Prepared], response: httpx.Response) -> Any:
        results = orjson.loads(response.content)["results"]
        return [{**r, "key": self.settings.api_key.reveal()} for r in results]


def test_an_answer_that_is_not_an_outcome_is_the_plugin_s_error_logged_and_redacted(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """parse_response returning something that is not an outcome (the vendor's JSON as is)
    dead-letters the event as a plugin error: logged, naming the step and what to return,
    with secrets removed from the reason (it was an unlogged "unknown outcome {repr}")."""

    class Register:
        @hookimpl
        def postback_register_destinations(self, register: Callable[[type], None]) -> None:
            register(NotAnOutcome)

    rec = Recorder()
    settings = sandbox.vendor_config("example")
    cfg = {
        "postback": {"queue": "memory://"},
        "vendors": {
            "buggy": {**settings, "base_url": settings["base_url"].replace("/example", "/buggy")}
        },
    }
    t = Tracker.from_config(cfg, plugins=[example, Register(), rec], load_entry_points=False)
    try:
        with caplog.at_level(logging.WARNING, logger="postback"):
            eid = t.track("sign_up", user={"email": "a@x.co"})
            report = t.flush(timeout=10)
        assert report["buggy"].dead == 1
        [reason] = [o.reason for e, k, _, o in rec.calls if k == "DeadLettered" and e == eid]
        assert reason.startswith("plugin error in postback_deliver: postback.errors.PluginError")
        assert "parse_response returned a dict for an event" in reason
        assert settings["api_key"] not in reason
        assert "parse_response returned a dict" in caplog.text
        assert settings["api_key"] not in caplog.text
    finally:
        t.close(timeout=1)


def test_a_transform_returning_none_is_the_plugin_s_error_logged(
    make_tracker: Callable[..., Tracker],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A transform that forgot its ``return`` dead-letters the event with a reason saying so
    (it said "no plugin transformed the event", as if the plugin were not installed), and the
    log says it once: nothing was logged."""
    monkeypatch.setattr(ExampleDestination, "transform", lambda self, event: None)
    rec = Recorder()
    t = make_tracker(plugins=[rec])
    with caplog.at_level(logging.WARNING, logger="postback"):
        eid = t.track("sign_up", user={"email": "a@x.co"})
        report = t.flush(timeout=10)
    assert report["example"].dead == 1
    [reason] = [o.reason for e, k, _, o in rec.calls if k == "DeadLettered" and e == eid]
    assert reason.startswith("plugin error in transform: ")
    assert "transform returned None" in reason and "SkipEvent" in reason
    assert "example: a plugin failed in transform" in caplog.text


# --- hostile Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "nan", "-3", "259200"])
def test_a_hostile_retry_after_neither_freezes_nor_parks_the_event(
    value: str, make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", status=429, headers={"retry-after": value})
    rec = Recorder()
    t = make_tracker(
        plugins=[rec],
        vendor={
            "retry": {
                "max_attempts": 4,
                "max_age": 1.0,
                "initial_backoff": 0.05,
                "max_backoff": 0.1,
            }
        },
    )
    eid = t.track("sign_up", user={"email": "a@x.co"})
    started = time.monotonic()
    report = t.flush(timeout=20)
    assert report.complete and report["example"].dead == 1  # within max_age, not days
    assert time.monotonic() - started < 15
    attempts = rec.of(eid)
    assert attempts[-1][0] == "DeadLettered"
    assert [a for _, a in attempts] == list(range(1, len(attempts) + 1))  # every one counted
    for _, kind, _, outcome in rec.calls:
        if kind == "Retry":
            assert 0 <= outcome.after <= 1.0  # bounded by what is left of max_age
    assert t.engine.lanes["example"].paused_until - time.time() <= 60.0


# --- exit ------------------------------------------------------------------------------------


def test_exit_is_bounded_by_exit_timeout_while_a_vendor_never_answers(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import socket, time
        import postback.testing.example as example
        from postback import Tracker

        silent = socket.create_server(("127.0.0.1", 0))  # accepts, reads nothing, never answers
        port = silent.getsockname()[1]
        t = Tracker.from_config(
            {{"postback": {{"queue": "sqlite:///{tmp_path}/q.db", "exit_timeout": 1}},
              "vendors": {{"example": {{"api_key": "k", "base_url": f"http://127.0.0.1:{{port}}",
                                       "timeout": 120}}}}}},
            plugins=[example], load_entry_points=False,
        )
        t.track("sign_up", user={{"email": "a@x.co"}})
        time.sleep(0.5)  # the request is in flight, and will wait 120 s for an answer
        print("exiting", time.monotonic(), flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=100, check=False
    )
    ended = time.monotonic()
    assert proc.returncode == 0, proc.stderr
    said = float(proc.stdout.split()[-1])
    assert ended - said < 10, proc.stderr  # exit_timeout (1 s) and the stop, not 120 s


# --- the ecosystem sees deliveries -----------------------------------------------------------


def test_respx_intercepts_a_delivery_in_an_apps_test(tmp_path: Path) -> None:
    def vendor(request: httpx.Request) -> httpx.Response:
        events = orjson.loads(request.content)["events"]
        return httpx.Response(
            200, json={"results": [{"id": e["id"], "status": "ok"} for e in events]}
        )

    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://vendor.test/v1/events").mock(side_effect=vendor)
        t = Tracker.from_config(
            {
                "postback": {"queue": "memory://"},
                "vendors": {"example": {"api_key": "k", "base_url": "https://vendor.test"}},
            },
            plugins=[example],
            load_entry_points=False,
        )
        try:
            for i in range(3):
                t.track("sign_up", user={"email": f"u{i}@x.co"})
            assert t.flush(timeout=10)["example"].delivered == 3
        finally:
            t.close(timeout=1)
    assert route.called
    sent = [e["id"] for call in route.calls for e in orjson.loads(call.request.content)["events"]]
    assert len(sent) == 3


def test_opentelemetry_httpx_instrumentation_makes_a_client_span_per_request(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        t = make_tracker(vendor={"batch_size": 1})
        for i in range(4):
            t.track("sign_up", user={"email": f"u{i}@x.co"})
        assert t.flush(timeout=10)["example"].delivered == 4
        requests = t.stats()["example"]["requests"]
    finally:
        instrumentor.uninstrument()
    spans = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert len(spans) == requests == 4
    assert {
        s.attributes.get("http.request.method", s.attributes.get("http.method")) for s in spans
    } == {"POST"}


def test_outcomes_the_queue_cannot_take_are_recorded_when_it_can(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postback import QueueError

    rec = Recorder()
    t = make_tracker(plugins=[rec])
    real = t.queue.settle
    failures = {"left": 4}  # Redis restarting, a full disk: the vendor has answered meanwhile

    def flaky(vendor: str, settlements: Any, now_ms: int) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise QueueError("cannot reach the queue")
        real(vendor, settlements, now_ms)

    monkeypatch.setattr(t.queue, "settle", flaky)
    ids = {t.track("sign_up", user={"email": f"u{i}@x.co"}) for i in range(3)}
    report = t.flush(timeout=10)
    assert report.complete and report["example"].delivered == 3
    assert sorted(r["event_id"] for r in sandbox.received("example")) == sorted(ids)  # once
    assert sorted(eid for eid, kind, _, _ in rec.calls if kind == "Delivered") == sorted(ids)


def test_new_prepared_is_a_prepared_like_any_other() -> None:
    """The lanes' fast constructor makes the same frozen value as ``Prepared(...)``."""
    record = {"id": "e1"}
    made = new_prepared("event", record)  # type: ignore[arg-type]
    assert type(made) is Prepared and made == Prepared("event", record)  # type: ignore[arg-type]
    assert (made.event, made.record) == ("event", record)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.record = {}  # type: ignore[misc]


# --- batches accepted whole (counted per batch) -----------------------------------------------


@pytest.mark.parametrize("hook", [False, True])
def test_batches_accepted_whole_count_every_event_and_a_note_among_them_is_logged(
    make_tracker: Callable[..., Tracker],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hook: bool,
) -> None:
    """A batch of plain Delivered outcomes is decided and counted per batch; one with a note
    among them goes event by event: the note is logged, and the counts (and the hook, when
    one listens) cover every event either way."""

    def parse(self: ExampleDestination, batch: Sequence[Any], response: httpx.Response) -> Any:
        return [
            Delivered(note="an odd answer" if p.event.event_id == "noted" else None) for p in batch
        ]

    monkeypatch.setattr(ExampleDestination, "parse_response", parse)
    rec = Recorder()
    t = make_tracker(plugins=[rec] if hook else [])
    with caplog.at_level(logging.WARNING, logger="postback"):
        for i in range(3):
            t.track("sign_up", user={"email": f"a{i}@x.co"})
        assert t.flush(timeout=10).complete
        assert t.stats()["example"]["delivered"] == 3
        assert "delivered, but" not in caplog.text
        noted = t.track("sign_up", user={"email": "b0@x.co"}, event_id="noted")
        t.track("sign_up", user={"email": "b1@x.co"})
        assert t.flush(timeout=10).complete
    stats = t.stats()["example"]
    assert stats["delivered"] == 5 and stats["halted"] is None
    assert f"example: {noted} delivered, but: an odd answer" in caplog.text
    if hook:
        agree(rec, stats)
        assert rec.count("Delivered") == 5

"""Tracker behaviour: validation, routing, hooks, lifecycle."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from postback import (
    Attribution,
    Event,
    InvalidEvent,
    SkipEvent,
    Tracker,
    TrackerClosed,
    hookimpl,
)
from postback.destination import Destination, Outcome
from postback.sandbox import Sandbox


def test_track_delivers_and_flush_reports(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker()
    ids = [
        t.track("purchase", user={"email": f"u{i}@x.co"}, value=49.99, currency="USD")
        for i in range(7)
    ]
    report = t.flush(timeout=10)
    assert report.complete
    assert report["example"].delivered == 7
    got = sandbox.received("example")
    assert sorted(r["event_id"] for r in got) == sorted(ids)
    assert {r["value_micros"] for r in got} == {49_990_000}
    # A second flush reports only what happened since the first.
    assert t.flush(timeout=1)["example"].delivered == 0


def test_invalid_event_lists_problems_per_vendor_and_queues_nothing(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker()
    with pytest.raises(InvalidEvent) as info:
        t.track(
            "purchase",
            user={"email": "not-an-email", "ip_address": "1.2.3.4"},
            value=1,
            currency="USD",
            vendors={"example": {"clik_id": "c"}, "nope": {}},
        )
    text = str(info.value)
    assert "vendors.nope: is not a configured vendor (configured: example)" in text
    assert "example: user.email: is not an email address" in text
    assert (
        "example: vendors.example.clik_id: unknown option for example; did you mean 'click_id'?"
        in text
    )
    t.flush(timeout=1)
    assert sandbox.received("example") == []


def test_an_event_the_vendor_cannot_use_is_skipped_not_refused(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker()
    event_id = t.track("purchase", user={"email": "a@b.co"}, currency="USD")  # no value
    assert event_id
    t.flush(timeout=2)
    assert sandbox.received("example") == []
    assert t.stats()["example"]["skips"] == {"purchase without value": 1}


def test_on_invalid_log_skips_and_logs(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    t = make_tracker(core={"on_invalid": "log"})
    with caplog.at_level(logging.WARNING, logger="postback"):
        t.track("purchase", user={"email": "nope"}, value=1, currency="USD")
    assert "not sent to example" in caplog.text
    t.flush(timeout=2)
    assert sandbox.received("example") == []


def test_routing_filters_and_opt_out(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(vendor={"events": ["sign_up"]})
    t.track("purchase", user={"email": "a@b.co"}, value=1, currency="USD")
    t.track("sign_up", user={"email": "a@b.co"}, vendors={"example": False})
    kept = t.track("sign_up", user={"email": "a@b.co"})
    t.flush(timeout=5)
    assert [r["event_id"] for r in sandbox.received("example")] == [kept]
    assert sandbox.received("example")[0]["event"] == "signup"  # default event map


def test_attribution_and_delivery_hooks(make_tracker: Callable[..., Tracker]) -> None:
    seen: list[tuple[str, str | None]] = []
    outcomes: list[tuple[str, str]] = []

    class Listener:
        @hookimpl
        def postback_on_attribution(self, attribution: Attribution, event: Event) -> None:
            seen.append((event.event_id, attribution.campaign_id))

        @hookimpl
        def postback_on_delivery(
            self, vendor: str, event: Event, outcome: Outcome, attempt: int, latency: float
        ) -> None:
            outcomes.append((vendor, type(outcome).__name__))

    t = make_tracker(plugins=[Listener()])
    t.track(
        "sign_up", user={"email": "a@b.co"}, event_id="e1", vendors={"example": {"click_id": "42"}}
    )
    t.track("sign_up", user={"email": "b@b.co"}, event_id="e2")
    t.flush(timeout=5)
    assert seen == [("e1", "cmp-42")]
    assert sorted(outcomes) == [("example", "Delivered"), ("example", "Delivered")]


def test_attribution_reaches_its_hook_when_nobody_listens_to_deliveries(
    make_tracker: Callable[..., Tracker],
) -> None:
    # The lane counts a batch delivered whole at once when no delivery hook listens; an
    # attribution (its raw response is a dict: unhashable) must still take the per-event path.
    seen: list[tuple[str, str | None]] = []

    class Listener:
        @hookimpl
        def postback_on_attribution(self, attribution: Attribution, event: Event) -> None:
            seen.append((event.event_id, attribution.campaign_id))

    t = make_tracker(plugins=[Listener()])
    t.track(
        "sign_up", user={"email": "a@b.co"}, event_id="e1", vendors={"example": {"click_id": "42"}}
    )
    t.track("sign_up", user={"email": "b@b.co"}, event_id="e2")
    report = t.flush(timeout=5)
    assert report.complete, report
    assert seen == [("e1", "cmp-42")]
    assert t.stats()["example"]["delivered"] == 2


def test_a_consent_filter_wraps_transform(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    class Consent:
        @hookimpl(wrapper=True)
        def postback_transform(self, event: Event, destination: Destination) -> Any:
            if event.properties.get("consent") is False:
                raise SkipEvent("no consent")
            record = yield
            record["consented"] = True
            return record

    t = make_tracker(plugins=[Consent()])
    t.track("sign_up", user={"email": "a@b.co"}, properties={"consent": False})
    ok = t.track("sign_up", user={"email": "b@b.co"})
    report = t.flush(timeout=5)
    assert [r["event_id"] for r in sandbox.received("example")] == [ok]
    assert sandbox.received("example")[0]["consented"] is True
    assert report["example"].skipped == 1


def test_properties_must_serialise(make_tracker: Callable[..., Tracker]) -> None:
    t = make_tracker()
    with pytest.raises(InvalidEvent, match="JSON-serialisable"):
        t.track("sign_up", user={"email": "a@b.co"}, properties={"when": object()})


def test_closed_tracker_refuses(make_tracker: Callable[..., Tracker]) -> None:
    t = make_tracker()
    t.close()
    with pytest.raises(TrackerClosed):
        t.track("sign_up", user={"email": "a@b.co"})
    assert t.close() is None  # idempotent


@pytest.mark.parametrize("queue", ["sqlite", "memory://"])
def test_a_closed_tracker_says_so_for_every_call(
    make_tracker: Callable[..., Tracker], queue: str
) -> None:
    """flush(), stats(), status() and erase() after close() raise TrackerClosed, whatever the
    queue: on sqlite:// they used to raise 'Cannot operate on a closed database'."""
    t = make_tracker(queue=None if queue == "sqlite" else queue)
    event_id = t.track("sign_up", user={"email": "a@b.co"})
    t.close(timeout=1)
    for call in (
        lambda: t.flush(timeout=1),
        t.stats,
        lambda: t.status(event_id),
        lambda: t.erase(email="a@b.co"),
    ):
        with pytest.raises(TrackerClosed, match="create a new one"):
            call()


@pytest.mark.parametrize("queue", ["sqlite", "memory://"])
def test_a_track_that_straddles_close_restarts_no_delivery(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, queue: str, caplog: Any
) -> None:
    """A track() on another thread (a thread-pool endpoint, a WSGI worker thread) that passed
    the closed check before close() started, and stored its event after close() ended, woke
    the deliverer: it started the delivery threads again on the closed queue, which stayed
    running and logged "delivery coordinator error" every second."""
    import threading

    entered, release = threading.Event(), threading.Event()

    class Slow:
        @hookimpl
        def postback_validate(self, event: Event, destination: Destination) -> None:
            entered.set()
            release.wait(10)

    t = make_tracker(queue=None if queue == "sqlite" else queue, plugins=[Slow()])
    result: dict[str, str] = {}

    def request() -> None:
        result["id"] = t.track("sign_up", user={"email": "a@b.co"}, event_id="late")

    thread = threading.Thread(target=request)
    thread.start()
    assert entered.wait(10)
    t.close(timeout=1)
    release.set()
    thread.join(10)
    assert result == {"id": "late"}
    time.sleep(1.5)
    assert [
        th.name
        for th in threading.enumerate()
        if th.name.startswith("postback") and th.name != "postback-sandbox"
    ] == []
    assert "coordinator error" not in caplog.text
    if queue == "sqlite":  # stored: the next start delivers it
        assert make_tracker().flush(timeout=10)["example"].delivered == 1


def test_start_delivers_what_an_earlier_process_left(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    writer = make_tracker(core={"workers": False})
    writer.track("sign_up", user={"email": "a@b.co"}, event_id="left-behind")
    writer.close()
    t = make_tracker()
    assert t.start() is True  # threads: nothing to wait for
    deadline = time.monotonic() + 10
    while not sandbox.received("example") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r["event_id"] for r in sandbox.received("example")] == ["left-behind"]
    t.close()
    with pytest.raises(TrackerClosed):
        t.start()


def test_stats_and_repr_hold_no_secret(make_tracker: Callable[..., Tracker]) -> None:
    t = make_tracker()
    t.track("sign_up", user={"email": "a@b.co"})
    t.flush(timeout=5)
    s = t.stats()["example"]
    assert s["tracked"] == 1 and s["delivered"] == 1 and s["queue_depth"] == 0
    assert s["latency_p50"] is not None
    assert "sandbox-example-key" not in repr(t) + repr(t.destinations) + str(s)


def test_prepare_validates_without_queueing(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker()
    event, targets = t.prepare("sign_up", user={"email": "a@b.co"})
    assert event.name == "sign_up" and [d.name for d in targets] == ["example"]
    t.flush(timeout=1)
    assert sandbox.received("example") == []


def test_a_plugin_adds_validation_rules(make_tracker: Callable[..., Tracker]) -> None:
    class Policy:
        @hookimpl
        def postback_validate(self, event: Event, destination: Destination) -> list[Any]:
            from postback import Problem

            if not event.user.country:
                return [Problem("user.country", "our policy needs a country")]
            return []

    t = make_tracker(plugins=[Policy()])
    with pytest.raises(InvalidEvent) as info:
        t.track("sign_up", user={"email": "a@b.co"})
    assert [str(p) for p in info.value.problems] == [
        "example: user.country: our policy needs a country"
    ]
    t.track("sign_up", user={"email": "a@b.co", "country": "US"})


def test_a_plugin_can_take_over_delivery(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    from postback import Delivered, Prepared

    captured: list[str] = []

    class Capture:
        @hookimpl(tryfirst=True)
        def postback_deliver(
            self, destination: Destination, batch: list[Prepared], send: Any
        ) -> list[Outcome]:
            captured.extend(p.event.event_id for p in batch)
            return [Delivered() for _ in batch]

    t = make_tracker(plugins=[Capture()])
    eid = t.track("sign_up", user={"email": "a@b.co"})
    assert t.flush(timeout=5)["example"].delivered == 1
    assert captured == [eid]
    assert sandbox.received("example") == []  # nothing went over the wire


def test_close_leaves_no_threads_or_open_files(
    make_tracker: Callable[..., Tracker], tmp_path: Any
) -> None:
    import os
    import threading
    import time

    def open_queue_files() -> list[str]:
        fds = os.listdir("/proc/self/fd")
        out = []
        for fd in fds:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if str(tmp_path) in target:
                out.append(target)
        return out

    t = make_tracker()
    for i in range(20):
        t.track("sign_up", user={"email": f"u{i}@b.co"})
    assert t.flush(timeout=5).complete
    assert any(th.name.startswith("postback") for th in threading.enumerate())
    assert open_queue_files()
    t.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        th.name.startswith("postback") and th.name != "postback-sandbox"
        for th in threading.enumerate()
    ):
        time.sleep(0.05)
    assert [
        th.name
        for th in threading.enumerate()
        if th.name.startswith("postback") and th.name != "postback-sandbox"
    ] == []
    assert open_queue_files() == []

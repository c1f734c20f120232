"""Delivery over real loopback HTTP against the Whop emulator in ``postback.sandbox``."""

from __future__ import annotations

from collections.abc import Callable

from postback import Tracker
from postback.sandbox import Sandbox

MakeTracker = Callable[..., Tracker]


def test_delivers_several_events(make_tracker: MakeTracker, sandbox: Sandbox) -> None:
    tracker = make_tracker()
    tracker.track(
        "lead",
        event_id="d-lead",
        value=49.99,
        currency="USD",
        user={"email": "a@b.co"},
        context={"gclid": "g-1", "action_source": "website"},
    )
    tracker.track("sign_up", event_id="d-signup", user={"user_id": "user_abc"})
    tracker.track("page_view", event_id="d-pv", context={"url": "https://x.example/p"})
    tracker.track("add_to_cart", event_id="d-cart", value="1999.99", currency="EUR")
    tracker.track("purchase", event_id="d-purchase")  # not a Whop standard event: not routed
    tracker.track(
        "purchase",
        event_id="d-purchase-routed",
        value=0.30000000000000004,
        currency="USD",
        vendors={"whop": {"plan_id": "plan_1"}},
    )
    report = tracker.flush(timeout=10)

    assert report.complete
    assert report["whop"].delivered == 5 and report["whop"].dead == 0
    got = {r["event_id"]: r for r in sandbox.received("whop")}
    assert set(got) == {"d-lead", "d-signup", "d-pv", "d-cart", "d-purchase-routed"}
    assert {k: r["name"] for k, r in got.items()} == {
        "d-lead": "lead",
        "d-signup": "complete_registration",
        "d-pv": "view_content",
        "d-cart": "add_to_cart",
        "d-purchase-routed": "purchase",
    }
    assert all(r["idempotency_key"] == k and r["api"] == "events" for k, r in got.items())
    assert got["d-lead"]["body"]["value"] == 49.99
    assert got["d-lead"]["body"]["context"] == {"gclid": "g-1"}
    assert got["d-cart"]["body"]["value"] == 1999.99
    assert got["d-cart"]["body"]["currency"] == "eur"
    assert got["d-purchase-routed"]["body"]["value"] == 0.3
    assert got["d-signup"]["body"]["user"] == {"user_id": "user_abc"}
    assert tracker.stats()["whop"]["delivered"] == 5


def test_conversions_shape(make_tracker: MakeTracker, sandbox: Sandbox) -> None:
    tracker = make_tracker(api="conversions")
    tracker.track("lead", event_id="c-lead", context={"fbc": "dropped", "gclid": "g"})
    tracker.track("view_item", event_id="c-view")
    assert tracker.flush(timeout=10).complete
    got = {r["event_id"]: r for r in sandbox.received("whop")}
    assert got["c-lead"]["api"] == "conversions" and got["c-lead"]["name"] == "lead"
    assert got["c-lead"]["body"]["context"] == {"gclid": "g"}
    assert (got["c-view"]["name"], got["c-view"]["custom_name"]) == ("custom", "view_content")


def test_503_is_retried_then_delivered(make_tracker: MakeTracker, sandbox: Sandbox) -> None:
    tracker = make_tracker()
    sandbox.set_fault("whop", status=503, count=2)
    tracker.track("lead", event_id="r-503")
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["whop"].delivered == 1 and report["whop"].retried == 2
    assert [r["event_id"] for r in sandbox.received("whop")] == ["r-503"]


def test_a_2xx_with_an_unreadable_body_is_delivered_once_never_resent(
    make_tracker: MakeTracker, sandbox: Sandbox
) -> None:
    tracker = make_tracker()
    sandbox.set_fault("whop", status=200, body="<html>captive portal</html>", count=1)
    tracker.track("lead", event_id="r-2xx")
    report = tracker.flush(timeout=10)
    assert report.complete and report["whop"].delivered == 1 and report["whop"].retried == 0
    assert tracker.stats()["whop"]["requests"] == 1 and sandbox.received("whop") == []


def test_429_try_again_is_honoured(make_tracker: MakeTracker, sandbox: Sandbox) -> None:
    tracker = make_tracker()
    tracker.track("lead", event_id="whop-429-live")
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["whop"].delivered == 1 and report["whop"].retried == 1
    assert sandbox.emulators["whop"].requests == 2
    assert [r["event_id"] for r in sandbox.received("whop")] == ["whop-429-live"]


def test_bad_key_halts_and_keeps_events(make_tracker: MakeTracker, sandbox: Sandbox) -> None:
    tracker = make_tracker(api_key="whop_wrong_key_000")
    tracker.track("lead", event_id="h-1")
    report = tracker.flush(timeout=1)
    assert not report.complete
    assert report["whop"].pending == 1 and report["whop"].dead == 0
    stats = tracker.stats()["whop"]
    assert stats["halted"] is not None and "401" in stats["halted"]
    assert "Invalid or missing API key" in stats["halted"]
    assert stats["dead_letters"] == 0
    assert tracker.queue.dead_letters(vendor="whop") == []
    assert sandbox.received("whop") == []
    tracker.close(timeout=0)  # nothing can be delivered: don't wait for it


def test_permanent_refusals_are_dead_lettered(make_tracker: MakeTracker, sandbox: Sandbox) -> None:
    tracker = make_tracker()
    tracker.track("lead", event_id="whop-422-dead")
    tracker.track("lead", event_id="dead-plan", properties={"plan_id": "plan_missing_9"})
    tracker.track("lead", event_id="alive")
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["whop"].dead == 2 and report["whop"].delivered == 1
    dead = {d.event_id: d for d in tracker.queue.dead_letters(vendor="whop")}
    assert set(dead) == {"whop-422-dead", "dead-plan"}
    assert "Whop 422 unprocessable_entity" in dead["whop-422-dead"].reason
    assert "Plan plan_missing_9 was not found (param: plan_id)" in dead["dead-plan"].reason
    assert dead["dead-plan"].attempts == 1
    assert [r["event_id"] for r in sandbox.received("whop")] == ["alive"]


def test_a_resend_is_not_counted_twice(make_tracker: MakeTracker, sandbox: Sandbox) -> None:
    # The same event sent again (a crash after Whop answered, then a replay from another
    # queue): the Idempotency-Key makes Whop replay its answer instead of counting it again.
    first, second = make_tracker(), make_tracker()
    first.track("lead", event_id="once-only", user={"email": "a@b.co"})
    assert first.flush(timeout=10).complete
    second.track("lead", event_id="once-only", user={"email": "a@b.co"})
    report = second.flush(timeout=10)
    assert report.complete and report["whop"].delivered == 1
    assert [r["event_id"] for r in sandbox.received("whop")] == ["once-only"]
    assert sandbox.emulators["whop"].requests == 2

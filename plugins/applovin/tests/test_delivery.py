"""Delivery over real loopback HTTP against the sandbox's AppLovin emulator."""

from __future__ import annotations

import logging
from typing import Any

RETRY = {"initial_backoff": 0.01, "max_backoff": 0.05}


def _purchase(i: int, **extra: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "event_id": f"order-{i}-purchase",
        "value": 10 + i / 100,
        "currency": "USD",
        "user": {
            "email": f"buyer{i}@example.com",
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0",
        },
        "context": {"url": f"https://shop.example.com/thanks?order={i}"},
        "properties": {"transaction_id": str(i), "items": [{"item_id": "SKU-1", "price": 10}]},
    }
    kwargs.update(extra)
    return kwargs


def _track_mix(tracker) -> list[str]:
    ids = [tracker.track("purchase", **_purchase(i)) for i in range(3)]
    ids.append(
        tracker.track(
            "lead",
            event_id="lead-1",
            value=0,
            currency="USD",
            user={"client_id": "cid-1", "ip_address": "198.51.100.1", "user_agent": "UA"},
            context={"url": "https://shop.example.com/contact"},
        )
    )
    ids.append(
        tracker.track(
            "page_view",
            event_id="pv-1",
            user={"client_id": "cid-1", "ip_address": "198.51.100.1", "user_agent": "UA"},
            context={"url": "https://shop.example.com/"},
        )
    )
    return ids


def test_events_are_delivered(sandbox, make_tracker, caplog, api_key) -> None:
    caplog.set_level(logging.DEBUG)
    tracker = make_tracker({**sandbox.vendor_config("applovin"), "retry": RETRY})
    ids = _track_mix(tracker)
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["applovin"].delivered == 5
    assert report["applovin"].dead == 0
    received = sandbox.received("applovin")
    assert sorted(r["event_id"] for r in received) == sorted(ids)
    names = {r["event_id"]: r["name"] for r in received}
    assert names["lead-1"] == "generate_lead"
    assert names["pv-1"] == "page_view"
    assert names["order-0-purchase"] == "purchase"
    by_id = {r["event_id"]: r for r in received}
    assert by_id["order-1-purchase"]["data"]["value"] == 10.01
    assert by_id["pv-1"]["data"] == {}  # data is a required object: empty, not null
    secret = sandbox.emulators["applovin"].settings["api_key"]
    assert secret not in caplog.text


def test_array_payload_is_delivered(sandbox, make_tracker) -> None:
    tracker = make_tracker({**sandbox.vendor_config("applovin"), "payload_format": "array"})
    tracker.track("purchase", **_purchase(1))
    assert tracker.flush(timeout=10).complete
    assert [r["event_id"] for r in sandbox.received("applovin")] == ["order-1-purchase"]


def test_a_202_is_delivered_once_never_resent(sandbox, make_tracker) -> None:
    tracker = make_tracker({**sandbox.vendor_config("applovin"), "retry": RETRY})
    sandbox.set_fault("applovin", status=202, body="", count=1)
    tracker.track("purchase", **_purchase(1))
    report = tracker.flush(timeout=10)
    assert report.complete and report["applovin"].delivered == 1
    assert report["applovin"].retried == 0 and tracker.stats()["applovin"]["requests"] == 1


def test_the_wrong_payload_format_halts_instead_of_a_request_storm(
    sandbox, make_tracker, caplog
) -> None:
    """The account wants the other body shape: every batch is refused with the same 400.
    The lane halts after one batch and its two halves, names payload_format, keeps every
    event; once the setting is fixed, a restart delivers them all."""
    config = {**sandbox.vendor_config("applovin"), "retry": RETRY, "linger": 0.5}
    tracker = make_tracker(config)
    sandbox.set_fault(
        "applovin", status=400, body='{"error": "expected a JSON array of events"}', count=None
    )
    ids = [tracker.track("purchase", **_purchase(i)) for i in range(8)]
    with caplog.at_level(logging.ERROR, logger="postback"):
        report = tracker.flush(timeout=3)
    assert tracker.stats()["applovin"]["requests"] == 3  # not 15
    assert report["applovin"].dead == 0 and report["applovin"].pending == 8
    assert "check payload_format in [vendors.applovin]" in (report["applovin"].halted or "")
    assert "payload_format" in caplog.text
    assert tracker.queue.dead_letters() == []
    tracker.close(timeout=0)
    sandbox.clear_faults()
    fixed = make_tracker(config)
    assert fixed.flush(timeout=10).complete
    assert sorted(r["event_id"] for r in sandbox.received("applovin")) == sorted(ids)


def test_503_is_retried_then_delivered(sandbox, make_tracker) -> None:
    sandbox.set_fault("applovin", status=503, count=2)
    tracker = make_tracker({**sandbox.vendor_config("applovin"), "retry": RETRY})
    tracker.track("purchase", **_purchase(1))
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["applovin"].delivered == 1
    assert report["applovin"].retried == 2
    assert report["applovin"].dead == 0
    assert [r["event_id"] for r in sandbox.received("applovin")] == ["order-1-purchase"]


def test_429_with_retry_after_is_retried(sandbox, make_tracker) -> None:
    sandbox.set_fault("applovin", status=429, count=1, headers={"retry-after": "0"})
    tracker = make_tracker({**sandbox.vendor_config("applovin"), "retry": RETRY})
    tracker.track("purchase", **_purchase(2))
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["applovin"].retried == 1
    assert report["applovin"].delivered == 1


def test_bad_key_halts_without_dropping(sandbox, make_tracker, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    bad_key = "wrong-axon-key-0000"
    tracker = make_tracker(
        {**sandbox.vendor_config("applovin"), "api_key": bad_key, "retry": RETRY}
    )
    tracker.track("purchase", **_purchase(1))
    tracker.track("purchase", **_purchase(2))
    report = tracker.flush(timeout=1)
    assert not report.complete
    assert report["applovin"].pending == 2
    assert report["applovin"].dead == 0
    stats = tracker.stats()["applovin"]
    assert stats["halted"] and "HTTP 401" in stats["halted"]
    assert "api_key" in stats["halted"]
    assert stats["dead_letters"] == 0
    assert tracker.queue.dead_letters("applovin") == []
    assert sandbox.received("applovin") == []
    assert bad_key not in caplog.text
    assert bad_key not in stats["halted"]


def test_one_bad_event_is_isolated_and_the_rest_delivered(sandbox, make_tracker) -> None:
    """The emulator refuses an event the client considers valid; AppLovin drops the whole batch
    (400), the engine bisects until that event is alone, dead-letters it with AppLovin's reason,
    and delivers the other four."""
    vendor = {**sandbox.vendor_config("applovin"), "retry": RETRY}
    # Queue the five events first (no delivery), so they are claimed as one batch.
    producer = make_tracker(vendor, workers=False)
    for i in range(5):
        extra = {}
        if i == 2:
            extra = {
                "properties": {
                    "transaction_id": "emulator-invalid-1002",
                    "items": [{"item_id": "SKU-1"}],
                }
            }
        producer.track("purchase", **_purchase(i, **extra))
    producer.close(timeout=0)

    emulator = sandbox.emulators["applovin"]
    tracker = make_tracker(vendor)
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["applovin"].delivered == 4
    assert report["applovin"].dead == 1
    assert sorted(r["event_id"] for r in sandbox.received("applovin")) == [
        "order-0-purchase",
        "order-1-purchase",
        "order-3-purchase",
        "order-4-purchase",
    ]
    # [0..4] 400 -> [0,1] 200, [2,3,4] 400 -> [2] 400 (dead), [3,4] 200
    assert emulator.requests == 5
    dead = tracker.queue.dead_letters("applovin")
    assert [d.event_id for d in dead] == ["order-2-purchase"]
    assert "HTTP 400" in dead[0].reason
    assert "emulator-invalid" in dead[0].reason
    assert "events[0]" in dead[0].reason


def test_an_event_invalid_at_delivery_is_dead_lettered_alone(
    sandbox, make_tracker, tmp_path
) -> None:
    """An event queued under a configuration that made it valid (here: the event_source_url
    fallback), delivered under one that does not, never reaches a batch."""
    vendor = {**sandbox.vendor_config("applovin"), "retry": RETRY}
    producer = make_tracker(
        {**vendor, "event_source_url": "https://shop.example.com/"}, workers=False
    )
    producer.track("purchase", **_purchase(1, context={}))
    producer.track("purchase", **_purchase(2))
    producer.close(timeout=0)

    tracker = make_tracker(vendor)
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["applovin"].delivered == 1
    dead = tracker.queue.dead_letters("applovin")
    assert [d.event_id for d in dead] == ["order-1-purchase"]
    assert "context.url" in dead[0].reason
    assert sandbox.emulators["applovin"].requests == 1

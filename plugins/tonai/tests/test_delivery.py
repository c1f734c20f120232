"""Delivery over real loopback HTTP against the sandbox emulator."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from postback import Tracker
from postback.sandbox import Sandbox
from postback_tonai import TonAIEmulator

from .conftest import FAST_RETRY

MakeTracker = Callable[..., Tracker]


def users(emulator: TonAIEmulator) -> list[str]:
    return [r["telegram_user_id"] for r in emulator.received]


def test_delivers_conversions(make_tracker: MakeTracker, emulator: TonAIEmulator) -> None:
    tracker = make_tracker()
    ids = [
        tracker.track("sign_up", user={"telegram_user_id": tg, "email": f"{tg}@example.com"})
        for tg in ("1728125519", "5123456789", "7012345678")
    ]
    tracker.track(
        "purchase", user={"telegram_user_id": "1728125519"}, value=49.99, currency="USD"
    )  # not a conversion by default: not routed
    report = tracker.flush(timeout=10)
    assert report.complete
    assert report["tonai"].delivered == 3
    assert (report["tonai"].dead, report["tonai"].retried) == (0, 0)
    assert sorted(users(emulator)) == ["1728125519", "5123456789", "7012345678"]
    assert all(r["event_id"] is None and r["name"] == "conversion" for r in emulator.received)
    assert all(r["body"]["eventData"].keys() == {"telegramUserId"} for r in emulator.received)
    assert len(set(ids)) == 3
    assert tracker.stats()["tonai"]["delivered"] == 3


def test_ad_product_and_events_filter(make_tracker: MakeTracker, emulator: TonAIEmulator) -> None:
    tracker = make_tracker(product="ad", events=["purchase"])
    tracker.track("sign_up", user={"telegram_user_id": "111"})
    tracker.track("purchase", user={"telegram_user_id": "222"}, value=9.99, currency="EUR")
    assert tracker.flush(timeout=10).complete
    assert [(r["product"], r["telegram_user_id"]) for r in emulator.received] == [("ad", "222")]


def test_503_is_retried_then_delivered(
    make_tracker: MakeTracker, sandbox: Sandbox, emulator: TonAIEmulator
) -> None:
    sandbox.set_fault("tonai", status=503, count=2)
    tracker = make_tracker()
    tracker.track("sign_up", user={"telegram_user_id": "1728125519"})
    report = tracker.flush(timeout=10)
    assert report.complete
    assert (report["tonai"].retried, report["tonai"].delivered) == (2, 1)
    assert users(emulator) == ["1728125519"]
    assert emulator.requests == 1  # the two faults never reached the emulator


def test_429_with_retry_after_is_retried(
    make_tracker: MakeTracker, sandbox: Sandbox, emulator: TonAIEmulator
) -> None:
    sandbox.set_fault("tonai", status=429, count=1, headers={"retry-after": "0"})
    tracker = make_tracker()
    tracker.track("sign_up", user={"telegram_user_id": "1728125519"})
    report = tracker.flush(timeout=10)
    assert report.complete and report["tonai"].retried == 1 and report["tonai"].delivered == 1


def test_garbage_200_is_delivered_once_never_resent(
    make_tracker: MakeTracker, sandbox: Sandbox, emulator: TonAIEmulator
) -> None:
    sandbox.set_fault("tonai", status=200, body="<html>proxy</html>", count=1)
    tracker = make_tracker()
    tracker.track("sign_up", user={"telegram_user_id": "1728125519"})
    report = tracker.flush(timeout=10)
    assert report.complete and report["tonai"].retried == 0 and report["tonai"].delivered == 1
    assert tracker.stats()["tonai"]["requests"] == 1 and emulator.requests == 0


def test_retries_are_short_and_bounded(make_tracker: MakeTracker, sandbox: Sandbox) -> None:
    sandbox.set_fault("tonai", status=503)  # every request fails
    tracker = make_tracker()
    event_id = tracker.track("sign_up", user={"telegram_user_id": "1728125519"})
    report = tracker.flush(timeout=10)
    assert report.complete
    assert (report["tonai"].retried, report["tonai"].dead) == (4, 1)
    [dead] = tracker.queue.dead_letters("tonai")
    assert dead.event_id == event_id and dead.attempts == 5
    assert dead.reason.startswith("gave up after 5 attempts: HTTP 503")


def test_network_errors_are_retried_then_dead_lettered(sandbox: Sandbox, tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    table = {
        **sandbox.vendor_config("tonai"),
        "base_url": f"http://127.0.0.1:{port}/tonai",
        "retry": dict(FAST_RETRY),
    }
    tracker = Tracker.from_config(
        {"postback": {"queue": f"sqlite:///{tmp_path}/net.db"}, "vendors": {"tonai": table}}
    )
    try:
        tracker.track("sign_up", user={"telegram_user_id": "1728125519"})
        report = tracker.flush(timeout=10)
        assert report.complete and report["tonai"].dead == 1 and report["tonai"].retried == 4
        [dead] = tracker.queue.dead_letters("tonai")
        assert "ConnectError" in dead.reason
    finally:
        tracker.close(timeout=0)


def test_bad_key_halts_without_dropping(make_tracker: MakeTracker, emulator: TonAIEmulator) -> None:
    tracker = make_tracker(api_key="not-the-sandbox-key")
    tracker.track("sign_up", user={"telegram_user_id": "1728125519"})
    tracker.track("sign_up", user={"telegram_user_id": "5123456789"})
    report = tracker.flush(timeout=1)
    assert not report.complete
    assert report["tonai"].pending == 2 and report["tonai"].dead == 0
    stats = tracker.stats()["tonai"]
    assert stats["halted"] is not None and "HTTP 401" in stats["halted"]
    assert stats["dead_letters"] == 0
    assert tracker.queue.dead_letters("tonai") == []
    assert emulator.received == []


def test_permanent_refusal_is_dead_lettered_with_the_reason(
    make_tracker: MakeTracker, emulator: TonAIEmulator
) -> None:
    tracker = make_tracker()
    refused = tracker.track("sign_up", user={"telegram_user_id": "9990000400"})
    not_ok = tracker.track("sign_up", user={"telegram_user_id": "9990000200"})
    tracker.track("sign_up", user={"telegram_user_id": "1728125519"})
    report = tracker.flush(timeout=10)
    assert report.complete
    assert (report["tonai"].delivered, report["tonai"].dead, report["tonai"].retried) == (1, 2, 0)
    dead = {d.event_id: d for d in tracker.queue.dead_letters("tonai")}
    assert "HTTP 400" in dead[refused].reason
    assert "did not come from a Ton AI campaign" in dead[refused].reason
    assert dead[refused].attempts == 1
    assert "conversion already reported for this user" in dead[not_ok].reason
    assert users(emulator) == ["1728125519"]


# --- once_per_user across restarts ---------------------------------------------------------------


def test_once_per_user_survives_a_restart(
    make_tracker: MakeTracker, emulator: TonAIEmulator
) -> None:
    first = make_tracker(db="once.db", once_per_user=True)
    first.track("sign_up", user={"telegram_user_id": "111"})
    first.track("sign_up", user={"telegram_user_id": "222"})
    assert first.flush(timeout=10)["tonai"].delivered == 2
    first.track("sign_up", user={"telegram_user_id": "111"})  # same process, same user
    report = first.flush(timeout=10)
    assert (report["tonai"].delivered, report["tonai"].skipped) == (0, 1)
    first.close(timeout=1)

    second = make_tracker(db="once.db", once_per_user=True)  # a restart: same sqlite file
    second.track("sign_up", user={"telegram_user_id": "111"})
    second.track("sign_up", user={"telegram_user_id": "333"})
    report = second.flush(timeout=10)
    assert report.complete
    assert (report["tonai"].delivered, report["tonai"].skipped) == (1, 1)
    assert sorted(users(emulator)) == ["111", "222", "333"]


def test_once_per_user_does_not_skip_its_own_retries(
    make_tracker: MakeTracker, sandbox: Sandbox, emulator: TonAIEmulator
) -> None:
    sandbox.set_fault("tonai", status=503, count=2)
    tracker = make_tracker(db="once-retry.db", once_per_user=True)
    tracker.track("sign_up", user={"telegram_user_id": "111"})
    report = tracker.flush(timeout=10)
    assert (report["tonai"].delivered, report["tonai"].retried, report["tonai"].skipped) == (
        1,
        2,
        0,
    )
    assert users(emulator) == ["111"]


def test_once_per_user_forgets_a_refused_conversion(
    make_tracker: MakeTracker, emulator: TonAIEmulator
) -> None:
    tracker = make_tracker(db="once-refused.db", once_per_user=True)
    tracker.track("sign_up", user={"telegram_user_id": "9990000400"})
    assert tracker.flush(timeout=10)["tonai"].dead == 1
    tracker.track("sign_up", user={"telegram_user_id": "9990000400"})
    report = tracker.flush(timeout=10)
    # Not skipped: Ton AI was asked again (and refused again).
    assert (report["tonai"].dead, report["tonai"].skipped) == (1, 0)
    assert emulator.requests == 2


def test_once_per_user_replay_of_a_dead_letter_is_sent(
    make_tracker: MakeTracker, sandbox: Sandbox, emulator: TonAIEmulator
) -> None:
    """A conversion that ran out of retries keeps its claim; replaying it delivers it."""
    sandbox.set_fault("tonai", status=503)
    tracker = make_tracker(db="once-replay.db", once_per_user=True)
    tracker.track("sign_up", user={"telegram_user_id": "111"})
    assert tracker.flush(timeout=10)["tonai"].dead == 1
    tracker.track("sign_up", user={"telegram_user_id": "111"})  # another event, same user
    assert tracker.flush(timeout=10)["tonai"].skipped == 1
    sandbox.clear_faults()
    assert len(tracker.queue.requeue_dead("tonai")) == 1
    tracker.deliverer.notify(["tonai"])
    report = tracker.flush(timeout=10)
    assert report.complete and report["tonai"].delivered == 1
    assert users(emulator) == ["111"]

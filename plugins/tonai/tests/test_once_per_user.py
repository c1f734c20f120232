"""once_per_user: at most one conversion per Telegram user (unit level, MemoryKeyStore)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from postback import Tracker
from postback.destination import MemoryKeyStore, Prepared, Rejected, Retry, SkipEvent
from postback.sandbox import Sandbox
from postback_tonai import TonAIDestination

from .conftest import DOC_USER, TEST_KEY, event, make_destination


@pytest.fixture
def dest() -> TonAIDestination:
    return make_destination(once_per_user=True)


def test_on_by_default_a_second_conversion_of_a_user_is_skipped() -> None:
    dest = make_destination()
    dest.store = MemoryKeyStore()
    dest.transform(event(event_id="first"))
    with pytest.raises(SkipEvent, match="already reported"):
        dest.transform(event(event_id="second"))


def test_turned_off_every_event_is_sent_and_the_store_is_untouched() -> None:
    dest = make_destination(once_per_user=False)
    store = MemoryKeyStore()
    dest.store = store
    for _ in range(3):
        dest.transform(event(event_id=None))
    assert store._keys == set()


def test_second_conversion_of_a_user_is_skipped(dest: TonAIDestination) -> None:
    first, second = event(event_id="e1"), event(event_id="e2")
    assert dest.transform(first)["eventData"] == {"telegramUserId": "1728125519"}
    with pytest.raises(SkipEvent, match="already reported"):
        dest.transform(second)
    with pytest.raises(SkipEvent):
        dest.transform(second)  # and again: the skipped event left nothing behind


def test_other_users_are_not_affected(dest: TonAIDestination) -> None:
    dest.transform(event(telegram_user_id="111", event_id="e1"))
    assert dest.transform(event(telegram_user_id="222", event_id="e2"))


def test_the_claiming_event_passes_again_on_retry_halt_or_replay(dest: TonAIDestination) -> None:
    """transform runs on every attempt: the event that claimed the user must not be skipped."""
    first = event(event_id="e1")
    for _ in range(4):
        assert dest.transform(first)["eventType"] == "conversion"


def test_a_refused_conversion_releases_the_user(dest: TonAIDestination) -> None:
    first, second = event(event_id="e1"), event(event_id="e2")
    batch = [Prepared(first, dest.transform(first))]
    response = httpx.Response(400, json={"message": "not attributed"})
    assert isinstance(dest.parse_response(batch, response), Rejected)
    assert dest.transform(second)  # a later conversion is reported
    with pytest.raises(SkipEvent):
        dest.transform(first)  # and now the first is the one that lost


def test_a_200_that_is_not_success_releases_the_user(dest: TonAIDestination) -> None:
    first, second = event(event_id="e1"), event(event_id="e2")
    batch = [Prepared(first, dest.transform(first))]
    assert isinstance(
        dest.parse_response(batch, httpx.Response(200, json={"status": "fail"})), Rejected
    )
    assert dest.transform(second)


def test_a_transient_failure_keeps_the_claim(dest: TonAIDestination) -> None:
    first, second = event(event_id="e1"), event(event_id="e2")
    batch = [Prepared(first, dest.transform(first))]
    assert isinstance(dest.parse_response(batch, httpx.Response(503)), Retry)
    with pytest.raises(SkipEvent):
        dest.transform(second)
    assert dest.transform(first)


def test_the_claim_is_per_environment_and_product() -> None:
    store = MemoryKeyStore()
    dests = [
        make_destination(once_per_user=True),
        make_destination(once_per_user=True, product="ad"),
        make_destination(once_per_user=True, environment="staging"),
    ]
    for i, d in enumerate(dests):
        d.store = store
        assert d.transform(event(event_id=f"e{i}"))
    with pytest.raises(SkipEvent):
        dests[0].transform(event(event_id="again"))


def test_an_erase_forgets_the_user_s_marks(dest: TonAIDestination) -> None:
    # Was: the once-per-user marks name the Telegram user id in the queue's store, and erase()
    # left them there for good.
    store = MemoryKeyStore()
    dest.store = store
    for user, event_id in (("111", "e1"), ("1110", "e2"), ("222", "e3")):
        dest.transform(event(telegram_user_id=user, event_id=event_id))
    dest.erase_user({"telegram_user_id": "111", "email": "a@b.co"})
    assert not any("tg:111/" in k or k.endswith("tg:111") for k in store._keys)
    assert sum("tg:1110" in k for k in store._keys) == 2  # another user: untouched
    assert sum("tg:222" in k for k in store._keys) == 2
    dest.erase_user({"email": "a@b.co"})  # nothing of Ton AI's: nothing to forget
    assert len(store._keys) == 4


def test_tracker_erase_forgets_the_marks_in_the_queue(
    make_tracker: Callable[..., Tracker],
) -> None:
    tracker = make_tracker()
    tonai = tracker.destinations["tonai"]
    assert isinstance(tonai, TonAIDestination)
    tonai.transform(event(event_id="e1"))
    tonai.transform(event(telegram_user_id="222", event_id="e2"))
    tracker.erase(user={"telegram_user_id": int(DOC_USER)})
    assert tonai.transform(event(event_id="e3"))  # the user is new again
    with pytest.raises(SkipEvent):
        tonai.transform(event(telegram_user_id="222", event_id="e4"))


def _erase_cli(*args: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from postback.cli import main

    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["erase", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def marked(tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file (the key from ``TONAI_TEST_KEY``) whose queue holds the marks of two
    users: the documentation's and ``222``."""
    monkeypatch.setenv("TONAI_TEST_KEY", TEST_KEY)
    path = tmp_path / "postback.toml"
    path.write_text(
        '[postback]\nqueue = "sqlite://queue.db"\n\n[vendors.tonai]\n'
        'api_key = "${TONAI_TEST_KEY}"\n'
        f'base_url = "{sandbox.base_url("tonai")}"\n'
    )
    tracker = Tracker.from_config(path)
    try:
        tonai = tracker.destinations["tonai"]
        tonai.transform(event(event_id="e1"))
        tonai.transform(event(telegram_user_id="222", event_id="e2"))
    finally:
        tracker.close(timeout=0)
    return path


def _is_new(config: Path, telegram_user_id: str, event_id: str) -> bool:
    tracker = Tracker.from_config(config)
    try:
        tracker.destinations["tonai"].transform(
            event(telegram_user_id=telegram_user_id, event_id=event_id)
        )
        return True
    except SkipEvent:
        return False
    finally:
        tracker.close(timeout=0)


def test_the_erase_command_forgets_the_marks_in_the_queue(marked: Path) -> None:
    # Was: `postback erase` built no vendor, so a person's once-per-user marks (their Telegram
    # user id, in the queue) outlived the erase; only tracker.erase() in the app forgot them.
    config = marked
    code, out, err = _erase_cli("--user", f"telegram_user_id={DOC_USER}", "-c", str(config))
    assert code == 0, out + err
    assert _is_new(config, DOC_USER, "e3")  # the erased user is new again
    assert not _is_new(config, "222", "e4")  # another user's mark stays


def test_the_erase_command_names_a_vendor_it_could_not_build_and_exits_1(
    marked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = marked
    monkeypatch.delenv("TONAI_TEST_KEY")  # an operator's shell without the app's secrets
    args = ("--user", f"telegram_user_id={DOC_USER}", "--json", "-c", str(config))
    code, out, err = _erase_cli(*args)
    assert code == 1, out + err
    assert json.loads(out)["not_forgotten"] == ["tonai"]  # the rest of the erase was done
    assert "not forgotten by tonai" in err and "TONAI_TEST_KEY is not set" in err
    monkeypatch.setenv("TONAI_TEST_KEY", TEST_KEY)
    assert not _is_new(config, DOC_USER, "e3")  # as the report says: the marks are there


def test_a_disabled_vendors_marks_are_forgotten_too(marked: Path) -> None:
    # Was: an erase reached the enabled vendors only: with Ton AI disabled (enabled = false,
    # e.g. a campaign paused), a person's marks, still in the queue, outlived tracker.erase()
    # and `postback erase`, which exited 0 as if they were gone.
    config = marked
    enabled = config.read_text()
    config.write_text(enabled + "enabled = false\n")
    code, out, err = _erase_cli("--user", f"telegram_user_id={DOC_USER}", "-c", str(config))
    assert code == 0, out + err
    tracker = Tracker.from_config(config)
    try:
        assert tracker.erase(user={"telegram_user_id": "222"}).not_forgotten == ()
    finally:
        tracker.close(timeout=0)
    config.write_text(enabled)
    assert _is_new(config, DOC_USER, "e3")  # forgotten by the command
    assert _is_new(config, "222", "e4")  # forgotten by the app's tracker


def test_an_erase_forgets_the_marks_of_every_environment_and_product(
    make_tracker: Callable[..., Tracker],
) -> None:
    # Was: erase forgot the marks of the environment and product configured now, so a person's
    # Telegram user id stayed in the queue if the app once ran with other settings.
    earlier = [
        make_tracker(environment="staging", product="ad"),
        make_tracker(product="ad"),
    ]
    for i, tracker in enumerate(earlier):
        tonai = tracker.destinations["tonai"]
        tonai.transform(event(event_id=f"e{i}"))
        tonai.transform(event(telegram_user_id="222", event_id=f"other{i}"))
        tracker.close(timeout=0)
    now = make_tracker()  # production, exchange: none of the marks above
    assert now.erase(user={"telegram_user_id": DOC_USER}).not_forgotten == ()
    for i, settings in enumerate(({"environment": "staging", "product": "ad"}, {"product": "ad"})):
        again = make_tracker(**settings)
        tonai = again.destinations["tonai"]
        assert tonai.transform(event(event_id=f"new{i}"))  # the erased user is new again
        with pytest.raises(SkipEvent):
            tonai.transform(event(telegram_user_id="222", event_id=f"more{i}"))  # kept

"""Ton AI's once-per-user marks on a Redis queue: an erase forgets the person's marks of every
``environment`` and ``product`` the app ever ran with, and no one else's."""

from __future__ import annotations

from typing import Any

import pytest

from postback import Tracker
from postback.destination import SkipEvent
from postback.events import Event, make_event
from postback.fields import FieldSet

postback_tonai = pytest.importorskip("postback_tonai")

FIELDS = FieldSet.of([postback_tonai.TonAIDestination])
ERASED, OTHER = "1728125519", "222"


def _tracker(redis_url: str, **settings: str) -> Tracker:
    vendor = {"api_key": "test-tonai-key-not-real-0001", "base_url": "http://127.0.0.1:9"}
    cfg: dict[str, Any] = {
        "postback": {"queue": redis_url, "workers": False},
        "vendors": {"tonai": {**vendor, **settings}},
    }
    return Tracker.from_config(cfg, plugins=[postback_tonai], load_entry_points=False)


def _event(telegram_user_id: str, event_id: str) -> Event:
    return make_event(
        "sign_up", user={"telegram_user_id": telegram_user_id}, event_id=event_id, fields=FIELDS
    )


def test_an_erase_forgets_the_marks_of_every_environment_and_product(redis_url: str) -> None:
    # Was: erase forgot the marks of the environment and product configured now, so a person's
    # Telegram user id stayed in Redis if the app once ran with other settings.
    earlier = ({"environment": "staging", "product": "ad"}, {"product": "ad"})
    for i, settings in enumerate(earlier):
        tracker = _tracker(redis_url, **settings)
        tonai = tracker.destinations["tonai"]
        tonai.transform(_event(ERASED, f"e{i}"))
        tonai.transform(_event(OTHER, f"other{i}"))
        tracker.close(timeout=0)
    now = _tracker(redis_url)  # production, exchange: none of the marks above
    try:
        assert now.erase(user={"telegram_user_id": ERASED}).not_forgotten == ()
    finally:
        now.close(timeout=0)
    for i, settings in enumerate(earlier):
        again = _tracker(redis_url, **settings)
        try:
            tonai = again.destinations["tonai"]
            assert tonai.transform(_event(ERASED, f"new{i}"))  # the erased user is new again
            with pytest.raises(SkipEvent):
                tonai.transform(_event(OTHER, f"more{i}"))  # another user's mark is kept
        finally:
            again.close(timeout=0)

"""Shared helpers for the Ton AI plugin's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postback import Tracker
from postback.config import build_config
from postback.destination import Prepared
from postback.events import Event, make_event
from postback.fields import FieldSet
from postback.sandbox import Sandbox
from postback_tonai import TonAIDestination, TonAIEmulator

#: The event fields the plugin declares, as a tracker with it installed accepts them.
FIELDS = FieldSet.of([TonAIDestination])

#: A fake key for unit tests (never a real Ton AI App Key).
TEST_KEY = "test-tonai-key-not-real-0001"
#: Ton AI's documentation example id.
DOC_USER = "1728125519"
#: A small retry policy so retry tests finish fast (the plugin's max_attempts stays 5).
FAST_RETRY = {"initial_backoff": 0.01, "max_backoff": 0.05}


def make_destination(**table: Any) -> TonAIDestination:
    """A destination built the way a tracker builds it: through config validation."""
    table.setdefault("api_key", TEST_KEY)
    cfg = build_config({"vendors": {"tonai": table}}, {"tonai": TonAIDestination})
    dest = cfg.vendors["tonai"].make_destination(TonAIDestination)
    assert isinstance(dest, TonAIDestination)
    return dest


def event(name: str = "sign_up", telegram_user_id: Any = DOC_USER, **kwargs: Any) -> Event:
    user = dict(kwargs.pop("user", {}))
    if telegram_user_id is not None:
        user.setdefault("telegram_user_id", telegram_user_id)
    return make_event(name, user=user, fields=FIELDS, **kwargs)


def prepared(dest: TonAIDestination, ev: Event) -> list[Prepared]:
    return [Prepared(ev, dest.transform(ev))]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox([TonAIEmulator()]).start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def emulator(sandbox: Sandbox) -> TonAIEmulator:
    emu = sandbox.emulators["tonai"]
    assert isinstance(emu, TonAIEmulator)
    return emu


@pytest.fixture
def make_tracker(sandbox: Sandbox, tmp_path: Path) -> Iterator[Callable[..., Tracker]]:
    """Build trackers against the sandbox (sqlite queue in tmp_path); all closed at the end."""
    made: list[Tracker] = []

    def factory(db: str = "q.db", **vendor: Any) -> Tracker:
        table = {**sandbox.vendor_config("tonai"), "retry": dict(FAST_RETRY), **vendor}
        tracker = Tracker.from_config(
            {"postback": {"queue": f"sqlite:///{tmp_path}/{db}"}, "vendors": {"tonai": table}}
        )
        made.append(tracker)
        return tracker

    yield factory
    for t in made:
        t.close(timeout=0)

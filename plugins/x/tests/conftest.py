"""Shared helpers for the postback-x tests, handed out as the ``kit`` fixture (the tests run
with ``--import-mode=importlib``, so test modules cannot import this file)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from postback.config import build_config
from postback.destination import Prepared, Skip
from postback.errors import Problem
from postback.events import Event, make_event
from postback_x import XDestination, XEmulator


class Kit:
    #: Fixed OAuth nonce and timestamp so that signatures are reproducible.
    NONCE = "5f1d2c3b4a5968778695a4b3c2d1e0f1"
    OAUTH_TS = 1_700_000_000
    IDFA = "EA7583CD-A667-48BC-B806-42ECB2B48606"

    @staticmethod
    def settings(**overrides: Any) -> dict[str, Any]:
        """The emulator's sandbox settings (fake credentials) with overrides; None removes."""
        s = {**XEmulator.demo_settings(), **overrides}
        return {k: v for k, v in s.items() if v is not None}

    def destination(
        self,
        base_url: str | None = "http://x.test",
        event_map: Mapping[str, str] | None = None,
        *,
        fixed: bool = True,
        **overrides: Any,
    ) -> XDestination:
        """An XDestination built through the core's config validation, as a tracker does."""
        table: dict[str, Any] = self.settings(**overrides)
        if base_url:
            table["base_url"] = base_url
        if event_map:
            table["event_map"] = dict(event_map)
        cfg = build_config({"vendors": {"x": table}}, {"x": XDestination})
        dest = cfg.vendors["x"].make_destination(XDestination)
        assert isinstance(dest, XDestination)
        if fixed:
            dest.make_nonce = lambda: self.NONCE  # type: ignore[method-assign]
            dest.now = lambda: self.OAUTH_TS  # type: ignore[method-assign]
        return dest

    def event(self, name: str = "purchase", **kw: Any) -> Event:
        kw.setdefault("timestamp", "2014-05-22T02:38:28.103Z")
        kw.setdefault("user", {"ifa": self.IDFA})
        return make_event(name, **kw)

    @staticmethod
    def prepared(dest: XDestination, ev: Event) -> list[Prepared]:
        return [Prepared(ev, dest.transform(ev))]

    @staticmethod
    def problems(dest: XDestination, ev: Event) -> dict[str, str]:
        """field -> message of the Problems (the event is malformed), asserting that no field
        is reported twice."""
        found = [f for f in dest.validate(ev) if isinstance(f, Problem)]
        fields = [p.field for p in found]
        assert len(fields) == len(set(fields)), fields
        return {p.field: p.message for p in found}

    @staticmethod
    def skips(dest: XDestination, ev: Event) -> dict[str, Skip]:
        """field -> Skip (X cannot use the event as given)."""
        found = [f for f in dest.validate(ev) if isinstance(f, Skip)]
        assert all(f.vendor == "x" and f.reason and f.fix for f in found), found
        return {s.field: s for s in found}


@pytest.fixture
def kit() -> Kit:
    return Kit()


@pytest.fixture
def dest(kit: Kit) -> XDestination:
    return kit.destination()


@pytest.fixture
def emulator() -> XEmulator:
    return XEmulator()

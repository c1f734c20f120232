"""Currencies beyond ISO 4217: accepted only when a configured vendor declares them
(``Destination.extra_currencies``), delivered to that vendor, skipped by every other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import postback.testing.example as example
from postback import InvalidEvent, Tracker
from postback.events import make_event, normalize_currency
from postback.sandbox import Sandbox
from postback.testing.example import ExampleDestination


class CoinDestination(ExampleDestination):
    """The example vendor under another name, taking two crypto codes."""

    name = "coin"
    extra_currencies = frozenset({"ETH", "BTC"})


class CoinPlugin:
    @staticmethod
    @example.hookimpl
    def postback_register_destinations(register: Callable[[type], None]) -> None:
        register(CoinDestination)


def _tracker(tmp_path: Path, sandbox: Sandbox, *, coin: bool, **core: Any) -> Tracker:
    vendors: dict[str, Any] = {"example": sandbox.vendor_config("example")}
    if coin:
        vendors["coin"] = {**sandbox.vendor_config("example"), "event_map": {"sign_up": "signup"}}
    return Tracker.from_config(
        {"postback": {"queue": f"sqlite:///{tmp_path}/q.db", **core}, "vendors": vendors},
        plugins=[example, CoinPlugin],
        load_entry_points=False,
    )


def test_normalize_currency_takes_declared_extras_only() -> None:
    assert normalize_currency("eth", frozenset({"ETH"})) == "ETH"
    with pytest.raises(ValueError, match="not an ISO 4217 currency code"):
        normalize_currency("eth")
    with pytest.raises(ValueError, match="configured vendor takes: ETH"):
        normalize_currency("doge", frozenset({"ETH"}))
    assert make_event("purchase", value=1, currency="btc", extra_currencies=frozenset({"BTC"}))


def test_an_extra_currency_goes_to_the_vendor_that_takes_it_only(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    t = _tracker(tmp_path, sandbox, coin=True)
    try:
        explained = t.explain("sign_up", user={"email": "a@x.co"}, value=0.5, currency="eth")
        assert explained.vendors["coin"].status == "routed"
        assert explained.vendors["example"].status == "skipped"
        assert "currency ETH is not ISO 4217" in explained.vendors["example"].reason
        t.track("sign_up", user={"email": "a@x.co"}, value=0.5, currency="eth")
        t.track("sign_up", user={"email": "b@x.co"}, value=5, currency="USD")
        assert t.flush(timeout=10).complete
        assert t.stats()["example"]["skipped"] == 1
        assert t.stats()["coin"]["delivered"] == 2 and t.stats()["example"]["delivered"] == 1
    finally:
        t.close(timeout=0)


def test_without_a_vendor_that_takes_it_an_extra_currency_is_refused(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    t = _tracker(tmp_path, sandbox, coin=False)
    try:
        with pytest.raises(InvalidEvent, match="not an ISO 4217 currency code"):
            t.track("sign_up", user={"email": "a@x.co"}, value=0.5, currency="eth")
    finally:
        t.close(timeout=0)

"""Golden payloads: track() keywords in, the exact HTTP request to Ton AI out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from postback import Tracker
from postback.destination import Prepared
from postback_tonai import TonAIDestination

from .conftest import TEST_KEY

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.json"))


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_request(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    tracker = Tracker.from_config(
        {
            "postback": {"queue": "memory://", "workers": False},
            "vendors": {"tonai": {"api_key": TEST_KEY, **case["settings"]}},
        }
    )
    try:
        kwargs = dict(case["track"])
        name = kwargs.pop("name")
        # Routing and validation exactly as track() does them.
        ev, targets = tracker.prepare(name, **kwargs)
        assert [d.name for d in targets] == ["tonai"]
        dest = targets[0]
        assert isinstance(dest, TonAIDestination)
        for key, want in case.get("canonical", {}).items():
            assert getattr(ev, key) == want, key

        record = dest.transform(ev)
        assert record == case["request"]["json"]
        request = dest.build_request([Prepared(ev, record)])
        expected = case["request"]
        assert request.method == expected["method"]
        assert str(request.url) == expected["url"]
        assert dict(request.headers) == expected["headers"]
        assert request.content.decode() == expected["body"]
        assert json.loads(request.content) == expected["json"]
    finally:
        tracker.close(timeout=0)


def test_money_and_time_never_reach_the_wire() -> None:
    """The purchase case carries 49.99 USD and a timestamp; neither appears in the body."""
    case = json.loads((GOLDEN / "purchase_with_pii_value_and_timestamp.json").read_text())
    body = case["request"]["body"]
    for absent in ("49.99", "USD", "1795946400123", "alice", "u-1042", "203.0.113.7", "sku-1"):
        assert absent.lower() not in body.lower()

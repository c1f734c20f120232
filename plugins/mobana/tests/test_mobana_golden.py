"""Golden payloads: track() keywords -> the exact wire record and HTTP request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postback import Prepared, Tracker

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.json"))


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 8


@pytest.fixture(params=CASES, ids=[p.stem for p in CASES])
def case(request: pytest.FixtureRequest) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(request.param.read_text())
    return data


@pytest.fixture
def tracker(case: dict[str, Any]) -> Iterator[Tracker]:
    t = Tracker.from_config(
        {"postback": {"queue": "memory://"}, "vendors": {"mobana": case["settings"]}}
    )
    yield t
    t.close(timeout=0)


def test_golden(case: dict[str, Any], tracker: Tracker) -> None:
    event, targets = tracker.prepare(case["track"]["name"], **case["track"]["kwargs"])
    dest = tracker.destinations["mobana"]
    assert targets == [dest]

    record = dest.transform(event)
    assert record == case["record"]
    # Key order and number formatting matter on the wire: compare the exact bytes.
    assert list(record) == list(case["record"])

    request = dest.build_request([Prepared(event, record)])
    expected = case["request"]
    assert request.method == expected["method"]
    assert str(request.url) == expected["url"]
    assert dict(request.headers) == expected["headers"]
    assert request.content.decode() == expected["content"]

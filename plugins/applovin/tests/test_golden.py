"""Golden payloads: track() keywords -> the exact request AppLovin receives (tests/golden/*.json).

The body is compared byte for byte with the golden body serialised in the file's key order, so
types matter (49.99 vs "49.99", 4 vs 4.0) as well as values. Every golden request is also
accepted by the emulator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from postback.destination import Prepared
from postback_applovin import AppLovinEmulator

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_there_are_goldens() -> None:
    assert len(GOLDEN) >= 6


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_request(path, make_destination, event_from, api_key, pixel_id) -> None:
    case = _load(path)
    dest = make_destination(**case["settings"])
    batch = []
    for kwargs in case["events"]:
        event = event_from(kwargs)
        assert list(dest.validate(event)) == []
        batch.append(Prepared(event, dest.transform(event)))
    request = dest.build_request(batch)
    want = case["request"]

    assert request.method == want["method"]
    assert str(request.url) == want["url"]
    for name, value in want["headers"].items():
        assert request.headers[name] == value
    assert request.content == orjson.dumps(want["body"])

    # The emulator (AppLovin's documented rules) accepts it.
    emu = AppLovinEmulator({"api_key": api_key, "pixel_id": pixel_id})
    to_emulator = httpx.Request(
        "POST",
        f"http://emulator/v1/event?pixel_id={pixel_id}",
        headers=dict(request.headers),
        content=request.content,
    )
    response = emu.handle(to_emulator)
    assert response.status_code == 200, response.text
    assert [r["event_id"] for r in emu.received] == [
        e["dedupe_id"]
        for e in (want["body"] if isinstance(want["body"], list) else want["body"]["events"])
    ]
    assert dest.parse_response(batch, response) is not None


def test_money_is_exact_from_micros(destination, event_from, purchase_kwargs) -> None:
    cases = {
        0.1: 0.1,
        49.99: 49.99,
        19.99: 19.99,
        1234567.89: 1234567.89,
        30: 30,
        0.07: 0.07,
        "10.005": 10.005,
        2.675: 2.675,
    }
    for value, wire in cases.items():
        purchase_kwargs["value"] = value
        record = destination.transform(event_from(purchase_kwargs))
        assert record["data"]["value"] == wire
        assert type(record["data"]["value"]) is type(wire)
        assert orjson.dumps(record["data"]["value"]).decode() == repr(wire)


def test_timestamps_are_epoch_ms(destination, event_from, purchase_kwargs) -> None:
    for ts, ms in [
        (1764000000123, 1764000000123),
        ("2026-11-24T10:15:30.123Z", 1795515330123),
        ("2026-11-24T12:00:00.5+02:00", 1795514400500),
    ]:
        purchase_kwargs["timestamp"] = ts
        assert destination.transform(event_from(purchase_kwargs))["event_time"] == ms

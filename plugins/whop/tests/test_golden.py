"""Golden payloads: track() keywords -> the exact request sent to Whop.

Each ``golden/*.json`` holds ``settings`` (the ``[vendors.whop]`` table besides the fake
credentials), ``track`` (the keywords of ``tracker.track``) and ``request`` (method, URL,
headers and body, compared exactly, byte for byte for the body).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from postback.destination import Destination, Prepared
from postback.events import make_event
from postback.fields import FieldSet, context_field, user_field
from postback_whop import WhopDestination


class _OtherVendors(Destination):
    """Fields other plugins declare, which a golden event carries to show Whop leaves them out."""

    name = "others"
    fields = (
        user_field("install_id", help="Mobana's install id."),
        context_field("aleid", help="AppLovin's click id."),
    )


#: The event fields a tracker with Whop (and the vendors of those other fields) accepts.
FIELDS = FieldSet.of([WhopDestination, _OtherVendors])

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_request(path: Path, make_dest: Callable[..., WhopDestination]) -> None:
    case = _load(path)
    dest = make_dest(**case["settings"])
    track = dict(case["track"])
    name = track.pop("name")
    event = make_event(name, fields=FIELDS, **track)

    assert list(dest.validate(event)) == []
    record = dest.transform(event)
    request = dest.build_request([Prepared(event, record)])
    expected = case["request"]

    assert request.method == expected["method"]
    assert str(request.url) == expected["url"]
    assert dict(request.headers) == expected["headers"]
    assert orjson.loads(request.content) == expected["body"]
    # Byte for byte: key order, number formatting (49.99 stays 49.99), no spaces.
    assert request.content == orjson.dumps(expected["body"])


def test_golden_set_is_complete() -> None:
    names = {p.stem for p in CASES}
    assert len(names) >= 9
    assert {c["request"]["body"]["event_name"] for c in map(_load, CASES)} >= {
        "lead", "complete_registration", "view_content", "add_to_cart", "purchase", "custom",
    }  # fmt: skip


def test_money_is_exact() -> None:
    body = _load(GOLDEN / "events_lead_full.json")["request"]["body"]
    assert body["value"] == 49.99 and body["currency"] == "usd"
    raw = orjson.dumps(body)
    assert b'"value":49.99' in raw
    assert _load(GOLDEN / "events_purchase_custom.json")["request"]["body"]["value"] == 0.3
    assert _load(GOLDEN / "events_add_to_cart_money.json")["request"]["body"]["value"] == 1999.99

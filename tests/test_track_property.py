"""Property: whatever ``track()`` is given, it refuses it naming the right field, or accepts an
event that every installed plugin it routes to can send (issue 23, "keep them found").

One keyword at a time is drawn (from hypothesis' strategies and the hostile catalogue,
:mod:`postback.testing.hostile`) on top of a valid purchase, for a tracker with every installed
vendor plugin. Then either ``InvalidEvent`` is raised and every problem names that keyword (or
a field under it), or the event is stored and each routed vendor's transform and request build
run without raising. Examples per keyword: ``POSTBACK_HYPOTHESIS_EXAMPLES`` (default 40, so
the suite stays fast in CI; raise it for a deeper run).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postback import InvalidEvent, Tracker
from postback.destination import SkipEvent
from postback.events import CANONICAL_EVENTS, CONTEXT_FIELDS, USER_FIELDS
from postback.plugins import PluginHost
from postback.single_event import request_lines
from postback.testing import hostile

EXAMPLES = int(os.environ.get("POSTBACK_HYPOTHESIS_EXAMPLES", "40"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A refusal or acceptance takes microseconds; this only catches a runaway (value="9e999990"
# once took 36 s of CPU). Not a benchmark: the bound is a thousand times the expected cost.
RUNAWAY = 0.5

# Valid for every plugin's vendor: a purchase goes to AppLovin, Mobana and X, a sign_up to
# Mobana, Whop, Ton AI and X.
BASE: dict[str, Any] = {
    "user": {
        "email": "ada@example.com",
        "user_id": "u1",
        "ip_address": "192.133.78.1",
        "user_agent": "Mozilla/5.0",
        "install_id": "550e8400-e29b-41d4-a716-446655440000",
        "telegram_user_id": "1728125519",
        "ifa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
        "os": "ios",
    },
    "value": "49.99",
    "currency": "USD",
    "context": {"url": "https://shop.example.com/"},
    "properties": {"transaction_id": "t1", "items": [{"item_id": "sku-1", "quantity": 1}]},
}


@pytest.fixture(scope="module")
def tracker() -> Iterator[Tracker]:
    host = PluginHost()
    vendors = {
        name: {**emu.demo_settings(), "base_url": f"http://127.0.0.1:9/{name}"}
        for name, emu in host.emulators.items()
        if name in host.destinations
    }
    t = Tracker.from_config(
        {"postback": {"queue": "memory://", "workers": False}, "vendors": vendors}
    )
    yield t
    t.close(timeout=0)


def _check(tracker: Tracker, keyword: str, value: Any, base: str = "purchase") -> None:
    fields = {**BASE, keyword: value}
    name = fields.pop("name", base)
    started = time.process_time()
    try:
        event, dests = tracker.prepare(name, **fields)
    except InvalidEvent as exc:
        assert time.process_time() - started < RUNAWAY
        wrong = [p for p in exc.problems if p.field.split(".")[0].split("[")[0] != keyword]
        assert not wrong, f"{keyword}={value!r:.80}: problems name other fields: {wrong}"
        return
    except Exception as exc:  # the property is that nothing else escapes
        pytest.fail(f"{keyword}={value!r:.80}: {type(exc).__name__}: {exc}")
    assert time.process_time() - started < RUNAWAY
    tracker.track(name, **fields)  # stored as prepare() said
    for dest in dests:
        try:
            request_lines(tracker, dest, event)
        except SkipEvent:
            pass
        except Exception as exc:
            pytest.fail(f"{dest.name} cannot send accepted {keyword}={value!r:.80}: {exc!r}")


text = st.text(max_size=80)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(
        st.sampled_from(sorted(CANONICAL_EVENTS)), st.sampled_from(hostile.HOSTILE_NAMES), text
    ),
    "user": st.dictionaries(
        st.sampled_from([*USER_FIELDS, "bogus"]),
        st.one_of(text, st.integers(), st.sampled_from(hostile.HOSTILE_STRINGS), st.none()),
        max_size=5,
    ),
    "value": st.one_of(
        st.sampled_from(hostile.HOSTILE_VALUES),
        st.floats(),
        st.integers(),
        st.decimals(),
        st.from_regex(r"-?[0-9]{0,20}(\.[0-9]{0,8})?([eE][+-]?[0-9]{1,7})?", fullmatch=True),
    ),
    "currency": st.one_of(st.sampled_from(["USD", "eur", "ETH", "XXX", "U\nSD"]), text),
    "event_id": st.one_of(st.sampled_from(hostile.HOSTILE_EVENT_IDS), text),
    "timestamp": st.one_of(
        st.sampled_from(hostile.HOSTILE_TIMESTAMPS),
        st.integers(),
        st.floats(),
        st.datetimes(timezones=st.just(UTC)),
        st.datetimes(),
        text,
    ),
    "context": st.dictionaries(
        st.sampled_from(sorted(CONTEXT_FIELDS)),
        st.one_of(text, st.sampled_from(hostile.HOSTILE_STRINGS)),
        max_size=4,
    ),
    "properties": st.one_of(
        st.sampled_from(hostile.HOSTILE_PROPERTIES),
        st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    ),
    "vendors": st.one_of(
        st.dictionaries(
            st.sampled_from(["x", "whop", "applovin", "tonai", "mobana", "nosuch"]),
            st.one_of(st.booleans(), st.dictionaries(st.text(max_size=8), json_leaf, max_size=2)),
            max_size=3,
        ),
        st.sampled_from([[], "x", 3]),
    ),
}


def test_the_base_events_reach_every_vendor(tracker: Tracker) -> None:
    reached = set()
    for base in ("purchase", "sign_up"):
        _, dests = tracker.prepare(base, **BASE)
        reached |= {d.name for d in dests}
    assert reached == set(tracker.destinations)


@pytest.mark.parametrize("base", ["purchase", "sign_up"])
@pytest.mark.parametrize("keyword", sorted(STRATEGIES))
def test_track_refuses_naming_the_field_or_accepts_what_every_vendor_can_send(
    tracker: Tracker, keyword: str, base: str
) -> None:
    @PROPERTY
    @given(value=STRATEGIES[keyword])
    def check(value: Any) -> None:
        _check(tracker, keyword, value, base)

    check()


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("value", v) for v in hostile.HOSTILE_VALUES]
    + [("timestamp", v) for v in hostile.HOSTILE_TIMESTAMPS]
    + [("event_id", v) for v in hostile.HOSTILE_EVENT_IDS]
    + [("properties", v) for v in hostile.HOSTILE_PROPERTIES]
    + [("user", {"email": v}) for v in hostile.HOSTILE_STRINGS]
    + [("context", {"utm_source": v}) for v in hostile.HOSTILE_STRINGS],
    ids=repr,
)
def test_every_catalogued_hostile_input(tracker: Tracker, keyword: str, value: Any) -> None:
    _check(tracker, keyword, value)

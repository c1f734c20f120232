"""Per-event vendor options (``track(vendors={NAME: {...}})``): the core refuses keys a vendor
does not declare in ``option_keys``, once, for every vendor the event is routed to; the
vendor's own ``validate`` never sees them checked twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from postback import InvalidEvent, Tracker
from postback.routing import option_problems
from postback.sandbox import Sandbox
from postback.testing.example import ExampleDestination

MakeTracker = Callable[..., Tracker]


def test_an_unknown_option_is_refused_with_a_did_you_mean(make_tracker: MakeTracker) -> None:
    t = make_tracker()
    with pytest.raises(InvalidEvent) as info:
        t.track("sign_up", user={"user_id": "u"}, vendors={"example": {"clik_id": "c"}})
    [problem] = info.value.problems
    assert (problem.vendor, problem.field) == ("example", "vendors.example.clik_id")
    assert problem.message == (
        "unknown option for example; did you mean 'click_id'? (example takes: click_id)"
    )
    # A known option passes, and explain() names the vendor that refuses an unknown one.
    assert t.track("sign_up", user={"user_id": "u"}, vendors={"example": {"click_id": "c"}})
    route = t.explain("sign_up", user={"user_id": "u"}, vendors={"example": {"x": 1}})
    assert route.vendors["example"].status == "refused"
    assert [p.field for p in route.vendors["example"].problems] == ["vendors.example.x"]


def test_with_on_invalid_log_only_that_vendor_is_left_out(
    make_tracker: MakeTracker, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    t = make_tracker(core={"on_invalid": "log"})
    t.track("sign_up", user={"user_id": "u"}, vendors={"example": {"clik_id": "c"}})
    t.flush(timeout=5)
    assert sandbox.received("example") == []
    assert "vendors.example.clik_id: unknown option for example" in caplog.text


def test_the_example_vendor_no_longer_checks_its_options_itself() -> None:
    """The check is the core's: validate() of the reference vendor has no copy of it."""
    dest: Any = ExampleDestination.__new__(ExampleDestination)
    assert [p.field for p in option_problems(dest, {"clik_id": 1, "click_id": 2})] == [
        "vendors.example.clik_id"
    ]
    assert option_problems(dest, {}) == [] and option_problems(dest, True) == []


def test_a_vendor_without_options_says_so() -> None:
    class NoOptions(ExampleDestination):
        name = "plain"
        option_keys = frozenset()

    dest: Any = NoOptions.__new__(NoOptions)
    [problem] = option_problems(dest, {"click_id": 1})
    assert problem.message == "unknown option: plain takes no per-event options; remove it"

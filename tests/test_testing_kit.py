"""postback's own test kit: the recording tracker, the pytest fixtures, the contract kit."""

from __future__ import annotations

from pathlib import Path

import pytest

import postback.testing.example as example
from postback.testing import RecordingTracker, recording_tracker
from tests._distributions import add_entry_point_dist

pytest_plugins = ["pytester"]


@pytest.fixture
def rec() -> RecordingTracker:
    t = recording_tracker(vendors=["example"], plugins=[example], load_entry_points=False)
    yield t
    t.close()


def test_assert_sent_reads_like_the_sentence(rec: RecordingTracker) -> None:
    rec.track("purchase", user={"email": "a@b.co"}, value=49.99, currency="usd")
    rec.track("sign_up", user={"email": "a@b.co"})
    rec.assert_sent("purchase", vendor="example", value=49.99, currency="USD")
    rec.assert_sent("purchase", value="49.99", count=1, user={"email": "a@b.co"})
    rec.assert_not_sent("lead")
    with pytest.raises(AssertionError) as info:
        rec.assert_sent("purchase", vendor="example", value=19.99, currency="USD")
    assert "expected a purchase of 19.99 USD sent to example; found 0" in str(info.value)
    assert "example: purchase 49.99 USD, sign_up" in str(info.value)
    assert rec.received("example")[0]["value_micros"] == 49_990_000


def test_recorded_outcomes_include_rejections(rec: RecordingTracker) -> None:
    rec.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD")
    (d,) = rec.deliveries
    assert not d.delivered and d.describe() == "sign_up -1 USD [Rejected]"
    with pytest.raises(AssertionError, match="found 0"):
        rec.assert_sent("sign_up")


def test_app_config_with_unset_secret_env_uses_sandbox_values(tmp_path: Path) -> None:
    cfg = tmp_path / "postback.toml"
    cfg.write_text(
        '[postback]\nqueue = "sqlite:///var/nowhere/q.db"\n\n'
        '[vendors.example]\napi_key = "${UNSET_EXAMPLE_KEY_FOR_TESTS}"\n'
        'events = ["purchase"]\n'
    )
    t = recording_tracker(cfg, plugins=[example], load_entry_points=False)
    try:
        t.track("purchase", user={"email": "a@b.co"}, value=5, currency="EUR")
        t.track("sign_up", user={"email": "a@b.co"})  # filtered out by the app's config
        t.assert_sent("purchase", value=5, currency="EUR")
        t.assert_not_sent("sign_up")
        assert t.queue.url == "memory://"
    finally:
        t.close()


def test_pytest_fixtures_for_app_authors(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_entry_point_dist(
        monkeypatch, tmp_path / "site", "postback-example", {"example": "postback.testing.example"}
    )
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "mobana,x,whop,tonai,applovin")
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def postback_config():
            return {"vendors": {"example": {"api_key": "${NOT_SET_IN_TESTS}"}}}

        def checkout(tracker):
            tracker.track("purchase", user={"email": "a@b.co"}, value=49.99, currency="USD")

        def test_checkout_sends_a_purchase(postback_tracker):
            checkout(postback_tracker)
            postback_tracker.assert_sent("purchase", vendor="example", value=49.99,
                                         currency="USD")

        def test_the_fixture_is_strict(postback_tracker):
            import postback
            with pytest.raises(postback.InvalidEvent) as info:
                postback_tracker.track("purchase", user={"email": "a@b.co"}, currency="USD")
            [problem] = info.value.problems
            assert (problem.vendor, problem.field) == ("example", "value")
            assert "purchase without value (strict mode)" in problem.message

        def test_sandbox_is_real_http(postback_sandbox):
            assert postback_sandbox.url.startswith("http://127.0.0.1:")
            assert "example" in postback_sandbox.emulators
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_contract_kit_passes_for_the_example_vendor(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_entry_point_dist(
        monkeypatch, tmp_path / "site", "postback-example", {"example": "postback.testing.example"}
    )
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "mobana,x,whop,tonai,applovin")
    pytester.makepyfile(
        """
        from postback.testing.contract import DestinationContract

        class TestExampleContract(DestinationContract):
            vendor = "example"
            sample_events = [
                {"name": "purchase", "value": 49.99, "currency": "USD",
                 "user": {"email": "a@b.co"}},
                {"name": "sign_up", "user": {"user_id": "u1"}},
            ]
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=15)


DROPPER = '''
from postback.plugin import Delivered, hookimpl
from postback.testing.example import ExampleDestination, ExampleEmulator


class Dropper(ExampleDestination):
    """Sends only the first event of each batch, and reads any 200 as all delivered."""

    def build_request(self, batch):
        return super().build_request(batch[:1])

    def parse_response(self, batch, response):
        if response.status_code == 200:
            return Delivered(note="200 without one result per event")
        return super().parse_response(batch, response)


@hookimpl
def postback_register_destinations(register):
    register(Dropper)


@hookimpl
def postback_register_emulators(register):
    register(ExampleEmulator)
'''


def test_contract_kit_catches_a_plugin_that_drops_events_of_a_batch(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delivered samples are counted where they arrive (the emulator), not only from the
    outcomes the plugin returns: a build_request carrying one event of a batch of two, with
    a parse_response reading the 200 as all delivered, loses an event the outcomes hide."""
    add_entry_point_dist(
        monkeypatch,
        tmp_path / "site",
        "postback-dropper",
        {"example": "postback_dropper"},
        {"postback_dropper": DROPPER},
    )
    monkeypatch.setenv("POSTBACK_DISABLE_PLUGINS", "mobana,x,whop,tonai,applovin")
    pytester.makepyfile(
        """
        from postback.testing.contract import DestinationContract

        class TestDropperContract(DestinationContract):
            vendor = "example"
            sample_events = [
                {"name": "purchase", "value": 49.99, "currency": "USD",
                 "user": {"email": "a@b.co"}},
                {"name": "sign_up", "user": {"user_id": "u1"}},
            ]
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "batch_arrives")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*a batch of 2 events*reached the example emulator as 1*"])

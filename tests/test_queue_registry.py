"""Queue backends are registered, not hard-wired: a backend from outside the core (tests/toy_queue)
registers through postback_register_queues, passes QueueContract, is chosen by the config, and
the config names the installed schemes when it names none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import postback.testing.example as example
import tests.toy_queue as toy_queue
from postback import ConfigError, PluginError, Tracker, hookimpl
from postback.delivery.queue import QueueBackend
from postback.plugins import PluginHost
from postback.testing import QueueContract
from tests.toy_queue import TOY, ToyQueue

pytest_plugins = ["pytester"]


class TestToyQueue(QueueContract):
    plugins = (toy_queue,)

    @pytest.fixture
    def queue_url(self) -> str:
        return "toy://"


def test_the_builtin_backends_register_through_the_hook() -> None:
    host = PluginHost(load_entry_points=False)
    assert host.queues.schemes == [
        "memory",
        "redis",
        "redis+cluster",
        "redis+sentinel",
        "rediss",
        "sqlite",
    ]
    assert host.queues.backend_for("toy://") is None
    with_toy = PluginHost([toy_queue], load_entry_points=False)
    assert with_toy.queues.backend_for("TOY://x") is TOY


def test_a_tracker_uses_a_registered_backend() -> None:
    cfg = {
        "postback": {"queue": "toy://", "workers": True},
        "vendors": {"example": {"api_key": "k", "base_url": "http://127.0.0.1:9/"}},
    }
    tracker = Tracker.from_config(cfg, plugins=[example, toy_queue], load_entry_points=False)
    try:
        assert isinstance(tracker.queue, ToyQueue)
        tracker.track("sign_up", user={"email": "a@b.co"})
        assert tracker.queue.depth(["example"], 0)["example"].pending == 1
    finally:
        tracker.close(timeout=0)


def test_an_unknown_scheme_names_the_installed_ones() -> None:
    cfg = {"postback": {"queue": "kafka://broker:9092/events"}}
    with pytest.raises(ConfigError) as info:
        Tracker.from_config(cfg, plugins=[toy_queue], load_entry_points=False)
    (problem,) = info.value.problems
    assert problem.path == "postback.queue"
    for scheme in ("memory://", "sqlite://", "redis://", "toy://"):
        assert scheme in problem.message
    assert "postback_register_queues" in problem.message


def test_an_unknown_scheme_never_echoes_a_password() -> None:
    with pytest.raises(ConfigError) as info:
        Tracker.from_config(
            {"postback": {"queue": "kafka://user:hunter2@broker/x"}}, load_entry_points=False
        )
    assert "hunter2" not in str(info.value)


def test_process_workers_need_a_backend_other_processes_share() -> None:
    cfg = {"postback": {"queue": "toy://", "workers": "process"}}
    with pytest.raises(ConfigError, match=r"cannot read a toy:// queue .*sqlite://"):
        Tracker.from_config(cfg, plugins=[toy_queue], load_entry_points=False)


def test_a_scheme_registered_twice_names_both_plugins() -> None:
    class Rival:
        @staticmethod
        @hookimpl
        def postback_register_queues(register: Callable[[QueueBackend], None]) -> None:
            register(TOY)

    with pytest.raises(PluginError, match=r"toy:// is registered twice: by .*toy_queue"):
        PluginHost([toy_queue, Rival()], load_entry_points=False)


def test_registering_something_else_is_refused() -> None:
    class Wrong:
        @staticmethod
        @hookimpl
        def postback_register_queues(register: Callable[[object], None]) -> None:
            register(ToyQueue)

    with pytest.raises(PluginError, match=r"register a postback\.delivery\.queue\.QueueBackend"):
        PluginHost([Wrong()], load_entry_points=False)


def test_the_contract_catches_a_backend_that_hands_an_event_out_twice(
    pytester: pytest.Pytester,
) -> None:
    root = Path(__file__).resolve().parents[1]
    pytester.syspathinsert(root)
    pytester.makepyfile(
        """
        import pytest
        import tests.toy_queue as toy_queue
        from postback.testing import QueueContract

        class TestLeaky(QueueContract):
            plugins = (toy_queue,)

            @pytest.fixture
            def queue_url(self):
                return "toy://leaky"
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 2, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "FAILED *::test_put_claim_settle_in_order*",
            "FAILED *::test_depth_is_exact_under_concurrent_claims*",
        ],
        consecutive=False,
    )

"""The ``postback`` pytest plugin (entry point ``pytest11``), for app and plugin authors.

Fixtures:

``postback_tracker``
    A :class:`~postback.testing.RecordingTracker`: your config's vendors answered by their
    emulators in-process, every delivery recorded, ``assert_sent(...)`` helpers. Override the
    ``postback_config`` fixture to return your app's config (file path or dict); by default
    every installed vendor with an emulator is enabled. It is *strict*: an event a configured
    vendor would skip (its identifier or a field it requires is missing) raises
    :class:`~postback.InvalidEvent` naming the vendor and field, so a test catches it at once.
    Override ``postback_strict`` to return False to test skips as production has them.
``postback_sandbox``
    The sandbox served on loopback (a real HTTP server on 127.0.0.1) with every installed
    vendor's emulator, for tests that need real HTTP; ``sandbox.vendor_config(name)`` gives the
    settings that point a tracker at it; ``sandbox.set_fault(...)`` injects failures.

The plugin contract kit is :class:`postback.testing.contract.DestinationContract`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

# pytest loads this module (entry point ``pytest11``) in every test run of every app that has
# postback installed, whether or not its tests use these fixtures: postback itself is imported
# only when a fixture runs (tests/test_pytest_plugin_lazy.py keeps it so).
if TYPE_CHECKING:
    from postback.sandbox import Sandbox
    from postback.testing.recorder import RecordingTracker


@pytest.fixture
def postback_config() -> Any:
    """The config ``postback_tracker`` uses: override it to return your app's config."""
    return None


@pytest.fixture
def postback_strict() -> bool:
    """Whether ``postback_tracker`` turns skips into ``InvalidEvent`` (default True)."""
    return True


@pytest.fixture
def postback_tracker(postback_config: Any, postback_strict: bool) -> Iterator[RecordingTracker]:
    """A recording tracker for your config (strict unless ``postback_strict`` says otherwise);
    closed after the test."""
    from postback.testing.recorder import recording_tracker

    tracker = recording_tracker(postback_config, strict=postback_strict)
    try:
        yield tracker
    finally:
        tracker.close()


@pytest.fixture
def postback_sandbox() -> Iterator[Sandbox]:
    """Every installed vendor's emulator served on 127.0.0.1 for the test's duration."""
    from postback.plugins import PluginHost
    from postback.sandbox import Sandbox

    host = PluginHost()
    with Sandbox.from_plugins(host.emulators) as box:
        yield box

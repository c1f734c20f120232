"""Test helpers for app authors and plugin authors.

- :func:`recording_tracker` / :class:`RecordingTracker`: a tracker whose vendors are answered by
  their emulators in-process, with ``assert_sent("purchase", vendor="x", value=49.99,
  currency="USD")``.
- The pytest plugin (installed with postback): fixtures ``postback_tracker``,
  ``postback_config`` and ``postback_sandbox``.
- :class:`~postback.testing.contract.DestinationContract`: the checks every vendor plugin runs.
- :class:`~postback.testing.queue_contract.QueueContract`: the checks every queue backend runs
  (imported on first use: it needs pytest).
- :mod:`postback.testing.example`: a complete reference vendor.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from postback.testing.queue_contract import QueueContract
    from postback.testing.recorder import (
        Delivery,
        DeliveryRecorder,
        RecordingTracker,
        recording_tracker,
    )

__all__ = ["Delivery", "DeliveryRecorder", "QueueContract", "RecordingTracker", "recording_tracker"]

# Imported on first use: the pytest plugin (a submodule) loads this package in every test run
# of an app that has postback installed, and QueueContract needs pytest.
_EXPORTS = {
    "Delivery": "postback.testing.recorder",
    "DeliveryRecorder": "postback.testing.recorder",
    "QueueContract": "postback.testing.queue_contract",
    "RecordingTracker": "postback.testing.recorder",
    "recording_tracker": "postback.testing.recorder",
}


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'postback.testing' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value

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

from postback.testing.recorder import (
    Delivery,
    DeliveryRecorder,
    RecordingTracker,
    recording_tracker,
)

__all__ = ["Delivery", "DeliveryRecorder", "QueueContract", "RecordingTracker", "recording_tracker"]


def __getattr__(name: str) -> object:
    if name == "QueueContract":  # a pytest base class: import pytest only when asked for
        from postback.testing.queue_contract import QueueContract

        return QueueContract
    raise AttributeError(f"module 'postback.testing' has no attribute {name!r}")

"""Test helpers for app authors and plugin authors.

- :func:`recording_tracker` / :class:`RecordingTracker`: a tracker whose vendors are answered by
  their emulators in-process, with ``assert_sent("purchase", vendor="x", value=49.99,
  currency="USD")``.
- The pytest plugin (installed with postback): fixtures ``postback_tracker``,
  ``postback_config`` and ``postback_sandbox``.
- :class:`~postback.testing.contract.DestinationContract`: the checks every vendor plugin runs.
- :mod:`postback.testing.example`: a complete reference vendor.
"""

from postback.testing.recorder import (
    Delivery,
    DeliveryRecorder,
    RecordingTracker,
    recording_tracker,
)

__all__ = ["Delivery", "DeliveryRecorder", "RecordingTracker", "recording_tracker"]

"""postback: send server-side conversion events to ad and attribution vendors.

::

    from postback import Tracker

    tracker = Tracker.from_config("postback.toml")
    tracker.track("purchase", user={"email": "a@b.co"}, value=49.99, currency="USD")

Vendor plugins implement hooks with :data:`hookimpl` and register :class:`Destination`
subclasses; see the plugin authoring guide.
"""

from __future__ import annotations

from postback.aio import AsyncTracker
from postback.config import Config
from postback.delivery.engine import FlushReport, VendorReport
from postback.destination import (
    DeadLettered,
    Delivered,
    Destination,
    Emulator,
    Halt,
    Outcome,
    Prepared,
    RateHint,
    RateLimit,
    Rejected,
    RejectedBatch,
    Reported,
    Retry,
    RetryPolicy,
    Secret,
    Skip,
    SkipEvent,
    Skipped,
    setting,
)
from postback.errors import (
    ConfigError,
    ConfigProblem,
    InvalidEvent,
    PluginError,
    PostbackError,
    Problem,
    QueueAuthRefused,
    QueueCorrupt,
    QueueDiskFull,
    QueueError,
    QueueFull,
    QueueReadOnly,
    QueueUnavailable,
    TrackerClosed,
)
from postback.events import Attribution, Context, Event, User
from postback.hookspecs import hookimpl
from postback.routing import Explanation, VendorRoute
from postback.tracker import Tracker

__version__ = "0.1.0"

__all__ = [
    "AsyncTracker",
    "Attribution",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "Context",
    "DeadLettered",
    "Delivered",
    "Destination",
    "Emulator",
    "Event",
    "Explanation",
    "FlushReport",
    "Halt",
    "InvalidEvent",
    "Outcome",
    "PluginError",
    "PostbackError",
    "Prepared",
    "Problem",
    "QueueAuthRefused",
    "QueueCorrupt",
    "QueueDiskFull",
    "QueueError",
    "QueueFull",
    "QueueReadOnly",
    "QueueUnavailable",
    "RateHint",
    "RateLimit",
    "Rejected",
    "RejectedBatch",
    "Reported",
    "Retry",
    "RetryPolicy",
    "Secret",
    "Skip",
    "SkipEvent",
    "Skipped",
    "Tracker",
    "TrackerClosed",
    "User",
    "VendorReport",
    "VendorRoute",
    "__version__",
    "hookimpl",
    "setting",
]

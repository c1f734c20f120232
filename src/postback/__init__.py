"""postback: send server-side conversion events to ad and attribution vendors.

::

    from postback import Tracker

    tracker = Tracker.from_config("postback.toml")
    tracker.track("purchase", user={"email": "a@b.co"}, value=49.99, currency="USD")

Vendor plugins import :mod:`postback.plugin` (the plugin SDK); see the plugin authoring
guide. Besides the names below, :mod:`postback.plugin`, :mod:`postback.testing` and
:mod:`postback.integrations` are public; every other module is the host's internals.

The names below are imported on first use (PEP 562), so ``import postback`` (and the pytest
plugin, which every test run of an app with postback installed loads) stays cheap.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
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

#: Exported name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "AsyncTracker": "postback.aio",
    "Attribution": "postback.events",
    "Config": "postback.config",
    "ConfigError": "postback.errors",
    "ConfigProblem": "postback.errors",
    "Context": "postback.events",
    "DeadLettered": "postback.destination",
    "Delivered": "postback.destination",
    "Destination": "postback.destination",
    "Emulator": "postback.destination",
    "Event": "postback.events",
    "Explanation": "postback.routing",
    "FlushReport": "postback.delivery.engine",
    "Halt": "postback.destination",
    "InvalidEvent": "postback.errors",
    "Outcome": "postback.destination",
    "PluginError": "postback.errors",
    "PostbackError": "postback.errors",
    "Prepared": "postback.destination",
    "Problem": "postback.errors",
    "QueueAuthRefused": "postback.errors",
    "QueueCorrupt": "postback.errors",
    "QueueDiskFull": "postback.errors",
    "QueueError": "postback.errors",
    "QueueFull": "postback.errors",
    "QueueReadOnly": "postback.errors",
    "QueueUnavailable": "postback.errors",
    "RateHint": "postback.destination",
    "RateLimit": "postback.destination",
    "Rejected": "postback.destination",
    "RejectedBatch": "postback.destination",
    "Reported": "postback.destination",
    "Retry": "postback.destination",
    "RetryPolicy": "postback.destination",
    "Secret": "postback.destination",
    "Skip": "postback.destination",
    "SkipEvent": "postback.destination",
    "Skipped": "postback.destination",
    "Tracker": "postback.tracker",
    "TrackerClosed": "postback.errors",
    "User": "postback.events",
    "VendorReport": "postback.delivery.engine",
    "VendorRoute": "postback.routing",
    "hookimpl": "postback.hookspecs",
    "setting": "postback.destination",
}

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


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'postback' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

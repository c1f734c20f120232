"""postback plugin: X (Twitter) Mobile App Conversion Tracking (MACT).

Registers the ``x`` destination (``POST {base}/12/conversion_event``, OAuth 1.0a signed, one
conversion per request, X's attribution handed to ``postback_on_attribution``) and its sandbox
emulator. See README.md for settings, event mapping and behaviour.
"""

from __future__ import annotations

from collections.abc import Callable

from postback.plugin import Destination, Emulator, hookimpl
from postback_x.destination import (
    CONVERSION_TYPES,
    DEFAULT_EVENT_MAP,
    XDestination,
    XSettings,
    hash_device_id,
)
from postback_x.emulator import XEmulator

__all__ = [
    "CONVERSION_TYPES",
    "DEFAULT_EVENT_MAP",
    "XDestination",
    "XEmulator",
    "XSettings",
    "hash_device_id",
    "postback_register_destinations",
    "postback_register_emulators",
]


@hookimpl
def postback_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(XDestination)


@hookimpl
def postback_register_emulators(register: Callable[[type[Emulator]], None]) -> None:
    register(XEmulator)

"""postback plugin: AppLovin Axon Conversion API (``[vendors.applovin]``).

Registers :class:`AppLovinDestination` (``POST https://b.applovin.com/v1/event``) and its sandbox
emulation :class:`AppLovinEmulator`. Installed, it is found through the ``postback`` entry point
``applovin``; nothing else is needed beyond a ``[vendors.applovin]`` table.
"""

from __future__ import annotations

from collections.abc import Callable

from postback.plugin import Destination, Emulator, hookimpl
from postback_applovin.destination import (
    DEFAULT_EVENT_MAP,
    AppLovinDestination,
    AppLovinEventInvalid,
    AppLovinSettings,
)
from postback_applovin.emulator import INVALID_TRIGGER, AppLovinEmulator

__all__ = [
    "DEFAULT_EVENT_MAP",
    "INVALID_TRIGGER",
    "AppLovinDestination",
    "AppLovinEmulator",
    "AppLovinEventInvalid",
    "AppLovinSettings",
    "postback_register_destinations",
    "postback_register_emulators",
]


@hookimpl
def postback_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(AppLovinDestination)


@hookimpl
def postback_register_emulators(register: Callable[[type[Emulator]], None]) -> None:
    register(AppLovinEmulator)

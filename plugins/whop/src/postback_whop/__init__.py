"""postback plugin: Whop conversion events (``POST /api/v1/events`` or ``/conversions``).

Installed, it registers the ``whop`` destination and its sandbox emulator through the
``postback`` entry-point group; configure it with a ``[vendors.whop]`` table (see README.md).
"""

from __future__ import annotations

from collections.abc import Callable

from postback.plugin import Destination, Emulator, hookimpl
from postback_whop.destination import WhopDestination, WhopSettings
from postback_whop.emulator import WhopEmulator

__all__ = [
    "WhopDestination",
    "WhopEmulator",
    "WhopSettings",
    "postback_register_destinations",
    "postback_register_emulators",
]


@hookimpl
def postback_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(WhopDestination)


@hookimpl
def postback_register_emulators(register: Callable[[type[Emulator]], None]) -> None:
    register(WhopEmulator)

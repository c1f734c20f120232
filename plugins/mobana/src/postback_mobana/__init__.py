"""postback plugin: Mobana conversion tracking (``POST https://{app_id}.mobana.ai/conversion``).

Installed, it registers the ``mobana`` vendor and its sandbox emulation through the ``postback``
entry point; enable it with a ``[vendors.mobana]`` table (``app_id``, ``app_key``). See the
README for settings, event mapping and delivery behaviour.
"""

from __future__ import annotations

from collections.abc import Callable

from postback.plugin import Destination, Emulator, hookimpl
from postback_mobana.destination import MobanaDestination, MobanaSettings, UnsendableEvent
from postback_mobana.emulator import MobanaEmulator

__all__ = [
    "MobanaDestination",
    "MobanaEmulator",
    "MobanaSettings",
    "UnsendableEvent",
    "postback_register_destinations",
    "postback_register_emulators",
]


@hookimpl
def postback_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    """Register the ``mobana`` destination."""
    register(MobanaDestination)


@hookimpl
def postback_register_emulators(register: Callable[[type[Emulator]], None]) -> None:
    """Register the emulation of Mobana's ``/conversion`` endpoint."""
    register(MobanaEmulator)

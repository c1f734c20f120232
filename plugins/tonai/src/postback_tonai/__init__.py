"""postback plugin: report conversions (new users) to Ton AI.

Registers the ``tonai`` destination and its sandbox emulator through the ``postback`` entry
point. See README.md for settings, event mapping and the defaults chosen.
"""

from __future__ import annotations

from collections.abc import Callable

from postback.plugin import Destination, Emulator, hookimpl
from postback_tonai.destination import TonAIDestination, TonAISettings
from postback_tonai.emulator import TonAIEmulator

__all__ = [
    "TonAIDestination",
    "TonAIEmulator",
    "TonAISettings",
    "postback_register_destinations",
    "postback_register_emulators",
]


@hookimpl
def postback_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(TonAIDestination)


@hookimpl
def postback_register_emulators(register: Callable[[type[Emulator]], None]) -> None:
    register(TonAIEmulator)

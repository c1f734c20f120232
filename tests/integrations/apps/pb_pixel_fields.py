"""A test plugin: declares AppLovin's context fields (``aleid``, ``alart``, ``axwrt``) the way
the AppLovin plugin does, so the integrations fill them from the request in these tests, where
only the example vendor is loaded (``POSTBACK_DISABLE_PLUGINS=*``). Its destination is never
configured, so it sends nothing."""

from __future__ import annotations

from typing import Any

from postback.plugin import Destination, context_field, hookimpl


class PixelFields(Destination):
    name = "pixel_fields"
    fields = tuple(
        context_field(name, help="AppLovin's, as its plugin declares it")
        for name in ("aleid", "alart", "axwrt")
    )


@hookimpl
def postback_register_destinations(register: Any) -> None:
    register(PixelFields)

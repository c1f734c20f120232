"""A test plugin: copies each event's request-derived fields into the ``example`` wire record.

``postback.testing.example`` sends only id, name, user and value; wrapping its transform with
this plugin makes the sandbox's ExampleEmulator record what the integrations filled in
(``ip``, ``ua`` and ``ctx``), so tests can assert on it after a real delivery.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from postback import hookimpl
from postback.destination import Destination
from postback.event_codec import converter
from postback.events import Event


@hookimpl(wrapper=True)
def postback_transform(event: Event, destination: Destination) -> Generator[None, Any, Any]:
    record = yield
    if isinstance(record, dict):
        record = {
            **record,
            "ip": event.user.ip_address,
            "ua": event.user.user_agent,
            "ctx": converter.unstructure(event.context),
        }
    return record

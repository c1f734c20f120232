"""The core's contract kit, run against the Mobana plugin."""

from __future__ import annotations

import time

from postback.testing.contract import DestinationContract

_AN_HOUR_AGO = int(time.time() * 1000) - 3_600_000


class TestMobanaContract(DestinationContract):
    vendor = "mobana"
    sample_events = [
        {
            "name": "purchase",
            "user": {"install_id": "550e8400-e29b-41d4-a716-446655440000"},
            "value": 49.99,
            "currency": "USD",
            "timestamp": _AN_HOUR_AGO,
        },
        {
            "name": "purchase",
            "user": {"install_id": "520e8400-c466-a554-40e0-0"},
            "value": "19.90",
            "currency": "EUR",  # converted at the demo rate
            "vendors": {"mobana": {"flow_session_id": "abc123-session-id"}},
        },
        {"name": "sign_up", "user": {"install_id": "7d444840-9dc0-11d1-b245-5ffdce74fad2"}},
        {"name": "level_up", "user": {"install_id": "7d444840-9dc0-11d1-b245-5ffdce74fad2"}},
    ]

"""The core's contract kit, run against the X plugin."""

from __future__ import annotations

from postback.testing.contract import DestinationContract
from postback_x.emulator import DEMO_IFA_NONE, DEMO_IFA_TPN, DEMO_IFA_X_CLICK


class TestXContract(DestinationContract):
    vendor = "x"
    sample_events = [
        {
            "name": "purchase",
            "user": {"ifa": DEMO_IFA_X_CLICK.upper(), "os": "ios", "ip_address": "192.133.78.1"},
            "value": 49.99,
            "currency": "USD",
            "properties": {"items": [{"item_id": "sku-1", "quantity": 2}]},
        },
        {
            "name": "install",
            "user": {"ifa": DEMO_IFA_TPN, "os": "android"},
            "vendors": {"x": {"click_window": 30, "view_through_window": 7}},
        },
        {"name": "sign_up", "user": {"ifa": DEMO_IFA_NONE}},
        {"name": "level_achieved", "user": {"ifa": DEMO_IFA_NONE}, "properties": {"level": 4}},
    ]

"""postback's plugin contract kit, run against postback-whop."""

from postback.testing.contract import DestinationContract


class TestWhopContract(DestinationContract):
    vendor = "whop"
    sample_events = [
        {
            "name": "lead",
            "user": {"email": "ada@example.com"},
            "event_id": "lead-1",
            "context": {"url": "https://shop.example.com/", "utm_source": "x"},
        },
        {"name": "sign_up", "user": {"email": "ada@example.com"}, "value": 6.9, "currency": "USD"},
    ]

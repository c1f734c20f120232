"""postback's plugin contract kit, run against postback-applovin."""

from postback.testing.contract import DestinationContract

_USER = {
    "email": "ada@example.com",
    "ip_address": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
}


class TestAppLovinContract(DestinationContract):
    vendor = "applovin"
    sample_events = [
        {
            "name": "purchase",
            "value": 49.99,
            "currency": "USD",
            "user": _USER,
            "event_id": "order-1-purchase",
            "context": {"url": "https://shop.example.com/done"},
            "properties": {"transaction_id": "1", "items": [{"item_id": "sku-1", "quantity": 1}]},
        },
        {"name": "page_view", "user": _USER, "context": {"url": "https://shop.example.com/"}},
    ]

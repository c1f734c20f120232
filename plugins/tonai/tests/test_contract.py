"""postback's plugin contract kit, run against postback-tonai."""

from postback.testing.contract import DestinationContract


class TestTonAIContract(DestinationContract):
    vendor = "tonai"
    sample_events = [
        {"name": "sign_up", "user": {"telegram_user_id": "1728125519"}},
        {"name": "sign_up", "user": {"telegram_user_id": 5512345678}},
    ]

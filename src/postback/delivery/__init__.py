"""Durable delivery: queue backends, the engine's lanes, retry timing."""

from postback.delivery.engine import DeliveryEngine, FlushReport, VendorReport
from postback.delivery.queue import Claimed, DeadLetter, Queue, QueueDepth, Settlement
from postback.delivery.registry import open_queue

__all__ = [
    "Claimed",
    "DeadLetter",
    "DeliveryEngine",
    "FlushReport",
    "Queue",
    "QueueDepth",
    "Settlement",
    "VendorReport",
    "open_queue",
]

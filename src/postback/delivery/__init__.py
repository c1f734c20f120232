"""Durable delivery: queue backends, the deliverers (the engine's lanes, the delivery child,
enqueue-only) and the worker loop, retry timing.

Internal to the host: vendor plugins never import from here (they get what they need, such as
Retry-After parsing, from :mod:`postback.plugin`; tests/test_plugin_sdk.py enforces it), and
its names may change in any release. Queue backends implement the public
:class:`~postback.delivery.queue.Queue` contract and register through a hook.
"""

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

"""The vendors the benchmarks deliver to: postback's example vendor with other batch sizes.

``bench_batch`` sends up to 100 events per request (Segment's batch size, AppLovin's maximum),
``bench_single`` one event per request (like X, Whop, Mobana and Ton AI). Both speak the example
vendor's wire format (``POST {base}/v1/events``), which ``sink.py`` answers. Register the module
as an in-process plugin: ``Tracker.from_config(cfg, plugins=[bench_vendors])``.
"""

from __future__ import annotations

from collections.abc import Callable

from postback.destination import Destination
from postback.hookspecs import hookimpl
from postback.testing.example import ExampleDestination

__all__ = ["BatchDestination", "SingleDestination"]


class BatchDestination(ExampleDestination):
    """The example vendor, 100 events per request."""

    name = "bench_batch"
    max_batch_size = 100


class SingleDestination(ExampleDestination):
    """The example vendor, one event per request."""

    name = "bench_single"
    max_batch_size = 1


@hookimpl
def postback_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(BatchDestination)
    register(SingleDestination)

"""The deliverer seam: how a tracker gets its events delivered, as one small protocol.

A tracker has exactly one :class:`Deliverer`, chosen once from its
:class:`~postback.delivery.mode.DeliveryMode` (the resolved ``[postback] workers`` setting).
Nothing else asks which mode is in use: the tracker's ``track()``, ``start()``, ``flush()``,
``close()`` and ``stats()``, its exit hooks and its ``fork()`` hook call the deliverer, and
each implementation does what its mode means.

Every deliverer's duties (pinned, for each implementation, by tests/test_deliverer.py):

- ``start()`` begins delivering, never blocks, and is idempotent; ``track()`` starts it on
  first use through ``notify()``. ``ready(timeout)`` waits until delivery can happen.
- ``notify(vendors)`` is called by every ``track()`` after the event is stored: cheap, and
  what it wakes is the implementation's business.
- ``flush(timeout)`` waits at most ``timeout`` seconds for what is queued to be delivered and
  returns a :class:`~postback.delivery.stats.FlushReport` (what is left, per vendor).
- ``flush_own(timeout)`` is the exit hook's shorter wait: only until this process's own events
  were taken by whoever delivers; False if the implementation cannot tell (then ``flush`` is
  the wait). ``flushes_on_close`` says whether ``close()`` and the exit hook wait at all.
- ``stop(wait)`` stops delivering here, giving requests in flight ``wait`` seconds.
- ``stats()`` returns the per-vendor counters and queue depths, the same keys everywhere.
- ``after_fork()`` runs in a forked child: nothing of the parent's delivery survived (threads,
  the delivery process, connections), so the child starts its own lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from postback.delivery.stats import FlushReport

__all__ = ["Deliverer"]


@runtime_checkable
class Deliverer(Protocol):
    """Where this process's events are delivered from (see the module docstring)."""

    @property
    def flushes_on_close(self) -> bool:
        """Whether ``close()`` and the exit hook wait for the queue (False where another
        process delivers what this one queues: its events are stored, nothing to wait for)."""

    def start(self) -> None: ...

    def ready(self, timeout: float | None) -> bool: ...

    def notify(self, vendors: Sequence[str]) -> None: ...

    def flush(self, timeout: float | None) -> FlushReport: ...

    def flush_own(self, timeout: float) -> bool: ...

    def stop(self, wait: float) -> None: ...

    def stats(self) -> dict[str, dict[str, Any]]: ...

    def after_fork(self) -> None: ...

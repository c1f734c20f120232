"""How a tracker delivers, chosen once from ``[postback] workers``: :class:`DeliveryMode`.

``workers`` is ``"auto"``, ``true`` / ``"thread"``, ``"process"`` or ``false`` in the
configuration (:class:`postback.config.Workers` once validated: ``THREAD``, ``PROCESS``,
``OFF``); the tracker resolves ``"auto"`` (see :func:`postback.tracker.auto_workers`),
names the mode, and :func:`postback.delivery.deliverer.choose_deliverer` turns it into the
tracker's deliverer, the one place where a mode becomes behaviour.
"""

from __future__ import annotations

import enum

__all__ = ["DeliveryMode"]


class DeliveryMode(enum.Enum):
    """Where this process's events are delivered from."""

    #: Lanes on threads of this process (``workers = true``).
    THREADS = "thread"
    #: A child process this tracker starts and supervises (``workers = "process"``).
    PROCESS = "process"
    #: Nowhere here: another process delivers from the shared queue (``workers = false``).
    ENQUEUE_ONLY = "enqueue-only"

    @classmethod
    def from_workers(cls, workers: bool | str) -> DeliveryMode:
        """The mode a resolved ``workers`` setting names (``"auto"`` must be resolved first)."""
        if workers is True or workers == "thread":
            return cls.THREADS
        if workers == "process":
            return cls.PROCESS
        if workers is False or workers == "off":
            return cls.ENQUEUE_ONLY
        raise ValueError(f"workers = {workers!r} names no delivery mode; resolve 'auto' first")

    @property
    def delivers(self) -> bool:
        """Whether this tracker delivers (on its threads or through its child)."""
        return self is not DeliveryMode.ENQUEUE_ONLY

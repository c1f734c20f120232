"""Logging a lasting fault once: when it starts, when it changes, and when it ends.

A full disk or an unreachable queue makes the same operation fail every few milliseconds
(each settle, each claim, each save of progress) until the fault goes away. Logging every
failure buried the one line that mattered under thousands of copies. :class:`FaultLog`
keeps, per operation, whether it is failing and with which kind of error: the first failure
and a change of kind are logged at WARNING, repeats at DEBUG, and the end of the fault at
WARNING too ("works again"), so an operator sees the outage's start and end.

A fault ends when the operation has worked for :data:`~postback.delivery.timing.FAULT_SETTLED`
seconds without failing again, not at its first success: on a nearly full disk one write
fits where the next does not, and several threads retry the same operation (a lane's request
threads recording outcomes), one succeeding while another still fails. Ending the fault at
each success logged every such flap as a new outage, at WARNING, without bound. A failure
while the fault is settling is a repeat (DEBUG); the "works again" line comes with the first
success after the quiet period.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref

from postback.delivery import timing

__all__ = ["FaultLog"]

_instances: weakref.WeakSet[FaultLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for fault_log in list(_instances):  # a fork mid-update must not leave the lock held
        fault_log._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class FaultLog:
    """Per operation name: failing (with the error's type) or not. Thread-safe."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}
        #: Failing operations that worked since their last failure: when they first did.
        self._settling: dict[str, float] = {}
        _instances.add(self)

    def failed(self, what: str, exc: BaseException) -> None:
        """``what`` failed with ``exc``; logged at WARNING only if it was not failing this way."""
        kind = type(exc).__name__
        with self._lock:
            before = self._failing.get(what)
            self._failing[what] = kind
            self._settling.pop(what, None)  # it had not settled: the same fault goes on
        level = logging.DEBUG if before == kind else logging.WARNING
        self._log.log(
            level,
            "%s failed (trying again; logged again when it works or fails differently): %s",
            what,
            exc,
        )

    def ok(self, what: str) -> None:
        """``what`` worked; if it was failing, the fault ends (logged once) when it has kept
        working for ``timing.FAULT_SETTLED`` seconds."""
        if not self._failing:  # the common case: no lock, no dictionary look-up under one
            return
        now = time.monotonic()
        with self._lock:
            if what not in self._failing:
                return
            since = self._settling.setdefault(what, now)
            if now - since < timing.FAULT_SETTLED:
                return
            del self._failing[what], self._settling[what]
        self._log.warning("%s works again", what)

    def failing(self) -> dict[str, str]:
        """What is failing now, and with which kind of error."""
        with self._lock:
            return dict(self._failing)

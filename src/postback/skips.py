"""Skip accounting: how many events each vendor was left out of, and why, never silently.

When a vendor cannot use an event as given (its :class:`~postback.Skip` from validation), the
routing step records it here, on the thread that called ``track()``. :class:`SkipLedger`:

- counts it per ``(vendor, reason)``: in this process (``tracker.stats()``) and, in batches,
  in the queue backend, so that ``postback queue stats`` (another process) sees every process's
  counts. A background thread, started on the first skip, writes at most once a second while
  skips come in, and ``close()`` writes the rest: never a write per ``track()``;
- appends it to the delivery ledger's buffer (:mod:`postback.ledger`), for
  ``tracker.status()``;
- logs the first skip of each ``(vendor, reason)`` in this process at WARNING, with the fix,
  and every later one at DEBUG; a skip that is a decision (:data:`DECISIONS`: no consent, a
  duplicate) is logged at INFO instead.

Recording costs a dict lookup by the Skip objects' ids and one ``deque.append`` per event
(however many vendors skipped it): plugins hand out the same Skips event after event, and
every event skipped the same way shares one tuple of ``(vendor, reason)`` pairs in the
buffers. The counts are added up when someone reads or writes them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Sequence
from itertools import chain

from postback.consent import CONSENT
from postback.dedupe import DUPLICATE
from postback.delivery.queue import Queue
from postback.destination import Skip
from postback.events import Event
from postback.ledger import LedgerWriter

__all__ = ["DECISIONS", "WRITE_EVERY", "SkipLedger"]

log = logging.getLogger("postback")

#: Skip reasons that are decisions, not defects: the user's consent, an event already sent.
#: Never problems (not even with ``strict = true``); the first is logged at INFO, not WARNING.
DECISIONS: frozenset[str] = frozenset({CONSENT, DUPLICATE})
#: Seconds between writes of new skip counts to the queue while skips come in.
WRITE_EVERY = 1.0
#: At most this many combinations of skips are shared (:meth:`SkipLedger.record`); a plugin
#: whose reasons vary per event gets a tuple per event beyond it, as before.
_MAX_COMBOS = 1024
#: The ``(vendor, reason)`` of each skip of one event.
_Pairs = tuple[tuple[str, str], ...]
#: How long ``close()`` waits for the writer thread before writing the rest itself.
_JOIN_TIMEOUT = 2.0


class SkipLedger:
    """Per ``(vendor, reason)`` skip counters of one tracker, kept in memory and in its queue."""

    def __init__(self, queue: Queue, ledger: LedgerWriter | None = None) -> None:
        self.queue = queue
        #: Each skip is also appended to the delivery ledger's buffer (written off this thread).
        self.ledger = ledger
        self._reset()

    def _reset(self) -> None:
        #: Each record()'s (vendor, reason) keys: appended by track(), drained by readers.
        self._new: deque[_Pairs] = deque()
        #: Each combination of (vendor, reason) pairs seen, as the one tuple the buffers share.
        self._combos: dict[_Pairs, _Pairs] = {}
        #: The same, by the ids of the Skip objects that brought it (and those objects).
        self._by_ids: dict[tuple[int, ...], tuple[tuple[Skip, ...], _Pairs]] = {}
        self._totals: dict[tuple[str, str], int] = {}  # this process, since the start
        self._unwritten: dict[tuple[str, str], int] = {}  # not in the queue yet
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._dirty = threading.Event()  # the writer thread waits on it
        self._flagged = False  # mirrors _dirty for record()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- the track() path ----------------------------------------------------------------------

    def record(self, skips: Sequence[Skip], event: Event) -> None:
        """Count that each skip's vendor was left out of ``event`` (one skip per vendor);
        log it (WARNING the first time per vendor and reason, then DEBUG)."""
        # The common case, found by identity: plugins hand out the same Skip objects event
        # after event (built once), so a combination seen before is looked up by the objects'
        # ids (the cache holds the objects: their ids cannot be reused meanwhile).
        n = len(skips)
        ids = (
            (id(skips[0]),)
            if n == 1
            else (id(skips[0]), id(skips[1]))
            if n == 2
            else tuple(map(id, skips))
        )
        hit = self._by_ids.get(ids)
        if hit is not None:
            shared = hit[1]
            if log.isEnabledFor(logging.DEBUG):
                self._log(skips, shared, event)
        else:
            shared = self._first_seen(skips, ids, event)
        # One append to each buffer per event, however many vendors skipped it.
        self._new.append(shared)
        if self.ledger is not None and shared:
            self.ledger.skipped_all(event.event_id, event.name, shared)
        if not self._flagged:  # a plain attribute: cheaper than asking the Event each time
            self._flagged = True
            if self._thread is None:
                self._start()
            self._dirty.set()

    def _first_seen(self, skips: Sequence[Skip], ids: tuple[int, ...], event: Event) -> _Pairs:
        """The shared ``(vendor, reason)`` pairs of ``skips``, whose objects were not seen
        together before; a combination not seen before (by its pairs) is logged first. The
        buffers hold a second's worth of events (tens of thousands): one tuple shared by every
        event skipped the same way, not a list and a tuple per vendor each, keeps that many
        live objects out of the app's heap."""
        combo = tuple([(skip.vendor or "", skip.reason) for skip in skips])
        shared = self._combos.get(combo)
        if shared is None:
            self._log(skips, combo, event)
            if len(self._combos) < _MAX_COMBOS:
                self._combos[combo] = combo
            shared = combo
        elif log.isEnabledFor(logging.DEBUG):
            self._log(skips, shared, event)
        by_ids = self._by_ids
        if len(by_ids) >= _MAX_COMBOS:  # Skips made anew per event (a plugin's, with_vendor's)
            by_ids.clear()  # would fill it for good: start again, and what recurs comes back
        by_ids[ids] = (tuple(skips), shared)
        return shared

    def _log(self, skips: Sequence[Skip], keys: _Pairs, event: Event) -> None:
        """The first skip of each (vendor, reason) in this process at WARNING (INFO for a
        decision), with the fix; the later ones at DEBUG."""
        warned = self._warned
        for skip, key in zip(skips, keys, strict=True):
            vendor = key[0]
            if key in warned:
                log.debug(
                    "%s skipped %r (event %s): %s: %s",
                    vendor,
                    event.name,
                    event.event_id,
                    skip.field,
                    skip.reason,
                )
            elif skip.reason in DECISIONS:
                warned.add(key)
                log.info(
                    "%s left out of %r (event %s): %s. Counted in tracker.stats() and "
                    "`postback queue stats`; logged once per vendor and reason (then at DEBUG).",
                    vendor,
                    event.name,
                    event.event_id,
                    _why(skip),
                )
            else:
                warned.add(key)
                log.warning(
                    "%s skipped %r (event %s): %s. Vendors that can use the event still get "
                    "it. Logged once per vendor and reason (then at DEBUG), counted in "
                    "tracker.stats() and `postback queue stats`; [postback] strict = true "
                    "makes it an InvalidEvent.",
                    vendor,
                    event.name,
                    event.event_id,
                    _why(skip),
                )

    # --- reading and writing -------------------------------------------------------------------

    def totals(self) -> dict[str, dict[str, int]]:
        """This process's counts since the tracker started: ``{vendor: {reason: events}}``."""
        with self._lock:
            self._drain()
            items = list(self._totals.items())
        out: dict[str, dict[str, int]] = {}
        for (vendor, reason), n in items:
            out.setdefault(vendor, {})[reason] = n
        return out

    def write(self) -> None:
        """Add the counts not written yet to the queue now (the thread does it every second)."""
        with self._lock:
            self._drain()
            batch, self._unwritten = self._unwritten, {}
        if not batch:
            return
        try:
            self.queue.add_skips(batch)
        except Exception as exc:
            # Counting must never break tracking: keep them for the next write.
            log.warning("could not store skip counts in the queue (will retry): %s", exc)
            with self._lock:
                for key, n in batch.items():
                    self._unwritten[key] = self._unwritten.get(key, 0) + n

    def _drain(self) -> None:
        """Move what ``record()`` appended into the counters (the caller holds ``_lock``)."""
        new, totals, unwritten = self._new, self._totals, self._unwritten
        # Taken off the deque one by one (record() may append meanwhile), counted in C.
        taken = [new.popleft() for _ in range(len(new))]
        for key, n in Counter(chain.from_iterable(taken)).items():
            totals[key] = totals.get(key, 0) + n
            unwritten[key] = unwritten.get(key, 0) + n

    # --- the writer thread ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name="postback-skip-counts", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            # Let a second's worth of skips gather, then write them in one go.
            if self._stopping.wait(WRITE_EVERY):
                return
            # Cleared, then lowered, then drained: a skip recorded before the flag is lowered
            # is in this write; one after it raises the flag and sets the event again. (The
            # other order let a skip recorded in between leave the flag up and the event
            # clear: no write until close().)
            self._dirty.clear()
            self._flagged = False
            self.write()

    def close(self) -> None:
        """Stop the writer thread and write what is left (before the queue closes)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stopping.set()
        self._dirty.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)
        self.write()

    def after_fork(self) -> None:
        """In a forked child: the writer thread did not survive, and the parent's counts are
        the parent's to write."""
        self._reset()


def _why(skip: Skip) -> str:
    where = f"{skip.field}: " if skip.field else ""
    fix = f". Fix: {skip.fix}" if skip.fix else ""
    return f"{where}{skip.reason}{fix}"

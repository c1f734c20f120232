"""The delivery ledger: what happened to each event, per vendor, kept in the queue's backend.

``tracker.status(event_id)`` and ``postback status EVENT_ID`` read it; the dashboard's event
lookup too. This module holds the model (:class:`EventStatus`, :class:`VendorStatus`,
:class:`Attempt`), the row a backend stores (:class:`LedgerEntry`), the :class:`Ledger`
protocol backends implement, and :class:`LedgerWriter`, which buffers rows in memory and
writes them in batches. Backends: ``postback.delivery.ledger_sqlite`` (a ``<queue>.ledger``
file next to a SQLite queue), ``postback.delivery.redis.ledger`` (a hash per event with a TTL),
and :class:`MemoryLedger` here (``memory://`` and queue plugins that bring no ledger);
:func:`postback.delivery.ledgers.open_ledger` picks one for a queue.

Theory of operation:

* The lanes call :meth:`LedgerWriter.record` once per outcome batch, after the queue recorded
  the settlements: the batch's rows are built and appended to a deque, nothing else. They
  are written by the writer's thread, every :data:`FLUSH_EVERY` seconds while outcomes come (every
  :data:`FLUSH_BUSY` seconds while they come fast), in one transaction (SQLite) or one
  pipeline (Redis): never a write per event. ``status()`` writes what is buffered first, so
  this process's answer never waits for the writer; another process reading the ledger sees
  an outcome at most that long after it.
* A vendor skipped at ``track()`` (routing, consent) is appended to the same buffer by
  :class:`~postback.skips.SkipLedger` (no write on ``track()``'s thread).
* "Queued" is not written: it is derived from the queue (the event waiting there), and for
  attempted events from the queue's own ``created_ms`` carried with each row.
* Rows are dropped after ``ledger_retention`` (default 7 days) and beyond
  ``ledger_max_entries`` (oldest first), by the writer every :data:`PRUNE_EVERY` seconds.
* Stored: event id and name, vendor, times, outcome, attempt number, and a note (an error or
  skip reason, secrets removed by the vendor's ``redact`` and personal data masked by
  :func:`postback.textmask.mask_text`), the vendor's reference and a summary of the attribution
  (network, type, campaign ids). Never the event's payload or user fields.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import attrs

from postback.dedupe import DUPLICATE
from postback.outcomes import DeadLettered, Delivered, Retry, Skipped
from postback.textmask import mask_text

if TYPE_CHECKING:
    from postback.delivery.queue import Queue
    from postback.delivery.settle import Verdict
    from postback.destination import Destination
    from postback.events import Attribution

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_RETENTION",
    "FLUSH_BUSY",
    "FLUSH_EVERY",
    "PRUNE_EVERY",
    "Attempt",
    "EventStatus",
    "Ledger",
    "LedgerEntry",
    "LedgerWriter",
    "MemoryLedger",
    "VendorStatus",
    "build_status",
]

log = logging.getLogger("postback.ledger")

#: Seconds between writes while outcomes come in (one transaction / pipeline each).
FLUSH_EVERY = 0.01
#: Seconds between writes while outcomes come in fast (the last write had at least
#: :data:`BUSY_ROWS` rows): larger transactions cost less per row (a SQLite transaction's
#: commit, a Redis round trip).
FLUSH_BUSY = 0.1
BUSY_ROWS = 1000
#: Seconds between removals of rows past the retention or the size cap.
PRUNE_EVERY = 60.0
#: ``ledger_retention`` default: rows are kept this many seconds (7 days).
DEFAULT_RETENTION = 7 * 86400.0
#: ``ledger_max_entries`` default: at most this many rows are kept (oldest go first).
DEFAULT_MAX_ENTRIES = 1_000_000
#: Rows held in memory while the backend cannot take them, at most.
MAX_BUFFER = 100_000
NOTE_MAX = 500

Kind = Literal["delivered", "retry", "dead", "skipped", "held", "queued", "retrying", "in flight"]


class LedgerEntry(NamedTuple):
    """One row of the ledger: one outcome of one event for one vendor (or, for the waiting
    kinds ``queued``/``retrying``/``in flight``, what the queue says now; never stored)."""

    event_id: str
    vendor: str
    at_ms: int
    kind: str
    #: The attempt this outcome ended (1 for the first); 0 for skips and waiting records.
    attempt: int = 0
    note: str = ""
    #: The vendor's id for the delivered event, or a summary of its attribution.
    ref: str = ""
    name: str = ""
    #: When the queue accepted the event (epoch ms), 0 if unknown.
    queued_ms: int = 0
    #: For ``retry`` and ``retrying``: when the next attempt is due (epoch ms).
    due_ms: int = 0


State = Literal["queued", "in flight", "retrying", "held", "delivered", "skipped", "dead-lettered"]


@attrs.frozen
class Attempt:
    """One attempt at delivering an event to a vendor."""

    #: 1 for the first attempt; a held (halted) try is not counted and has the number the
    #: next attempt will have.
    number: int
    #: When its outcome was recorded, epoch milliseconds.
    at_ms: int
    #: ``delivered``, ``retry`` (failed, tried again later), ``dead-lettered`` or ``held``
    #: (not sent: the vendor refused our credentials or a setting; kept queued).
    outcome: Literal["delivered", "retry", "dead-lettered", "held"]
    #: The error or the vendor's note (secrets removed, personal data masked).
    note: str = ""


@attrs.frozen
class VendorStatus:
    """Where one event stands for one vendor."""

    vendor: str
    #: The latest state: ``queued`` (waiting for its first attempt), ``in flight``,
    #: ``retrying``, ``held``, ``delivered``, ``skipped`` or ``dead-lettered``.
    state: State
    #: When the queue accepted the event, epoch ms (None if the ledger does not know).
    queued_ms: int | None = None
    attempts: tuple[Attempt, ...] = ()
    delivered_ms: int | None = None
    #: The vendor's id for the event, or a summary of the attribution it returned.
    vendor_ref: str | None = None
    #: Why the vendor was skipped (at ``track()`` or by its ``transform``).
    skipped_reason: str | None = None
    #: Why the event went to the dead letters.
    dead_reason: str | None = None
    #: When the next attempt is due (``retrying``), epoch ms.
    next_attempt_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=True)


@attrs.frozen
class EventStatus:
    """Everything the ledger and the queue know about one event id, per vendor."""

    event_id: str
    name: str | None = None
    queued_ms: int | None = None
    vendors: Mapping[str, VendorStatus] = attrs.field(factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.vendors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "name": self.name,
            "queued_ms": self.queued_ms,
            "found": self.found,
            "vendors": {v: s.to_dict() for v, s in self.vendors.items()},
        }


class Ledger(Protocol):
    """What a ledger backend does. Writes come from one thread (the writer's) per process;
    reads from any thread or process."""

    def write(self, entries: Sequence[LedgerEntry]) -> None:
        """Store ``entries`` in one transaction (or one round trip)."""

    def read(self, event_id: str) -> list[LedgerEntry]:
        """Every stored row of ``event_id``, oldest first."""
        ...

    def waiting(self, event_id: str) -> list[LedgerEntry]:
        """What the queue holds for ``event_id`` now (``queued``/``retrying``/``in flight``
        rows, not stored), as far as the backend can tell cheaply."""
        ...

    def prune(self, now_ms: int) -> int:
        """Remove rows older than the retention and beyond the size cap; how many went."""
        ...

    def after_fork(self) -> None:
        """In a forked child: drop the parent's connections."""

    def close(self) -> None:
        """Release connections and files."""


# --- building the status ----------------------------------------------------------------------

_OUTCOME = {"delivered": "delivered", "retry": "retry", "dead": "dead-lettered", "held": "held"}


def _skip_rows(rows: Iterable[LedgerEntry]) -> Iterable[LedgerEntry]:
    """``rows`` with each :data:`SKIPS` row (a track()'s skips, stored as one) split into a
    ``skipped`` row per vendor."""
    for r in rows:
        if r.vendor != SKIPS:
            yield r
            continue
        for part in r.note.split(_ROW):
            vendor, _, reason = part.partition(_SEP)
            yield r._replace(vendor=vendor, note=reason)


def build_status(event_id: str, rows: Iterable[LedgerEntry]) -> EventStatus:
    """An :class:`EventStatus` from an event's stored rows and waiting records (any order)."""
    per_vendor: dict[str, list[LedgerEntry]] = {}
    name: str | None = None
    queued: int | None = None
    for r in sorted(_skip_rows(rows), key=lambda r: (r.at_ms, r.attempt)):
        per_vendor.setdefault(r.vendor, []).append(r)
        name = name or r.name or None
        if r.queued_ms and (queued is None or r.queued_ms < queued):
            queued = r.queued_ms
    vendors: dict[str, VendorStatus] = {}
    for vendor in sorted(per_vendor):
        vendors[vendor] = _vendor_status(vendor, per_vendor[vendor])
    return EventStatus(event_id, name, queued, vendors)


def _vendor_status(vendor: str, rows: list[LedgerEntry]) -> VendorStatus:
    attempts: list[Attempt] = []
    state: State = "queued"
    fields: dict[str, Any] = {}
    queued = min((r.queued_ms for r in rows if r.queued_ms), default=None)
    stored = [r for r in rows if r.kind in _OUTCOME or r.kind == "skipped"]
    live = [r for r in rows if r.kind in ("queued", "retrying", "in flight")]
    repeats = False  # the same id tracked again within the vendor's dedupe window
    for r in stored:
        if r.kind == "skipped" and r.note == DUPLICATE:
            repeats = True  # the first event's own state stands
            continue
        if r.kind == "skipped":
            state, fields["skipped_reason"] = "skipped", r.note
            continue
        outcome = _OUTCOME[r.kind]
        attempts.append(Attempt(r.attempt, r.at_ms, outcome, r.note))  # type: ignore[arg-type]
        if r.kind == "delivered":
            state = "delivered"
            fields.update(delivered_ms=r.at_ms, vendor_ref=r.ref or None)
        elif r.kind == "dead":
            state, fields["dead_reason"] = "dead-lettered", r.note
        elif r.kind == "retry":
            state, fields["next_attempt_ms"] = "retrying", r.due_ms or None
        else:
            state = "held"
    # The queue's word on an event still waiting wins over an older stored outcome (a retry
    # now in flight, a replayed dead letter); a delivered or skipped one is not in the queue.
    if repeats and not live and not attempts and state == "queued":
        state, fields["skipped_reason"] = "skipped", DUPLICATE  # the first is gone from view
    if live and state not in ("delivered", "skipped"):
        now = live[-1]
        state = now.kind  # type: ignore[assignment]
        if now.kind == "retrying" and now.due_ms:
            fields["next_attempt_ms"] = now.due_ms
    return VendorStatus(vendor, state, queued, tuple(attempts), **fields)


# --- turning outcomes into rows -----------------------------------------------------------------


def attribution_summary(a: Attribution) -> str:
    """The attribution's identifiers, no personal data: ``network=x type=click campaign=12``."""
    parts = [
        ("network", a.network),
        ("type", a.attribution_type),
        ("engagement", a.engagement_type),
        ("campaign", a.campaign_id),
        ("ad_group", a.ad_group_id),
        ("creative", a.creative_id),
        ("publisher_app", a.publisher_app_id),
    ]
    return " ".join(f"{k}={v}" for k, v in parts if v) or "attributed"


def safe_note(text: str | None, dest: Destination | None = None) -> str:
    """A note as the ledger stores it: secrets removed, personal data masked, bounded."""
    if not text:
        return ""
    if dest is not None:
        text = dest.redact(text)
    return mask_text(" ".join(text.split()))[:NOTE_MAX]


#: The vendor column of a row holding every skip of one ``track()`` (``note`` lists them as
#: ``vendor<TAB>reason`` lines; a stored note never holds a tab or a line break): a web event
#: skipped by two app-only vendors is one row, not two.
SKIPS = "*"
_SEP, _ROW = "\t", "\n"
_skip_notes: dict[str, str] = {}


def _skip_note(reason: str) -> str:
    """``safe_note(reason)``, remembered: skip reasons are a small set of fixed texts."""
    note = _skip_notes.get(reason)
    if note is None:
        note = safe_note(reason)
        if len(_skip_notes) < 4096:
            _skip_notes[reason] = note
    return note


#: The note of a track()'s skips, by their ``(vendor, reason)`` pairs: a few combinations.
_note_by_combo: dict[tuple[tuple[str, str], ...], str] = {}


def _combo_note(skips: Sequence[tuple[str, str]]) -> str:
    """The stored note of one track()'s skips (``vendor<TAB>reason`` lines), remembered: the
    ledger writer builds one per event skipped, on the thread that shares the interpreter lock
    with ``track()``."""
    key = tuple(skips)
    note = _note_by_combo.get(key)
    if note is None:
        note = _ROW.join(f"{vendor}{_SEP}{_skip_note(reason)}" for vendor, reason in key)
        if len(_note_by_combo) < 4096:
            _note_by_combo[key] = note
    return note


_new_tuple = tuple.__new__  # a LedgerEntry without its Python-level __new__ (defaults)
# Rows built with _new_tuple give every field: a field added to LedgerEntry must be added there.
assert len(LedgerEntry._fields) == 10, "update the rows built with _new_tuple"


def verdict_rows(dest: Destination, verdicts: Sequence[Verdict], at_ms: int) -> list[LedgerEntry]:
    """The ledger rows of one outcome batch of a lane. Built with ``tuple.__new__`` (every
    field given): a named tuple's own ``__new__`` costs about twice as much, per event."""
    vendor = dest.name
    rows: list[LedgerEntry] = []
    append = rows.append
    for settlement, event, out, attempt in verdicts:
        c = settlement.claimed
        name = event.name if event is not None else ""
        if isinstance(out, Delivered):
            if out.note is None and out.vendor_ref is None and out.attribution is None:
                note = ref = ""  # the common case: nothing to redact or mask
            else:
                note = safe_note(out.note, dest)
                ref = safe_note(
                    out.vendor_ref
                    or (
                        attribution_summary(out.attribution) if out.attribution is not None else ""
                    ),
                    dest,
                )
            row = (c.event_id, vendor, at_ms, "delivered", attempt, note, ref, name,
                   c.created_ms, 0)  # fmt: skip
        elif isinstance(out, Retry):
            row = (c.event_id, vendor, at_ms, "retry", attempt, safe_note(out.reason, dest), "",
                   name, c.created_ms, settlement.due_ms)  # fmt: skip
        elif isinstance(out, DeadLettered):
            row = (c.event_id, vendor, at_ms, "dead", attempt, safe_note(out.reason, dest), "",
                   name, c.created_ms, 0)  # fmt: skip
        elif isinstance(out, Skipped):
            row = (c.event_id, vendor, at_ms, "skipped", 0, safe_note(out.reason, dest), "",
                   name, c.created_ms, 0)  # fmt: skip
        else:  # a Halt: held, not sent (Reported has no other kind)
            row = (c.event_id, vendor, at_ms, "held", attempt, safe_note(out.reason, dest), "",
                   name, c.created_ms, settlement.due_ms)  # fmt: skip
        append(_new_tuple(LedgerEntry, row))
    return rows


# --- the writer ---------------------------------------------------------------------------------


class LedgerWriter:
    """Buffers ledger rows in memory and writes them in batches on its own thread.

    :meth:`record` (the lanes, once per outcome batch: its rows) and :meth:`skipped`
    (``track()``'s skip accounting) only append to a deque; the thread, started on the first
    append, writes what gathered in :data:`FLUSH_EVERY` seconds (:data:`FLUSH_BUSY` while
    outcomes come fast) in one call to the backend, and prunes now and then. :meth:`flush`
    writes at once (``tracker.flush()``, ``status()``, ``close()``).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        retention: float = DEFAULT_RETENTION,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.ledger = ledger
        self.retention = retention
        self.max_entries = max_entries
        self._reset()

    def _reset(self) -> None:
        self._buffer: deque[list[LedgerEntry] | tuple[Any, ...]] = deque()
        self._unwritten: list[LedgerEntry] = []
        self._lock = threading.Lock()  # one writer at a time (thread, flush(), close())
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_prune = 0.0
        self._closed = False
        self._warned = False
        self._window = FLUSH_EVERY  # FLUSH_BUSY while outcomes come fast

    # --- appending (hot paths) ---------------------------------------------------------------

    def record(self, dest: Destination, verdicts: Sequence[Verdict], at_ms: int) -> None:
        """One lane's outcome batch, recorded by the queue: its rows are built here (about half
        a microsecond each), so that the buffer holds small tuples of text and numbers, not
        the decoded events: held for a write window they would outlive the young garbage
        collections and, in an app's process, bring on full ones."""
        self._buffer.append(verdict_rows(dest, verdicts, at_ms))
        if not self._dirty.is_set():
            self._wake()

    def skipped(self, event_id: str, name: str, vendor: str, reason: str) -> None:
        """``vendor`` was left out of the event at ``track()`` (a skip, or no consent)."""
        self.skipped_all(event_id, name, ((vendor, reason),))

    def skipped_all(self, event_id: str, name: str, skips: Sequence[tuple[str, str]]) -> None:
        """The vendors left out of one event at ``track()``, each ``(vendor, reason)``: one
        append however many (they become one row, as consecutive skips of an event do)."""
        self._buffer.append((event_id, name, skips, time.time_ns() // 1_000_000))
        if not self._dirty.is_set():
            self._wake()

    def _wake(self) -> None:
        if self._thread is None and not self._closed:
            with self._lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(
                        target=self._run, name="postback-ledger", daemon=True
                    )
                    self._thread.start()
        self._dirty.set()

    # --- writing -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.wait(self._window):
                return
            self._dirty.clear()
            self.flush()

    def flush(self) -> None:
        """Write what is buffered now, then prune if it is time. Never raises: a backend that
        cannot take the rows keeps them (up to :data:`MAX_BUFFER`) for the next write."""
        with self._lock:
            rows = self._unwritten
            self._unwritten = []
            rows.extend(self._drain())
            self._window = FLUSH_BUSY if len(rows) >= BUSY_ROWS else FLUSH_EVERY
            if rows:
                try:
                    self.ledger.write(rows)
                    self._warned = False
                except Exception as exc:
                    if not self._warned:
                        log.warning("could not write the delivery ledger (will retry): %s", exc)
                        self._warned = True
                    self._unwritten = rows[-MAX_BUFFER:]
            now = time.monotonic()
            if now >= self._next_prune:
                self._next_prune = now + PRUNE_EVERY
                try:
                    self.ledger.prune(time.time_ns() // 1_000_000)
                except Exception as exc:
                    log.warning("could not prune the delivery ledger: %s", exc)

    def _drain(self) -> list[LedgerEntry]:
        rows: list[LedgerEntry] = []
        buffer = self._buffer
        while True:
            try:
                item = buffer.popleft()
            except IndexError:
                return rows
            if isinstance(item, list):  # an outcome batch's rows
                rows.extend(item)
                continue
            event_id, name, skips, at_ms = item
            note = _combo_note(skips)
            last = rows[-1] if rows else None
            if last is not None and last.vendor == SKIPS and last.event_id == event_id:
                # the same track()'s next skips: one row holds all of them
                rows[-1] = last._replace(note=f"{last.note}{_ROW}{note}")
            else:
                rows.append(
                    _new_tuple(
                        LedgerEntry, (event_id, SKIPS, at_ms, "skipped", 0, note, "", name, 0, 0)
                    )
                )

    # --- reading -------------------------------------------------------------------------------

    def status(self, event_id: str) -> EventStatus:
        """Where ``event_id`` stands per vendor (what this process buffered is written first)."""
        self.flush()
        return read_status(self.ledger, event_id)

    # --- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the thread, write the rest, close the backend."""
        self._closed = True
        self._stopping.set()
        self._dirty.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        self.flush()
        self.ledger.close()

    def after_fork(self) -> None:
        """In a forked child: no thread survived; the parent's rows are the parent's."""
        self._reset()
        self.ledger.after_fork()


def read_status(ledger: Ledger, event_id: str) -> EventStatus:
    """An event's status from a ledger backend (stored rows and what the queue holds)."""
    event_id = event_id.strip()
    return build_status(event_id, [*ledger.read(event_id), *ledger.waiting(event_id)])


# --- memory and the choice of backend -----------------------------------------------------------


class MemoryLedger:
    """The ledger of ``memory://`` queues and of queue plugins that bring none: in this
    process only, bounded by ``max_entries`` rows and ``retention``."""

    def __init__(
        self,
        queue: Queue | None = None,
        *,
        retention: float = DEFAULT_RETENTION,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.queue = queue
        self.retention = retention
        self.max_entries = max_entries
        self._rows: deque[LedgerEntry] = deque()
        self._lock = threading.Lock()

    def write(self, entries: Sequence[LedgerEntry]) -> None:
        with self._lock:
            self._rows.extend(entries)
            while len(self._rows) > self.max_entries:
                self._rows.popleft()

    def read(self, event_id: str) -> list[LedgerEntry]:
        with self._lock:
            return [r for r in self._rows if r.event_id == event_id]

    def waiting(self, event_id: str) -> list[LedgerEntry]:
        # MemoryQueue.waiting_records (a queue of another kind has none: nothing is derived)
        records = getattr(self.queue, "waiting_records", None)
        return list(records(event_id)) if callable(records) else []

    def prune(self, now_ms: int) -> int:
        cutoff = now_ms - int(self.retention * 1000)
        with self._lock:
            before = len(self._rows)
            self._rows = deque(r for r in self._rows if r.at_ms >= cutoff)
            while len(self._rows) > self.max_entries:
                self._rows.popleft()
            return before - len(self._rows)

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def close(self) -> None:
        pass

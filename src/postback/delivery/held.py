"""The held set: spool records the ``sqlite://`` deliverer keeps in memory for its lanes.

Pure bookkeeping, no I/O: :class:`~postback.delivery.sqlite.SQLiteQueue` reads records from
the spool, hands each batch of them to a :class:`HeldChunk`, and asks the chunk what to do.

Theory of operation
-------------------
A chunk is the records of one spool read (a few hundred kilobytes of one segment, from
offset ``start`` to ``end``; ``ends[i]`` is where row ``i`` ends). Each row is for one or
more vendors; per vendor a chunk keeps:

- ``lists[v]``: the row indices for ``v``, in order (a ``range`` when every row is for it);
- ``claimed[v]``: how many of ``lists[v]`` have been handed out (a prefix);
- ``inflight[v]``: rows handed out and not settled yet;
- ``returned[v]``: rows given back (released) to be handed out again before the rest.

``open`` counts the (row, vendor) pairs not settled: the segment's saved offset may move past
the chunk only when it reaches zero (and every earlier chunk of the segment is settled too).
A row of ``v`` is settled once it was claimed and is neither in flight nor returned;
:meth:`HeldChunk.settled_to` gives the offset before which all of ``v``'s rows are settled,
which the queue saves per vendor so that a deliverer that dies costs each vendor only what
it had in flight (:func:`skip_settled` applies it when the segment is read again).

A held event is handed to a lane as a :class:`HeldClaim`, a
:class:`~postback.delivery.queue.Claimed` of its own type whose ``token`` is
``chunk number << ROW_BITS | row`` (it has no sequence number: it is not in the log), so a
settle tells held events from logged ones by their type and finds the chunk and row without
a search. When events wait too long, the queue
writes the chunk's unsettled rows to the SQLite log (a *write-back*): ``written`` then maps
rows to their ``seq`` in the log, for the settles of requests that were in flight meanwhile.

Transitions of a (row, vendor) pair: waiting -> claimed (in flight) -> settled (done, or a
retry/dead letter written to the log), or claimed -> returned -> claimed again; any state ->
in the log by a write-back. The queue holds its work lock around every use of a chunk.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from postback.delivery import spool
from postback.delivery.queue import Claimed

__all__ = ["ROW_BITS", "ROW_MASK", "HeldChunk", "HeldClaim", "skip_settled", "vendor_key"]

ROW_BITS = 22  # a held event's token is chunk number << ROW_BITS | row index
ROW_MASK = (1 << ROW_BITS) - 1


class HeldClaim(Claimed):
    """A held event claimed by a lane: a :class:`~postback.delivery.queue.Claimed` whose first
    field is not a sequence number in the log but the event's place in the held set
    (:attr:`token`: ``chunk number << ROW_BITS | row``). Made by
    :meth:`~postback.delivery.sqlite_held.HeldLanes.claim` only; a subclass, not a new
    field, so that the lanes (which read only ``event_id``, ``payload``, ``attempts`` and
    ``created_ms``) and the queue's signatures stay as they are, and a claim costs no extra
    object."""

    __slots__ = ()

    @property
    def token(self) -> int:
        return self[0]

    @property
    def chunk(self) -> int:
        """The number of the :class:`HeldChunk` the event is held in."""
        return self[0] >> ROW_BITS

    @property
    def row(self) -> int:
        """The event's row in its chunk."""
        return self[0] & ROW_MASK


def vendor_key(vendor: str) -> str:
    """How a vendor appears in a record's vendors key (``",a,b,"``)."""
    return f",{vendor},"


def skip_settled(
    rows: list[spool.Row], ends: Sequence[int], settled: Mapping[str, int]
) -> list[spool.Row]:
    """Rows read again after a deliverer died: each vendor that had settled a row (it ends at
    or before the vendor's offset in ``settled``) is taken out of the row's vendors key."""
    out: list[spool.Row] = []
    for row, end in zip(rows, ends, strict=True):
        done = [v for v, upto in settled.items() if end <= upto]
        if done:
            key = row[3]
            for v in done:
                key = key.replace(vendor_key(v), ",")
            out.append((row[0], row[1], row[2], key, row[4]))
        else:
            out.append(row)
    return out


class HeldChunk:
    """Spool records read together and held in memory for the lanes (see the module)."""

    __slots__ = (
        "born",
        "claimed",
        "end",
        "ends",
        "first",
        "inflight",
        "lists",
        "number",
        "open",
        "returned",
        "rows",
        "segment",
        "start",
        "written",
    )

    def __init__(
        self,
        number: int,
        segment: str,
        end: int,
        rows: list[spool.Row],
        start: int = 0,
        ends: Sequence[int] = (),
    ) -> None:
        self.number = number
        self.first = number << ROW_BITS  # the token of row 0 (see HeldClaim)
        self.segment = segment
        self.start = start
        self.end = end
        self.ends = ends
        self.rows = rows
        self.born = time.monotonic()
        self.open = 0
        self.lists: dict[str, Sequence[int]] = {}
        self.claimed: dict[str, int] = {}
        self.inflight: dict[str, set[int]] = {}
        self.returned: dict[str, list[int]] = {}
        self.written: dict[int, int] | None = None

    def settled_to(self, vendor: str) -> int | None:
        """The segment offset before which every row of this chunk for ``vendor`` is settled
        (delivered, or in the log), or ``None`` if all of them are."""
        rows_for_v = self.lists[vendor]
        claimed = self.claimed[vendor]
        first = rows_for_v[claimed] if claimed < len(rows_for_v) else None
        inflight = self.inflight[vendor]
        if inflight:
            low = min(inflight)
            first = low if first is None else min(first, low)
        returned = self.returned.get(vendor)
        if returned:
            low = min(returned)
            first = low if first is None else min(first, low)
        if first is None:
            return None
        if not first or len(self.ends) != len(self.rows):
            return self.start
        return self.ends[first - 1]

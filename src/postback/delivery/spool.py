"""The spool: how ``track()`` stores an event in a ``sqlite://`` queue without a transaction.

Each process that tracks appends its events to a file of its own in ``<queue file>.spool/``
(a *segment*), one framed record per event, with no lock shared with any other process: a
memory copy into the segment mapped in memory when the process also delivers on its own
threads (no system call, and the interpreter lock is never given up to those threads mid-call),
one ``write()`` otherwise. Either way the bytes are in the kernel's page cache when ``track()``
returns: the event survives the process being killed (``SIGKILL``, OOM killer) just as a
SQLite commit without ``fsync`` does; with ``sqlite_synchronous = "full"`` each record is also
flushed to disk (``msync``/``fdatasync``), and survives a power cut.

The process that delivers (the one holding the queue's deliverer lock) *ingests* the segments:
it reads the records past the offset saved for each segment (the ``spool`` table) and either
hands them to its lanes from memory (the *held* fast path, :mod:`postback.delivery.sqlite_held`:
an event delivered from there never enters the SQLite log) or inserts them into the ``events``
log together with the new offset, in one transaction (events for vendors another process
serves, held events that waited too long, everything when the deliverer lets go). A segment's
saved offset never passes an event that is neither delivered nor in the log, so a deliverer
that dies loses nothing: its successor reads the rest again. Each vendor's settled point in a
segment is saved too (``spool_sent``), and records read again skip the vendors that had
settled them, so a crash re-sends each vendor only what it had in flight. A segment is deleted
(with its rows in ``spool`` and ``spool_sent``) once it is ingested to the end and its writer
has let go of it (rotated to a new one, closed, or died), which the ingester sees because the
writer holds an ``flock`` on its segment while it is open; the reading side is
:mod:`postback.delivery.sqlite_ingest`.

Record framing (little-endian)::

    u32 body length | u32 CRC-32 of the body | body
    body = JSON [event_id, name, created_ms, ",vendor,vendor,"] | b"\\n" | the event's JSON

Why not an ``INSERT`` per ``track()``: a SQLite write transaction costs 10-20 µs of CPU (WAL
frame, shared-memory index, locks) and makes the tracking process take the write lock that the
deliverer also takes; an append costs about 1 µs and contends with nothing. A mapped segment is
allocated whole when it starts, so the unwritten rest reads as zeros: a zero length is where the
records end. Readers may see a record half-copied: the length (written last) and the checksum
tell them to stop there and come back. A record cut short for good (a power cut, a full disk
mid-record in a process that then died) is reported and skipped when its writer is gone.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import orjson

from postback.delivery import timing

__all__ = [
    "Chunk",
    "Row",
    "SegmentReader",
    "SpoolError",
    "SpoolWriter",
    "encode",
    "parse_records",
    "segments",
]

log = logging.getLogger("postback.queue")

HEADER = struct.Struct("<II")
_HEAD = HEADER.size  # (read once: a Struct's size is an attribute lookup)
SEGMENT_BYTES = 8 * 1024 * 1024  # the size of a segment (allocated when it starts)
#: The size of a mapped segment that ``track()`` has to start itself (no prepared one was
#: ready: the process's first, say): small, so that a prefaulted one made by
#: :meth:`SpoolWriter.prepare` takes over soon.
FIRST_SEGMENT_BYTES = 1024 * 1024
#: Zeros written at a time when a prepared segment is prefaulted (``pwrite``).
PREFAULT_CHUNK = 1024 * 1024
MAX_RECORD = 64 * 1024 * 1024  # a length beyond this is damage, not an event
NOTHING_WRITTEN = bytes(8)  # the header of an allocated record slot not written yet
SUFFIX = ".spool"


class SpoolError(OSError):
    """A spool file could not be written; ``errno`` says why."""


#: One event read back: (event_id, name, created_ms, vendors key ",a,b,", payload), the
#: ``events`` table's columns in order.
Row = tuple[str, str, int, str, bytes]


def encode(event_id: str, name: str, created_ms: int, vendors_key: str, payload: bytes) -> bytes:
    """One record; ``vendors_key`` is the vendors joined as ``",a,b,"``."""
    body = orjson.dumps((event_id, name, created_ms, vendors_key)) + b"\n" + payload
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def parse_records(data: bytes, ends: list[int] | None = None) -> tuple[list[Row], int, bool]:
    """Decode the complete records at the start of ``data``.

    Returns the rows, how many bytes they span, and whether decoding stopped at damage
    (a bad checksum or length) rather than at the end of the data or a record not yet
    complete. ``ends``, if given, gets where each record ends in ``data``.
    """
    out: list[Row] = []
    pos = 0
    end = len(data)
    unpack = HEADER.unpack_from
    crc32 = zlib.crc32
    loads = orjson.loads
    append = out.append
    # Per record: one copy of the body, split at the header's newline by one call (the header
    # is JSON, which holds no raw newline; a sealed payload may, so only the first counts).
    # Fewer calls and no memoryview slices: 14% fewer instructions per record than
    # slicing a view for the checksum and the header and searching for the newline apart.
    while pos + 8 <= end:
        length, crc = unpack(data, pos)
        stop = pos + 8 + length
        if length == 0:  # the allocated rest of a segment: nothing written here yet
            return out, pos, False
        if length > MAX_RECORD:
            return out, pos, True
        if stop > end:
            return out, pos, False
        body = data[pos + 8 : stop]
        if crc32(body) != crc:
            return out, pos, True
        head, newline, payload = body.partition(b"\n")
        if not newline:
            return out, pos, True
        try:
            event_id, name, created_ms, vendors = loads(head)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return out, pos, True
        append((event_id, name, created_ms, vendors, payload))
        if ends is not None:
            ends.append(stop)
        pos = stop
    return out, pos, False


def _prefault(fd: int, size: int) -> None:
    """Put the pages of a new (all zeros) segment in the page cache by writing its zeros."""
    zeros = bytes(min(size, PREFAULT_CHUNK))
    for offset in range(0, size, len(zeros)):
        os.pwrite(fd, zeros[: size - offset], offset)


class SpoolWriter:
    """This process's append-only segment in a spool directory.

    A segment is allocated whole when it is started (``posix_fallocate``, so a full disk is
    reported then, by the ``track()`` that starts it, and never by a write into it), mapped into
    memory, and written with memory copies: a record's body first, then its header, whose
    non-zero length is what makes it count. No system call and no release of the interpreter
    lock per event: on a process whose delivery threads share that lock, every release would
    invite a hand-over that can take milliseconds to come back. The pages are the kernel's page
    cache, so a record survives the process being killed as soon as it is copied.
    A segment made by :meth:`prepare` is also *prefaulted*: its pages are written with zeros
    (``pwrite``, which lets go of the interpreter lock) before ``track()`` uses it, so that a
    copy into it finds its page in the page cache. A copy into a page not yet there costs the
    kernel allocating and zeroing it (a page fault per 4 KiB, about 1.1 µs per 900-byte record
    measured, against 0.3-0.5 µs prefaulted). A segment ``track()`` has to start itself
    (:data:`FIRST_SEGMENT_BYTES`) is not prefaulted, and small.
    Where the filesystem cannot allocate ahead (``EOPNOTSUPP``), or with ``mapped=False``,
    records are appended with one ``write()`` each instead. The queue asks for that in a
    process that only enqueues (``workers = false``): it allocates nothing ahead, and nothing
    there competes for the lock. A thread of the writing process calls :meth:`prepare` now
    and then (the deliverer's coordinator, or the supervisor of a ``workers = "process"``
    child), which makes the next segment ready before ``track()`` needs it.
    """

    mapped = True  # tests turn it off to exercise the write() path

    def __init__(self, directory: Path, *, sync: bool = False, mapped: bool = True) -> None:
        self.directory = directory
        self.sync = sync
        self.mapped = mapped and type(self).mapped
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._size = 0
        self._capacity = 0
        self.segment: Path | None = None
        # Made ready by prepare() on another thread: the next segment, and those let go of.
        self._next: tuple[int, mmap.mmap | None, Path, int] | None = None
        self._retired: list[tuple[int, mmap.mmap | None, int]] = []
        self._preparing = False
        self._checked_at = time.monotonic()
        #: Names of the segments this writer made that may still hold records not ingested:
        #: what :meth:`SQLiteQueue.waiting_here` counts (a name whose file is gone is dropped).
        self.made: list[str] = []

    def _next_wanted(self) -> bool:
        """A mapped segment a quarter full, with no next one made or being made."""
        return (
            self._map is not None
            and self._next is None
            and not self._preparing
            and self._size * 4 > self._capacity
        )

    @property
    def lock(self) -> threading.Lock:
        """Held while the writer's state changes (the queue holds it across ``fork()``)."""
        return self._lock

    @property
    def wants_preparing(self) -> bool:
        """Whether :meth:`prepare` has work (read without the lock: a hint)."""
        return bool(self._retired) or self._next_wanted()

    def prepare(self) -> None:
        """Off the ``track()`` path (the deliverer's threads in the same process call it):
        create the next segment once the current one is a quarter full, and let go of the
        ones ``track()`` has moved on from. Every system call a ``track()`` makes gives the
        interpreter lock to the delivery threads, which may keep it a switch interval (5 ms)
        each; a rotation done here costs ``track()`` none."""
        with self._lock:
            try:
                self._check()
            except SpoolError:
                pass  # track() tries again, and reports what stops it
            retired, self._retired = self._retired, []
            wanted = self._next_wanted()
            self._preparing = self._preparing or wanted  # one thread at a time makes it
        for fd, mm, size in retired:
            self._let_go(fd, mm, size)
        if not wanted:
            return
        try:
            made = self._create(SEGMENT_BYTES, prefault=True)
        except SpoolError:
            self._preparing = False
            return  # track() will try itself, and report what stops it
        with self._lock:
            self._preparing = False
            if self._next is None and self._fd is not None:
                self._next = made
                return
        self._let_go(made[0], made[1], 0)

    def append(self, record: bytes) -> None:
        """Write one encoded record; raises :class:`SpoolError` and leaves nothing behind
        if it could not be written whole."""
        n = len(record)
        with self._lock:
            if time.monotonic() - self._checked_at > timing.CHECK_EVERY:
                self._check()
            if self._fd is None or self._size + n > self._capacity:
                self._rotate(n)
            start = self._size
            mm = self._map
            if mm is not None:
                # Slices of the record (copies): cheaper than memoryview's views at this size.
                mm[start + _HEAD : start + n] = record[_HEAD:]
                mm[start : start + _HEAD] = record[:_HEAD]  # last: now it counts
                self._size = start + n
                if self.sync:
                    page = start - start % mmap.PAGESIZE
                    mm.flush(page, start + n - page)
                return
            fd = self._fd
            assert fd is not None
            try:
                written = os.write(fd, record)
            except OSError as exc:
                self._undo(fd)
                raise SpoolError(exc.errno, exc.strerror) from None
            if written != n:  # the disk filled up mid-record
                self._undo(fd)
                raise SpoolError(errno.ENOSPC, "No space left on device")
            self._size = start + n
            if self.sync:
                os.fdatasync(fd)

    def _check(self) -> None:
        """Make sure the current segment can still be found by the deliverer (caller holds the
        lock). If it was deleted, with its directory say (by hand, or a cleaner of temporary
        files), the records in it would never be read: the directory is made again and the
        records written so far are copied into a new segment before anything else is
        accepted. Raises :class:`SpoolError` (and accepts nothing) if that cannot be done."""
        fd = self._fd
        if fd is None:
            self._checked_at = time.monotonic()
            return
        try:
            gone = os.fstat(fd).st_nlink == 0
        except OSError:
            gone = False
        if not gone:
            self._checked_at = time.monotonic()
            return
        if self._map is not None:
            kept = bytes(self._map[: self._size])
        else:
            kept = os.pread(fd, self._size, 0)
        log.warning(
            "spool %s: the segment %s was deleted while in use (was the directory removed?); "
            "making the directory again and copying its %d bytes of events to a new segment",
            self.directory,
            self.segment.name if self.segment else "?",
            len(kept),
        )
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SpoolError(exc.errno, exc.strerror) from None
        if self._next is not None:  # made in the deleted directory too
            self._retired.append((self._next[0], self._next[1], 0))
            self._next = None
        made = self._create(max(SEGMENT_BYTES, len(kept) + SEGMENT_BYTES // 4))
        new_fd, mm, path, capacity = made
        # Everything but the first header, then that header: a reader sees nothing until
        # the copy is whole.
        if mm is not None:
            mm[HEADER.size : len(kept)] = kept[HEADER.size :]
            mm[: min(HEADER.size, len(kept))] = kept[: HEADER.size]
        else:
            try:
                os.pwrite(new_fd, kept[HEADER.size :], HEADER.size)
                os.pwrite(new_fd, kept[: HEADER.size], 0)
                os.lseek(new_fd, len(kept), os.SEEK_SET)
            except OSError as exc:
                self._let_go(new_fd, None, 0)
                raise SpoolError(exc.errno, exc.strerror) from None
        self._retired.append((fd, self._map, self._size))
        self._fd, self._map, self.segment = new_fd, mm, path
        self._size = len(kept)
        self._capacity = capacity
        self._checked_at = time.monotonic()

    def _undo(self, fd: int) -> None:
        """Cut a record the kernel took only part of, and write the next one where it began."""
        try:
            os.ftruncate(fd, self._size)
            os.lseek(fd, self._size, os.SEEK_SET)
        except OSError:
            pass

    def _rotate(self, need: int) -> None:
        made, self._next = self._next, None
        prepared = made is not None and made[3] >= need
        if not prepared:
            if made is not None:  # made ready, but too small for this record
                self._retired.append((made[0], made[1], 0))
            # Small when mapped: prepare() soon makes a prefaulted one to take over.
            small = min(FIRST_SEGMENT_BYTES, SEGMENT_BYTES)
            size = max(need, small if self.mapped else SEGMENT_BYTES)
            made = self._create(size)  # if this fails, the current segment stays current
        assert made is not None
        if self._fd is not None:
            self._retired.append((self._fd, self._map, self._size))
        if not prepared:
            self._finish_retired()  # no prepare() seems to run here: let go of them now
        fd, mm, path, capacity = made
        self._fd, self._map, self.segment = fd, mm, path
        self._size = 0
        self._capacity = capacity  # with write(), too: a segment is let go of at this size

    def _create(
        self, need: int, *, prefault: bool = False
    ) -> tuple[int, mmap.mmap | None, Path, int]:
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        path = self.directory / (name + SUFFIX)
        # Created under another name, allocated, locked ("a writer is here"), then renamed: a
        # reader never sees the segment without its writer's lock, so it cannot take it for
        # an abandoned file and delete it under the writer.
        tmp = self.directory / (name + ".new")
        capacity = need
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SpoolError(exc.errno, exc.strerror) from None
        mm: mmap.mmap | None = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self.mapped:
                try:
                    os.posix_fallocate(fd, 0, capacity)
                    if prefault:
                        _prefault(fd, capacity)
                    mm = mmap.mmap(fd, capacity)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
                        raise
                    os.ftruncate(fd, 0)
                    log.info("spool %s: cannot allocate ahead (%s); using write()", path, exc)
            if mm is None:
                os.lseek(fd, 0, os.SEEK_END)
            os.rename(tmp, path)
        except OSError as exc:
            if mm is not None:
                mm.close()
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise SpoolError(exc.errno, exc.strerror) from None
        if len(self.made) > 32:  # those ingested and deleted since
            self.made = [n for n in self.made if (self.directory / n).exists()]
        self.made.append(path.name)
        return fd, mm, path, capacity

    @staticmethod
    def _let_go(fd: int, mm: mmap.mmap | None, size: int) -> None:
        """Let go of a segment: cut it to what was written, unmap, unlock."""
        if mm is not None:
            mm.close()
            try:
                os.ftruncate(fd, size)  # readers then see where it ends
            except OSError:
                pass
        os.close(fd)

    def _finish_retired(self) -> None:
        retired, self._retired = self._retired, []
        for fd, mm, size in retired:
            self._let_go(fd, mm, size)

    def _finish(self) -> None:
        """Let go of the current segment, the one made ready and those retired."""
        if self._fd is not None:
            self._retired.append((self._fd, self._map, self._size))
            self._fd = self._map = None
        if self._next is not None:
            self._retired.append((self._next[0], self._next[1], 0))
            self._next = None
        self._finish_retired()

    def close(self) -> None:
        with self._lock:
            self._finish()

    def after_fork(self, *, close: bool = True) -> None:
        """In a child: the parent's segment stays the parent's (its lock is the parent's too).
        ``close=False`` when the fork may have come mid-change (the lock was not held across
        it): the inherited descriptors are then left open rather than risk closing a number
        that means something else."""
        self._lock = threading.Lock()
        held = [(self._fd, self._map)] if self._fd is not None else []
        if self._next is not None:
            held.append((self._next[0], self._next[1]))
        held.extend((fd, mm) for fd, mm, _ in self._retired)
        for fd, mm in held if close else []:
            if mm is not None:
                mm.close()  # unmaps it in this process only
            try:
                os.close(fd)
            except OSError:
                pass
        self._fd = self._map = self._next = None
        self._retired = []
        self._preparing = False
        self.segment = None
        self._size = self._capacity = 0
        self.made = []


ChunkState = Literal["more", "end", "incomplete", "damaged"]


class Chunk(NamedTuple):
    """Records read from a segment, the offset just past them, and what follows them:
    ``more`` (the chunk was full: read on), ``end`` (the end of what is written),
    ``incomplete`` (a record still being copied, or cut short for good if its writer is gone),
    ``damaged`` (a bad length or checksum: the same, or damage). ``ends``: where each row
    ends in the segment."""

    rows: list[Row]
    end: int
    state: ChunkState
    ends: list[int] | tuple[int, ...] = ()


class SegmentReader:
    """A reader's handle on one segment: reads from an offset, knows if its writer is gone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.ident = (st.st_dev, st.st_ino)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, offset: int, limit: int) -> bytes:
        return os.pread(self.fd, limit, offset)

    def chunks(self, offset: int, size: int) -> Iterator[Chunk]:
        """The records from ``offset`` up to the end of what is written now, ``size`` bytes at
        a time (or one record, if it is larger); the last chunk says why reading stopped."""
        while True:
            head = self.read(offset, HEADER.size)
            if len(head) < HEADER.size or head == NOTHING_WRITTEN:
                yield Chunk([], offset, "end")
                return
            length = HEADER.unpack(head)[0]
            want = max(size, HEADER.size + min(length, MAX_RECORD))
            data = self.read(offset, want)
            ends: list[int] = []
            rows, used, damaged = parse_records(data, ends)
            rest = data[used : used + HEADER.size]
            if offset:
                ends = [offset + e for e in ends]
            offset += used
            state: ChunkState
            if damaged:
                state = "damaged"
            elif rest == NOTHING_WRITTEN or (
                len(data) < want and rest == NOTHING_WRITTEN[: len(rest)]
            ):
                state = "end"  # unwritten space, or the end of the file with nothing after
            elif len(data) < want or not used:
                state = "incomplete"
            else:
                state = "more"  # the chunk ended inside a record (or its header): read on
            yield Chunk(rows, offset, state, ends)
            if state != "more":
                return

    def writer_gone(self) -> bool:
        """True if no process holds the segment open for writing."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        return True

    def close(self) -> None:
        os.close(self.fd)


def segments(directory: Path) -> Iterator[Path]:
    """The segment files in ``directory``, oldest first."""
    try:
        names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(SUFFIX))
    except FileNotFoundError:
        return
    for name in names:
        yield directory / name

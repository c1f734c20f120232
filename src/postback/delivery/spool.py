"""The spool: how ``track()`` stores an event in a ``sqlite://`` queue with one ``write()``.

Each process that tracks appends its events to a file of its own in ``<queue file>.spool/``
(a *segment*), one framed record per event, with a single ``write()`` system call and no lock
shared with any other process. When ``write()`` returns, the bytes are the kernel's: the event
survives the process being killed (``SIGKILL``, OOM killer) just as a SQLite commit without
``fsync`` does; with ``sqlite_synchronous = "full"`` each record is also ``fdatasync``-ed, and
survives a power cut.

The process that delivers (the one holding the queue's deliverer lock) *ingests* the segments:
it reads the records past the offset it has recorded for each segment and inserts them into
the SQLite ``events`` log together with the new offset, in one transaction, so each event is
ingested exactly once however the ingester dies. A segment is deleted once it is ingested to
the end and its writer has let go of it (rotated to a new one, closed, or died), which the
ingester sees because the writer holds an ``flock`` on its segment while it is open.

Record framing (little-endian)::

    u32 body length | u32 CRC-32 of the body | body
    body = JSON [event_id, name, created_ms, ",vendor,vendor,"] | b"\\n" | the event's JSON

Why not an ``INSERT`` per ``track()``: a SQLite write transaction costs 10-20 µs of CPU (WAL
frame, shared-memory index, locks) and makes the tracking process take the write lock that the
deliverer also takes; an append costs about 1 µs and contends with nothing. Readers may see a
record half-copied while its ``write()`` is in progress: the length and checksum tell them to
stop there and come back. A record cut short for good (a power cut, a full disk mid-record in
a process that then died) is reported and skipped when its writer is gone.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson

__all__ = ["Row", "SegmentReader", "SpoolError", "SpoolWriter", "encode", "parse_records"]

log = logging.getLogger("postback.queue")

HEADER = struct.Struct("<II")
SEGMENT_BYTES = 32 * 1024 * 1024  # a writer starts a new segment past this size
MAX_RECORD = 64 * 1024 * 1024  # a length beyond this is damage, not an event
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


def parse_records(data: bytes) -> tuple[list[Row], int, bool]:
    """Decode the complete records at the start of ``data``.

    Returns the rows, how many bytes they span, and whether decoding stopped at damage
    (a bad checksum or length) rather than at the end of the data or a record not yet
    complete.
    """
    out: list[Row] = []
    pos = 0
    end = len(data)
    unpack = HEADER.unpack_from
    crc32 = zlib.crc32
    loads = orjson.loads
    find = data.find
    append = out.append
    view = memoryview(data)
    while pos + 8 <= end:
        length, crc = unpack(data, pos)
        start = pos + 8
        stop = start + length
        if length == 0 or length > MAX_RECORD:
            return out, pos, True
        if stop > end:
            return out, pos, False
        if crc32(view[start:stop]) != crc:
            return out, pos, True
        nl = find(b"\n", start, stop)
        try:
            event_id, name, created_ms, vendors = loads(view[start:nl])
        except (orjson.JSONDecodeError, ValueError):
            return out, pos, True
        append((event_id, name, created_ms, vendors, data[nl + 1 : stop]))
        pos = stop
    return out, pos, False


class SpoolWriter:
    """This process's append-only segment in a spool directory."""

    def __init__(self, directory: Path, *, sync: bool = False) -> None:
        self.directory = directory
        self.sync = sync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self.segment: Path | None = None

    def append(self, record: bytes) -> None:
        """Write one encoded record; raises :class:`SpoolError` and leaves nothing behind
        if it could not be written whole."""
        with self._lock:
            fd = self._fd
            if fd is None or self._size >= SEGMENT_BYTES:
                fd = self._rotate()
            try:
                written = os.write(fd, record)
            except OSError as exc:
                self._undo(fd)
                raise SpoolError(exc.errno, exc.strerror) from None
            if written != len(record):  # the disk filled up mid-record
                self._undo(fd)
                raise SpoolError(errno.ENOSPC, "No space left on device")
            self._size += written
            if self.sync:
                os.fdatasync(fd)

    def _undo(self, fd: int) -> None:
        try:
            os.ftruncate(fd, self._size)
        except OSError:
            pass

    def _rotate(self) -> int:
        old = self._fd
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        path = self.directory / (name + SUFFIX)
        # Created under another name, locked ("a writer is here"), then renamed: a reader
        # never sees the segment without its writer's lock, so it cannot take it for an
        # abandoned empty file and delete it under the writer.
        tmp = self.directory / (name + ".new")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SpoolError(exc.errno, exc.strerror) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(tmp, path)
        except OSError as exc:
            os.close(fd)
            raise SpoolError(exc.errno, exc.strerror) from None
        self._fd, self._size, self.segment = fd, 0, path
        if old is not None:
            os.close(old)
        return fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def after_fork(self) -> None:
        """In a child: the parent's segment stays the parent's (its lock is the parent's too)."""
        self._lock = threading.Lock()
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self.segment = None


class SegmentReader:
    """A reader's handle on one segment: reads from an offset, knows if its writer is gone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, offset: int, limit: int) -> bytes:
        return os.pread(self.fd, limit, offset)

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

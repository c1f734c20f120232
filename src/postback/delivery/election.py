"""Deliverer election for ``sqlite://``: one process per queue file delivers.

Duties: take and let go of ``<queue>.deliver.lock`` with ``flock`` (exclusive, non-blocking;
the lock dies with its process, so a deliverer that crashes frees it at once), and record
the descriptor and the file's identity in the shared
:class:`~postback.delivery.sqlite_schema.SQLiteFile` (``lock_fd`` is ``None`` in a process
that does not deliver). A child that failed closed
after ``fork()`` (``unreadable``) never becomes the deliverer.

Lock order: the ``flock`` is taken before, and given up inside, the file's ``work_lock``,
which only guards the swap of ``lock_fd`` (a fork never sees it half set). What a deliverer
saves before letting go is the caller's: :meth:`SQLiteQueue.release_delivery
<postback.delivery.sqlite.SQLiteQueue.release_delivery>`.
"""

from __future__ import annotations

import fcntl
import os

from postback.delivery.sqlite_schema import SQLiteFile

__all__ = ["acquire", "release"]


def acquire(file: SQLiteFile) -> bool:
    """Become the deliverer of ``file`` if no other process is; whether this process is."""
    if file.lock_fd is not None:
        return True
    if file.unreadable is not None:
        return False  # a child that failed closed after fork never delivers
    fd = os.open(f"{file.path}.deliver.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    st = os.fstat(fd)
    with file.work_lock:
        file.lock_fd = fd
        file.lock_ident = (st.st_dev, st.st_ino)
    return True


def release(file: SQLiteFile) -> None:
    """Let go of the deliverer lock (the caller holds ``work_lock``)."""
    fd, file.lock_fd = file.lock_fd, None
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

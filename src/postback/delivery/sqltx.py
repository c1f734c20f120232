"""The one transaction helper every SQLite file of postback is written through.

Duties: open a transaction on a connection in autocommit mode (``isolation_level=None``),
commit it when the block ends, and roll it back when anything in the block raises, so that
no caller writes ``BEGIN``/``COMMIT``/``ROLLBACK`` by hand and no failure leaves a
transaction open on a connection that is used again (the queue file, the ledger, the
erasure log). A rollback that fails itself (the connection is broken) never hides the error
that caused it.

``write`` transactions are ``BEGIN IMMEDIATE``: they take SQLite's write lock at the start,
so a writer waits for another process's writer at ``BEGIN`` (the busy timeout) instead of
failing at its first write with a lock it cannot upgrade. ``read`` transactions are
``BEGIN`` (deferred): one snapshot for several queries, never the write lock.

A class rather than a ``@contextmanager`` generator: the lanes open one per claim, and a
generator-based context manager costs about a microsecond more each time.

:func:`connect_read_only` is the one way a file is opened read-only (``mode=ro``, by a URI):
its path is quoted, so that a ``#``, ``?`` or ``%`` in a directory name (``~/C#/shop``) is
not read as the URI's fragment, query or an escape, which opened another file (creating it).
"""

from __future__ import annotations

import sqlite3
from os import PathLike
from types import TracebackType
from urllib.parse import quote

__all__ = ["connect_read_only", "read", "write"]


class _Transaction:
    __slots__ = ("_begin", "_conn")

    def __init__(self, conn: sqlite3.Connection, begin: str) -> None:
        self._conn = conn
        self._begin = begin

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute(self._begin)
        return self._conn

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        if kind is None:
            try:
                conn.execute("COMMIT")
                return
            except BaseException:
                _rollback(conn)
                raise
        _rollback(conn)


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the connection is broken; the error that brought us here is raised


def write(conn: sqlite3.Connection) -> _Transaction:
    """``with write(conn) as conn:`` a write transaction (``BEGIN IMMEDIATE``), committed at
    the end of the block, rolled back if the block raises."""
    return _Transaction(conn, "BEGIN IMMEDIATE")


def read(conn: sqlite3.Connection) -> _Transaction:
    """``with read(conn) as conn:`` a read transaction (``BEGIN``): one snapshot for the
    queries of the block; ended (``COMMIT``) at the end, rolled back if the block raises."""
    return _Transaction(conn, "BEGIN")


def connect_read_only(
    path: str | PathLike[str], *, timeout: float, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A read-only connection to the SQLite file at ``path``, whatever characters it holds."""
    return sqlite3.connect(
        f"file:{quote(str(path))}?mode=ro",
        uri=True,
        timeout=timeout,
        check_same_thread=check_same_thread,
    )

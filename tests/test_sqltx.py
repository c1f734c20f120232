"""The one SQLite transaction helper (postback.delivery.sqltx): commit, rollback, and a
connection left usable after a failure, on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from postback.delivery import sqltx


def _conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS t(x INTEGER PRIMARY KEY)")
    return conn


def test_a_write_commits_at_the_end_of_the_block(tmp_path: Path) -> None:
    conn = _conn(tmp_path / "q.db")
    with sqltx.write(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.in_transaction
    assert not conn.in_transaction
    other = _conn(tmp_path / "q.db")
    assert other.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_failure_rolls_back_and_the_connection_is_used_again(tmp_path: Path) -> None:
    conn = _conn(tmp_path / "q.db")
    with pytest.raises(sqlite3.IntegrityError), sqltx.write(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    with sqltx.write(conn):  # no "cannot start a transaction within a transaction"
        conn.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_a_write_takes_the_write_lock_at_begin(tmp_path: Path) -> None:
    conn = _conn(tmp_path / "q.db")
    other = sqlite3.connect(tmp_path / "q.db", isolation_level=None, timeout=0)
    with sqltx.write(conn), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")


def test_a_read_sees_one_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    conn = _conn(path)
    conn.execute("PRAGMA journal_mode=WAL")
    writer = _conn(path)
    with sqltx.read(conn):
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        writer.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_the_error_that_failed_the_block_is_raised_even_if_rollback_fails(
    tmp_path: Path,
) -> None:
    conn = _conn(tmp_path / "q.db")
    with pytest.raises(ValueError, match="the cause"), sqltx.write(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.close()  # the rollback now fails: "Cannot operate on a closed database"
        raise ValueError("the cause")

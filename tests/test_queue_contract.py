"""QueueContract on the built-in local backends: memory:// and sqlite:// (redis:// runs it in
tests/redis/test_queue_contract.py, against a real redis-server), each opened through the
registry that postback_register_queues fills."""

from __future__ import annotations

from pathlib import Path

import pytest

from postback.delivery.queue import QueueOptions
from postback.testing import QueueContract


class TestMemoryQueue(QueueContract):
    @pytest.fixture
    def queue_url(self) -> str:
        return "memory://"


class TestSQLiteQueue(QueueContract):
    @pytest.fixture
    def queue_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/contract.db"


class TestSQLiteQueueFullSync(QueueContract):
    queue_options = QueueOptions(synchronous="full", delivers_on_threads=False)

    @pytest.fixture
    def queue_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/contract-full.db"

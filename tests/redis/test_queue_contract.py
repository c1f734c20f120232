"""QueueContract on redis:// against a real redis-server (the session's, or ``REDIS_URL``)."""

from __future__ import annotations

import pytest

from postback.testing import QueueContract


class TestRedisQueue(QueueContract):
    # the redis_url fixture sets a 2 s visibility timeout: a dead worker's claims wait that long
    takeover_after = 2.0

    @pytest.fixture
    def queue_url(self, redis_url: str) -> str:
        return redis_url

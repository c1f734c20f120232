"""A lane's rate gate: the vendor's rate limit per credential, plus spacing from the vendor's
own rate-limit headers.

:class:`RateGate` keeps a moving window from the ``limits`` library (in the queue's shared
storage when it has one, so every deliverer on a Redis queue shares the vendor's limit) and,
when a response's :class:`~postback.destination.RateHint` says few requests are left, spreads
the rest over the time until the vendor's reset. :meth:`RateGate.wait` blocks a request thread
until one request may go. No I/O of its own besides the ``limits`` storage.
"""

from __future__ import annotations

import threading
import time

from limits import RateLimitItemPerSecond
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

from postback.destination import RateHint, RateLimit

__all__ = ["RateGate"]


class RateGate:
    """A vendor's rate limit per credential, plus spacing from its rate-limit headers."""

    def __init__(self, limit: RateLimit | None, key: tuple[str, str], storage: Storage) -> None:
        self.key = key
        self.item: RateLimitItemPerSecond | None = None
        if limit is not None and limit.per_seconds < 1:  # sub-second windows: scale to 1 s
            self.item = RateLimitItemPerSecond(max(1, round(limit.requests / limit.per_seconds)), 1)
        elif limit is not None:
            self.item = RateLimitItemPerSecond(limit.requests, max(1, round(limit.per_seconds)))
        self.limiter = MovingWindowRateLimiter(storage)
        self._lock = threading.Lock()
        self._spacing = 0.0
        self._spacing_until = 0.0
        self._next_at = 0.0

    def hint(self, hint: RateHint, concurrency: int) -> None:
        """Spread the requests the vendor says are left over the time until its reset."""
        now = time.time()
        window = max(hint.reset_at - now, 0.0)
        with self._lock:
            if hint.remaining <= max(concurrency * 2, 10) and window > 0:
                self._spacing = window / max(hint.remaining, 1)
                self._spacing_until = hint.reset_at
            elif now >= self._spacing_until:
                self._spacing = 0.0

    def wait(self, stop: threading.Event) -> bool:
        """Block until one request may go; False if stopping."""
        while not stop.is_set():
            delay = 0.0
            with self._lock:
                now = time.time()
                if self._spacing and now < self._spacing_until and now < self._next_at:
                    delay = self._next_at - now
                elif self.item is None or self.limiter.hit(self.item, *self.key):
                    if self._spacing and now < self._spacing_until:
                        self._next_at = now + self._spacing
                    return True
                else:
                    stats = self.limiter.get_window_stats(self.item, *self.key)
                    delay = max(stats.reset_time - now, 0.005)
            stop.wait(min(delay, 1.0))
        return False

"""Retry timing: exponential backoff with full jitter (engine-internal).

Reading a vendor's own hints (``Retry-After``, "try again in ...") lives in
:mod:`postback.responses` (plugins get it from :mod:`postback.plugin`); it is re-exported here
for the engine.
"""

from __future__ import annotations

import random

from postback.destination import RetryPolicy
from postback.responses import MAX_RETRY_AFTER, retry_after_seconds, seconds_from_message

__all__ = ["MAX_RETRY_AFTER", "backoff_seconds", "retry_after_seconds", "seconds_from_message"]


def backoff_seconds(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)].

    ``attempt`` counts from 1 (the wait after the first failure).
    """
    ceiling = min(policy.max_backoff, policy.initial_backoff * (2 ** max(attempt - 1, 0)))
    return (rng or random).uniform(0, ceiling)

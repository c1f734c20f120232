"""Delivery lanes: one per vendor, each a thread that claims batches and request threads
that send them.

A lane batches up to the vendor's maximum with a short linger, keeps at most ``concurrency``
requests in flight, obeys the vendor's rate limit per credential (a moving window from the
``limits`` library, slowed further by the vendor's own rate-limit headers), retries with
exponential backoff and full jitter or the delay the vendor asked for, splits batches the
vendor refused as a whole, and pauses (without dropping anything) when the vendor refuses our
credentials.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
from limits import RateLimitItemPerSecond
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

from postback.delivery.queue import Claimed, Queue, Settlement
from postback.delivery.retry import backoff_seconds
from postback.delivery.stats import VendorReport, VendorStats
from postback.destination import (
    Delivered,
    Destination,
    Halt,
    Outcome,
    Prepared,
    RateHint,
    RateLimit,
    Rejected,
    RejectedBatch,
    Retry,
    RetryPolicy,
    SkipEvent,
)
from postback.events import loads_event

if TYPE_CHECKING:
    from postback.config import VendorConfig
    from postback.delivery.engine import DeliveryEngine

__all__ = ["Lane", "RateGate"]

log = logging.getLogger("postback.delivery")
_new_tuple = tuple.__new__  # a named tuple without its Python-level __new__


def _user_agent() -> str:
    try:
        return f"postback/{importlib.metadata.version('postback')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from source
        return "postback"


USER_AGENT = _user_agent()
HALT_PAUSE = 60.0  # seconds a lane waits after the vendor refused our credentials
LINGER_STEP = 0.005  # seconds between looks for more events while a batch lingers
BURST_END_STEP = 0.001  # the same after a full batch: is the burst over?
IDLE_POLL_SHARED = 0.2  # another process may enqueue: look again this often
IDLE_POLL_PRIVATE = 5.0
LANE_ERROR_PAUSE = 1.0  # seconds a lane waits after an unexpected error before going on


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


class Lane:
    """Delivery to one vendor."""

    def __init__(
        self,
        engine: DeliveryEngine,
        destination: Destination,
        config: VendorConfig,
        storage: Storage,
    ) -> None:
        self.engine = engine
        self.dest = destination
        self.config = config
        self.name = destination.name
        self.batch_size = min(
            config.batch_size or destination.max_batch_size, destination.max_batch_size
        )
        self.concurrency = config.concurrency or destination.default_concurrency
        self.policy: RetryPolicy = config.retry or destination.retry_policy
        limit = (
            None
            if config.rate_limit_disabled
            else (config.rate_limit or destination.default_rate_limit)
        )
        self.rate_limit = limit
        self.gate = RateGate(limit, (self.name, destination.credential_id()), storage)
        self.timeout = httpx.Timeout(config.timeout)
        self.linger = config.linger if self.batch_size > 1 else 0.0
        self._last_full = False  # the last claim filled a batch: a backlog was being drained
        self.stats = VendorStats()
        self.wake = threading.Event()
        self.paused_until = 0.0
        self._slots = threading.Semaphore(self.concurrency)
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._reported = VendorStats()

    # --- lane thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(
            self.concurrency, thread_name_prefix=f"postback-{self.name}"
        )
        self._thread = threading.Thread(
            target=self._run, name=f"postback-lane-{self.name}", daemon=True
        )
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._inflight > 0

    def _run(self) -> None:
        stop = self.engine.stopping
        queue = self.engine.queue
        while not stop.is_set():
            try:
                now = time.time()
                if now < self.paused_until:
                    stop.wait(min(self.paused_until - now, 1.0))
                    continue
                if not self._acquire_slot(stop):
                    break
                slots = 1
                if self.batch_size == 1:
                    # One event per request: claim for every free request slot at once (one
                    # query for many events instead of one each).
                    while slots < self.concurrency and self._slots.acquire(blocking=False):
                        slots += 1
                try:
                    claimed = self._claim(queue, slots, now, stop)
                except BaseException:
                    for _ in range(slots):  # or the lane would run out of request slots
                        self._slots.release()
                    raise
                if self.batch_size == 1:
                    batches = [[c] for c in claimed]
                else:
                    batches = [claimed] if claimed else []
                for _ in range(slots - len(batches)):  # slots this claim found no work for
                    self._slots.release()
                if not batches:
                    self._idle(queue)
                    continue
                for i, batch in enumerate(batches):
                    if not self._send(batch, stop):
                        for _ in range(len(batches) - i):
                            self._slots.release()
                        self._release([c for b in batches[i:] for c in b])
                        break
                if stop.is_set():
                    break
            except Exception:
                # Never let the lane die: log, back off a little, go on.
                log.exception("%s: delivery lane error (continuing)", self.name)
                stop.wait(LANE_ERROR_PAUSE)

    def _claim(self, queue: Queue, slots: int, now: float, stop: threading.Event) -> list[Claimed]:
        """Up to a batch per slot; a batch not full waits up to ``linger`` for more, looking
        again every few milliseconds, and goes as soon as it is full. At the end of a burst
        (the last batch was full, and a look finds nothing new) it goes at once: the backlog
        is drained, and what it waited for is not coming."""
        claimed = queue.claim(self.name, self.batch_size * slots, int(now * 1000))
        burst = self._last_full
        self._last_full = len(claimed) >= self.batch_size
        if not claimed or self._last_full or not self.linger:
            return claimed
        deadline = time.monotonic() + self.linger
        while len(claimed) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0 or stop.wait(min(left, BURST_END_STEP if burst else LINGER_STEP)):
                break
            more = queue.claim(self.name, self.batch_size - len(claimed), int(time.time() * 1000))
            if not more and burst:
                break
            claimed.extend(more)
        return claimed

    def _send(self, batch: list[Claimed], stop: threading.Event) -> bool:
        """Wait for the rate limit, then hand the batch to a request thread; False if it
        could not go (stopping, or the rate limiter failed)."""
        try:
            allowed = self.gate.wait(stop)
        except Exception:
            # The rate limiter's storage failed (e.g. Redis unreachable): give the batch
            # back rather than hold it until its lease runs out.
            log.exception("%s: rate limiter failed; batch released", self.name)
            stop.wait(1.0)
            return False
        return allowed and not stop.is_set() and self._submit(batch)

    def _release(self, claimed: list[Claimed]) -> None:
        """Give claimed events back untouched (no attempt counted)."""
        self.engine.queue.settle(
            self.name, [Settlement(c, "release", 0) for c in claimed], int(time.time() * 1000)
        )

    def _submit(self, claimed: list[Claimed]) -> bool:
        """Hand a batch to the request threads; False if they are shutting down."""
        assert self._pool is not None
        with self._inflight_lock:
            self._inflight += 1
        try:
            self._pool.submit(self._process_guarded, claimed)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            with self._inflight_lock:
                self._inflight -= 1
            return False
        return True

    def _acquire_slot(self, stop: threading.Event) -> bool:
        while not self._slots.acquire(timeout=0.5):
            if stop.is_set():
                return False
        return True

    def _idle(self, queue: Queue) -> None:
        now = time.time()
        wait = IDLE_POLL_SHARED if queue.shared else IDLE_POLL_PRIVATE
        due = queue.next_due_ms(self.name)
        if due is not None:
            wait = min(wait, max(due / 1000.0 - now, 0.001))
        self.wake.wait(wait)
        self.wake.clear()

    # --- request threads -------------------------------------------------------------------------

    def _process_guarded(self, claimed: list[Claimed]) -> None:
        try:
            self._process(claimed)
        except Exception:
            log.exception("%s: failed to process a batch; its events stay queued", self.name)
            try:
                self.engine.queue.settle(
                    self.name,
                    [Settlement(c, "release", int(time.time() * 1000) + 1000) for c in claimed],
                    int(time.time() * 1000),
                )
            except Exception:
                log.exception("%s: could not release the batch", self.name)
        finally:
            with self._inflight_lock:
                self._inflight -= 1
            self._slots.release()
            self.engine.progress.set()

    def _process(self, claimed: list[Claimed]) -> None:
        host = self.engine.host
        now = time.time()
        now_ms = int(now * 1000)
        settlements: list[Settlement] = []
        batch: list[tuple[Claimed, Prepared]] = []
        for c in claimed:
            try:
                event = loads_event(c.payload)
            except Exception as exc:
                settlements.append(self._dead(c, f"stored event is unreadable: {exc}"))
                continue
            try:
                record = host.transform(event, self.dest)
            except SkipEvent as exc:
                settlements.append(Settlement(c, "done"))
                self.stats.skipped += 1
                log.debug("%s: skipped %s: %s", self.name, event.event_id, exc)
                continue
            except Exception as exc:
                settlements.append(self._dead(c, f"transform failed: {type(exc).__name__}: {exc}"))
                log.warning(
                    "%s: transform of %s failed: %s",
                    self.name,
                    event.event_id,
                    self.dest.redact(str(exc)),
                )
                continue
            if record is None:
                settlements.append(self._dead(c, "no plugin transformed the event"))
                continue
            batch.append((c, Prepared(event, record)))

        if batch:
            outcomes = self._deliver_split([p for _, p in batch])
            for (c, p), outcome in zip(batch, outcomes, strict=True):
                settlements.append(self._settle(c, p, outcome, now))
        if settlements:
            self.engine.queue.settle(self.name, settlements, now_ms)

    def _dead(self, c: Claimed, reason: str) -> Settlement:
        self.stats.dead += 1
        return Settlement(c, "dead", error=reason, attempts=c.attempts + 1)

    def _deliver_split(self, batch: list[Prepared]) -> list[Outcome]:
        """Deliver; where the vendor refused the batch as a whole, bisect to find the bad event."""
        outcomes = list(self._deliver_once(batch))
        refused = [i for i, o in enumerate(outcomes) if isinstance(o, RejectedBatch)]
        if not refused:
            return outcomes
        if len(refused) == 1:
            o = outcomes[refused[0]]
            assert isinstance(o, RejectedBatch)
            outcomes[refused[0]] = Rejected(o.reason, o.status)
            return outcomes
        sub = [batch[i] for i in refused]
        mid = len(sub) // 2
        results: list[Outcome] = []
        for half in (sub[:mid], sub[mid:]):
            if not self.gate.wait(self.engine.stopping):
                results.extend(Halt("shutting down") for _ in half)
                continue
            results.extend(self._deliver_split(half))
        for i, o in zip(refused, results, strict=True):
            outcomes[i] = o
        return outcomes

    def _deliver_once(self, batch: Sequence[Prepared]) -> Sequence[Outcome]:
        engine = self.engine
        t0 = time.perf_counter()
        timeout = self.timeout.as_dict()

        def send(request: httpx.Request) -> httpx.Response:
            request.extensions["timeout"] = timeout
            if "user-agent" not in request.headers:
                request.headers["user-agent"] = USER_AGENT
            response = engine.http.handle_request(request)
            response.read()
            try:
                hint = self.dest.rate_hint(response)
            except Exception:
                hint = None
            if hint is not None:
                self.gate.hint(hint, self.concurrency)
            return response

        try:
            outcomes = list(engine.host.deliver(self.dest, batch, send))
        except Exception as exc:
            reason = self.dest.redact(f"{type(exc).__name__}: {exc}")
            log.warning("%s: delivery failed, will retry: %s", self.name, reason)
            outcomes = [Retry(f"delivery failed: {reason}")] * len(batch)
        latency = time.perf_counter() - t0
        self.stats.requests += 1
        self.stats.latencies.append(latency)
        for p, o in zip(batch, outcomes, strict=False):
            if engine.notify_delivery:
                engine.host.on_delivery(self.name, p.event, o, 1, latency)
        return outcomes

    def _settle(self, c: Claimed, p: Prepared, outcome: object, now: float) -> Settlement:
        attempts = c.attempts + 1
        if isinstance(outcome, Delivered):
            self.stats.delivered += 1
            self.stats.halted = None
            if outcome.attribution is not None:
                self.stats.attributed += 1
                self.engine.host.on_attribution(outcome.attribution, p.event)
            return _new_tuple(Settlement, (c, "done", 0, None, attempts))  # the common case
        if isinstance(outcome, Retry):
            age = now - c.created_ms / 1000.0
            if attempts >= self.policy.max_attempts or age >= self.policy.max_age:
                why = (
                    f"gave up after {attempts} attempts"
                    if attempts >= self.policy.max_attempts
                    else f"gave up after {age:.0f}s (max_age)"
                )
                return self._dead(c, f"{why}: {outcome.reason}")
            wait = (
                outcome.after
                if outcome.after is not None
                else backoff_seconds(self.policy, attempts)
            )
            if outcome.after is not None:
                # The vendor told us when: hold the whole lane, not just this event.
                self.paused_until = max(self.paused_until, now + outcome.after)
            self.stats.retried += 1
            log.info(
                "%s: %s will be retried in %.1fs: %s",
                self.name,
                p.event.event_id,
                wait,
                outcome.reason,
            )
            return Settlement(
                c, "retry", due_ms=int((now + wait) * 1000), error=outcome.reason, attempts=attempts
            )
        if isinstance(outcome, Halt):
            pause = outcome.after if outcome.after is not None else HALT_PAUSE
            self.paused_until = max(self.paused_until, now + pause)
            if self.stats.halted != outcome.reason:
                log.error(
                    "%s: the vendor refused our credentials: %s. Delivery to %s is paused "
                    "(retrying every %.0fs); no event is dropped. Fix the [vendors.%s] "
                    "credentials and restart.",
                    self.name,
                    outcome.reason,
                    self.name,
                    pause,
                    self.name,
                )
            self.stats.halted = outcome.reason
            return Settlement(c, "release", due_ms=int((now + pause) * 1000), error=outcome.reason)
        if isinstance(outcome, (Rejected, RejectedBatch)):
            detail = (
                f" ({outcome.detail})" if isinstance(outcome, Rejected) and outcome.detail else ""
            )
            log.warning(
                "%s: %s rejected: %s%s", self.name, p.event.event_id, outcome.reason, detail
            )
            return self._dead(c, f"{outcome.reason}{detail}")
        return self._dead(c, f"unknown outcome {outcome!r}")

    def report(self, pending: int) -> VendorReport:
        s, r = self.stats, self._reported
        rep = VendorReport(
            delivered=s.delivered - r.delivered,
            dead=s.dead - r.dead,
            retried=s.retried - r.retried,
            skipped=s.skipped - r.skipped,
            pending=pending,
            halted=s.halted,
        )
        self._reported = VendorStats(
            delivered=s.delivered, dead=s.dead, retried=s.retried, skipped=s.skipped
        )
        return rep

    def stop(self, wait: float) -> None:
        """Stop claiming, let requests in flight finish (within ``wait``), then stop."""
        end = time.monotonic() + wait
        if self._thread is not None:
            self._thread.join(wait)
        while self._inflight and time.monotonic() < end:
            time.sleep(0.02)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

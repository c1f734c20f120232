"""The delivery engine: background lanes that drain the queue into the vendors' APIs.

One *lane* per vendor (a thread that claims batches, plus a bounded pool of request threads),
so a slow or failing vendor never delays another. Each lane batches up to the vendor's maximum
with a short linger, keeps at most ``concurrency`` requests in flight, obeys the vendor's rate
limit per credential (a moving window from the ``limits`` library, slowed further by the
vendor's own rate-limit headers), retries with exponential backoff and full jitter or the delay
the vendor asked for, splits batches the vendor refused as a whole, and pauses (without dropping
anything) when the vendor refuses our credentials.

Threads start lazily on the first ``track()``; in a queue shared by several processes only one
process (the elected deliverer) runs lanes, the others just enqueue.
"""

from __future__ import annotations

import gc
import importlib.metadata
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import attrs
import httpx
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from postback.delivery.queue import Claimed, Queue, Settlement
from postback.delivery.retry import backoff_seconds
from postback.delivery.transport import default_transport
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
    from postback.delivery.process import DeliveryProcess
    from postback.plugins import PluginHost

__all__ = ["DeliveryEngine", "FlushReport", "Lane", "VendorReport", "VendorStats"]

log = logging.getLogger("postback.delivery")
_new_tuple = tuple.__new__  # a named tuple without its Python-level __new__


def _user_agent() -> str:
    try:
        return f"postback/{importlib.metadata.version('postback')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from source
        return "postback"


USER_AGENT = _user_agent()
HALT_PAUSE = 60.0  # seconds a lane waits after the vendor refused our credentials
NUDGE_EVERY = 0.02  # seconds: track() nudges a delivery process at most this often
LINGER_STEP = 0.005  # seconds between looks for more events while a batch lingers
BURST_END_STEP = 0.001  # the same after a full batch: is the burst over?
POLL_BUSY = 0.002  # seconds between looks at other processes' events while they come
IDLE_POLL_SHARED = 0.2  # another process may enqueue: look again this often
IDLE_POLL_PRIVATE = 5.0
MAINTENANCE_EVERY = 1.0
LANE_ERROR_PAUSE = 1.0  # seconds a lane waits after an unexpected error before going on
_SINGLE = (Delivered, Retry, Rejected, RejectedBatch, Halt)


@attrs.define
class VendorStats:
    """Per-vendor counters (since the tracker started)."""

    tracked: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    requests: int = 0
    attributed: int = 0
    halted: str | None = None
    latencies: deque[float] = attrs.field(factory=lambda: deque(maxlen=2048))

    def snapshot(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(int(len(lat) * p), len(lat) - 1)], 6) if lat else None

        return {
            "tracked": self.tracked,
            "delivered": self.delivered,
            "retried": self.retried,
            "dead": self.dead,
            "skipped": self.skipped,
            "requests": self.requests,
            "attributed": self.attributed,
            "halted": self.halted,
            "latency_p50": pct(0.5),
            "latency_p95": pct(0.95),
        }


@attrs.frozen
class VendorReport:
    """What a flush saw for one vendor: counts since the previous flush, and what is left."""

    delivered: int
    dead: int
    retried: int
    skipped: int
    pending: int
    halted: str | None = None


@attrs.frozen
class FlushReport:
    """Returned by ``flush()``: ``complete`` is true when nothing is left to deliver."""

    complete: bool
    vendors: dict[str, VendorReport]

    def __getitem__(self, vendor: str) -> VendorReport:
        return self.vendors[vendor]


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


def tune_gc_for_delivery() -> None:
    """Garbage-collector settings for a process that only delivers (``postback worker``, the
    ``workers = "process"`` child); never called in an application's own process.

    Delivery allocates many short-lived containers (decoded events, vendor payloads, outcomes)
    and frees nearly all of them by reference counting, yet with the default thresholds the
    cyclic collector runs every 700 allocations and now and then walks every object the
    imports left behind. Freezing what start-up built and collecting young objects less often
    took a tenth off the CPU per delivered event in the benchmarks (docs/performance.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


class DeliveryEngine:
    """Owns the lanes, the HTTP connection pool and the deliverer election."""

    def __init__(
        self,
        queue: Queue,
        host: PluginHost,
        vendors: Sequence[tuple[Destination, VendorConfig]],
        *,
        transport: httpx.BaseTransport | None = None,
        deliver: bool = True,
    ) -> None:
        self.queue = queue
        self.host = host
        self.transport = transport
        self.deliver = deliver
        #: Set for ``workers = "process"``: the child process that delivers instead of lanes.
        self.external: DeliveryProcess | None = None
        self.stopping = threading.Event()
        self.progress = threading.Event()
        self._nudged = threading.Event()
        self._nudged_at = 0.0
        self.notify_delivery = host.has_delivery_listeners()
        self.lanes = self._make_lanes([(d, vc) for d, vc in vendors])
        queue.on_new = self._wake
        self._lock = threading.Lock()
        self._started = False
        self._delivering = False
        self._coordinator: threading.Thread | None = None
        self._http: httpx.BaseTransport | None = None

    @property
    def http(self) -> httpx.BaseTransport:
        """The transport requests go through: the app's (tests pass ``MockTransport``), else
        the pooled stdlib transport (see ``postback.delivery.transport``)."""
        if self._http is None:
            with self._lock:
                if self._http is None:
                    total = sum(lane.concurrency for lane in self.lanes.values()) or 1
                    self._http = self.transport or default_transport(total + 4)
        return self._http

    @property
    def delivering(self) -> bool:
        return self._delivering

    def start(self) -> None:
        if self.external is not None and self.lanes:
            self._started = True
            self.external.start()
            return
        if not self.deliver or not self.lanes:
            self._started = True  # nothing to start here: track() need not ask again
            return
        with self._lock:
            if self._started:
                return
            self._started = True
            self.stopping.clear()
            self._coordinator = threading.Thread(
                target=self._coordinate, name="postback-coordinator", daemon=True
            )
            self._coordinator.start()

    def _coordinate(self) -> None:
        """Become the deliverer when possible, start lanes, run housekeeping."""
        serve = getattr(self.queue, "serve", None)
        while not self.stopping.is_set():
            try:
                if not self._delivering:
                    if self.queue.acquire_delivery():
                        if serve is not None:
                            serve(list(self.lanes))
                        recovered = self.queue.recover()
                        if recovered:
                            log.info("recovered %d events a previous deliverer left", recovered)
                        self._delivering = True
                        for lane in self.lanes.values():
                            lane.start()
                    else:
                        self.stopping.wait(1.0)
                        continue
                self.queue.maintenance()
                self._poll_until(time.monotonic() + MAINTENANCE_EVERY)
            except Exception:
                log.exception("delivery coordinator error (continuing)")
                self.stopping.wait(MAINTENANCE_EVERY)

    def _poll_until(self, deadline: float) -> None:
        """Between maintenance rounds, look for other processes' events every so often."""
        interval = self.queue.poll_interval
        if interval is None:
            self.stopping.wait(max(deadline - time.monotonic(), 0.0))
            return
        wait = interval
        while not self.stopping.is_set() and time.monotonic() < deadline:
            # Sooner while other processes are queueing (a lane that is idle sleeps until a
            # poll wakes it), or when nudged; back to the interval when they stop.
            if self._nudged.wait(wait):
                self._nudged.clear()
            if self.stopping.is_set():
                break
            wait = POLL_BUSY if self.queue.poll() else min(wait * 2, interval)

    def _wake(self, vendors: Iterable[str]) -> None:
        for v in vendors:
            lane = self.lanes.get(v)
            if lane is not None and not lane.wake.is_set():  # set() takes a lock: skip it
                lane.wake.set()

    def notify(self, vendors: Sequence[str]) -> None:
        """Called by track(): start delivery on first use; wake the lanes if they run here,
        or now and then the delivery process."""
        if not self._started:
            self.start()
        if self._delivering:
            self._wake(vendors)
        elif self.external is not None:
            now = time.monotonic()
            if now - self._nudged_at > NUDGE_EVERY:
                self._nudged_at = now
                self.external.nudge()

    def nudge(self) -> None:
        """Events are coming from another process: look at the queue now."""
        self._nudged.set()

    def pending(self) -> dict[str, int]:
        now_ms = int(time.time() * 1000)
        depth = self.queue.depth(list(self.lanes), now_ms)
        return {v: depth[v].pending for v in self.lanes}

    def _report(self, pending: dict[str, int]) -> FlushReport:
        return FlushReport(
            complete=not any(pending.values()),
            vendors={v: lane.report(pending[v]) for v, lane in self.lanes.items()},
        )

    def flush(self, timeout: float | None = None) -> FlushReport:
        if self.external is not None and self.lanes:
            report = self.external.flush(timeout)
            # None: the delivery process is gone (it is being replaced): say what is left.
            return report if report is not None else self._report(self.pending())
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for lane in self.lanes.values():
            lane.wake.set()
        pending = self.pending()
        while any(pending.values()) and (self.deliver or self.queue.shared):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if (
                all(
                    time.time() < lane.paused_until and lane.stats.halted
                    for v, lane in self.lanes.items()
                    if pending[v]
                )
                and deadline is None
            ):
                break  # every vendor with work is halted on bad credentials
            # While a lane has requests in flight there is work left: wait for progress rather
            # than count the queue (a query) every time something settles.
            checked = time.monotonic()
            while any(lane.busy for lane in self.lanes.values()) and (
                time.monotonic() - checked < 0.5
            ):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.progress.wait(0.05)
                self.progress.clear()
            self.progress.wait(0.02)
            self.progress.clear()
            pending = self.pending()
        return self._report(pending)

    def stop(self, wait: float = 1.0) -> None:
        if self.external is not None:
            self.external.stop(wait)
            self._started = False
        self.stopping.set()
        self._nudged.set()  # the coordinator may be waiting for a nudge
        for lane in self.lanes.values():
            lane.wake.set()
        if self._coordinator is not None:
            self._coordinator.join(wait)
        end = time.monotonic() + wait
        for lane in self.lanes.values():
            lane.stop(max(end - time.monotonic(), 0.05))
        if self._http is not None:
            if self.transport is None:  # ours to close; an app's transport stays the app's
                self._http.close()
            self._http = None
        if self._delivering:
            self.queue.release_delivery()
            self._delivering = False
        self._started = False

    def after_fork(self) -> None:
        """In a forked child: no threads survived, so start over lazily."""
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.progress = threading.Event()
        self._nudged = threading.Event()
        self._nudged_at = 0.0
        self._started = False
        self._delivering = False
        self._coordinator = None
        self._http = None
        self.lanes = self._make_lanes([(lane.dest, lane.config) for lane in self.lanes.values()])
        if self.external is not None:
            self.external.after_fork()

    def _make_lanes(self, vendors: Sequence[tuple[Destination, VendorConfig]]) -> dict[str, Lane]:
        """One lane per vendor, their rate limits kept where the queue says: shared by every
        deliverer (Redis) or in this process."""
        shared = self.queue.rate_limit_storage()
        storage = shared if isinstance(shared, Storage) else MemoryStorage()
        return {d.name: Lane(self, d, vc, storage) for d, vc in vendors}

    def stats(self) -> dict[str, dict[str, Any]]:
        if self.external is not None and self.lanes and self.external.running:
            remote = self.external.stats()
            if remote is not None:  # its counters, with what this process tracked
                for name, lane in self.lanes.items():
                    remote[name]["tracked"] = lane.stats.tracked
                return remote
        now_ms = int(time.time() * 1000)
        depth = self.queue.depth(list(self.lanes), now_ms)
        out = {}
        for name, lane in self.lanes.items():
            snap = lane.stats.snapshot()
            d = depth[name]
            snap.update(
                queue_depth=d.pending,
                ready=d.ready,
                retrying=d.retrying,
                inflight=d.inflight,
                dead_letters=d.dead,
            )
            out[name] = snap
        return out

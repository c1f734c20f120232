"""Delivery lanes: one per vendor, each a thread that claims batches and request threads
that send them.

A lane batches up to the vendor's maximum with a short linger, keeps at most ``concurrency``
requests in flight, obeys the vendor's rate limit per credential (a moving window from the
``limits`` library, slowed further by the vendor's own rate-limit headers), retries with
exponential backoff and full jitter or the delay the vendor asked for, splits batches the
vendor refused as a whole, and pauses (without dropping anything) when the vendor refuses our
credentials or refuses every request the same way (a wrong setting: ``settle.RefusalWatch``).

The rate limit is :mod:`postback.delivery.rategate`, the request threads
:mod:`postback.delivery.request_threads` (both re-exported here); settling outcomes into
verdicts is :mod:`postback.delivery.settle`.

Size: about 650 lines, over the house's 600, because it is one class, :class:`Lane`, whose
loop, claiming, sending, splitting and recording share the lane's state (its stats, fault log,
refusal watch and halted scopes); the parts with a life of their own are the modules above.
"""

from __future__ import annotations

import importlib.metadata
import logging
import operator
import threading
import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx
import orjson
from limits.storage import Storage

from postback.delivery import timing
from postback.delivery.faultlog import FaultLog
from postback.delivery.http import UnsafeHeader
from postback.delivery.queue import Claimed, Queue, Settlement
from postback.delivery.rategate import RateGate
from postback.delivery.request_threads import RequestThreads, Slots
from postback.delivery.settle import (
    RefusalWatch,
    Verdict,
    Verdicts,
    plainly_delivered,
    scrubbed,
)
from postback.delivery.stats import VendorReport, VendorStats
from postback.destination import (
    Delivered,
    Destination,
    Halt,
    Outcome,
    Prepared,
    Rejected,
    RejectedBatch,
    RetryPolicy,
    SkipEvent,
    new_prepared,
)
from postback.encryption import open_payload
from postback.errors import PluginError, QueueError
from postback.event_codec import converter
from postback.events import Event
from postback.telemetry import DELIVERY_EXTENSION, http_status
from postback.telemetry import attempt as telemetry_attempt

if TYPE_CHECKING:
    from postback.config import VendorConfig
    from postback.delivery.engine import DeliveryEngine

__all__ = ["Lane", "RateGate", "RequestThreads"]

log = logging.getLogger("postback.delivery")
#: A full disk or a queue server away fails every claim and settle until it is back: logged
#: when it starts and when it ends, not thousands of times.
_faults = FaultLog(log)


def _user_agent() -> str:
    try:
        return f"postback/{importlib.metadata.version('postback')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from source
        return "postback"


USER_AGENT = _user_agent()
#: Settlements that put events back in the queue: the lane looks again for when they are due.
_COMES_BACK = frozenset({"retry", "release"})
#: An Event from the decoded JSON of its stored form: the structure hook the events module
#: registers for Event (loads_event's second step), called directly, one Python frame.
_structure_event = converter.get_structure_hook(Event)
_ONLY_DELIVERED = {Delivered}
_kind = operator.attrgetter("kind")
_settlement_kind = operator.attrgetter("settlement.kind")


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
        #: Per sending thread, the events of the request it is making (for an erase's report).
        self.sending: dict[int, list[Claimed]] = {}
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
        self.timeout = httpx.Timeout(config.timeout).as_dict()
        self.linger = config.linger if self.batch_size > 1 else 0.0
        self._last_full = False  # the last claim filled a batch: a backlog was being drained
        self.stats = VendorStats()
        self.wake = threading.Event()
        self.paused_until = 0.0
        #: Halt.scope -> (until, the Halt): events of that scope are held, not sent.
        self.scoped_halts: dict[str, tuple[float, Halt]] = {}
        self._slots = Slots(self.concurrency)
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        #: While stopping, outcomes are still retried into the queue until then (monotonic):
        #: set by stop() for a vendor that would count a repeat twice.
        self._settle_until = 0.0
        self._pool: RequestThreads | None = None
        self._thread: threading.Thread | None = None
        self._reported = VendorStats()
        self.verdicts = Verdicts(self)
        self.refusals = RefusalWatch(self)
        self._logged_errors: set[str] = set()

    def repeats_count_twice(self) -> bool:
        """Whether this vendor would count a request sent again after it went unanswered:
        what the plugin makes of a request left without an answer (``classify_exception``
        of a read timeout) is not a retry (``retry_unconfirmed = false``, say)."""
        probe = httpx.ReadTimeout("no answer", request=httpx.Request("POST", self.dest.origin()))
        try:
            outcome = self.dest.classify_exception(probe)
        except Exception:
            return False  # the plugin's own failure is reported where it happens
        return isinstance(outcome, Rejected | RejectedBatch)

    # --- lane thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._pool = RequestThreads(self.name, self.concurrency, self._process_guarded)
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
                if time.time() < self.paused_until:  # a halt came while waiting for the slot
                    self._slots.release()
                    continue
                # Claim for every free request slot at once: one claim (a lock, a query or a
                # look at the spool) for several batches instead of one each.
                slots = 1
                while slots < self.concurrency and self._slots.acquire(blocking=False):
                    slots += 1
                try:
                    claimed = self._claim(queue, slots, now, stop)
                    _faults.ok(f"{self.name}: reading the queue")
                except BaseException:
                    for _ in range(slots):  # or the lane would run out of request slots
                        self._slots.release()
                    raise
                size = self.batch_size
                if size == 1:
                    batches = [[c] for c in claimed]
                elif len(claimed) <= size:
                    batches = [claimed] if claimed else []
                else:
                    batches = [claimed[i : i + size] for i in range(0, len(claimed), size)]
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
            except QueueError as exc:  # the queue cannot be read now: once per change
                _faults.failed(f"{self.name}: reading the queue", exc)
                stop.wait(timing.LANE_ERROR_PAUSE)
            except Exception:
                # Never let the lane die: log, back off a little, go on.
                log.exception("%s: delivery lane error (continuing)", self.name)
                stop.wait(timing.LANE_ERROR_PAUSE)

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
            if left <= 0 or stop.wait(
                min(left, timing.BURST_END_STEP if burst else timing.LINGER_STEP)
            ):
                break
            try:
                more = queue.claim(
                    self.name, self.batch_size - len(claimed), int(time.time() * 1000)
                )
            except QueueError as exc:
                # What was claimed is this lane's to settle: send it now rather than drop it
                # (a claim left unsettled stays leased to this process, and a queue that
                # remembers its own leases would never hand it out again). The same fault as
                # the first claim's: logged once per outage, not once per batch.
                _faults.failed(f"{self.name}: reading the queue", exc)
                break
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
        """Give claimed events back untouched (no attempt counted), trying again while the
        queue cannot take it (see :meth:`_record`)."""
        self._record([Settlement(c, "release", 0) for c in claimed], int(time.time() * 1000))

    def _submit(self, claimed: list[Claimed]) -> bool:
        """Hand a batch to the request threads; False if they are shutting down."""
        assert self._pool is not None
        with self._inflight_lock:
            self._inflight += 1
        if not self._pool.submit(claimed):  # shutting down
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
        wait = (
            timing.IDLE_POLL_SHARED
            if queue.capabilities.cross_process
            else timing.IDLE_POLL_PRIVATE
        )
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
                now_ms = int(time.time() * 1000)
                self._record([Settlement(c, "release", now_ms + 1000) for c in claimed], now_ms)
            except Exception:
                log.exception("%s: could not release the batch", self.name)
        finally:
            with self._inflight_lock:
                self._inflight -= 1
            self._slots.release()
            progress = self.engine.progress
            if not progress.is_set():  # (set() takes a condition's lock even when it is)
                progress.set()

    def _process(self, claimed: list[Claimed]) -> None:
        host = self.engine.host
        verdicts = self.verdicts
        now = time.time()
        out: list[Verdict] = []
        batch: list[tuple[Claimed, Prepared]] = []
        erasures = self.engine.erasures
        # Per event: names bound once per batch, and the erasure check only while someone
        # is erased (the common batch has no tombstone to look at). The tombstones known so
        # far spare a transform; new ones are looked for once the batch shows as in flight.
        erased = erasures.erased if erasures.active else None
        transform = host.transformer(self.dest)
        loads = orjson.loads
        structure = _structure_event
        add = batch.append
        for c in claimed:
            payload = c.payload
            try:
                # A plain stored event is a JSON object; anything else (sealed) is opened first.
                event = structure(
                    loads(payload if payload[:1] == b"{" else open_payload(payload)), Event
                )
            except Exception as exc:
                out.append(verdicts.dead(c, None, f"stored event is unreadable: {exc}"))
                continue
            if erased is not None and erased(c):
                out.append(verdicts.skipped(c, event, "erased"))
                continue
            try:
                record = transform(event)
            except SkipEvent as exc:
                out.append(verdicts.skipped(c, event, str(exc).strip() or "SkipEvent"))
                continue
            except Exception as exc:
                out.append(verdicts.dead(c, event, self._plugin_error(exc, "transform")))
                continue
            if record is None:  # (a transform without its return, most likely)
                none = PluginError(
                    f"{self.name}: transform returned None: return the wire record, or raise "
                    "SkipEvent not to send the event to this vendor"
                )
                out.append(verdicts.dead(c, event, self._plugin_error(none, "transform")))
                continue
            add((c, new_prepared(event, record)))
        if self.scoped_halts and batch:
            batch = self._hold_halted_scopes(batch, out, now)
        latency = 0.0
        if batch:
            batch = self._drop_erased(batch, out)
        if batch:
            me = threading.get_ident()
            try:
                attempt_span = telemetry_attempt(self, batch)  # a span, if the app has an SDK
            except BaseException:
                del self.sending[me]
                raise
            with attempt_span as attempt:
                t0 = time.perf_counter()
                try:
                    outcomes = self._deliver_split([p for _, p in batch])
                finally:
                    del self.sending[me]
                latency = time.perf_counter() - t0
                self.stats.latencies.append(latency)
                out.extend(verdicts.decide_all(batch, outcomes, now))
                attempt.settled(out[len(out) - len(batch) :], latency)
        if out:
            if "dead" in map(_settlement_kind, out):
                out = self._not_dead_if_erased(out)
            self._record([v.settlement for v in out], int(now * 1000))
            self.engine.ledger.record(self.dest, out, int(time.time() * 1000))
            verdicts.apply(out, latency)

    def _drop_erased(
        self, batch: list[tuple[Claimed, Prepared]], out: list[Verdict]
    ) -> list[tuple[Claimed, Prepared]]:
        """Show ``batch`` as in flight (what an erase reports), then drop the events of a
        person erased meanwhile: an erase that returned before this batch is honoured in it,
        since it either saw the batch in flight or is seen here."""
        me = threading.get_ident()
        self.sending[me] = [c for c, _ in batch]
        erasures = self.engine.erasures
        try:
            erasures.refresh()
        except BaseException:
            del self.sending[me]
            raise
        if not erasures.active:
            return batch
        keep: list[tuple[Claimed, Prepared]] = []
        for c, p in batch:
            if erasures.erased(c):
                out.append(self.verdicts.skipped(c, p.event, "erased"))
            else:
                keep.append((c, p))
        if keep:
            self.sending[me] = [c for c, _ in keep]
        else:
            del self.sending[me]
        return keep

    def _not_dead_if_erased(self, decided: list[Verdict]) -> list[Verdict]:
        """A dead letter is not written for a person erased while their request was sent
        (the erase deleted their dead letters): the event is skipped as erased instead."""
        erasures = self.engine.erasures
        erasures.refresh()
        if not erasures.active:
            return decided
        return [
            self.verdicts.skipped(v.settlement.claimed, v.event, "erased")
            if v.settlement.kind == "dead"
            and v.event is not None
            and erasures.erased(v.settlement.claimed)
            else v
            for v in decided
        ]

    def _hold_halted_scopes(
        self, batch: list[tuple[Claimed, Prepared]], out: list[Verdict], now: float
    ) -> list[tuple[Claimed, Prepared]]:
        """Hold (release unsent) the events of a scope a :class:`Halt` paused; the rest go."""
        for scope, (until, _) in list(self.scoped_halts.items()):
            if until <= now:
                self.scoped_halts.pop(scope, None)
        keep: list[tuple[Claimed, Prepared]] = []
        for c, p in batch:
            halted = self.scoped_halts.get(self.dest.halt_scope(p) or "")
            if halted is None:
                keep.append((c, p))
            else:
                out.append(self.verdicts.held(c, p.event, *halted))
        return keep

    def _record(self, settlements: list[Settlement], now_ms: int) -> None:
        """Record outcomes in the queue, trying again while it cannot take them (Redis
        restarting, a full disk): the vendor has answered, and an outcome given up here would
        leave its events claimed by this process, neither delivered again nor settled, until
        it restarts. Gives up (raises) only when the engine stops, or for a vendor that would
        count a repeat twice, once its stop has waited as long as it may (``settle_by``)."""
        delay = 0.05
        while True:
            try:
                self.engine.queue.settle(self.name, settlements, now_ms)
                _faults.ok(f"{self.name}: recording outcomes in the queue")
                if not _COMES_BACK.isdisjoint(map(_kind, settlements)):
                    self.wake.set()  # an idle lane's wait was set before this retry was due
                return
            except QueueError as exc:
                stopping = self.engine.stopping.is_set()
                if stopping and time.monotonic() >= self._settle_until:
                    raise
                _faults.failed(f"{self.name}: recording outcomes in the queue", exc)
                if stopping:  # the stop waits for this outcome (a vendor counting repeats)
                    time.sleep(min(delay, max(self._settle_until - time.monotonic(), 0.0)))
                else:
                    self.engine.stopping.wait(delay)
                delay = min(delay * 2, 2.0)

    def _deliver_split(
        self,
        batch: list[Prepared],
        answered: Sequence[Outcome] | None = None,
        halted: list[Halt] | None = None,
    ) -> list[Outcome]:
        """Deliver (or read ``answered``, the outcomes of sending ``batch`` already); where the
        vendor refused the batch as a whole, bisect to find the bad event. A vendor refusing
        every request the same way halts the lane instead (:class:`RefusalWatch`): what was
        not sent yet is then not sent (``halted`` carries the halt through the bisection)."""
        halted = [] if halted is None else halted
        outcomes = list(self._deliver_once(batch) if answered is None else answered)
        if set(map(type, outcomes)) == _ONLY_DELIVERED:  # the common case: accepted whole
            self.refusals.delivered()
            return outcomes
        refused = [i for i, o in enumerate(outcomes) if isinstance(o, RejectedBatch)]
        if any(isinstance(o, Delivered) for o in outcomes):
            self.refusals.delivered()
        if not refused:
            return outcomes
        if len(refused) == 1:
            o = outcomes[refused[0]]
            assert isinstance(o, RejectedBatch)
            halt = self.refusals.single(o)
            halted.extend([halt] if halt else [])
            outcomes[refused[0]] = halt or Rejected(o.reason, o.status)
            return outcomes
        sub = [batch[i] for i in refused]
        mid = len(sub) // 2
        halves = (sub[:mid], sub[mid:])
        answers: list[Sequence[Outcome]] = []
        for half in halves:
            if halted:
                answers.append([halted[0]] * len(half))
            elif not self.gate.wait(self.engine.stopping):
                answers.append([Halt("shutting down")] * len(half))
            else:
                answers.append(self._deliver_once(half))
        first, second = (a[0] if all(o == a[0] for o in a) else None for a in answers)
        if isinstance(first, RejectedBatch) and isinstance(second, RejectedBatch):
            halt = self.refusals.halves(len(sub), first, second)
            if halt is not None:
                halted.append(halt)
                answers = [[halt] * len(half) for half in halves]
        results: list[Outcome] = []
        for half, answer in zip(halves, answers, strict=True):
            results.extend(self._deliver_split(half, answer, halted))
        for i, o in zip(refused, results, strict=True):
            outcomes[i] = o
        return outcomes

    def _deliver_once(self, batch: Sequence[Prepared]) -> Sequence[Outcome]:
        """One ``postback_deliver`` call: the vendor's outcome for each event of ``batch``.

        A transport error the hook let through is classified by the destination; any other
        exception is a plugin's bug: its events go to the dead letters (``_plugin_error``),
        and the lane goes on with the next batch.
        """
        try:
            outcomes = list(self.engine.host.deliver(self.dest, batch, self._http_send))
        except httpx.TransportError as exc:
            try:
                outcome = self.dest.classify_exception(exc)
            except Exception as bug:
                outcome = Rejected(self._plugin_error(bug, "classify_exception"))
            outcomes = [outcome] * len(batch)
        except Exception as exc:
            outcomes = [Rejected(self._plugin_error(exc, "postback_deliver"))] * len(batch)
        if len(outcomes) != len(batch):
            reason = self._plugin_error(
                PluginError(
                    f"a postback_deliver hook returned {len(outcomes)} outcomes for a batch of "
                    f"{len(batch)}"
                ),
                "postback_deliver",
            )
            outcomes = [Rejected(reason)] * len(batch)
        answered: Sequence[object] = outcomes  # (typed as outcomes: a plugin returns anything)
        for o in answered:
            if not isinstance(o, Outcome):  # named by its type only: it may quote a secret
                reason = self._plugin_error(
                    PluginError(
                        f"{self.name}: parse_response returned a {type(o).__name__} for an "
                        "event, not an outcome: return Delivered(), Retry(...), Rejected(...), "
                        "RejectedBatch(...) or Halt(...), for the batch or one per event"
                    ),
                    "postback_deliver",
                )
                outcomes = [Rejected(reason)] * len(batch)
                break
        if plainly_delivered(outcomes):
            return outcomes  # nothing to scrub
        redact = self.dest.redact
        return [scrubbed(o, redact) for o in outcomes]

    def _http_send(self, request: httpx.Request) -> httpx.Response:
        """The ``send`` that ``postback_deliver`` gets: this thread's HTTP client, the vendor's
        timeout for the whole exchange, the rate-limit headers read on the way back."""
        request.extensions["timeout"] = self.timeout
        request.extensions[DELIVERY_EXTENSION] = self.name  # telemetry.httpx_request_hook
        if "user-agent" not in request.headers:
            request.headers["user-agent"] = USER_AGENT
        self.stats.requests += 1
        try:
            response = self.engine.clients.send(request, self.config.timeout, self.dest.redact)
        except (httpx.HTTPError, UnsafeHeader):
            raise
        except Exception as exc:  # an application's transport failed in its own way
            raise httpx.TransportError(f"{type(exc).__name__}: {exc}", request=request) from exc
        http_status(response.status_code)
        try:
            hint = self.dest.rate_hint(response)
        except Exception:
            hint = None
        if hint is not None:
            self.gate.hint(hint, self.concurrency)
        return response

    def _plugin_error(self, exc: BaseException, step: str) -> str:
        """A dead-letter reason for a plugin's exception: its traceback's last line (secrets
        removed). The whole traceback is logged the first time a reason is seen."""
        last = traceback.format_exception_only(type(exc), exc)[0].strip()
        reason = self.dest.snippet(last, 500)
        if reason not in self._logged_errors:
            if len(self._logged_errors) < 100:
                self._logged_errors.add(reason)
            text = self.dest.redact("".join(traceback.format_exception(exc)))
            log.error(
                "%s: a plugin failed in %s; its events go to the dead letters (replay them once "
                "the plugin is fixed):\n%s",
                self.name,
                step,
                text.rstrip(),
            )
        else:
            log.warning("%s: a plugin failed in %s: %s", self.name, step, reason)
        return f"plugin error in {step}: {reason}"

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

    def stop(self, wait: float, settle_by: float | None = None) -> None:
        """Stop claiming, let requests in flight finish (within ``wait``), then stop.

        A request still in flight then is abandoned and sent again at the next start, which
        a vendor that recognises a repeat, or one configured for at least once, allows. For a
        vendor that would count it twice (:meth:`repeats_count_twice`), the requests already
        in flight may end until ``settle_by`` (``time.monotonic()``; by default the vendor's
        request timeout and a second from now), their outcomes recorded even if the queue
        needs retrying meanwhile: that is at most once."""
        end = time.monotonic() + wait
        if self._thread is not None:
            self._thread.join(wait)
        while self._inflight and time.monotonic() < end:
            time.sleep(0.02)
        if self._inflight and self.repeats_count_twice():
            if settle_by is None:
                settle_by = time.monotonic() + self.config.timeout + timing.STOP_GRACE
            log.info(
                "%s: waiting up to %.0f s for %d request(s) in flight (retry_unconfirmed = "
                "false: abandoned, they would be sent again at the next start)",
                self.name,
                max(settle_by - time.monotonic(), 0.0),
                self._inflight,
            )
            self._settle_until = settle_by
            while self._inflight and time.monotonic() < settle_by:
                time.sleep(0.02)
        if self._pool is not None:
            for batch in self._pool.shutdown():  # claimed, never started: give them back
                try:
                    self._release(batch)
                except Exception:
                    log.exception("%s: could not give back a batch at stop", self.name)
                with self._inflight_lock:
                    self._inflight -= 1
                self._slots.release()

"""The queue contract kit: every duty of a queue backend, as a pytest base class.

A backend (ours or a third party's) runs the checks against itself by naming a URL its
registration opens::

    from postback.testing import QueueContract

    class TestKafkaQueue(QueueContract):
        @pytest.fixture
        def queue_url(self, tmp_path):
            return "kafka://127.0.0.1:9092/events"

The duties pinned here are the ones the delivery engine counts on, written nowhere else:

- **put, claim, settle**: an event is stored once for the vendors it is routed to; each vendor
  claims its own events, new ones in the order they were put, with the stored id, name, time
  and bytes; ``done`` forgets an event for that vendor only.
- **retries and dead letters**: ``retry`` hides an event until its due time and counts the
  attempts, ``release`` gives it back untouched, ``dead`` moves it to the dead letters (newest
  first, by id, by vendor and time), ``requeue_dead`` makes it claimable again.
- **depth is exact under concurrent claims**: while threads claim and settle at once, no event
  is claimed twice or lost, and the counts afterwards are exact.
- **recovery after a crash**: what a deliverer that died (a killed process) had claimed and
  not settled is claimable again by the next deliverer, once (delivery is at-least-once: what
  it settled just before dying may come back too).
- **shared vs local**: a backend that declares ``cross_process`` lets another process put
  events its deliverer claims; one that does not keeps its events to itself.
- **wake-ups**: an event another process put reaches the deliverer; a backend that polls
  (``polls_every``) reports it from :meth:`~postback.delivery.queue.Queue.poll` and wakes the
  vendor's lane through the callback given to
  :meth:`~postback.delivery.queue.Queue.wake_on_new`.
- **fork safety**: a child forked from a process that holds the queue calls ``after_fork()``
  and puts through the queue it inherited; the deliverer receives those events.
- **remembered keys are atomic**: of many threads remembering one key, exactly one wins.
- **recent keys** (``remember_for``, local dedupe): of many threads remembering one key for
  several vendors at once, exactly one gets each vendor; another process sees the key; a key
  is taken again once its window ran out, or after ``forget_for``; ``put_unique`` stores an
  event for a vendor with a window only the first time within it.
- **rate-limit storage**: a backend that declares ``shared_rate_limits`` returns a ``limits``
  storage that every instance shares; one that does not returns ``None``.

Checks that need another process fork one (``os.fork``): they run on POSIX only.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

import attrs
import orjson
import pytest
from limits import RateLimitItemPerMinute
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

from postback.delivery.queue import Claimed, Queue, QueueCapabilities, QueueOptions, Settlement
from postback.delivery.registry import QueueRegistry
from postback.plugins import PluginHost

__all__ = ["QueueContract"]

#: How long a check waits at most for something another process did (never a timing assert:
#: a working backend is done far sooner; a broken one fails after this long).
PATIENCE = 15.0


def payload(event_id: str, name: str = "purchase") -> bytes:
    """The stored bytes of a test event (a canonical event is JSON with its name)."""
    return orjson.dumps({"name": name, "event_id": event_id})


def event_ids(claimed: Sequence[Claimed]) -> list[str]:
    return [c.event_id for c in claimed]


class QueueContract:
    """Subclass in a backend's tests and override the :meth:`queue_url` fixture."""

    #: In-process plugins that register the backend (a third party's entry point is found
    #: without them).
    plugins: ClassVar[Sequence[object]] = ()
    #: Seconds after which another deliverer may take over what a dead one had claimed (a
    #: visibility timeout); 0 when the next deliverer takes it over at once on ``recover()``.
    takeover_after: ClassVar[float] = 0.0
    #: The ``[postback]`` settings the queues are opened with.
    queue_options: ClassVar[QueueOptions] = QueueOptions()
    #: The vendors the checks route events to.
    vendors: ClassVar[tuple[str, ...]] = ("a", "b", "c")

    @pytest.fixture
    def queue_url(self) -> str:
        raise NotImplementedError("override the queue_url fixture to return your backend's URL")

    @pytest.fixture
    def registry(self) -> QueueRegistry:
        return PluginHost(self.plugins).queues

    @pytest.fixture
    def open_queue(self, registry: QueueRegistry, queue_url: str) -> Iterator[Callable[[], Queue]]:
        """Open another instance of the queue under test (another process's view of it)."""
        opened: list[Queue] = []

        def open_one() -> Queue:
            queue = registry.open(queue_url, self.queue_options)
            opened.append(queue)
            return queue

        yield open_one
        for queue in opened:
            queue.close()

    @pytest.fixture
    def queue(self, open_queue: Callable[[], Queue]) -> Queue:
        """The queue under test, as the deliverer opens it (it holds delivery)."""
        return self.deliverer(open_queue())

    def deliverer(self, queue: Queue) -> Queue:
        """Become ``queue``'s deliverer as the engine does: acquire, serve, recover."""
        assert queue.acquire_delivery(), f"{queue!r} did not let its first opener deliver"
        queue.serve(self.vendors)
        queue.recover()
        return queue

    @staticmethod
    def put(queue: Queue, event_id: str, vendors: Sequence[str] = ("a",)) -> None:
        queue.put(event_id, "purchase", 1_000 + len(event_id), list(vendors), payload(event_id))

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    @staticmethod
    def in_child(work: Callable[[], None]) -> None:
        """Run ``work`` in a forked process that exits without any clean-up (as a killed one
        would); fail if the work raised."""
        if sys.platform == "win32" or not hasattr(os, "fork"):
            pytest.skip("the check forks a process (POSIX only)")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                work()
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child process failed (see stderr)"

    # --- declarations ------------------------------------------------------------------------

    def test_declares_its_capabilities(self, queue: Queue, registry: QueueRegistry) -> None:
        assert isinstance(queue.capabilities, QueueCapabilities)
        assert queue.url, "a queue says what it is (its URL, without secrets)"
        backend = registry.backend_for(queue.url)
        assert backend is not None, f"{queue.url!r} is not a URL of a registered backend"
        caps, declared = queue.capabilities, backend.capabilities
        assert not caps.shared_across_hosts or caps.cross_process, (
            "a queue shared across hosts is shared across processes too"
        )
        # The registration promises what the class does; an instance may only narrow
        # loop_safe_put (e.g. a put that fsyncs under its options).
        assert attrs.evolve(caps, loop_safe_put=declared.loop_safe_put) == declared, (
            f"{queue!r} declares {caps}, its registration {declared}"
        )
        assert declared.loop_safe_put or not caps.loop_safe_put

    # --- put, claim, settle ------------------------------------------------------------------

    def test_put_claim_settle_in_order(self, queue: Queue) -> None:
        for i in range(5):
            self.put(queue, f"e{i}")
        first = queue.claim("a", 3, self.now_ms())
        assert event_ids(first) == ["e0", "e1", "e2"]
        assert [(c.payload, c.attempts, c.created_ms) for c in first] == [
            (payload(f"e{i}"), 0, 1_002) for i in range(3)
        ]
        assert queue.depth(["a"], self.now_ms())["a"].inflight == 3
        queue.settle("a", [Settlement(c, "done") for c in first], self.now_ms())
        rest = queue.claim("a", 10, self.now_ms())
        assert event_ids(rest) == ["e3", "e4"]
        queue.settle("a", [Settlement(c, "done") for c in rest], self.now_ms())
        assert queue.claim("a", 10, self.now_ms()) == []
        assert queue.depth(["a"], self.now_ms())["a"].pending == 0

    def test_each_vendor_claims_only_its_own_events(self, queue: Queue) -> None:
        self.put(queue, "ab", ["a", "b"])
        self.put(queue, "b", ["b"])
        self.put(queue, "c", ["c"])
        a = queue.claim("a", 10, self.now_ms())
        assert event_ids(a) == ["ab"]
        queue.settle("a", [Settlement(c, "done") for c in a], self.now_ms())
        depth = queue.depth(["a", "b", "c"], self.now_ms())
        assert (depth["a"].pending, depth["b"].ready, depth["c"].ready) == (0, 2, 1)
        assert event_ids(queue.claim("b", 10, self.now_ms())) == ["ab", "b"]

    # --- retries and dead letters ------------------------------------------------------------

    def test_a_retry_waits_until_due_and_counts_attempts(self, queue: Queue) -> None:
        self.put(queue, "r")
        now = self.now_ms()
        (claimed,) = queue.claim("a", 10, now)
        due = now + 60_000
        queue.settle("a", [Settlement(claimed, "retry", due_ms=due, error="503", attempts=1)], now)
        assert queue.claim("a", 10, now) == []
        assert queue.next_due_ms("a") == due
        depth = queue.depth(["a"], now)["a"]
        assert (depth.ready, depth.retrying, depth.inflight) == (0, 1, 0)
        assert queue.depth(["a"], due)["a"].ready == 1
        (again,) = queue.claim("a", 10, due)
        assert (again.event_id, again.attempts, again.payload) == ("r", 1, payload("r"))
        queue.settle("a", [Settlement(again, "done")], due)
        assert queue.depth(["a"], due)["a"].pending == 0

    def test_release_gives_an_event_back_untouched(self, queue: Queue) -> None:
        self.put(queue, "x")
        now = self.now_ms()
        (claimed,) = queue.claim("a", 10, now)
        queue.settle("a", [Settlement(claimed, "retry", due_ms=now, attempts=2)], now)
        (retried,) = queue.claim("a", 10, now)
        queue.settle("a", [Settlement(retried, "release", due_ms=now)], now)
        (released,) = queue.claim("a", 10, now)
        assert (released.event_id, released.attempts) == ("x", 2)

    def test_dead_letters_are_kept_listed_and_requeued(self, queue: Queue) -> None:
        for i in range(3):
            self.put(queue, f"d{i}", ["a", "b"])
        now = self.now_ms()
        claimed = queue.claim("a", 10, now)
        queue.settle(
            "a",
            [Settlement(c, "dead", error=f"refused {c.event_id}", attempts=3) for c in claimed],
            now,
        )
        dead = queue.dead_letters("a")
        assert [d.event_id for d in dead] == ["d2", "d1", "d0"], "newest first"
        assert {(d.vendor, d.name, d.attempts) for d in dead} == {("a", "purchase", 3)}
        assert dead[0].reason == "refused d2" and dead[0].payload == payload("d2")
        assert dead[0].failed_ms == now and dead[0].created_ms == 1_002
        assert queue.dead_letter(dead[1].id) == dead[1]
        assert queue.dead_letters("b") == [] and len(queue.dead_letters()) == 3
        assert queue.dead_letters("a", limit=1) == dead[:1]
        assert queue.dead_letters("a", since_ms=now + 1) == []
        depth = queue.depth(["a", "b"], now)
        assert (depth["a"].dead, depth["a"].pending, depth["b"].ready) == (3, 0, 3)
        requeued = queue.requeue_dead(ids=[dead[1].id])
        assert [d.event_id for d in requeued] == ["d1"]
        assert queue.dead_letter(dead[1].id) is None
        (back,) = queue.claim("a", 10, now)
        assert (back.event_id, back.attempts, back.payload) == ("d1", 0, payload("d1"))
        assert {d.event_id for d in queue.requeue_dead(vendor="a")} == {"d0", "d2"}
        assert queue.dead_letters() == []

    # --- concurrency -------------------------------------------------------------------------

    def test_depth_is_exact_under_concurrent_claims(
        self, queue: Queue, open_queue: Callable[[], Queue]
    ) -> None:
        routes = [["a"], ["a", "b"], ["a", "b", "c"]]
        expected: dict[str, set[str]] = {v: set() for v in self.vendors}
        for i in range(240):
            vendors = routes[i % 3]
            self.put(queue, f"e{i}", vendors)
            for v in vendors:
                expected[v].add(f"e{i}")
        claimers = [queue]
        if queue.capabilities.shared_across_hosts:  # every worker claims: two at once
            claimers.append(self.deliverer(open_queue()))
        claimed: dict[str, Counter[str]] = {v: Counter() for v in self.vendors}
        kept: dict[str, list[tuple[Queue, Claimed]]] = {v: [] for v in self.vendors}
        lock = threading.Lock()
        failures: list[BaseException] = []
        stop_reading = threading.Event()

        deadline = time.monotonic() + PATIENCE

        def claim_all(q: Queue, vendor: str) -> None:
            # An empty claim does not mean the end (a backend may be ingesting on another
            # thread): claim until every event was, or for PATIENCE seconds.
            try:
                while time.monotonic() < deadline:
                    with lock:
                        if len(claimed[vendor]) >= len(expected[vendor]):
                            return
                    batch = q.claim(vendor, 7, self.now_ms())
                    if not batch:
                        time.sleep(0.01)
                        continue
                    done = batch[::2]
                    q.settle(vendor, [Settlement(c, "done") for c in done], self.now_ms())
                    with lock:
                        claimed[vendor].update(event_ids(batch))
                        kept[vendor].extend((q, c) for c in batch[1::2])
            except BaseException as exc:  # reported below
                failures.append(exc)

        def read_depth() -> None:
            try:
                while not stop_reading.is_set():
                    queue.depth(list(self.vendors), self.now_ms())
            except BaseException as exc:
                failures.append(exc)

        threads = [
            threading.Thread(target=claim_all, args=(q, v)) for q in claimers for v in self.vendors
        ]
        reader = threading.Thread(target=read_depth)
        reader.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop_reading.set()
        reader.join()
        assert not failures, failures
        for v in self.vendors:
            twice = [e for e, n in claimed[v].items() if n > 1]
            assert not twice, f"{v}: claimed more than once: {sorted(twice)[:5]}"
            assert set(claimed[v]) == expected[v], f"{v}: lost {expected[v] - set(claimed[v])}"
        depth = queue.depth(list(self.vendors), self.now_ms())
        for v in self.vendors:
            d = depth[v]
            assert (d.ready, d.retrying, d.inflight, d.dead) == (0, 0, len(kept[v]), 0), (v, d)
        for v in self.vendors:
            for q, c in kept[v]:
                q.settle(v, [Settlement(c, "done")], self.now_ms())
        depth = queue.depth(list(self.vendors), self.now_ms())
        assert all(depth[v].pending == 0 for v in self.vendors), depth

    def test_remembered_keys_are_atomic(
        self, queue: Queue, open_queue: Callable[[], Queue]
    ) -> None:
        key = f"k-{uuid.uuid4().hex}"
        start = threading.Barrier(12)
        wins: list[bool] = []

        def race() -> None:
            start.wait()
            wins.append(queue.remember("a", key))

        threads = [threading.Thread(target=race) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wins.count(True) == 1, wins
        assert queue.remember("b", key), "keys are remembered per vendor"
        if queue.capabilities.cross_process:
            assert not open_queue().remember("a", key), "another process sees the key"
        queue.forget("a", key)
        assert queue.remember("a", key)

    def test_remembered_keys_are_forgotten_by_a_literal_prefix(self, queue: Queue) -> None:
        base = f"p-{uuid.uuid4().hex}"
        keys = [f"{base}/1", f"{base}/2", f"{base}*/[3]", f"{base}%_", base]
        for key in keys:
            queue.remember("a", key)
            queue.remember("b", key)
        queue.forget_prefix("a", f"{base}/")
        queue.forget_prefix("a", f"{base}*/[")  # glob and LIKE characters are literal
        assert [k for k in keys if queue.remember("a", k)] == keys[:3]
        assert not any(queue.remember("b", k) for k in keys), "another vendor's keys stay"

    def test_recent_keys_are_atomic_per_vendor_and_expire(
        self, queue: Queue, open_queue: Callable[[], Queue]
    ) -> None:
        key = f"order-{uuid.uuid4().hex}"
        start = threading.Barrier(12)
        wins: list[list[str]] = []

        def race() -> None:
            start.wait()
            wins.append(queue.remember_for(["a", "b"], key, 60_000))

        threads = [threading.Thread(target=race) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [w for w in wins if w]
        assert sorted(v for w in won for v in w) == ["a", "b"], wins
        assert queue.remember_for(["a", "b", "c"], key, 60_000) == ["c"], "per vendor"
        if queue.capabilities.cross_process:
            other = open_queue()
            assert other.remember_for(["a", "c"], key, 60_000) == [], "another process sees it"
        queue.forget_for(["a"], key)
        assert queue.remember_for(["a", "b"], key, 60_000) == ["a"], "forget_for undoes it"
        short = f"short-{uuid.uuid4().hex}"
        assert queue.remember_for(["a"], short, 50) == ["a"]
        deadline = time.monotonic() + PATIENCE
        while not queue.remember_for(["a"], short, 50):  # its window runs out
            assert time.monotonic() < deadline, "a remembered key never expired"
            time.sleep(0.05)

    def test_put_unique_stores_an_id_once_per_window_vendor(self, queue: Queue) -> None:
        key = f"order-{uuid.uuid4().hex}"
        windows = {"a": 60_000, "b": 60_000}
        assert (
            queue.put_unique(key, "purchase", 1_000, ["a", "b", "c"], payload(key), windows) == []
        )
        assert queue.put_unique(key, "purchase", 1_001, ["a", "c"], payload(key), windows) == ["a"]
        assert queue.put_unique(key, "purchase", 1_002, ["b"], payload(key), windows) == ["b"]
        assert queue.remember_for(["a"], key, 60_000) == [], "put_unique remembers as remember_for"
        now = self.now_ms()
        got = {v: event_ids(queue.claim(v, 10, now)) for v in self.vendors}
        assert got == {"a": [key], "b": [key], "c": [key, key]}, got

    # --- crashes, processes, wake-ups --------------------------------------------------------

    def require_cross_process(self, queue: Queue) -> None:
        if not queue.capabilities.cross_process:
            pytest.skip(f"{queue.url} declares that it is local to one process")

    def test_local_or_shared_as_declared(
        self, queue: Queue, open_queue: Callable[[], Queue]
    ) -> None:
        self.put(queue, "mine")
        other = open_queue()
        seen = other.depth(["a"], self.now_ms())["a"].pending
        if queue.capabilities.cross_process:
            assert seen == 1, "a cross-process queue shows every process the same events"
        else:
            assert seen == 0, "a process-local queue must not declare cross_process"

    def test_a_crashed_deliverer_is_recovered(
        self, open_queue: Callable[[], Queue], queue_url: str, registry: QueueRegistry
    ) -> None:
        producer = open_queue()
        self.require_cross_process(producer)
        for i in range(4):
            self.put(producer, f"e{i}")
        producer.close()

        def deliver_then_die() -> None:
            q = self.deliverer(registry.open(queue_url, self.queue_options))
            first = q.claim("a", 2, self.now_ms())
            assert event_ids(first) == ["e0", "e1"]
            q.settle("a", [Settlement(first[0], "done")], self.now_ms())
            # e1 stays claimed: the process dies without settling or closing

        self.in_child(deliver_then_die)
        queue = open_queue()
        deadline = time.monotonic() + self.takeover_after + PATIENCE
        while not queue.acquire_delivery():
            assert time.monotonic() < deadline, "the dead deliverer's hold was never released"
            time.sleep(0.05)
        queue.serve(self.vendors)
        queue.recover()
        got: Counter[str] = Counter()
        while set(got) != {"e1", "e2", "e3"} and time.monotonic() < deadline:
            batch = queue.claim("a", 10, self.now_ms())
            got.update(event_ids(batch))
            queue.settle("a", [Settlement(c, "done") for c in batch], self.now_ms())
            if not batch:
                time.sleep(0.05)
        # Delivery is at-least-once: e0, settled just before the crash, may come back (a
        # backend may save its progress in batches); what was not settled must all come back.
        assert {"e1", "e2", "e3"} <= set(got) <= {"e0", "e1", "e2", "e3"}, got
        assert max(got.values()) == 1, f"the next deliverer claimed an event twice: {got}"

    def test_events_from_another_process_reach_the_deliverer(
        self, queue: Queue, queue_url: str, registry: QueueRegistry
    ) -> None:
        self.require_cross_process(queue)
        woken: set[str] = set()
        queue.wake_on_new(woken.update)
        assert queue.claim("a", 10, self.now_ms()) == []

        def put_elsewhere() -> None:
            q = registry.open(
                queue_url, attrs.evolve(self.queue_options, delivers_on_threads=False)
            )
            self.put(q, "from-child", ["a"])
            q.close()

        self.in_child(put_elsewhere)
        deadline = time.monotonic() + PATIENCE
        if queue.capabilities.polls_every is not None:
            while "a" not in woken:
                assert time.monotonic() < deadline, (
                    "poll() never woke vendor 'a' for another process's event"
                )
                queue.poll()
                time.sleep(0.02)
        got: list[Claimed] = []
        while not got:
            assert time.monotonic() < deadline, "another process's event never became claimable"
            got = queue.claim("a", 10, self.now_ms())
            if not got:
                time.sleep(0.02)
        assert event_ids(got) == ["from-child"]

    def test_a_forked_child_puts_through_the_queue_it_inherited(
        self, queue: Queue, open_queue: Callable[[], Queue]
    ) -> None:
        """gunicorn --preload: a worker forked from the app's process calls ``after_fork()``
        on the queue it inherited, then tracks through it; the deliverer gets the events."""
        self.require_cross_process(queue)

        def put_after_fork() -> None:
            queue.after_fork()
            self.put(queue, "forked", ["a"])
            queue.close()

        self.in_child(put_after_fork)
        deadline = time.monotonic() + PATIENCE
        got: list[Claimed] = []
        while not got:
            assert time.monotonic() < deadline, "the forked child's event never arrived"
            queue.poll()
            got = queue.claim("a", 10, self.now_ms())
            if not got:
                time.sleep(0.02)
        assert event_ids(got) == ["forked"]
        queue.settle("a", [Settlement(got[0], "done")], self.now_ms())
        if not queue.capabilities.shared_across_hosts:  # one elected deliverer: still us
            assert not open_queue().acquire_delivery(), (
                "the forked child released the parent's hold on delivery"
            )

    # --- rate limits -------------------------------------------------------------------------

    def test_rate_limit_storage_is_shared_as_declared(
        self, queue: Queue, open_queue: Callable[[], Queue]
    ) -> None:
        storage = queue.rate_limit_storage()
        if not queue.capabilities.shared_rate_limits:
            assert storage is None, (
                "a queue without shared_rate_limits returns None (the engine then keeps "
                "rate limits in each process)"
            )
            return
        assert isinstance(storage, Storage), (
            f"rate_limit_storage() must return a limits.storage.Storage, not {storage!r}"
        )
        other = open_queue().rate_limit_storage()
        assert isinstance(other, Storage)
        item = RateLimitItemPerMinute(2)
        key = f"contract-{uuid.uuid4().hex}"
        mine, theirs = MovingWindowRateLimiter(storage), MovingWindowRateLimiter(other)
        assert mine.hit(item, key) and theirs.hit(item, key)
        assert not mine.hit(item, key) and not theirs.hit(item, key), (
            "two instances of a queue with shared_rate_limits must share one window"
        )

    # --- skip counts -------------------------------------------------------------------------

    def test_skip_counts_add_up(self, queue: Queue, open_queue: Callable[[], Queue]) -> None:
        queue.add_skips({("a", "no email"): 2, ("b", "no click id"): 1})
        queue.add_skips({("a", "no email"): 3})
        assert queue.skip_counts() == {"a": {"no email": 5}, "b": {"no click id": 1}}
        if queue.capabilities.cross_process:
            assert open_queue().skip_counts()["a"] == {"no email": 5}

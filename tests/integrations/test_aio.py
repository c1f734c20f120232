"""AsyncTracker: Tracker's API with await, writes off the event loop, in order, fork- and
exit-safe."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import postback.testing.example
from postback import InvalidEvent, TrackerClosed
from postback.aio import AsyncTracker
from postback.delivery.sqlite import SQLiteQueue
from postback.integrations._context import (
    LazyRequestContext,
    RequestContextSettings,
    RequestInfo,
    bind_request_context,
)

pytestmark = pytest.mark.timeout(60)


def make_tracker(config, *more_plugins):
    import pb_settings

    return AsyncTracker.from_config(config, plugins=[*pb_settings.PLUGINS, *more_plugins])


def sqlite_config(example_config, tmp_path, **core):
    return example_config(queue=f"sqlite:///{tmp_path / 'queue.db'}", **core)


def queue_depth(path):
    queue = SQLiteQueue(path)
    try:
        return queue.depth(["example"], int(time.time() * 1000))["example"].pending
    finally:
        queue.close()


def test_track_flush_close_like_the_sync_tracker(example_config, tmp_path, sandbox):
    async def main():
        async with make_tracker(sqlite_config(example_config, tmp_path)) as tracker:
            event_id = await tracker.track(
                "purchase",
                user={"email": "A@B.co"},
                value=49.99,
                currency="USD",
                event_id="order-1",
            )
            assert event_id == "order-1"
            generated = await tracker.track("sign_up", user={"user_id": "u1"})
            report = await tracker.flush(timeout=20)
            assert report.complete
            assert report["example"].delivered == 2
            assert (await tracker.stats())["example"]["delivered"] == 2
            status = await tracker.status("order-1")
            assert status.vendors["example"].state == "delivered"
            return generated
        # leaving the block closed it

    generated = asyncio.run(main())
    received = {e["event_id"]: e for e in sandbox.received("example")}
    assert received["order-1"]["value_micros"] == 49_990_000
    assert received["order-1"]["user"] == "a@b.co"
    assert generated in received


def test_invalid_events_raise_the_same_error(example_config, tmp_path):
    async def main():
        async with make_tracker(sqlite_config(example_config, tmp_path)) as tracker:
            with pytest.raises(InvalidEvent) as info:
                await tracker.track("purchase", user={"email": "a@b.co"}, currency="usd$")
            fields = {(p.vendor, p.field) for p in info.value.problems}
            assert (None, "currency") in fields
            with pytest.raises(InvalidEvent):
                tracker.tracker.track("purchase", user={"email": "a@b.co"}, currency="usd$")

    asyncio.run(main())


def test_writes_run_on_one_writer_thread_in_call_order(example_config, tmp_path):
    # With fsync per event (or a network round trip, redis://) the write leaves the loop.
    puts: list[tuple[str, str]] = []

    async def main():
        tracker = make_tracker(
            sqlite_config(example_config, tmp_path, workers=False, sqlite_synchronous="full")
        )
        queue = tracker.tracker.queue
        original = queue.put

        def recording_put(event_id, *args, **kwargs):
            puts.append((event_id, threading.current_thread().name))
            return original(event_id, *args, **kwargs)

        queue.put = recording_put  # type: ignore[method-assign]
        ids = [f"e-{i}" for i in range(50)]
        await asyncio.gather(
            *(tracker.track("sign_up", user={"user_id": "u"}, event_id=i) for i in ids)
        )
        await tracker.close(timeout=0)
        return ids

    ids = asyncio.run(main())
    assert [event_id for event_id, _ in puts] == ids
    threads = {name for _, name in puts}
    assert len(threads) == 1
    assert threads.pop().startswith("postback-writer")
    assert queue_depth(tmp_path / "queue.db") == 50


def test_hooks_on_the_writer_thread_see_the_callers_context(example_config, tmp_path):
    # postback_consent runs "inside track() on the caller's thread", where a CMP integration
    # reads its per-request state (a contextvar, as the consent how-to's outline does). On the
    # writer thread it saw none unless an OpenTelemetry span happened to be active, so a vendor
    # the user refused in the CMP got the event (redis://, sqlite_synchronous = "full").
    import contextvars

    from postback import hookimpl

    refused: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
        "refused", default=frozenset()
    )

    class Cmp:
        @hookimpl
        def postback_consent(self, event, destination, consent):
            return False if destination.name in refused.get() else None

    async def request(tracker, event_id, vendors):
        refused.set(frozenset(vendors))  # what the CMP said for this request
        await tracker.track("sign_up", user={"user_id": "u"}, event_id=event_id)

    async def main():
        tracker = make_tracker(
            sqlite_config(example_config, tmp_path, workers=False, sqlite_synchronous="full"),
            Cmp(),
        )
        await asyncio.gather(request(tracker, "refused", {"example"}), request(tracker, "ok", ()))
        assert tracker._writer.started
        stats = await tracker.stats()
        await tracker.close(timeout=0)
        return stats

    stats = asyncio.run(main())
    assert stats["example"]["skips"] == {"consent": 1}
    assert queue_depth(tmp_path / "queue.db") == 1


def test_memory_queue_writes_inline(example_config):
    async def main():
        tracker = make_tracker(example_config())
        await tracker.track("sign_up", user={"user_id": "u"})
        assert not tracker._writer.started  # no I/O, so no thread hop
        await tracker.close(timeout=10)

    asyncio.run(main())


def test_sqlite_spool_writes_inline(example_config, tmp_path):
    # A write() into the page cache, like a log line: cheaper on the loop than a thread hop.
    async def main():
        tracker = make_tracker(sqlite_config(example_config, tmp_path, workers=False))
        for i in range(20):
            await tracker.track("sign_up", user={"user_id": "u"}, event_id=f"e{i}")
        assert not tracker._writer.started
        await tracker.close(timeout=0)

    asyncio.run(main())
    assert queue_depth(tmp_path / "queue.db") == 20


def test_request_context_from_the_contextvar(example_config, tmp_path, sandbox):
    info = RequestInfo(
        remote_addr="10.0.0.1",
        forwarded=["203.0.113.50"],
        user_agent="UA/1",
        url="https://shop.example/p?utm_campaign=spring",
        query=[("utm_campaign", "spring")],
        cookies={"_axwrt": "WRT"},
    )
    lazy = LazyRequestContext(RequestContextSettings(trusted_proxy_hops=1), lambda: info)

    async def main():
        async with make_tracker(sqlite_config(example_config, tmp_path)) as tracker:
            with bind_request_context(lazy):
                await tracker.track(
                    "sign_up",
                    user={"user_id": "u"},
                    event_id="in-request",
                    context={"utm_campaign": "explicit"},
                )
            await tracker.track("sign_up", user={"user_id": "u"}, event_id="outside")
            assert (await tracker.flush(timeout=20)).complete

    asyncio.run(main())
    got = {e["event_id"]: e for e in sandbox.received("example")}
    assert got["in-request"]["ip"] == "203.0.113.50"
    assert got["in-request"]["ua"] == "UA/1"
    assert got["in-request"]["ctx"]["utm_campaign"] == "explicit"
    assert got["in-request"]["ctx"]["axwrt"] == "WRT"
    assert got["outside"]["ip"] is None
    assert got["outside"]["ctx"] == {}


def test_request_fields_no_installed_plugin_declares_are_left_out(
    example_config, tmp_path, sandbox
):
    """AppLovin's cookie fills context.axwrt only when a plugin declares it: without one, the
    request's value is dropped (not an unknown-field error), and an explicit one still fails."""
    import pb_context_echo

    info = RequestInfo(remote_addr="10.0.0.1", cookies={"_axwrt": "WRT", "_fbp": "fb.1.2.3"})
    lazy = LazyRequestContext(RequestContextSettings(), lambda: info)

    async def main():
        config = sqlite_config(example_config, tmp_path)
        plugins = [postback.testing.example, pb_context_echo]
        async with AsyncTracker.from_config(config, plugins=plugins) as tracker:
            with bind_request_context(lazy):
                await tracker.track("sign_up", user={"user_id": "u"}, event_id="e-1")
                with pytest.raises(InvalidEvent, match="postback-applovin plugin declares it"):
                    await tracker.track("sign_up", user={"user_id": "u"}, context={"axwrt": "x"})
            assert (await tracker.flush(timeout=20)).complete

    asyncio.run(main())
    (got,) = sandbox.received("example")
    assert got["ctx"] == {"fbp": "fb.1.2.3"}


def test_a_cancelled_caller_does_not_unqueue_its_event(example_config, tmp_path):
    async def main():
        tracker = make_tracker(
            sqlite_config(example_config, tmp_path, workers=False, sqlite_synchronous="full")
        )
        task = asyncio.create_task(tracker.track("sign_up", user={"user_id": "u"}))
        await asyncio.sleep(0)  # the task has submitted its write
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await tracker.close(timeout=0)  # waits for submitted writes

    asyncio.run(main())
    assert queue_depth(tmp_path / "queue.db") == 1


def test_closed_tracker_refuses_events(example_config):
    async def main():
        tracker = make_tracker(example_config())
        assert await tracker.close() is not None or True
        assert tracker.closed
        assert await tracker.close() is None  # idempotent
        with pytest.raises(TrackerClosed):
            await tracker.track("sign_up", user={"user_id": "u"})
        with pytest.raises(TrackerClosed):
            tracker.track_blocking("sign_up", user={"user_id": "u"})

    asyncio.run(main())


SCRIPT_PRELUDE = """
import asyncio, os, sys
import postback.testing.example
from postback.aio import AsyncTracker
config = {"postback": {"queue": "sqlite:///" + sys.argv[1], "workers": False, "exit_timeout": 0},
          "vendors": {"example": {"api_key": "k", "base_url": "http://127.0.0.1:9/example"}}}
tracker = AsyncTracker.from_config(config, plugins=[postback.testing.example])
def track(event_id):
    return tracker.track("sign_up", user={"user_id": "u"}, event_id=event_id)
"""


def run_script(body, tmp_path):
    script = SCRIPT_PRELUDE + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "queue.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "POSTBACK_DISABLE_PLUGINS": "*"},
    )
    assert result.returncode == 0, result.stderr
    return result


def test_a_forked_child_gets_its_own_writer(tmp_path):
    run_script(
        """
        asyncio.run(track("parent-before"))      # the parent's writer thread is running
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(track("child"))
            except BaseException:
                import traceback; traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child could not track"
        asyncio.run(track("parent-after"))
        """,
        tmp_path,
    )
    assert queue_depth(tmp_path / "queue.db") == 3


def test_submitted_writes_finish_at_interpreter_exit(tmp_path):
    run_script(
        """
        async def main():
            for i in range(200):
                asyncio.get_running_loop().create_task(track(f"e-{i}"))
            await asyncio.sleep(0)   # every task has submitted; nobody awaits the results
        asyncio.run(main())
        """,
        tmp_path,
    )
    assert queue_depth(tmp_path / "queue.db") == 200


def test_explain_is_the_trackers_with_the_request_context(example_config, tmp_path):
    async def main():
        async with make_tracker(sqlite_config(example_config, tmp_path)) as tracker:
            skipped = tracker.explain("purchase", user={"email": "a@b.co"}, currency="USD")
            assert skipped.vendors["example"].status == "skipped"
            assert skipped.vendors["example"].reason == "value: purchase without value"
            info = RequestInfo("203.0.113.9", user_agent="UA", url="https://s.ex/p")
            with bind_request_context(LazyRequestContext(RequestContextSettings(), lambda: info)):
                route = tracker.explain("sign_up", user={"email": "a@b.co"})
            assert route.queued == ("example",)
            assert route.event is not None and route.event.user.ip_address == "203.0.113.9"
            assert (await tracker.stats())["example"]["tracked"] == 0  # nothing was queued

    asyncio.run(main())


def test_a_cancelled_close_still_flushes_and_closes_the_tracker(
    example_config, tmp_path, sandbox, wait_until
):
    """close() cancelled at its first await (a lifespan shutdown cut short, wait_for): the
    close goes on to the end; it used to stop after the writer and never close the tracker,
    while ``closed`` said True and a second close() returned None at once."""

    async def main():
        tracker = make_tracker(sqlite_config(example_config, tmp_path))
        await tracker.track("sign_up", user={"user_id": "u"}, event_id="e-1")
        task = asyncio.create_task(tracker.close(timeout=20))
        await asyncio.sleep(0)  # close() is at its first await
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert tracker.closed
        assert await tracker.close() is None
        return tracker

    tracker = asyncio.run(main())
    wait_until(
        lambda: [e["event_id"] for e in sandbox.received("example")] == ["e-1"],
        "the cancelled close to flush",
        timeout=20,
    )
    wait_until(lambda: tracker.tracker.closed, "the cancelled close to close", timeout=20)
    wait_until(
        lambda: (
            not any(
                t.name.startswith("postback-") and t.name != "postback-sandbox"
                for t in threading.enumerate()
            )
        ),
        "the tracker's threads to end",
        timeout=20,
    )


def test_a_cancelled_callers_failed_write_is_logged(example_config, tmp_path, caplog):
    """The writer thread goes on with a call whose caller was cancelled; if it then fails
    (InvalidEvent, a QueueError), nobody is left to raise it to, so it is logged: the event
    was not queued. It used to vanish without a word."""

    async def main():
        tracker = make_tracker(
            sqlite_config(example_config, tmp_path, workers=False, sqlite_synchronous="full")
        )
        task = asyncio.create_task(
            tracker.track("purchase", user={"email": "a@b.co"}, currency="usd$", event_id="bad")
        )
        await asyncio.sleep(0)  # submitted
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await tracker.close(timeout=0)

    with caplog.at_level("WARNING", logger="postback"):
        asyncio.run(main())
    (record,) = [r for r in caplog.records if "cancelled" in r.getMessage()]
    assert "InvalidEvent" in record.getMessage()
    assert "currency" in record.getMessage()
    assert "not queued" in record.getMessage()
    assert queue_depth(tmp_path / "queue.db") == 0


@pytest.mark.parametrize("synchronous", ["normal", "full"])  # inline, writer thread
def test_a_cancelled_track_retried_with_its_event_id_is_sent_once(
    example_config, tmp_path, sandbox, synchronous
):
    """Cancelled after 0..5 loop iterations, a track() has queued its event or not, and its
    caller cannot tell which from the CancelledError. Retried with the same event_id, the
    event reaches a vendor without a dedupe key (X, Mobana, Ton AI: dedupe_window 24 h by
    default) exactly once either way."""
    config = sqlite_config(example_config, tmp_path, sqlite_synchronous=synchronous)
    config["vendors"]["example"]["dedupe_window"] = "24h"
    ids = [f"order-{k}" for k in range(6)]

    async def main():
        async with make_tracker(config) as tracker:
            cancelled = []
            for k, event_id in enumerate(ids):
                task = asyncio.create_task(
                    tracker.track("sign_up", user={"user_id": "u"}, event_id=event_id)
                )
                for _ in range(k):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    cancelled.append(event_id)
            assert cancelled[:1] == ["order-0"]  # cancelled before it ran: nothing queued
            for event_id in cancelled:  # the app's retry
                assert await tracker.track("sign_up", user={"user_id": "u"}, event_id=event_id)
            assert (await tracker.flush(timeout=20)).complete

    asyncio.run(main())
    assert sorted(e["event_id"] for e in sandbox.received("example")) == ids


def test_a_failed_write_whose_loop_closed_is_logged(example_config, tmp_path, caplog):
    """asyncio.run() ends while the writer thread still has writes of its loop: they are
    made, and one that fails is logged, as for a cancelled caller."""

    async def main():
        tracker = make_tracker(
            sqlite_config(example_config, tmp_path, workers=False, sqlite_synchronous="full")
        )
        # An fdatasync each: the writer is busy well after the loop has ended.
        calls = [
            tracker.track("sign_up", user={"user_id": "u"}, event_id=f"e{i}") for i in range(200)
        ]
        calls.append(tracker.track("purchase", user={"email": "a@b.co"}, currency="usd$"))
        tasks = [asyncio.create_task(call) for call in calls]
        await asyncio.sleep(0)  # all submitted; nobody awaits them
        return tracker, tasks

    with caplog.at_level("WARNING", logger="postback"):
        tracker, _ = asyncio.run(main())
        tracker.close_blocking(timeout=0)  # waits for the writer
    (record,) = [r for r in caplog.records if "not queued" in r.getMessage()]
    assert "InvalidEvent" in record.getMessage()
    assert queue_depth(tmp_path / "queue.db") == 200


class Heartbeat:
    """A task that wakes every ``step`` seconds and keeps the longest gap between two wake-ups:
    how long the event loop was kept from running anything else."""

    def __init__(self, step: float = 0.005) -> None:
        self.step = step
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat())
        await asyncio.sleep(self.step * 2)  # it is beating
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        await asyncio.sleep(self.step * 2)  # a beat after the code under test
        self._task.cancel()

    async def _beat(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.step)
            now = time.monotonic()
            self.longest = max(self.longest, now - last - self.step)
            last = now


def test_stats_never_blocks_the_event_loop(example_config, tmp_path):
    """``stats()`` counts the queue, and the deliverer's count waits for the spool's intake
    lock (held while other processes' writes are read in, 28-116 ms under load): it runs on
    a thread, as ``status()`` does, and the loop goes on meanwhile."""

    async def main():
        async with make_tracker(sqlite_config(example_config, tmp_path)) as tracker:
            await tracker.track("sign_up", user={"user_id": "u"}, event_id="e-1")
            assert (await tracker.flush(timeout=20)).complete  # this process delivers
            intake = tracker.tracker.queue._intake.lock
            held = threading.Event()

            def busy_intake() -> None:  # stands for a long ingest of other processes' writes
                with intake:
                    held.set()
                    time.sleep(0.2)

            threading.Thread(target=busy_intake).start()
            held.wait(5)
            async with Heartbeat() as beat:
                stats = await tracker.stats()
            assert stats["example"]["delivered"] == 1 and stats["example"]["queue_depth"] == 0
            assert beat.longest < 0.1, f"the loop was blocked {beat.longest * 1000:.0f} ms"

    asyncio.run(main())


def test_a_cancelled_flush_stops_waiting(example_config, tmp_path, sandbox):
    """``flush()`` waits on a thread; cancelling its caller (``asyncio.wait_for``, a request
    that went away) used to leave that thread waiting out the whole timeout. It now stops the
    wait: the thread is free again within a fraction of a second."""
    sandbox.set_fault("example", status=503)  # every attempt is retried later: flush waits

    async def main():
        tracker = make_tracker(sqlite_config(example_config, tmp_path))
        await tracker.track("sign_up", user={"user_id": "u"}, event_id="e-1")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tracker.flush(timeout=5), 0.2)
        started = time.monotonic()
        await asyncio.get_running_loop().shutdown_default_executor()  # the flush's thread ends
        took = time.monotonic() - started
        await tracker.close(timeout=0)
        assert took < 0.3, f"the cancelled flush went on for {took:.2f} s"

    asyncio.run(main())
    assert queue_depth(tmp_path / "queue.db") == 1  # not delivered, still queued

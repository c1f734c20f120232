"""The measured processes: one scenario, one library, in a fresh interpreter per run.

``run.py`` starts ``python bench/workload.py '<json spec>'``; the last line this prints is a JSON
result. A fresh process per run keeps the libraries from disturbing each other (threads,
memory, garbage-collector state) and lets the orchestrator SIGKILL one mid-loop.

Scenarios (``spec["scenario"]``):

``throughput``  track N events on the caller's thread, timing every call, then wait until the
                sink has all N: per-call latency, GC pauses, end-to-end events/s.
``kill``        track in a tight loop, publishing how many track() calls returned through a
                small shared file, until the orchestrator SIGKILLs the process.
``exit``        track N events and return from ``main`` without flush() or close().
``drain``       (postback) reopen a queue file left by a previous process and deliver it; with
                ``expect``, time it (the delivery capacity).
``down``        track N events while the sink answers 503: how many are kept, RSS growth.
``transport``   a bare HTTP client (no postback) posting one event per request at a given
                concurrency: threads sharing one ``httpx.Client``, threads with a client each,
                ``httpx.AsyncClient``, and threads with the standard library's ``http.client``
                (the floor of per-request cost).
``fill``        (postback) queue N events with delivery off, for ``drain`` and the profiles.

Both libraries get the same event: a purchase with a user id, an email, a value, a currency,
a transaction id and an explicit event id (Segment's ``message_id``). With ``"vendor": "all"``
postback has the five real vendor plugins configured (each pointed at the sink) and both get a
realistic web purchase instead (:func:`realistic_purchase`): AppLovin takes it, X and Mobana are
skipped (no device id, no install id), Whop and Ton AI do not route purchases.
"""

from __future__ import annotations

import gc
import json
import mmap
import os
import struct
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SCRATCH_ENV, rss_bytes

# --------------------------------------------------------------------------------------------
# The two clients, behind one "track event i" function


#: The five vendor plugins of the quick start, all configured for the ``"all"`` workloads.
FIVE_VENDORS = ("applovin", "mobana", "tonai", "whop", "x")


def realistic_purchase(i: int, tag: str) -> dict[str, Any]:
    """``track()`` keywords of a web purchase: user with email, IP and user agent; the page
    URL with UTM parameters; two items."""
    return {
        "user": {
            "user_id": f"u{i}",
            "email": f"user{i}@example.com",
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15",
        },
        "value": 64.98,
        "currency": "USD",
        "event_id": f"{tag}-{i}",
        "context": {
            "url": "https://shop.example.com/checkout/done?utm_source=newsletter"
            "&utm_medium=email&utm_campaign=black-friday"
        },
        "properties": {
            "transaction_id": f"t{i}",
            "items": [
                {"item_id": "SKU-1", "quantity": 1, "price": 34.99},
                {"item_id": "SKU-2", "quantity": 2, "price": 14.995},
            ],
        },
    }


class PostbackClient:
    """postback with the default durable queue (a SQLite file) and one bench vendor, or (with
    ``"vendor": "all"``) the five real vendor plugins."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import bench_vendors

        from postback import Tracker

        self.tag = spec["tag"]
        self.vendor = spec.get("vendor", "bench_batch")
        queue_path = spec.get("queue_path") or str(Path(spec["tmp"]) / "postback.db")
        vendor_cfg: dict[str, Any] = {
            "api_key": "bench-key",
            "base_url": spec["sink_url"],
            "rate_limit": False,  # only the engine and the network set the pace
        }
        if self.vendor == "applovin":
            vendor_cfg["pixel_id"] = "bench-pixel"
        if spec.get("concurrency"):
            vendor_cfg["concurrency"] = spec["concurrency"]
        vendors = {self.vendor: vendor_cfg}
        self._all = self.vendor == "all"
        if self._all:
            vendors = self._five_vendors(vendor_cfg)
            self.vendor = "applovin"  # the one that takes the web purchase (stats, kept())
        core: dict[str, Any] = {"queue": spec.get("queue_url") or f"sqlite:///{queue_path}"}
        if "workers" in spec:
            core["workers"] = spec["workers"]
        if spec.get("sqlite_synchronous"):
            core["sqlite_synchronous"] = spec["sqlite_synchronous"]
        if "process_nice" in spec:
            core["process_nice"] = spec["process_nice"]
        self.tracker = Tracker.from_config(
            {"postback": core, "vendors": vendors},
            plugins=[bench_vendors],
        )
        self._track = self.tracker.track
        self._rich = self.vendor == "applovin"

    @staticmethod
    def _five_vendors(common: dict[str, Any]) -> dict[str, Any]:
        """Every quick-start vendor with its sandbox settings, pointed at the sink."""
        from postback.plugins import PluginHost

        emulators = PluginHost().emulators
        shared = {k: v for k, v in common.items() if k != "api_key"}
        return {name: {**emulators[name].demo_settings(), **shared} for name in FIVE_VENDORS}

    def track(self, i: int) -> bool:
        if self._all:
            self._track("purchase", **realistic_purchase(i, self.tag))
            return True
        if self._rich:  # AppLovin requires the page, the client's IP and UA, and items
            self._track(
                "purchase",
                user={
                    "user_id": f"u{i}",
                    "email": f"user{i}@example.com",
                    "ip_address": "203.0.113.7",
                    "user_agent": "Mozilla/5.0 (bench)",
                },
                value=49.99,
                currency="USD",
                event_id=f"{self.tag}-{i}",
                context={"url": "https://shop.example.com/checkout"},
                properties={
                    "transaction_id": f"t{i}",
                    "items": [{"item_id": "SKU-1", "quantity": 1, "price": 49.99}],
                },
            )
            return True
        self._track(
            "purchase",
            user={"user_id": f"u{i}", "email": f"user{i}@example.com"},
            value=49.99,
            currency="USD",
            event_id=f"{self.tag}-{i}",
            properties={"transaction_id": f"t{i}"},
        )
        return True

    def kept(self) -> int:
        return int(self.tracker.stats()[self.vendor]["queue_depth"])

    def finish(self, timeout: float) -> None:
        self.tracker.close(timeout=timeout)


class SegmentClient:
    """segment-analytics-python's ``Client`` (in-memory queue, one consumer thread)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from segment.analytics import Client

        self.tag = spec["tag"]
        self.client = Client(
            write_key="bench-key",
            host=spec["sink_url"],
            max_queue_size=spec.get("segment_queue", 10_000),
        )
        self._track = self.client.track
        self._rich = spec.get("event") == "realistic"

    def track(self, i: int) -> bool:
        if self._rich:  # the realistic purchase, as Segment's track() carries it
            kw = realistic_purchase(i, self.tag)
            user, props = kw["user"], kw["properties"]
            ok, _msg = self._track(
                user_id=user["user_id"],
                event="purchase",
                properties={"value": kw["value"], "currency": kw["currency"], **props},
                context={
                    "traits": {"email": user["email"]},
                    "ip": user["ip_address"],
                    "userAgent": user["user_agent"],
                    "page": {"url": kw["context"]["url"]},
                    "campaign": {"source": "newsletter", "medium": "email", "name": "black-friday"},
                },
                message_id=kw["event_id"],
            )
            return bool(ok)
        ok, _msg = self._track(
            user_id=f"u{i}",
            event="purchase",
            properties={"value": 49.99, "currency": "USD", "transaction_id": f"t{i}"},
            context={"traits": {"email": f"user{i}@example.com"}},
            message_id=f"{self.tag}-{i}",
        )
        return bool(ok)

    def kept(self) -> int:
        return self.client.queue.qsize()

    def finish(self, timeout: float) -> None:
        self.client.join()


def make_client(spec: dict[str, Any]) -> PostbackClient | SegmentClient:
    if spec["lib"] == "postback":
        return PostbackClient(spec)
    if spec["lib"] == "segment":
        return SegmentClient(spec)
    raise ValueError(f"unknown lib {spec['lib']!r}")


# --------------------------------------------------------------------------------------------
# Measurements


class GCWatch:
    """Times every garbage collection (per generation) through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[int]] = {0: [], 1: [], 2: []}
        self.intervals: list[tuple[int, int, int]] = []  # (start_ns, end_ns, generation)
        self._start = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
        else:
            end = time.perf_counter_ns()
            self.pauses[info["generation"]].append(end - self._start)
            self.intervals.append((self._start, end, info["generation"]))

    def __enter__(self) -> GCWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def summary(self) -> dict[str, Any]:
        return {
            f"gen{g}": {
                "count": len(p),
                "max_us": round(max(p) / 1000, 1) if p else 0.0,
                "total_ms": round(sum(p) / 1e6, 2),
            }
            for g, p in self.pauses.items()
        }


PUT_BUCKETS = [
    (4.0, "1-4 ms"),
    (10.0, "4-10 ms"),
    (25.0, "10-25 ms"),
    (float("inf"), ">= 25 ms"),
]


def slow_call_causes(
    starts: array[int], ns: array[int], gcw: GCWatch, threshold_ns: int = 1_000_000
) -> dict[str, int]:
    """Calls slower than ``threshold_ns``, split by what filled them.

    A call counts as "gc" when collections (on any thread: a collection holds the GIL) cover
    at least half of it; the rest waited on something else (the GIL held by another thread,
    the SQLite write lock, a WAL checkpoint, the OS scheduler).
    """
    out = {"slow_calls": 0, "gc_gen2": 0, "gc_gen0_1": 0, "other": 0}
    intervals = sorted(gcw.intervals)
    for i in range(len(ns)):
        if ns[i] <= threshold_ns:
            continue
        out["slow_calls"] += 1
        begin, end = starts[i], starts[i] + ns[i]
        covered = 0
        gens = set()
        for s, e, g in intervals:
            if s >= end:
                break
            if e > begin:
                covered += min(e, end) - max(s, begin)
                gens.add(g)
        if covered * 2 >= ns[i]:
            out["gc_gen2" if 2 in gens else "gc_gen0_1"] += 1
        else:
            out["other"] += 1
    return out


def latency_summary(ns: array[int]) -> dict[str, float]:
    ordered = sorted(ns)
    n = len(ordered)

    def pct(p: float) -> float:
        return round(ordered[min(int(n * p), n - 1)] / 1000, 1)

    return {
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": round(ordered[-1] / 1000, 1),
        "mean_us": round(sum(ordered) / n / 1000, 1),
        "first_us": round(ns[0] / 1000, 1),
        "max_after_first_us": round(max(ns[1:]) / 1000, 1) if n > 1 else 0.0,
    }


def slowest_calls(ns: array[int], count: int = 5) -> list[dict[str, float]]:
    top = sorted(range(len(ns)), key=ns.__getitem__, reverse=True)[:count]
    return [{"index": i, "us": round(ns[i] / 1000, 1)} for i in sorted(top)]


def sink_stats(url: str) -> dict[str, Any]:
    import httpx

    response = httpx.get(f"{url}/_sink/stats", timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def sink_wait(url: str, count: int, timeout: float) -> dict[str, Any]:
    import httpx

    response = httpx.get(
        f"{url}/_sink/wait", params={"count": count, "timeout": timeout}, timeout=timeout + 10
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


# --------------------------------------------------------------------------------------------
# Scenarios


def scenario_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """Time each track() call; then wait until the sink has all N events (end to end)."""
    n = spec["n"]
    client = make_client(spec)
    put_slow: list[int] = []
    if spec.get("time_put") and isinstance(client, PostbackClient):
        # Diagnostics: which slow track() calls were slow inside the queue's put().
        queue = client.tracker.queue
        original_put = queue.put

        def timed_put(*args: Any, **kwargs: Any) -> None:
            begin = time.perf_counter_ns()
            original_put(*args, **kwargs)
            took = time.perf_counter_ns() - begin
            if took > 1_000_000:
                put_slow.append(took)

        queue.put = timed_put  # type: ignore[method-assign]
    if spec.get("switch_interval"):
        sys.setswitchinterval(spec["switch_interval"])  # what-if: shorter GIL hand-over waits
    if spec.get("gc_freeze"):
        gc.collect()
        gc.freeze()  # what-if: the app freezes its start-up heap (as gunicorn apps often do)
    if isinstance(client, PostbackClient) and spec.get("workers", True):
        # Delivery running before the clock starts, as Segment's consumer thread is (with
        # workers = "process", the child takes ~0.4 s to import and build its tracker).
        client.tracker.start(timeout=60)
    track = client.track
    starts = array("q", bytes(8 * n))
    lat = array("q", bytes(8 * n))
    perf = time.perf_counter_ns
    delivering = spec.get("workers", True)
    sink_cpu0 = sink_stats(spec["sink_url"])["cpu_s"] if delivering else 0.0
    cpu0 = os.times()
    rss0 = rss_bytes()
    with GCWatch() as gcw:
        t_first = time.monotonic_ns()
        for i in range(n):
            t0 = perf()
            track(i)
            t1 = perf()
            starts[i] = t0
            lat[i] = t1 - t0
        t_loop = time.monotonic_ns()
    rss_loop = rss_bytes()
    if spec.get("time_put"):
        buckets: dict[str, int] = {}
        for took in put_slow:
            ms = took / 1e6
            label = next(b for lim, b in PUT_BUCKETS if ms < lim)
            buckets[label] = buckets.get(label, 0) + 1
    result: dict[str, Any] = {
        "latency": latency_summary(lat),
        "slowest": slowest_calls(lat),
        "slow_causes": slow_call_causes(starts, lat, gcw),
        "gc": gcw.summary(),
        "track_loop_s": round((t_loop - t_first) / 1e9, 3),
        "track_per_s": round(n / ((t_loop - t_first) / 1e9), 1),
        "rss_growth_mb": round((rss_loop - rss0) / 2**20, 1),
    }
    if spec.get("time_put"):
        result["put_over_1ms"] = {"count": len(put_slow), "by_duration": buckets}
    if delivering:
        at_loop_end = sink_stats(spec["sink_url"])["unique"]
        waited = sink_wait(spec["sink_url"], n, spec.get("wait_timeout", 240))
        window = (time.monotonic_ns() - t_first) / 1e9
        sink_cpu = sink_stats(spec["sink_url"])["cpu_s"] - sink_cpu0
        result["sink_cpu_pct"] = round(100 * sink_cpu / window, 1)
        result["delivered_at_loop_end"] = at_loop_end
        result["delivered"] = waited["unique"]
        result["complete"] = waited["reached"]
        if waited["reached"]:
            elapsed = (waited["reached_ns"] - t_first) / 1e9
            result["end_to_end_s"] = round(elapsed, 3)
            result["events_per_s"] = round(n / elapsed, 1)
            tail = (waited["reached_ns"] - t_loop) / 1e9
            result["after_loop_s"] = round(tail, 3)
            if n - at_loop_end >= max(1000, n // 20) and tail > 0:  # too few left: noise
                result["drain_per_s"] = round((n - at_loop_end) / tail, 1)
    cpu1 = os.times()
    result["cpu_s"] = round((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), 2)
    if isinstance(client, PostbackClient):
        lane = client.tracker.engine.lanes[client.vendor]
        result["stats"] = client.tracker.stats()[client.vendor]
        result["concurrency"] = lane.concurrency
        result["batch_size"] = lane.batch_size
    client.finish(timeout=10)
    return result


def scenario_kill(spec: dict[str, Any]) -> dict[str, Any]:
    """Track until killed; the progress file holds how many track() calls have returned."""
    client = make_client(spec)
    fd = os.open(spec["progress_path"], os.O_RDWR)
    progress = mmap.mmap(fd, 8)
    pack = struct.pack_into
    track = client.track
    returned = 0
    for i in range(spec["n_max"]):
        if track(i):
            returned = i + 1
        pack("q", progress, 0, i + 1)
    # Not killed in time: report it (the orchestrator treats it as a failed measurement).
    return {"not_killed": True, "returned": returned}


def scenario_exit(spec: dict[str, Any]) -> dict[str, Any]:
    """Track N events and leave without flush() or close(): only the exit hooks run."""
    client = make_client(spec)
    accepted = sum(client.track(i) for i in range(spec["n"]))
    return {"accepted": accepted, "exiting_ns": time.monotonic_ns()}


def scenario_drain(spec: dict[str, Any]) -> dict[str, Any]:
    """Reopen the queue a previous process left and deliver what it holds.

    With ``expect``, the delivery capacity: start the lanes (no flush(), whose polling would
    compete with them) and time until the sink has ``expect`` events.
    """
    t0 = time.monotonic()
    client = PostbackClient(spec)
    pending_at_start = client.tracker.engine.pending()[client.vendor]
    result: dict[str, Any] = {"pending_at_start": pending_at_start}
    expect = spec.get("expect")
    if expect:
        sink_cpu0 = sink_stats(spec["sink_url"])["cpu_s"]
        cpu0 = os.times()
        start_ns = time.monotonic_ns()
        client.tracker.deliverer.start()
        waited = sink_wait(spec["sink_url"], expect, spec.get("timeout", 120))
        cpu1 = os.times()
        result["complete"] = waited["reached"]
        if waited["reached"]:
            elapsed = (waited["reached_ns"] - start_ns) / 1e9
            result["events_per_s"] = round(expect / elapsed, 1)
            cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            result["cpu_us_per_event"] = round(1e6 * cpu / expect, 1)
            requests = client.tracker.stats()[client.vendor]["requests"]
            result["requests"] = requests
            result["cpu_us_per_request"] = round(1e6 * cpu / max(requests, 1), 1)
            window = (time.monotonic_ns() - start_ns) / 1e9
            sink_cpu = sink_stats(spec["sink_url"])["cpu_s"] - sink_cpu0
            result["sink_cpu_pct"] = round(100 * sink_cpu / window, 1)
    else:
        report = client.tracker.flush(timeout=spec.get("timeout", 120))
        result["complete"] = report.complete
    result["seconds"] = round(time.monotonic() - t0, 2)
    client.finish(timeout=5)
    return result


def scenario_down(spec: dict[str, Any]) -> dict[str, Any]:
    """Track N events while the vendor answers 503; what is kept and what it costs in RAM."""
    n = spec["n"]
    client = make_client(spec)
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.monotonic()
    accepted = sum(client.track(i) for i in range(n))
    loop_s = time.monotonic() - t0
    time.sleep(spec.get("settle", 2.0))  # let the delivery threads fail and retry a while
    rss1 = rss_bytes()
    peak = rss_bytes("VmHWM")
    kept = client.kept()
    result = {
        "accepted": accepted,
        "dropped_at_track": n - accepted,
        "kept": kept,
        "rss_before_mb": round(rss0 / 2**20, 1),
        "rss_after_mb": round(rss1 / 2**20, 1),
        "rss_growth_mb": round((rss1 - rss0) / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "track_loop_s": round(loop_s, 2),
    }
    if isinstance(client, PostbackClient):
        result["stats"] = client.tracker.stats()[client.vendor]
        client.finish(timeout=0)
    else:
        result["kept_note"] = "queue.qsize() (the batch in the consumer's hands is not counted)"
        # Segment's exit hook would retry for minutes against the down sink: report, then leave.
        print(json.dumps(result), flush=True)
        os._exit(0)
    return result


def scenario_transport(spec: dict[str, Any]) -> dict[str, Any]:
    """Raw client throughput, one event per request, ``concurrency`` requests in flight."""
    import httpx
    import orjson

    url = f"{spec['sink_url']}/v1/events"
    total, conc, kind, tag = spec["n"], spec["concurrency"], spec["client"], spec["tag"]

    def body(i: int) -> bytes:
        return orjson.dumps({"account": "acme", "events": [{"id": f"{tag}-{i}"}]})

    limits = httpx.Limits(max_connections=conc + 4, max_keepalive_connections=conc + 4)
    errors = 0
    t0 = time.monotonic()
    if kind in ("threads", "threads-own-client", "threads-http.client"):
        import http.client
        import threading
        from urllib.parse import urlsplit

        counter = iter(range(total))
        lock = threading.Lock()
        ready = threading.Barrier(conc + 1)  # clients are built before the clock starts
        shared = httpx.Client(limits=limits, timeout=30) if kind == "threads" else None
        target = urlsplit(url)

        def worker() -> None:
            nonlocal errors
            if kind == "threads-http.client":
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)

                def post(payload: bytes) -> None:
                    conn.request("POST", target.path, payload, {"content-type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    if response.status != 200:
                        raise httpx.HTTPError(f"HTTP {response.status}")

            else:
                client = shared or httpx.Client(timeout=30)

                def post(payload: bytes) -> None:
                    client.post(url, content=payload).raise_for_status()

            ready.wait()
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                try:
                    post(body(i))
                except (httpx.HTTPError, OSError):
                    with lock:
                        errors += 1
            if kind == "threads-http.client":
                conn.close()
            elif shared is None:
                client.close()

        threads = [threading.Thread(target=worker) for _ in range(conc)]
        for t in threads:
            t.start()
        ready.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join()
        if shared is not None:
            shared.close()
    elif kind == "asyncio":
        import asyncio

        async def main() -> None:
            nonlocal errors, t0
            counter = iter(range(total))
            async with httpx.AsyncClient(limits=limits, timeout=30) as client:
                t0 = time.monotonic()

                async def worker() -> None:
                    nonlocal errors
                    for i in counter:
                        try:
                            (await client.post(url, content=body(i))).raise_for_status()
                        except httpx.HTTPError:
                            errors += 1

                await asyncio.gather(*(worker() for _ in range(conc)))

        asyncio.run(main())
    else:
        raise ValueError(kind)
    elapsed = time.monotonic() - t0
    return {
        "requests_per_s": round(total / elapsed, 1),
        "seconds": round(elapsed, 2),
        "errors": errors,
    }


def scenario_fill(spec: dict[str, Any]) -> dict[str, Any]:
    """Queue N events without delivering (workers = false), for a profiled drain afterwards."""
    spec = {**spec, "workers": False}
    client = make_client(spec)
    for i in range(spec["n"]):
        client.track(i)
    client.finish(timeout=0)
    return {"queued": spec["n"]}


SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "throughput": scenario_throughput,
    "kill": scenario_kill,
    "exit": scenario_exit,
    "drain": scenario_drain,
    "down": scenario_down,
    "transport": scenario_transport,
    "fill": scenario_fill,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    # Under run.py, scratch files go in its temporary directory, which it removes at the end even
    # when a workload was SIGKILLed or left through os._exit().
    parent = os.environ.get(SCRATCH_ENV)
    if parent:
        spec.setdefault("tmp", tempfile.mkdtemp(prefix="workload-", dir=parent))
        result = SCENARIOS[spec["scenario"]](spec)
    else:
        with tempfile.TemporaryDirectory(prefix="postback-bench-") as tmp:
            spec.setdefault("tmp", tmp)
            result = SCENARIOS[spec["scenario"]](spec)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

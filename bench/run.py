"""Benchmarks of postback against segment-analytics-python, in one run, on one local sink.

Usage (from the repository root, in the venv or ``tox -e bench``)::

    python bench/run.py            # full: N = 20,000 and 100,000, 3 runs each (about 8 minutes)
    python bench/run.py --quick    # N = 5,000, one run each (about 1.5 minutes)
    python bench/run.py --only throughput,kill --runs 5
    python bench/run.py --report   # redraw summary and plot from bench/results/results.json

Sections (each a list of fresh processes running ``workload.py``, against ``sink.py`` with 0 ms
and 20 ms of latency):

``vendors``     the headline: track() with the five real vendor plugins configured and a
                realistic web purchase (email, IP, user agent, page URL with UTM, two items),
                against Segment with the same purchase: per-call p50/p99, end to end
``throughput``  track() on the caller's thread (per-call p50/p99/max, GC pauses) and batched
                delivery end to end (100 events per request), postback vs Segment
``busy``        the same at N = 100,000 on a busy machine: a CPU-bound neighbour process spins
                on the other core during every measurement
``sweep``       postback's ``concurrency`` for the batched vendor (full mode only)
``single``      a one-event-per-request vendor at 20 ms: postback at concurrency 16/32/64, and
                bare HTTP clients (threads + httpx.Client vs httpx.AsyncClient)
``kill``        SIGKILL at about 10,000 tracked, restart, count lost events
``exit``        leave without flush(): count lost events
``down``        100,000 events while the vendor answers 503: kept events, RSS growth
``diagnostics`` what-ifs for the engine's authors: track() with delivery in a child process or
                off, gc.freeze(), a shorter GIL switch interval, fsync per event, memory://
                (full mode only)
``profile``     py-spy profiles of the track() path and the delivery path (when py-spy works)

Results: ``bench/results/results[-quick].json``, ``bench/results/summary[-quick].md`` and the
plot ``bench/results/benchmark[-quick].png`` (a full run also copies it to
``docs/performance.png``); ``docs/performance.md`` includes the full run's summary and explains it.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DIR,
    SCRATCH_ENV,
    Neighbour,
    Sink,
    machine,
    run_worker,
    source_fingerprint,
    throughput_spec,
)

RESULTS_DIR = BENCH_DIR / "results"
DOCS_PLOT = BENCH_DIR.parent / "docs" / "performance.png"
SECTIONS = (
    "vendors",
    "throughput",
    "busy",
    "capacity",
    "sweep",
    "single",
    "kill",
    "exit",
    "down",
    "diagnostics",
    "profile",
)


class Bench:
    """Runs the sections and collects their results into one dictionary."""

    def __init__(self, sink: Sink, tmp: Path, *, quick: bool, runs: int) -> None:
        self.sink = sink
        self.tmp = tmp
        self.quick = quick
        self.runs = runs
        self.counter = 0
        self.results: dict[str, Any] = {}
        self.ns = [5_000] if quick else [20_000, 100_000]
        self.latencies = [0.0, 0.02]

    # --- helpers ------------------------------------------------------------------------------

    def tag(self, label: str) -> str:
        self.counter += 1
        return f"{label}{self.counter}"

    def measured(self, spec: dict[str, Any], *, latency: float, status: int | None = None) -> dict:
        """Run one workload against a freshly reset sink; add the sink's CPU share and load."""
        self.sink.client.reset()
        self.sink.client.configure(latency=latency, status=status)
        spec = {"sink_url": self.sink.url, "tag": self.tag(spec["lib"][0]), **spec}
        cpu0, t0 = self.sink.cpu_seconds(), time.monotonic()
        result = run_worker(spec)
        wall = time.monotonic() - t0
        # Over the worker's whole life unless it measured its own window (throughput).
        result.setdefault("sink_cpu_pct", round(100 * (self.sink.cpu_seconds() - cpu0) / wall, 1))
        result["loadavg_1m"] = round(os.getloadavg()[0], 2)
        return result

    @staticmethod
    def say(text: str) -> None:
        print(text, flush=True)

    # --- sections ----------------------------------------------------------------------------

    def vendors(self) -> None:
        """track() with every quick-start vendor plugin configured, on a realistic purchase."""
        out: list[dict[str, Any]] = []
        n = self.ns[0]
        for run in range(self.runs):
            for lib in ("postback", "postback-process", "segment"):
                spec = throughput_spec(
                    n,
                    lib="segment" if lib == "segment" else "postback",
                    vendor="all",
                    event="realistic",
                    segment_queue=max(n, 10_000),
                )
                if lib.startswith("postback"):
                    spec["workers"] = "process" if lib == "postback-process" else True
                r = self.measured(spec, latency=0.0)
                r.update(lib=lib, n=n, latency_ms=0.0, run=run)
                out.append(r)
                self.say(
                    f"  vendors {lib:16} N={n:>6} run {run}: track p50 "
                    f"{r['latency']['p50_us']} us p99 {r['latency']['p99_us']} us, "
                    f"{r.get('events_per_s', 0):>8.0f} ev/s"
                )
        self.results["vendors"] = out

    def throughput(self) -> None:
        """Per-call track() latency and batched end-to-end throughput, both libraries."""
        out = self._throughput(self.ns)
        if self._applovin_available():
            for latency in self.latencies:
                spec = throughput_spec(self.ns[0], vendor="applovin", concurrency=8)
                r = self.measured(spec, latency=latency)
                r.update(lib="postback-applovin", n=self.ns[0], latency_ms=latency * 1000, run=0)
                out.append(r)
                self.say(
                    f"  throughput applovin N={self.ns[0]} {latency * 1000:.0f} ms: "
                    f"{r.get('events_per_s', 0):.0f} ev/s"
                )
        self.results["throughput"] = out

    def busy(self) -> None:
        """The same on a busy machine: a CPU-bound neighbour spins on the other core."""
        self.results["busy"] = self._throughput([5_000] if self.quick else [100_000], busy=True)

    def _throughput(self, ns: list[int], *, busy: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for n in ns:
            for latency in self.latencies:
                for run in range(self.runs):
                    for lib in ("postback", "postback-process", "segment"):
                        spec = throughput_spec(
                            n,
                            lib="postback" if lib.startswith("postback") else lib,
                            segment_queue=max(n, 10_000),
                        )
                        if lib.startswith("postback"):
                            spec["workers"] = "process" if lib == "postback-process" else True
                        if busy:
                            with Neighbour():
                                r = self.measured(spec, latency=latency)
                        else:
                            r = self.measured(spec, latency=latency)
                        r.update(lib=lib, n=n, latency_ms=latency * 1000, run=run, busy=busy)
                        out.append(r)
                        self.say(
                            f"  {'busy' if busy else 'throughput'} {lib:16} N={n:>6} "
                            f"{latency * 1000:>2.0f} ms run {run}: "
                            f"{r.get('events_per_s', 0):>8.0f} ev/s, track p50 "
                            f"{r['latency']['p50_us']} us max {r['latency']['max_us']} us"
                        )
        return out

    @staticmethod
    def _applovin_available() -> bool:
        try:
            import postback_applovin  # noqa: F401
        except Exception:
            return False
        return True

    def capacity(self) -> None:
        """postback's delivery alone: a queue filled beforehand, drained by a fresh process."""
        out = []
        n = self.ns[-1]
        cases = [("bench_batch", 8, n), ("bench_single", 32, 4_000 if not self.quick else 2_000)]
        for vendor, conc, count in cases:
            for latency in self.latencies:
                tag = self.tag("c")
                base = {
                    "lib": "postback",
                    "vendor": vendor,
                    "concurrency": conc,
                    "sink_url": self.sink.url,
                    "tag": tag,
                    "queue_path": str(self.tmp / f"{tag}.db"),
                    "n": count,
                    "workers": True,  # delivered on this process's threads: its CPU is measured
                }
                run_worker({**base, "scenario": "fill"})
                r = self.measured({**base, "scenario": "drain", "expect": count}, latency=latency)
                r.update(vendor=vendor, concurrency=conc, n=count, latency_ms=latency * 1000)
                out.append(r)
                self.say(
                    f"  capacity {vendor} concurrency {conc} {latency * 1000:>2.0f} ms: "
                    f"{r.get('events_per_s', 0):.0f} ev/s, {r.get('cpu_us_per_event')} µs CPU/event"
                )
        self.results["capacity"] = out

    def sweep(self) -> None:
        """postback's batched throughput against its lane concurrency (one run each)."""
        out = []
        n = 20_000
        for latency in self.latencies:
            for conc in (2, 4, 8, 16):
                spec = throughput_spec(n, concurrency=conc)
                r = self.measured(spec, latency=latency)
                out.append(
                    {
                        "concurrency": conc,
                        "latency_ms": latency * 1000,
                        "n": n,
                        "events_per_s": r.get("events_per_s"),
                        "drain_per_s": r.get("drain_per_s"),
                        "track_p50_us": r["latency"]["p50_us"],
                        "track_p99_us": r["latency"]["p99_us"],
                        "sink_cpu_pct": r["sink_cpu_pct"],
                    }
                )
                self.say(
                    f"  sweep concurrency {conc:>2} {latency * 1000:>2.0f} ms: "
                    f"{r.get('events_per_s', 0):.0f} ev/s"
                )
        self.results["sweep"] = out

    def single(self) -> None:
        """One event per request at 20 ms: postback's lanes, then bare HTTP clients."""
        n = 2_000 if self.quick else 4_000
        latency = 0.02
        engine = []
        for conc in (16, 32, 64):
            for run in range(self.runs):
                spec = throughput_spec(n, vendor="bench_single", concurrency=conc)
                r = self.measured(spec, latency=latency)
                r.update(concurrency=conc, n=n, latency_ms=20.0, run=run)
                engine.append(r)
                self.say(
                    f"  single postback concurrency {conc:>2} run {run}: "
                    f"{r.get('events_per_s', 0):.0f} ev/s (drain {r.get('drain_per_s', 0):.0f}/s)"
                )
        transport = []
        for kind in ("threads", "threads-own-client", "asyncio", "threads-http.client"):
            for conc in (16, 32, 64):
                spec = {
                    "scenario": "transport",
                    "lib": "transport",
                    "client": kind,
                    "n": n // 2,
                    "concurrency": conc,
                }
                r = self.measured(spec, latency=latency)
                r.update(client=kind, concurrency=conc, n=n // 2, latency_ms=20.0)
                transport.append(r)
                self.say(
                    f"  single bare {kind:19} concurrency {conc:>2}: "
                    f"{r['requests_per_s']:.0f} req/s, {r['errors']} errors"
                )
        self.results["single"] = {"engine": engine, "transport": transport}

    def kill(self) -> None:
        """SIGKILL in a tight track() loop at about 10,000 tracked; restart; count the lost."""
        out = []
        kill_at = 10_000
        for latency in self.latencies:
            for lib in ("postback", "segment"):
                r = self._kill_once(lib, latency, kill_at)
                out.append(r)
                self.say(
                    f"  kill {lib:8} {latency * 1000:>2.0f} ms: returned {r['returned']}, "
                    f"lost {r['lost']} ({r['lost_pct']}%), duplicates {r['duplicates']}"
                )
        self.results["kill"] = out

    def _kill_once(self, lib: str, latency: float, kill_at: int) -> dict[str, Any]:
        sink = self.sink
        sink.client.reset()
        sink.client.configure(latency=latency, status=None)
        tag = self.tag(f"k{lib[0]}")
        progress_path = self.tmp / f"{tag}.progress"
        progress_path.write_bytes(bytes(8))
        queue_path = self.tmp / f"{tag}.db"
        spec = {
            "scenario": "kill",
            "lib": lib,
            "tag": tag,
            "sink_url": sink.url,
            "n_max": kill_at * 50,
            "queue_path": str(queue_path),
            "progress_path": str(progress_path),
            "vendor": "bench_batch",
            "concurrency": 8,
        }
        proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "workload.py"), json.dumps(spec)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        with progress_path.open("r+b") as f, mmap.mmap(f.fileno(), 8) as progress:
            deadline = time.monotonic() + 120
            while int.from_bytes(progress[:8], "little") < kill_at:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    proc.kill()
                    raise RuntimeError(f"the kill workload ended early:\n{err[-3000:]}")
                time.sleep(0.0005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            returned = int.from_bytes(progress[:8], "little")
        if proc.stderr is not None:
            proc.stderr.close()
        time.sleep(0.5)
        delivered_before_restart = len(self._tagged(tag))
        restart: dict[str, Any] | None = None
        if lib == "postback":
            restart = run_worker(
                {
                    "scenario": "drain",
                    "lib": lib,
                    "tag": tag,
                    "sink_url": sink.url,
                    "queue_path": str(queue_path),
                    "vendor": "bench_batch",
                    "concurrency": 8,
                    "timeout": 60,
                }
            )
        ids = self._tagged(tag)
        stats = sink.client.stats()
        lost = sum(1 for i in range(returned) if f"{tag}-{i}" not in ids)
        return {
            "lib": lib,
            "latency_ms": latency * 1000,
            "returned": returned,
            "delivered_before_restart": delivered_before_restart,
            "delivered": len(ids),
            "lost": lost,
            "lost_pct": round(100 * lost / returned, 1),
            "duplicates": stats["received"] - stats["unique"],
            "restart": restart,
        }

    def _tagged(self, tag: str) -> set[str]:
        prefix = f"{tag}-"
        return {i for i in self.sink.client.ids() if i.startswith(prefix)}

    def exit(self) -> None:
        """Track N and return from main without flush() or close(); restart; count the lost."""
        out = []
        n = 10_000
        for latency in self.latencies:
            for lib in ("postback", "segment"):
                sink = self.sink
                sink.client.reset()
                sink.client.configure(latency=latency, status=None)
                tag = self.tag(f"e{lib[0]}")
                queue_path = self.tmp / f"{tag}.db"
                spec = {
                    "scenario": "exit",
                    "lib": lib,
                    "tag": tag,
                    "sink_url": sink.url,
                    "n": n,
                    "queue_path": str(queue_path),
                    "vendor": "bench_batch",
                    "concurrency": 8,
                }
                t0 = time.monotonic()
                run_worker(spec)
                process_s = time.monotonic() - t0
                at_exit = len(self._tagged(tag))
                if lib == "postback":
                    run_worker({**spec, "scenario": "drain", "timeout": 60})
                ids = self._tagged(tag)
                lost = sum(1 for i in range(n) if f"{tag}-{i}" not in ids)
                r = {
                    "lib": lib,
                    "latency_ms": latency * 1000,
                    "tracked": n,
                    "process_s": round(process_s, 2),
                    "delivered_by_exit": at_exit,
                    "delivered": len(ids),
                    "lost": lost,
                    "lost_pct": round(100 * lost / n, 1),
                }
                out.append(r)
                self.say(
                    f"  exit {lib:8} {latency * 1000:>2.0f} ms: delivered by exit {at_exit}, "
                    f"lost after restart {lost} ({r['lost_pct']}%)"
                )
        self.results["exit"] = out

    def down(self) -> None:
        """N events while the sink answers 503: kept, RSS growth; then all delivered?"""
        n = 20_000 if self.quick else 100_000
        out = []
        tag = self.tag("dp")
        queue_path = self.tmp / f"{tag}.db"
        base = {"scenario": "down", "n": n, "vendor": "bench_batch", "concurrency": 8}
        variants: list[tuple[str, dict[str, Any]]] = [
            ("postback", {"lib": "postback", "queue_path": str(queue_path), "tag": tag}),
            ("segment (default queue 10,000)", {"lib": "segment", "segment_queue": 10_000}),
            (f"segment (queue raised to {n:,})", {"lib": "segment", "segment_queue": n}),
        ]
        for label, extra in variants:
            r = self.measured({**base, **extra}, latency=0.0, status=503)
            r.update(label=label, n=n)
            if extra["lib"] == "postback":
                # Bring the vendor back and deliver from the file the process left.
                self.sink.client.reset()
                self.sink.client.configure(latency=0.0, status=None)
                t0 = time.monotonic()
                run_worker(
                    {
                        "scenario": "drain",
                        "lib": "postback",
                        "tag": tag,
                        "sink_url": self.sink.url,
                        "queue_path": str(queue_path),
                        "vendor": "bench_batch",
                        "concurrency": 8,
                        "timeout": 180,
                    },
                    timeout=400,
                )
                r["delivered_after_recovery"] = len(self._tagged(tag))
                r["recovery_s"] = round(time.monotonic() - t0, 1)
            out.append(r)
            self.say(
                f"  down {label}: kept {r['kept']} of {n}, RSS +{r['rss_growth_mb']} MB"
                + (
                    f", delivered after recovery {r['delivered_after_recovery']}"
                    if "delivered_after_recovery" in r
                    else ""
                )
            )
        self.results["down"] = out

    def diagnostics(self) -> None:
        """What-ifs on postback's track() latency (N = 100,000, sink at 20 ms, one run each)."""
        n = self.ns[-1]
        out = []
        variants: list[tuple[str, dict[str, Any]]] = [
            ("default (delivery on threads)", {}),
            ('workers = "process" (delivery in a child process)', {"workers": "process"}),
            ("delivery off (workers = false)", {"workers": False}),
            ("app calls gc.freeze() after start-up", {"gc_freeze": True}),
            ("sys.setswitchinterval(0.0005)", {"switch_interval": 0.0005}),
            ('sqlite_synchronous = "full" (fdatasync per event)', {"sqlite_synchronous": "full"}),
            ("memory:// queue (no file at all; not durable)", {"queue_url": "memory://"}),
        ]
        for label, extra in variants:
            spec = throughput_spec(n, time_put=True, **extra)
            r = self.measured(spec, latency=0.02)
            r.update(label=label, n=n)
            out.append(r)
            lat = r.get("latency", {})
            self.say(
                f"  diagnostics {label}: p50 {lat.get('p50_us')} us, p99 {lat.get('p99_us')} us,"
                f" max {lat.get('max_us')} us, {r.get('events_per_s', '-')} ev/s"
            )
        self.results["diagnostics"] = out

    def profile(self) -> None:
        """py-spy over track() (delivery off) and over the delivery of a pre-filled queue."""
        from profiles import profile_delivery, profile_track, py_spy

        spy = py_spy()
        if spy is None:
            self.results["profile"] = {"skipped": "py-spy is not installed (pip install py-spy)"}
            self.say("  profile: skipped (py-spy not installed)")
            return
        n = 10_000 if self.quick else 50_000
        single: dict[str, Any] = {"vendor": "bench_single", "concurrency": 32}
        out_dir = RESULTS_DIR / ("profiles-quick" if self.quick else "profiles")
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            track = profile_track(spy, self, n, out_dir)
            single_n = 2_000 if self.quick else 4_000
            delivery = {
                "batch-0ms-cpu": profile_delivery(spy, self, n, 0.0, out_dir, mode="cpu"),
                "batch-0ms-gil": profile_delivery(spy, self, n, 0.0, out_dir, mode="gil"),
                "batch-20ms-gil": profile_delivery(spy, self, n, 0.02, out_dir, mode="gil"),
                "single-20ms-gil": profile_delivery(
                    spy, self, single_n, 0.02, out_dir, mode="gil", **single
                ),
                "single-20ms-wall": profile_delivery(
                    spy, self, single_n, 0.02, out_dir, mode="wall", **single
                ),
            }
        except subprocess.CalledProcessError as exc:
            self.results["profile"] = {"skipped": f"py-spy failed: {exc}"}
            self.say(f"  profile: skipped ({exc})")
            return
        self.results["profile"] = {"track": track, "delivery": delivery}
        self.say("  profile: written to bench/results/profiles/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="postback vs segment-analytics-python")
    parser.add_argument("--quick", action="store_true", help="small N, one run per measurement")
    parser.add_argument("--runs", type=int, help="repeats of each timing run (default 3; quick 1)")
    parser.add_argument("--only", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument(
        "--report",
        action="store_true",
        help="measure nothing: redraw the summary and the plot from the saved results",
    )
    args = parser.parse_args(argv)
    suffix = "-quick" if args.quick else ""
    if args.report:
        results_path = RESULTS_DIR / f"results{suffix}.json"
        if not results_path.exists():
            parser.error(f"no saved results at {results_path}: run the benchmark first")
        document = json.loads(results_path.read_text())
        publish(document, results_path, suffix, copy_to_docs=not args.quick)
        return
    runs = args.runs or (1 if args.quick else 3)
    only = args.only.split(",") if args.only else None
    if only and (bad := set(only) - set(SECTIONS)):
        parser.error(f"unknown section(s) {', '.join(sorted(bad))}; choose from {SECTIONS}")
    sections = [
        s for s in SECTIONS if (only is None or s in only) and not (args.quick and s == "sweep")
    ]
    if args.quick and only is None:
        sections.remove("diagnostics")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    info = machine()
    info["source_at_start"] = source_fingerprint()
    print(
        f"postback bench ({'quick' if args.quick else 'full'}, {runs} run(s)): "
        f"{info['cores']} cores {info['cpu']}, Python {info['python']}, "
        f"load {info['loadavg_at_start']}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="postback-bench-"))
    os.environ[SCRATCH_ENV] = str(tmp)  # inherited by every workload process
    try:
        with Sink() as sink:
            bench = Bench(sink, tmp, quick=args.quick, runs=runs)
            for name in sections:
                print(f"[{name}]", flush=True)
                section: Callable[[], None] = getattr(bench, name)
                section()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["loadavg_at_end"] = os.getloadavg()
    info["source_at_end"] = source_fingerprint()
    if info["source_at_end"] != info["source_at_start"]:
        print(
            "WARNING: postback's source changed during the run; the results mix versions. "
            "Run again when nobody is editing src/ or plugins/.",
            flush=True,
        )
    info["duration_s"] = round(time.monotonic() - started, 1)
    document = {
        "mode": "quick" if args.quick else "full",
        "runs": runs,
        "command": "python bench/run.py" + (" --quick" if args.quick else ""),
        "machine": info,
        "results": bench.results,
    }
    results_path = RESULTS_DIR / f"results{suffix}.json"
    if only and results_path.exists():
        # A partial run updates its sections in the last complete results file.
        existing = json.loads(results_path.read_text())
        existing.setdefault("results", {}).update(bench.results)
        existing.setdefault("partial_runs", []).append({**info, "sections": sections})
        document = existing
    publish(document, results_path, suffix, copy_to_docs=not args.quick)
    print(f"took {info['duration_s']} s")


def publish(
    document: dict[str, Any], results_path: Path, suffix: str, *, copy_to_docs: bool
) -> None:
    """Summarise, then write the results, the summary and the plot; print the summary."""
    from report import summarise, write_plot

    document["summary"] = summarise(document)
    results_path.write_text(json.dumps(document, indent=1, default=str))
    markdown = document["summary"]["markdown"]
    (RESULTS_DIR / f"summary{suffix}.md").write_text(markdown)
    plot = write_plot(document, RESULTS_DIR / f"benchmark{suffix}.png")
    if plot is not None and copy_to_docs:
        shutil.copyfile(plot, DOCS_PLOT)  # docs/performance.md shows the last full run
    print()
    print(markdown)
    print(f"results: {results_path}" + (f", plot: {plot}" if plot else ""))


if __name__ == "__main__":
    main()

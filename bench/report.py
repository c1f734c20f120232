"""Turns ``run.py``'s raw results into medians, ratios to Segment, pass/fail and a plot.

``summarise(document)`` returns ``{"targets": [...], "throughput": [...], "markdown": "..."}``;
``write_plot(document, path)`` draws the four panels of ``bench/results/benchmark*.png``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["summarise", "write_plot"]

TRACK_MAX_TARGET_US = 10_000.0
#: track() with the five real vendor plugins on a realistic purchase (issue #15).
VENDORS_P50_TARGET_US = 12.0
VENDORS_P99_TARGET_US = 40.0
BATCH_RATIO_TARGET = {0.0: 3.0, 20.0: 8.0}
SINGLE_TARGET = 1_500.0
RSS_TARGET_MB = 30.0
SHORT = {"postback": "pb", "postback-process": "pbp", "segment": "seg"}
#: The postback configurations measured against Segment, and how the targets table names them.
MODES = {"postback": "threads", "postback-process": 'workers = "process"'}
TRANSPORT_LABELS = {
    "threads": "bare: threads sharing one httpx.Client",
    "threads-own-client": "bare: threads, an httpx.Client each",
    "asyncio": "bare: httpx.AsyncClient",
    "threads-http.client": "bare: threads, stdlib http.client each",
}


def _median(values: Iterable[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return round(statistics.median(clean), 1) if clean else None


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text}{unit}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("**pass**" if ok else "**FAIL**")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def throughput_groups(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over the repeats of each (library, N, sink latency)."""
    groups: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["lib"], r["n"], r["latency_ms"]), []).append(r)
    out = []
    for (lib, n, latency), rs in groups.items():
        lat = [r["latency"] for r in rs]
        out.append(
            {
                "lib": lib,
                "n": n,
                "latency_ms": latency,
                "runs": len(rs),
                "p50_us": _median(x["p50_us"] for x in lat),
                "p99_us": _median(x["p99_us"] for x in lat),
                "p999_us": _median(x["p999_us"] for x in lat),
                "max_us": _median(x["max_us"] for x in lat),
                "max_worst_us": max(x["max_us"] for x in lat),
                "gc_gen2_max_us": _median(r["gc"]["gen2"]["max_us"] for r in rs),
                "gc_gen2_count": _median(r["gc"]["gen2"]["count"] for r in rs),
                "slow_calls": _median(r["slow_causes"]["slow_calls"] for r in rs),
                "slow_gc": _median(
                    r["slow_causes"]["gc_gen2"] + r["slow_causes"]["gc_gen0_1"] for r in rs
                ),
                "slow_other": _median(r["slow_causes"]["other"] for r in rs),
                "events_per_s": _median(r.get("events_per_s") for r in rs),
                "events_per_s_all": [r.get("events_per_s") for r in rs],
                "track_per_s": _median(r.get("track_per_s") for r in rs),
                "drain_per_s": _median(r.get("drain_per_s") for r in rs),
                "sink_cpu_pct": _median(r.get("sink_cpu_pct") for r in rs),
                "rss_growth_mb": _median(r.get("rss_growth_mb") for r in rs),
                "complete": all(r.get("complete") for r in rs),
                "concurrency": rs[0].get("concurrency"),
            }
        )
    return out


def vendor_targets(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The headline rows: track() p50 and p99 with the five real vendor plugins configured."""
    groups = {g["lib"]: g for g in throughput_groups(runs)}
    seg = groups.get("segment")
    if seg is None:
        return []
    out = []
    for lib, mode in MODES.items():
        pb = groups.get(lib)
        if pb is None:
            continue
        for pct, goal in (("p50", VENDORS_P50_TARGET_US), ("p99", VENDORS_P99_TARGET_US)):
            ours, theirs = pb[f"{pct}_us"], seg[f"{pct}_us"]
            out.append(
                {
                    "measure": f"track() {pct}, five real vendor plugins, realistic purchase, "
                    f"N={pb['n']:,} ({pb['runs']} runs), {mode}",
                    "postback": f"{ours} µs",
                    "segment": f"{theirs} µs",
                    "ratio": round(ours / theirs, 2) if ours and theirs else None,
                    "target": f"<= {goal:g} µs",
                    "pass": ours is not None and ours <= goal,
                }
            )
    return out


def _mode(lib: str, default: bool | str) -> str:
    """How the targets table names a postback configuration, marking the default."""
    workers = "process" if lib == "postback-process" else True
    # "auto" is "process" for the bench's tracker: a sqlite:// queue, no in-process hooks.
    resolved = "process" if default == "auto" else default
    return MODES[lib] + (" (default)" if workers == resolved else "")


def _throughput_targets(
    by: dict[tuple[str, int, float], dict[str, Any]], default: bool | str, *, busy: bool
) -> list[dict[str, Any]]:
    """track() and batched-delivery targets of each postback configuration against Segment."""
    targets: list[dict[str, Any]] = []
    where = "busy machine, " if busy else ""
    for (lib, n, latency), pb in sorted(by.items()):
        if lib not in MODES:
            continue
        seg = by.get(("segment", n, latency))
        if seg is None:
            continue
        mode = where + _mode(lib, default)
        targets.append(
            {
                "measure": f"track() p50, N={n:,}, sink {latency:.0f} ms, {mode}",
                "postback": f"{pb['p50_us']} µs",
                "segment": f"{seg['p50_us']} µs",
                "ratio": round(pb["p50_us"] / seg["p50_us"], 2),
                "target": "below Segment",
                "pass": pb["p50_us"] < seg["p50_us"],
            }
        )
        if n >= 100_000:
            targets.append(
                {
                    "measure": f"slowest track(), N={n:,}, sink {latency:.0f} ms, {mode} "
                    f"(worst of {pb['runs']} runs)",
                    "postback": f"{pb['max_worst_us'] / 1000:.1f} ms",
                    "segment": f"{seg['max_worst_us'] / 1000:.1f} ms",
                    "ratio": round(pb["max_worst_us"] / seg["max_worst_us"], 2),
                    "target": "< 10 ms",
                    "pass": pb["max_worst_us"] < TRACK_MAX_TARGET_US,
                }
            )
        if pb["events_per_s"] and seg["events_per_s"]:
            ratio = round(pb["events_per_s"] / seg["events_per_s"], 2)
            goal = BATCH_RATIO_TARGET.get(latency)
            targets.append(
                {
                    "measure": f"batched delivery end to end, N={n:,}, sink {latency:.0f} ms, "
                    f"{mode}",
                    "postback": f"{pb['events_per_s']:,.0f} ev/s",
                    "segment": f"{seg['events_per_s']:,.0f} ev/s",
                    "ratio": ratio,
                    "target": f">= {goal:g}x Segment" if goal else "-",
                    "pass": (ratio >= goal) if goal else None,
                }
            )
    return targets


def summarise(document: dict[str, Any]) -> dict[str, Any]:
    res = document["results"]
    targets: list[dict[str, Any]] = []
    md: list[str] = []
    groups = throughput_groups(res.get("throughput", []))
    by = {(g["lib"], g["n"], g["latency_ms"]): g for g in groups}

    # --- targets -------------------------------------------------------------------------------
    targets.extend(vendor_targets(res.get("vendors", [])))
    # The default delivery mode of the code measured last (a partial run may be newer).
    default = next(
        (
            m["default_workers"]
            for m in [*reversed(document.get("partial_runs", [])), document["machine"]]
            if "default_workers" in m
        ),
        True,
    )
    targets += _throughput_targets(by, default, busy=False)
    busy_groups = throughput_groups(res.get("busy", []))
    targets += _throughput_targets(
        {(g["lib"], g["n"], g["latency_ms"]): g for g in busy_groups}, default, busy=True
    )
    single = res.get("single")
    if single:
        best: dict[int, list[float]] = {}
        for r in single["engine"]:
            best.setdefault(r["concurrency"], []).append(r.get("events_per_s") or 0.0)
        med = {c: statistics.median(v) for c, v in best.items()}
        top = max(med, key=lambda c: med[c])
        targets.append(
            {
                "measure": "one event per request, sink 20 ms (best concurrency "
                f"{top}; 16/32/64: {', '.join(f'{med[c]:,.0f}' for c in sorted(med))})",
                "postback": f"{med[top]:,.0f} ev/s",
                "segment": "-",
                "ratio": None,
                "target": ">= 1,500 ev/s",
                "pass": med[top] >= SINGLE_TARGET,
            }
        )
    for r in res.get("kill", []):
        if r["lib"] == "postback":
            seg = next(
                (
                    s
                    for s in res["kill"]
                    if s["lib"] == "segment" and s["latency_ms"] == r["latency_ms"]
                ),
                None,
            )
            targets.append(
                {
                    "measure": f"SIGKILL at ~10,000 tracked, sink {r['latency_ms']:.0f} ms: lost",
                    "postback": f"{r['lost']} of {r['returned']:,}",
                    "segment": f"{seg['lost']:,} of {seg['returned']:,} ({seg['lost_pct']}%)"
                    if seg
                    else "-",
                    "ratio": None,
                    "target": "0 lost",
                    "pass": r["lost"] == 0,
                }
            )
    for r in res.get("exit", []):
        if r["lib"] == "postback":
            seg = next(
                (
                    s
                    for s in res["exit"]
                    if s["lib"] == "segment" and s["latency_ms"] == r["latency_ms"]
                ),
                None,
            )
            targets.append(
                {
                    "measure": f"exit without flush, {r['tracked']:,} tracked, sink "
                    f"{r['latency_ms']:.0f} ms: lost",
                    "postback": f"{r['lost']}",
                    "segment": f"{seg['lost']:,} ({seg['lost_pct']}%)" if seg else "-",
                    "ratio": None,
                    "target": "0 lost",
                    "pass": r["lost"] == 0,
                }
            )
    down = res.get("down", [])
    if down:
        pb_down = down[0]
        segs = down[1:]
        n = pb_down["n"]
        recovered = pb_down.get("delivered_after_recovery")
        targets.append(
            {
                "measure": f"{n:,} events while the vendor is down: kept",
                "postback": f"{pb_down['kept']:,} (all {recovered:,} delivered after recovery)"
                if recovered is not None
                else f"{pb_down['kept']:,}",
                "segment": "; ".join(f"{s['label']}: {s['kept']:,}" for s in segs),
                "ratio": None,
                "target": "all kept",
                "pass": pb_down["kept"] == n and recovered == n,
            }
        )
        targets.append(
            {
                "measure": f"{n:,} events while the vendor is down: RSS growth",
                "postback": f"{pb_down['rss_growth_mb']} MB",
                "segment": "; ".join(f"{s['label']}: {s['rss_growth_mb']} MB" for s in segs),
                "ratio": None,
                "target": "< 30 MB",
                "pass": pb_down["rss_growth_mb"] < RSS_TARGET_MB,
            }
        )

    # --- markdown ----------------------------------------------------------------------------
    machine = document["machine"]
    md.append(
        f"Measured {machine['date']} on {machine['cores']} cores ({machine['cpu']}), "
        f"{machine['memory_gb']} GB, Linux {machine['kernel']}, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}; postback at {machine.get('git', '?')}, "
        "segment-analytics-python "
        f"{machine['versions'].get('segment-analytics-python')}, httpx "
        f"{machine['versions'].get('httpx')}. Load average at start "
        f"{', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in machine.get('loadavg_at_end', []))}. "
        f"Mode: {document['mode']}, {document['runs']} run(s) per timing (medians). "
        f"Command: `{document['command']}` ({machine.get('duration_s', '?')} s)."
    )
    for part in document.get("partial_runs", []):
        md.append(
            f"\nSections {', '.join(part['sections'])} re-measured {part['date']} "
            f"(`--only`, postback at {part.get('git', '?')}, load average at start "
            f"{', '.join(f'{x:.2f}' for x in part['loadavg_at_start'])})."
        )
    changed = [
        m.get("source_at_start") != m.get("source_at_end")
        for m in [machine, *document.get("partial_runs", [])]
        if "source_at_start" in m
    ]
    if any(changed):
        md.append(
            "\n> **Warning:** postback's source changed while this was measured, so these "
            "figures mix versions of the code."
        )
    md.append("\n### Targets\n")
    md.append(
        _table(
            ["measure", "postback", "Segment", "postback / Segment", "target", "result"],
            [
                [
                    t["measure"],
                    t["postback"],
                    t["segment"],
                    t["ratio"],
                    t["target"],
                    _verdict(t["pass"]),
                ]
                for t in targets
            ],
        )
    )
    if groups:
        md.append("\n### track() on the caller's thread (µs per call; medians of the runs)\n")
        md.append(
            _table(
                [
                    "N",
                    "sink",
                    "library",
                    "p50",
                    "p99",
                    "p99.9",
                    "max",
                    "worst max",
                    "GC gen2 (count, max)",
                    "calls > 1 ms (GC / other)",
                ],
                [
                    [
                        g["n"],
                        f"{g['latency_ms']:.0f} ms",
                        g["lib"],
                        g["p50_us"],
                        g["p99_us"],
                        g["p999_us"],
                        g["max_us"],
                        g["max_worst_us"],
                        f"{_fmt(g['gc_gen2_count'])}, {_fmt(g['gc_gen2_max_us'])} µs",
                        f"{_fmt(g['slow_calls'])} ({_fmt(g['slow_gc'])} / {_fmt(g['slow_other'])})",
                    ]
                    for g in sorted(groups, key=lambda g: (g["n"], g["latency_ms"], g["lib"]))
                ],
            )
        )
        md.append("\n### Batched delivery end to end (100 events per request)\n")
        md.append(
            _table(
                [
                    "N",
                    "sink",
                    "library",
                    "events/s (median)",
                    "runs",
                    "track() loop events/s",
                    "drain after the loop, events/s",
                    "sink CPU (% of a core)",
                    "RSS growth",
                ],
                [
                    [
                        g["n"],
                        f"{g['latency_ms']:.0f} ms",
                        g["lib"]
                        + (f" (concurrency {g['concurrency']})" if g["concurrency"] else ""),
                        g["events_per_s"],
                        ", ".join(_fmt(v) for v in g["events_per_s_all"]),
                        g["track_per_s"],
                        g["drain_per_s"],
                        f"{_fmt(g['sink_cpu_pct'])}%",
                        f"{_fmt(g['rss_growth_mb'])} MB",
                    ]
                    for g in sorted(groups, key=lambda g: (g["n"], g["latency_ms"], g["lib"]))
                ],
            )
        )
    if busy_groups:
        md.append(
            "\n### Busy machine: a CPU-bound neighbour on the other core (medians of the runs)\n"
        )
        md.append(
            _table(
                [
                    "N",
                    "sink",
                    "library",
                    "track() p50 µs",
                    "p99.9 µs",
                    "worst max µs",
                    "events/s (median)",
                    "runs",
                    "track() loop events/s",
                ],
                [
                    [
                        g["n"],
                        f"{g['latency_ms']:.0f} ms",
                        g["lib"],
                        g["p50_us"],
                        g["p999_us"],
                        g["max_worst_us"],
                        g["events_per_s"],
                        ", ".join(_fmt(v) for v in g["events_per_s_all"]),
                        g["track_per_s"],
                    ]
                    for g in sorted(busy_groups, key=lambda g: (g["n"], g["latency_ms"], g["lib"]))
                ],
            )
        )
    if res.get("capacity"):
        md.append(
            "\n### postback delivery capacity (queue filled beforehand, then delivered by a "
            "fresh process; no track() competing)\n"
        )
        md.append(
            _table(
                [
                    "vendor",
                    "concurrency",
                    "sink",
                    "events",
                    "events/s",
                    "CPU µs per event",
                    "CPU µs per request",
                    "sink CPU (% of a core)",
                ],
                [
                    [
                        "100 per request" if r["vendor"] == "bench_batch" else "one per request",
                        r["concurrency"],
                        f"{r['latency_ms']:.0f} ms",
                        r["n"],
                        r.get("events_per_s"),
                        r.get("cpu_us_per_event"),
                        r.get("cpu_us_per_request"),
                        f"{_fmt(r.get('sink_cpu_pct'))}%",
                    ]
                    for r in res["capacity"]
                ],
            )
        )
    if res.get("sweep"):
        md.append("\n### postback lane concurrency (batched, N = 20,000, one run each)\n")
        md.append(
            _table(
                [
                    "sink",
                    "concurrency",
                    "events/s",
                    "drain events/s",
                    "track p50 µs",
                    "track p99 µs",
                ],
                [
                    [
                        f"{r['latency_ms']:.0f} ms",
                        r["concurrency"],
                        r["events_per_s"],
                        r["drain_per_s"],
                        r["track_p50_us"],
                        r["track_p99_us"],
                    ]
                    for r in res["sweep"]
                ],
            )
        )
    if single:
        md.append("\n### One event per request, sink at 20 ms\n")
        eng: dict[int, list[dict[str, Any]]] = {}
        for r in single["engine"]:
            eng.setdefault(r["concurrency"], []).append(r)
        md.append(
            _table(
                [
                    "client",
                    "concurrency",
                    "events/s (median)",
                    "runs",
                    "drain after the loop /s",
                    "ceiling (concurrency / 20 ms)",
                ],
                [
                    [
                        "postback engine",
                        c,
                        _median(r.get("events_per_s") for r in rs),
                        ", ".join(_fmt(r.get("events_per_s")) for r in rs),
                        _median(r.get("drain_per_s") for r in rs),
                        c / 0.02,
                    ]
                    for c, rs in sorted(eng.items())
                ]
                + [
                    [
                        TRANSPORT_LABELS.get(r["client"], r["client"]),
                        r["concurrency"],
                        r["requests_per_s"],
                        f"{r['errors']} errors",
                        "-",
                        r["concurrency"] / 0.02,
                    ]
                    for r in single["transport"]
                ],
            )
        )
    if res.get("kill") or res.get("exit"):
        md.append("\n### Crash and exit\n")
        rows = [
            [
                "SIGKILL mid-loop",
                r["lib"],
                f"{r['latency_ms']:.0f} ms",
                r["returned"],
                r["delivered_before_restart"],
                r["delivered"] if r["lib"] == "postback" else "- (no restart recovery)",
                f"{r['lost']:,} ({r['lost_pct']}%)",
                r["duplicates"],
            ]
            for r in res.get("kill", [])
        ] + [
            [
                "exit without flush",
                r["lib"],
                f"{r['latency_ms']:.0f} ms",
                r["tracked"],
                r["delivered_by_exit"],
                r["delivered"] if r["lib"] == "postback" else "-",
                f"{r['lost']:,} ({r['lost_pct']}%)",
                "-",
            ]
            for r in res.get("exit", [])
        ]
        md.append(
            _table(
                [
                    "case",
                    "library",
                    "sink",
                    "track() returned",
                    "at the sink before restart",
                    "after restart",
                    "lost",
                    "duplicates",
                ],
                rows,
            )
        )
    if down:
        md.append("\n### Vendor down (sink answers 503)\n")
        md.append(
            _table(
                [
                    "library",
                    "tracked",
                    "accepted",
                    "kept",
                    "RSS before",
                    "RSS growth",
                    "peak RSS",
                    "delivered after recovery",
                ],
                [
                    [
                        r["label"],
                        r["n"],
                        r["accepted"],
                        r["kept"],
                        f"{r['rss_before_mb']} MB",
                        f"{r['rss_growth_mb']} MB",
                        f"{r['peak_rss_mb']} MB",
                        _fmt(r.get("delivered_after_recovery")),
                    ]
                    for r in down
                ],
            )
        )
    if res.get("diagnostics"):
        md.append(
            "\n### Diagnostics: postback track() what-ifs (N = 100,000, sink 20 ms, one run)\n"
        )
        md.append(
            _table(
                [
                    "variant",
                    "p50 µs",
                    "p99 µs",
                    "p99.9 µs",
                    "max µs",
                    "calls > 1 ms (GC / other)",
                    "GC gen2 max µs",
                    "queue.put() > 1 ms (1-4 / 4-10 / 10-25 / >= 25 ms)",
                    "events/s",
                ],
                [
                    [
                        r["label"],
                        r["latency"]["p50_us"],
                        r["latency"]["p99_us"],
                        r["latency"]["p999_us"],
                        r["latency"]["max_us"],
                        f"{r['slow_causes']['slow_calls']} ("
                        f"{r['slow_causes']['gc_gen2'] + r['slow_causes']['gc_gen0_1']} / "
                        f"{r['slow_causes']['other']})",
                        r["gc"]["gen2"]["max_us"],
                        _put_buckets(r.get("put_over_1ms")),
                        _fmt(r.get("events_per_s")),
                    ]
                    for r in res["diagnostics"]
                    if "latency" in r
                ],
            )
        )
    prof = res.get("profile")
    if prof and "track" in prof:
        md.append(_profile_md(prof))
    return {"targets": targets, "throughput": groups, "markdown": "\n".join(md) + "\n"}


def _put_buckets(put: dict[str, Any] | None) -> str:
    if not put:
        return "-"
    b = put["by_duration"]
    parts = " / ".join(str(b.get(k, 0)) for k in ("1-4 ms", "4-10 ms", "10-25 ms", ">= 25 ms"))
    return f"{put['count']} ({parts})"


def _profile_md(prof: dict[str, Any]) -> str:
    out = []
    t = prof["track"]
    out.append(
        f"\n### Profile: track() (py-spy, {t['samples']:,} samples over {t['events']:,} calls, "
        "delivery off; share of track()'s time)\n"
    )
    out.append(_spots(t))
    views = {
        "cpu": "on-CPU samples",
        "gil": "GIL holder only",
        "wall": "wall clock, busy and waiting",
    }
    for d in prof["delivery"].values():
        vendor = d.get("vendor", "bench_batch")
        shape = "one per request" if vendor == "bench_single" else "100 per request"
        latency = "20 ms" if "20ms" in d["raw"] else "0 ms"
        out.append(
            f"\n### Profile: delivery of {d['events']:,} queued events, {shape}, concurrency "
            f"{d.get('concurrency', 8)}, sink {latency} (py-spy, {views[d['mode']]}: "
            f"{d['samples']:,} samples of the postback-* threads; the drain process took "
            f"{d['drain_s']} s)\n"
        )
        if d["mode"] == "wall":
            out.append("Lane thread (claims batches, hands them to the request threads):\n")
            out.append(_spots(d["lane_thread"], top=6))
            out.append("\nRequest threads (transform, HTTP, settle):\n")
            out.append(_spots(d["request_threads"], top=8))
            continue
        out.append(_spots(d))
        fw = d.get("flush_wait")
        if fw and fw["samples"]:
            tops = ", ".join(f"`{x['where']}` {x['share_pct']}%" for x in fw["self"][:3])
            out.append(
                f"\nMeanwhile the caller's thread in flush() used {fw['samples']:,} samples "
                f"(top: {tops})."
            )
    return "\n".join(out)


def _spots(spots: dict[str, Any], top: int = 12) -> str:
    rows = []
    for i in range(top):
        row: list[Any] = []
        for key in ("self", "inclusive", "self_by_file"):
            items = spots[key]
            row.append(f"`{items[i]['where']}` {items[i]['share_pct']}%" if i < len(items) else "")
        rows.append(row)
    return _table(["self time (function)", "inclusive time (function)", "self time by file"], rows)


# --------------------------------------------------------------------------------------------


def write_plot(document: dict[str, Any], path: Path) -> Path | None:
    """Four panels: track() latency, batched throughput, one-per-request, loss and memory."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    res = document["results"]
    groups = throughput_groups(res.get("throughput", []))
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    colors = {"postback": "#1f77b4", "postback-process": "#2ca02c", "segment": "#ff7f0e"}

    keys = sorted({(g["n"], g["latency_ms"]) for g in groups if g["lib"] in colors})
    labels = [f"N={n // 1000}k\n{lat:.0f} ms" for n, lat in keys]
    by = {(g["lib"], g["n"], g["latency_ms"]): g for g in groups}

    ax = axes[0][0]
    width = 0.09
    for li, lib in enumerate(("postback", "postback-process", "segment")):
        for si, (stat, hatch) in enumerate(
            (("p50_us", ""), ("p99_us", "//"), ("max_worst_us", ".."))
        ):
            xs = [i + (li * 3 + si - 4) * width for i in range(len(keys))]
            ys = [by.get((lib, n, lat), {}).get(stat) or 0 for n, lat in keys]
            ax.bar(
                xs,
                ys,
                width,
                color=colors[lib],
                hatch=hatch,
                edgecolor="white",
                label=f"{lib} {stat.split('_')[0].replace('worst', 'max')}",
            )
    ax.axhline(
        TRACK_MAX_TARGET_US, color="red", linestyle="--", linewidth=1, label="10 ms target (max)"
    )
    ax.set_yscale("log")
    ax.set_ylim(5, 2e6)  # room above the bars for the legend
    ax.set_ylabel("µs per track() call")
    ax.set_xticks(range(len(keys)), labels)
    ax.set_title("track() on the caller's thread: p50, p99, worst max")
    ax.legend(fontsize=7, ncol=3, loc="upper left")

    ax = axes[0][1]
    width = 0.27
    for li, lib in enumerate(("postback", "postback-process", "segment")):
        xs = [i + (li - 1) * width for i in range(len(keys))]
        ys = [by.get((lib, n, lat), {}).get("events_per_s") or 0 for n, lat in keys]
        bars = ax.bar(xs, ys, width, color=colors[lib], label=lib)
        ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=7)
    ax.set_ylabel("events/s, first track() to last event at the sink")
    ax.set_xticks(range(len(keys)), labels)
    ax.set_title("Batched delivery end to end (100 events/request)")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    single = res.get("single")
    if single:
        eng: dict[int, list[float]] = {}
        for r in single["engine"]:
            eng.setdefault(r["concurrency"], []).append(r.get("events_per_s") or 0)
        cs = sorted(eng)
        ax.plot(cs, [statistics.median(eng[c]) for c in cs], "o-", label="postback engine")
        for kind, style in (
            ("threads", "s--"),
            ("threads-own-client", "d--"),
            ("asyncio", "^--"),
            ("threads-http.client", "x:"),
        ):
            pts = sorted(
                (r["concurrency"], r["requests_per_s"])
                for r in single["transport"]
                if r["client"] == kind
            )
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                style,
                label=TRANSPORT_LABELS[kind],
            )
        ax.plot(cs, [c / 0.02 for c in cs], ":", color="grey", label="ceiling: concurrency / 20 ms")
        ax.axhline(SINGLE_TARGET, color="red", linestyle="--", linewidth=1, label="1,500/s target")
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("events (requests) per second")
        ax.set_title("One event per request, sink at 20 ms")
        ax.legend(fontsize=7)

    ax = axes[1][1]
    bars_x, bars_y, bars_c, names = [], [], [], []
    for r in res.get("kill", []):
        names.append(f"kill\n{r['latency_ms']:.0f} ms\n{SHORT[r['lib']]}")
        bars_y.append(r["lost_pct"])
        bars_c.append(colors[r["lib"]])
    for r in res.get("exit", []):
        names.append(f"exit\n{r['latency_ms']:.0f} ms\n{SHORT[r['lib']]}")
        bars_y.append(r["lost_pct"])
        bars_c.append(colors[r["lib"]])
    bars_x = list(range(len(names)))
    if names:
        b = ax.bar(bars_x, bars_y, color=bars_c)
        ax.bar_label(b, labels=[f"{y:.0f}%" for y in bars_y], fontsize=7)
        ax.set_xticks(bars_x, names, fontsize=7)
        ax.set_ylabel("% of accepted events lost")
        ax.set_ylim(0, 110)
    down = res.get("down", [])
    if down:
        ax2 = ax.twinx()
        xs = [len(names) + 0.5 + i for i in range(len(down))]
        short = ["pb", "seg\n10k", "seg\nraised"]
        b2 = ax2.bar(xs, [r["rss_growth_mb"] for r in down], color="#2ca02c", alpha=0.7)
        ax2.bar_label(b2, labels=[f"{r['rss_growth_mb']:.0f} MB" for r in down], fontsize=7)
        ax2.set_ylabel("RSS growth, vendor down (MB)")
        ax.set_xticks(bars_x + xs, names + [f"down\n{s}" for s in short[: len(down)]], fontsize=7)
    ax.set_title("Loss on SIGKILL / exit (bars, left) and memory while down (green, right)")
    fig.suptitle(
        f"postback vs segment-analytics-python — {document['machine']['cores']} cores, "
        f"{document['mode']} run, {document['machine']['date']}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""What OpenTelemetry costs ``track()`` (docs/how-to/opentelemetry.md's table).

    python bench/otel_cost.py [--runs 9] [--n 5000]            # the API only, no SDK
    python bench/otel_cost.py --sdk [--runs 9] [--n 5000]      # with the SDK's TracerProvider

On a ``sqlite://`` queue in a temporary directory with delivery off (only the caller's cost),
``track()`` is timed with and without its trace-context step (``postback.telemetry.stamp``,
replaced by the identity for the "without" runs, interleaved with the "with" runs), first with
no span active, then inside a span; and ``stamp()`` alone. Prints medians (and minimums).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import timeit
from typing import Any

import postback.testing.example as example
import postback.tracker as tracker_module
from postback import Tracker, telemetry
from postback.event_codec import dumps_event
from postback.events import make_event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdk", action="store_true", help="set the SDK's TracerProvider")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    from opentelemetry import trace

    if args.sdk:
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
    label = "SDK" if args.sdk else "no SDK"
    fields: dict[str, Any] = {"user": {"email": "a@b.co"}, "value": 9.99, "currency": "USD"}
    payload = dumps_event(make_event("purchase", **fields))
    with tempfile.TemporaryDirectory() as d:
        cfg = {
            "postback": {"queue": f"sqlite:///{d}/q.db", "workers": False},
            "vendors": {"example": {"api_key": "k", "base_url": "http://127.0.0.1:9"}},
        }
        t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
        real = tracker_module.stamp

        def measure(where: str) -> None:
            runs: dict[str, list[float]] = {"without": [], "with": []}
            for _ in range(args.runs):
                for key, fn in (("without", lambda p: p), ("with", real)):
                    tracker_module.stamp = fn
                    total = timeit.timeit(lambda: t.track("purchase", **fields), number=args.n)
                    runs[key].append(total / args.n * 1e6)
            tracker_module.stamp = real
            alone = min(timeit.repeat(lambda: telemetry.stamp(payload), number=100_000, repeat=5))
            print(
                f"{label}, {where}: track() "
                + ", ".join(
                    f"{k} the step {statistics.median(v):.2f} us (min {min(v):.2f})"
                    for k, v in runs.items()
                )
                + f"; stamp() alone {alone / 100_000 * 1e9:.0f} ns"
            )

        measure("no span")
        with trace.get_tracer("bench").start_as_current_span("request"):
            measure("a span active")
        t.close(timeout=0)


if __name__ == "__main__":
    main()

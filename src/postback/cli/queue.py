"""``postback worker``, ``postback queue stats``, ``postback deadletters list`` (``show`` is in
:mod:`.privacy`) and
``postback replay``: the delivery process and the local queue's contents.

Reading the queue needs no vendor's secrets: ``queue stats`` and ``deadletters`` build no
vendor, and ``replay`` builds only the vendors it re-delivers to.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from postback.cli._shared import (
    config_option,
    console,
    count_or_id,
    err,
    fail,
    ms_iso,
    public_vendor_values,
    queue_tracker,
    since_ms,
    tracker_for,
    user_errors,
)
from postback.delivery.replayable import filtered_note, not_taken, why_left
from postback.encryption import UnknownKey, open_payload
from postback.event_codec import loads_event
from postback.textmask import mask_text

__all__ = ["deadletters", "format_stats", "queue", "replay", "worker"]


def format_stats(stats: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per vendor: what ``postback worker --stats-every`` prints."""
    lines = []
    for vendor, s in sorted(stats.items()):
        line = (
            f"stats {vendor}: delivered {s.get('delivered', 0)}, retried {s.get('retried', 0)},"
            f" dead {s.get('dead', 0)}, skipped {s.get('skipped', 0)},"
            f" requests {s.get('requests', 0)}"
        )
        if s.get("latency_p50") is not None:
            line += f", latency p50 {s['latency_p50'] * 1000:.0f} ms"
            line += f" p95 {(s.get('latency_p95') or 0) * 1000:.0f} ms"
        if s.get("halted"):
            line += f"; HALTED: {s['halted']}"
        lines.append(line)
    return "\n".join(lines) or "stats: no vendor"


@click.command()
@config_option
@click.option("--stats-every", default=0.0, help="Print stats every N seconds (0: never).")
@click.option("--stats-json", is_flag=True, help="Print those stats as one JSON line.")
def worker(config_path: Path | None, stats_every: float, stats_json: bool) -> None:
    """Deliver queued events until SIGTERM/SIGINT, then finish in-flight requests and stop."""
    from postback.integrations import run_worker, stats_interval

    try:
        stats_interval(stats_every)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--stats-every") from None
    with user_errors():
        tracker = tracker_for(config_path, workers=True)
    run_worker(
        tracker,
        stats_every=stats_every,
        write=err.print,
        format_stats=json.dumps if stats_json else format_stats,
    )


@click.group()
def queue() -> None:
    """Inspect the queue."""


@queue.command("stats")
@config_option
@click.option("--json", "as_json", is_flag=True)
def queue_stats(config_path: Path | None, as_json: bool) -> None:
    """Per-vendor queue depth (ready, retrying, in flight, dead letters) and the events each
    vendor skipped at track(), per reason, counted by every process that uses the queue."""
    with user_errors():
        tracker, configured = queue_tracker(config_path, workers=False)
    try:
        skips = tracker.queue.skip_counts()
        vendors = sorted(set(configured) | set(tracker.queue.vendors_seen()) | set(skips))
        depth = tracker.queue.depth(vendors, int(time.time() * 1000))
        health = tracker.queue.health()
        if as_json:
            console.print_json(
                json.dumps(
                    {
                        "queue": tracker.queue.url,
                        "vendors": {
                            v: {
                                "ready": d.ready,
                                "retrying": d.retrying,
                                "inflight": d.inflight,
                                "dead": d.dead,
                                "skipped": skips.get(v, {}),
                            }
                            for v, d in depth.items()
                        },
                        "health": health,
                    },
                    default=str,
                )
            )
            return
        table = Table(title=f"queue {tracker.queue.url}", title_justify="left")
        for col in ("vendor", "ready", "retrying", "in flight", "dead letters", "skipped"):
            table.add_column(col)
        for v, d in depth.items():
            n_skipped = str(sum(skips.get(v, {}).values()))
            table.add_row(v, str(d.ready), str(d.retrying), str(d.inflight), str(d.dead), n_skipped)
        console.print(table)
        if skips:
            why = Table(title="skipped at track(), per reason", title_justify="left")
            for col in ("vendor", "reason", "events"):
                why.add_column(col)
            for v in sorted(skips):
                for reason, n in sorted(skips[v].items(), key=lambda item: -item[1]):
                    why.add_row(v, reason, str(n))
            console.print(why)
        groups = health.get("groups")
        for key, val in health.items():
            if key != "groups":
                console.print(f"{key}: {val}")
        if isinstance(groups, Mapping) and groups:
            columns = sorted({k for g in groups.values() if isinstance(g, Mapping) for k in g})
            gtable = Table(title="consumer groups", title_justify="left")
            gtable.add_column("vendor")
            for col in columns:
                gtable.add_column(col.replace("_", " "))
            for vendor, g in groups.items():
                if isinstance(g, Mapping):
                    gtable.add_row(
                        vendor, *("-" if g.get(c) is None else str(g.get(c)) for c in columns)
                    )
            console.print(gtable)
    finally:
        tracker.close(timeout=0)


@click.group()
def deadletters() -> None:
    """Events a vendor refused for good or that ran out of retries."""


@deadletters.command("list")
@config_option
@click.option("--vendor", default=None)
@click.option("--since", default=None, help="ISO time, or a duration ago (2h, 7d).")
@click.option("--limit", default=50, show_default=True, type=count_or_id)
def deadletters_list(
    config_path: Path | None, vendor: str | None, since: str | None, limit: int
) -> None:
    """List dead letters, newest first."""
    with user_errors():
        tracker, _ = queue_tracker(config_path, workers=False)
    try:
        rows = tracker.queue.dead_letters(vendor, since_ms(since), limit)
        if not rows:
            console.print(f"no dead letters in {tracker.queue.url}")
            return
        table = Table(title=f"{len(rows)} dead letter(s)", title_justify="left")
        for col in ("id", "vendor", "event", "event id", "failed", "attempts", "reason"):
            table.add_column(col, overflow="fold")
        keep = public_vendor_values(config_path, tracker)  # app ids are nobody's data
        for d in rows:
            table.add_row(
                str(d.id),
                d.vendor,
                d.name,
                d.event_id,
                ms_iso(d.failed_ms),
                str(d.attempts),
                mask_text(d.reason, keep),  # a refusal may quote an email (as show masks)
            )
        console.print(table)
    finally:
        tracker.close(timeout=0)


def _print_report(report: Any) -> None:
    table = Table(title="delivery", title_justify="left")
    for col in ("vendor", "delivered", "dead", "retried", "skipped", "pending", "note"):
        table.add_column(col)
    for vendor, r in report.vendors.items():
        table.add_row(
            vendor,
            str(r.delivered),
            str(r.dead),
            str(r.retried),
            str(r.skipped),
            str(r.pending),
            Text(f"halted: {r.halted}", style="red") if r.halted else "",
        )
    console.print(table)


@click.command()
@config_option
@click.option("--vendor", default=None, help="Only this vendor's dead letters.")
@click.option("--since", default=None, help="Only those failed since (ISO time or 2h, 7d).")
@click.option("--id", "ids", multiple=True, type=count_or_id, help="Only these dead letter ids.")
@click.option("--timeout", default=60.0, show_default=True)
def replay(
    config_path: Path | None,
    vendor: str | None,
    since: str | None,
    ids: tuple[int, ...],
    timeout: float,
) -> None:
    """Re-deliver dead letters: re-transformed from the stored canonical event, so a fixed
    plugin sends them correctly this time. Needs only the secrets of the vendors replayed to."""
    if math.isnan(timeout):  # a deadline that never compares: the wait would be skipped
        raise click.BadParameter("must be a number of seconds, not NaN", param_hint="--timeout")
    since_at = since_ms(since)
    with user_errors():
        reader, configured = queue_tracker(config_path, workers=False)
        try:
            if ids:
                found = [reader.queue.dead_letter(i) for i in ids]
                if missing := [str(i) for i, d in zip(ids, found, strict=True) if d is None]:
                    fail(
                        f"no dead letter {', '.join(missing)} (postback deadletters list shows "
                        "the ids); nothing was replayed",
                        1,
                    )
                for d in found:  # asked for by id, so never left out in silence
                    if d is not None and vendor is not None and d.vendor != vendor:
                        why = f"is for {d.vendor}, not --vendor {vendor}"
                    elif d is not None and since_at is not None and d.failed_ms < since_at:
                        why = f"failed before --since {since} ({ms_iso(d.failed_ms)})"
                    else:
                        continue
                    fail(f"dead letter {d.id} {why}; nothing was replayed", 1)
                targets = {d.vendor for d in found if d is not None}
            else:
                rows = reader.queue.dead_letters(vendor, since_at, 1_000_000)
                targets = {d.vendor for d in rows}
            chosen = [d for d in (found if ids else rows) if d is not None]
            chosen = [d for d in chosen if vendor is None or d.vendor == vendor]
            for d in chosen:  # readable here, or they would only be dead-lettered again
                try:
                    open_payload(d.payload)
                except UnknownKey as exc:
                    fail(f"dead letter {d.id} cannot be read: {exc}; nothing was replayed", 1)
        finally:
            reader.close(timeout=0)
        if not targets:
            console.print("nothing to replay")
            return
        if targets - set(configured):
            fail(
                f"dead letters for {', '.join(sorted(targets - set(configured)))} but the config "
                "has no table for it: add [vendors.NAME] to replay them, or pick others with "
                "--vendor / --id",
                2,
            )
        # It delivers itself (as postback worker does), whatever workers the app runs with: a
        # deployment's workers = false would leave them all pending.
        tracker, _ = queue_tracker(config_path, sorted(targets), workers=True)
    # Nothing delivers to a disabled vendor: its dead letters would leave the list for a queue
    # where they wait until it is enabled again, while the replay said it was done.
    if disabled := sorted(v for v in targets if not tracker.config.vendors[v].enabled):
        tracker.close(timeout=0)
        fail(
            f"{', '.join(disabled)} {'is' if len(disabled) == 1 else 'are'} disabled "
            "(enabled = false): enable it to replay its dead letters, or pick others with "
            "--vendor / --id; nothing was replayed",
            2,
        )
    # The vendor's events filter as it is now: what it no longer takes stays a dead letter.
    filtered = not_taken(tracker.config.vendors, chosen)
    if ids and filtered:  # asked for by id, so never left out in silence
        tracker.close(timeout=0)
        d = filtered[0]
        reason = why_left(tracker.config.vendors, d)
        fail(f"dead letter {d.id} {reason}, or leave out --id {d.id}; nothing was replayed", 1)
    try:
        if filtered:
            console.print(filtered_note(filtered))
            staying = {d.id for d in filtered}
            wanted = [d.id for d in chosen if d.id not in staying]
            rows = [  # by id, in chunks: a query takes a bounded number of parameters
                r
                for i in range(0, len(wanted), 500)
                for r in tracker.queue.requeue_dead(vendor, since_at, wanted[i : i + 500])
            ]
        else:
            rows = tracker.queue.requeue_dead(vendor, since_at, ids)
        if not rows:
            console.print("nothing to replay")
            return
        for d in rows:  # the stored event must still be readable
            loads_event(open_payload(d.payload))
        vendors = sorted({d.vendor for d in rows})
        console.print(f"replaying {len(rows)} event(s) to {', '.join(vendors)}")
        tracker.deliverer.notify(vendors)
        total = len(rows)
        deadline = time.monotonic() + timeout
        with Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("replay", total=total)
            while time.monotonic() < deadline:
                left = sum(v for k, v in tracker.engine.pending().items() if k in vendors)
                bar.update(task, completed=max(total - left, 0))
                if left == 0:
                    break
                time.sleep(0.1)
        report = tracker.flush(timeout=0.1)
        _print_report(report)
        if unfinished := _unfinished(report):
            fail(f"the replay did not deliver everything: {unfinished}", 1)
    finally:
        tracker.close(timeout=0)


def _unfinished(report: Any) -> str:
    """What a replay's report left undelivered, per kind and vendor ("" when nothing)."""
    kinds = (
        ("dead-lettered again", {v: r.dead for v, r in report.vendors.items() if r.dead}),
        ("still pending", {v: r.pending for v, r in report.vendors.items() if r.pending}),
        ("halted", {v: r.halted for v, r in report.vendors.items() if r.halted}),
    )
    said = [
        f"{kind}: {', '.join(f'{v} {n}' for v, n in sorted(per.items()))}"
        for kind, per in kinds
        if per
    ]
    hint = " (postback deadletters list shows why)" if kinds[0][1] else ""
    return "; ".join(said) + (hint if said else "")

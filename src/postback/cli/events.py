"""``postback send`` (one event, followed to its delivery, or a dry run) and ``postback
validate`` (a JSON Lines file of events checked without sending)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import click
import orjson
from rich.table import Table

from postback.cli._shared import (
    config_option,
    console,
    err,
    kv_pairs,
    parse_value,
    tracker_for,
    user_errors,
)
from postback.errors import InvalidEvent

__all__ = ["send", "validate"]


@click.command()
@click.argument("name")
@click.option("--user", "-u", "user", multiple=True, metavar="KEY=VALUE", help="User field.")
@click.option("--value", type=str, default=None, help="Money value, e.g. 49.99.")
@click.option("--currency", default=None, help="ISO 4217 code, e.g. USD.")
@click.option("--event-id", default=None)
@click.option("--timestamp", default=None, help="ISO 8601 time or epoch milliseconds.")
@click.option("--context", "context", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--property",
    "-p",
    "props",
    multiple=True,
    metavar="KEY=VALUE",
    help="Event property; JSON values allowed (items='[{...}]').",
)
@click.option("--vendor-option", "vopts", multiple=True, metavar="VENDOR.KEY=VALUE")
@click.option("--consent", "consent", multiple=True, metavar="PURPOSE=true|false")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Say per vendor whether it would get the event (and why not), print each request; "
    "send nothing.",
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    help="Seconds to wait for delivery, once (then at most 1 s for a request in flight to "
    "answer, so that its outcome is recorded).",
)
@config_option
def send(
    name: str,
    user: tuple[str, ...],
    value: str | None,
    currency: str | None,
    event_id: str | None,
    timestamp: str | None,
    context: tuple[str, ...],
    props: tuple[str, ...],
    vopts: tuple[str, ...],
    consent: tuple[str, ...],
    dry_run: bool,
    timeout: float,
    config_path: Path | None,
) -> None:
    """Track one event and wait for its delivery; exit 1 if it was routed nowhere, refused,
    halted, dead-lettered or still pending at the deadline (and say which). With --dry-run,
    show per vendor what would happen and the exact HTTP request; send nothing."""
    from postback.single_event import EventWatch, request_lines, send_and_watch

    if math.isnan(timeout):  # a deadline that never passes: it would wait forever
        raise click.BadParameter("must be a number of seconds, not NaN", param_hint="--timeout")
    vendors: dict[str, dict[str, Any]] = {}
    for pair in vopts:
        key, sep, val = pair.partition("=")
        vendor, dot, opt = key.partition(".")
        if not sep or not dot:
            raise click.BadParameter(
                f"expected VENDOR.KEY=VALUE, got {pair!r}", param_hint="--vendor-option"
            )
        vendors.setdefault(vendor, {})[opt] = parse_value(val)
    ts: Any = timestamp
    if timestamp and timestamp.isascii() and timestamp.isdigit():  # not "²"
        ts = int(timestamp)
    fields = {
        "user": kv_pairs(user, "--user") or None,
        "value": value,
        "currency": currency,
        "event_id": event_id,
        "timestamp": ts,
        "context": kv_pairs(context, "--context") or None,
        "properties": kv_pairs(props, "--property") or None,
        "vendors": vendors or None,
        "consent": kv_pairs(consent, "--consent") or None,
    }
    watch = EventWatch()
    with user_errors():
        if dry_run:
            tracker = tracker_for(
                config_path, queue="memory://", workers=True
            )  # as "auto" is there
        else:  # this process delivers the event itself, and sees each outcome
            tracker = tracker_for(config_path, plugins=[watch], workers=True)
        try:
            if dry_run:
                route = tracker.explain(name, **fields)
                console.print(str(route))
                if route.event is not None and route.error is None:
                    for vendor in route.queued:
                        console.rule(vendor)
                        console.print(
                            request_lines(tracker, tracker.destinations[vendor], route.event)
                        )
                if route.error is not None or not route.queued:
                    sys.exit(1)
                return
            result = send_and_watch(tracker, watch, name, fields, timeout)
            console.print(str(result.explanation))
            if result.event_id is not None and result.explanation.error is None:
                console.print(f"tracked {result.event_id}")
            if result.vendors:
                table = Table(title="delivery", title_justify="left")
                for col in ("vendor", "outcome", "note"):
                    table.add_column(col)
                for r in result.vendors:
                    table.add_row(r.vendor, r.status, r.note)
                console.print(table)
            for line in result.failures:
                err.print(f"not delivered: {line}")
            if result.failed:
                sys.exit(1)
        finally:
            tracker.close(timeout=0)


@click.command()
@click.argument("file", type=click.File("rb"))  # bytes: a line not UTF-8 is that line's problem
@config_option
def validate(file: Any, config_path: Path | None) -> None:
    """Validate events in a JSON Lines file (one track() call per line) without sending.

    Each line is an object with "name" and any of user, value, currency, event_id, timestamp,
    context, properties, vendors. Prints one line per problem (and a note per vendor that would
    skip an event, or when no vendor would get it); exits 1 if any event would be refused.
    """
    with user_errors():
        tracker = tracker_for(config_path, queue="memory://", workers=True)  # "auto" on memory://
    bad = total = 0
    try:
        for lineno, line in enumerate(file, 1):
            if not line.strip():
                continue
            total += 1
            try:
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(
                        f"not JSON ({exc}); each line is one JSON object, e.g. "
                        '{"name": "purchase", "value": 9.99, "currency": "USD"}'
                    ) from None
                if not isinstance(data, dict) or "name" not in data:
                    raise ValueError('each line must be a JSON object with a "name"')
                name = data.pop("name")
                route = tracker.explain(name, **data)
                if route.error is not None:
                    raise route.error
                for r in route.by_status("skipped"):
                    console.print(f"line {lineno}: note: {r.vendor} would skip it: {r.reason}")
                if not route.queued:
                    console.print(
                        f"line {lineno}: note: no configured vendor would get {route.name!r}"
                    )
            except InvalidEvent as exc:
                bad += 1
                for p in exc.problems:
                    console.print(f"line {lineno}: {p}")
            except (ValueError, TypeError) as exc:
                bad += 1
                console.print(f"line {lineno}: {exc}")
    finally:
        tracker.close(timeout=0)
    console.print(f"{total - bad} of {total} events valid")
    if bad:
        sys.exit(1)

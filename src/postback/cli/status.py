"""``postback status EVENT_ID``: print where one event stands per vendor, from the delivery
ledger (:mod:`postback.ledger`). It reads the queue's backend, so it answers for events tracked
and delivered by any process (any host, with Redis).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import orjson

from postback.cli._shared import config_option, queue_tracker, user_errors
from postback.ledger import EventStatus

__all__ = ["render_status", "status"]


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def render_status(st: EventStatus) -> str:
    """The plain-text report ``postback status`` prints."""
    if not st.found:
        return (
            f"no record of event {st.event_id!r}: not tracked with this config's queue, still "
            "in a process's spool (tracked in the last moments), or older than ledger_retention"
        )
    lines = [f"event {st.event_id}  {st.name or ''}  queued {_when(st.queued_ms)}".rstrip()]
    for v in st.vendors.values():
        head = f"  {v.vendor}: {v.state}"
        if v.state == "delivered":
            head += f" at {_when(v.delivered_ms)}"
            if v.vendor_ref:
                head += f" ({v.vendor_ref})"
        elif v.state == "skipped":
            head += f": {v.skipped_reason}"
        elif v.state == "dead-lettered":
            head += f": {v.dead_reason} (postback deadletters list --vendor {v.vendor})"
        elif v.state == "retrying" and v.next_attempt_ms:
            head += f", next attempt {_when(v.next_attempt_ms)}"
        lines.append(head)
        for a in v.attempts:
            note = f": {a.note}" if a.note else ""
            lines.append(f"    attempt {a.number} {_when(a.at_ms)} {a.outcome}{note}")
    return "\n".join(lines)


@click.command("status")
@click.argument("event_id")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(event_id: str, config_path: Path | None, as_json: bool) -> None:
    """Where EVENT_ID stands for each vendor: queued, attempts, delivered (with the vendor's
    id or attribution), skipped and why, dead-lettered and why. Exits 1 when nothing is
    known about it."""
    from postback.errors import PostbackError

    with user_errors():  # no vendor is built: the ledger is read without their secrets
        tracker, _ = queue_tracker(config_path, workers=False)
    try:
        st = tracker.status(event_id)
    except PostbackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        tracker.close(timeout=0)
    if as_json:
        click.echo(orjson.dumps(st.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_status(st))
    if not st.found:
        sys.exit(1)

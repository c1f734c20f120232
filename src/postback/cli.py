"""The ``postback`` command line (click for parsing, rich for tables and progress bars).

Commands: plugins, config check, send [--dry-run], validate, sandbox, demo, worker,
queue stats, deadletters list|show, replay, new-plugin, ui (postback.dashboard.command).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from postback import __version__
from postback.config import (
    find_config,
    parse_duration,
    read_config,
    settings_help,
)
from postback.dashboard import command as dashboard_command
from postback.destination import Secret, config_warnings
from postback.errors import ConfigError, InvalidEvent, PostbackError
from postback.events import loads_event
from postback.plugins import PluginHost
from postback.tracker import Tracker

__all__ = ["main"]

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("postback.cli")

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (postback.toml or pyproject.toml); default: $POSTBACK_CONFIG, "
    "./postback.toml, or ./pyproject.toml [tool.postback].",
)


@contextmanager
def _errors() -> Iterator[None]:
    """Print postback errors plainly and exit non-zero instead of a traceback."""
    try:
        yield
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(2)
    except InvalidEvent as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(1)
    except PostbackError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(1)


def _tracker(config_path: Path | None, plugins: Sequence[object] = (), **overrides: Any) -> Tracker:
    """A tracker for a command; ``overrides`` replace ``[postback]`` settings (a relative
    sqlite queue stays relative to the config file's directory)."""
    if not overrides:
        return Tracker.from_config(config_path, plugins=plugins)
    from postback.integrations import config_with_overrides

    return Tracker.from_config(config_with_overrides(config_path, overrides), plugins=plugins)


def _kv(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=what)
        out[key] = _value(value)
    return out


def _value(text: str) -> Any:
    """JSON when it parses as a list/dict/number/bool, else the plain string."""
    if text[:1] in "[{" or text in ("true", "false", "null"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int((time.time() - parse_duration(value)) * 1000)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "use an ISO date/time (2026-11-24T10:00Z) or a duration ago (2h, 30m, 7d)",
            param_hint="--since",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postback")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """postback: send server-side conversion events to ad and attribution vendors."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        logging.getLogger("httpx").setLevel(logging.WARNING)


# --------------------------------------------------------------------------------------------
# plugins, config


@main.command()
@config_option
def plugins(config_path: Path | None) -> None:
    """List installed vendor plugins, their versions, and whether the config enables them."""
    host = PluginHost()
    enabled: set[str] = set()
    path = config_path or find_config()
    if path is not None:
        try:
            raw, _, _ = read_config(path)
            enabled = {
                n
                for n, t in raw.get("vendors", {}).items()
                if not (isinstance(t, Mapping) and t.get("enabled") is False)
            }
        except ConfigError:
            pass
    table = Table(title="postback plugins", title_justify="left")
    for col in ("plugin", "distribution", "version", "vendors", "sandbox", "status"):
        table.add_column(col)
    for name, info in sorted(host.infos.items()):
        if info.error:
            status = f"[red]failed to load: {info.error}[/]"
        elif any(v in enabled for v in info.destinations):
            status = "[green]enabled[/]"
        else:
            status = "installed" + (" (not in config)" if path else "")
        table.add_row(
            name,
            info.distribution or "-",
            info.version or "-",
            ", ".join(info.destinations) or "-",
            ", ".join(info.emulators) or "-",
            status,
        )
    console.print(table)
    if not host.infos:
        console.print("No vendor plugins installed. Install one, e.g. pip install postback-x")
    if path:
        console.print(f"config: {path}")


@main.group("config")
def config_group() -> None:
    """Check the configuration."""


@config_group.command("check")
@config_option
def config_check(config_path: Path | None) -> None:
    """Validate the config; list every problem with its key path, or summarise it."""
    with _errors():
        tracker = Tracker.from_config(config_path)
        try:
            console.print(f"[green]ok[/]: {tracker.config.source or 'config'}")
            console.print(f"queue: {tracker.queue.url}")
            consent = tracker.config.consent
            console.print(
                f"consent: policy {consent.policy}; purposes {', '.join(sorted(consent.purposes))};"
                f" Sec-GPC opts out of {', '.join(consent.gpc) or 'nothing'}",
                highlight=False,
            )
            for name, vc in tracker.config.vendors.items():
                dest = tracker.destinations.get(name)
                table = Table(
                    title=f"[vendors.{name}]" + ("" if vc.enabled else " (disabled)"),
                    title_justify="left",
                )
                table.add_column("setting")
                table.add_column("value")
                for fname, _help, secret, _default in settings_help(type(vc.settings)):
                    value = getattr(vc.settings, fname)
                    table.add_row(
                        fname, "***" if secret or isinstance(value, Secret) else repr(value)
                    )
                table.add_row("base_url", dest.origin() if dest else repr(vc.base_url))
                if vc.events is not None:
                    table.add_row("events", ", ".join(sorted(vc.events)))
                if dest is not None:
                    table.add_row("purposes", ", ".join(tracker.consent_gate.needs[name]))
                    window = tracker.dedupe.windows_ms.get(name) if tracker.dedupe else None
                    table.add_row("dedupe_window", f"{window / 1000:g} s" if window else "off")
                console.print(table)
            filters = {n: vc.events for n, vc in tracker.config.vendors.items()}
            for key, message in config_warnings(tracker.destinations, filters):
                console.print(f"[yellow]warning[/]: {key}: {message}")
        finally:
            tracker.close(timeout=0)


# --------------------------------------------------------------------------------------------
# send, validate


@main.command()
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
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for delivery.")
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

    vendors: dict[str, dict[str, Any]] = {}
    for pair in vopts:
        key, sep, val = pair.partition("=")
        vendor, dot, opt = key.partition(".")
        if not sep or not dot:
            raise click.BadParameter(
                f"expected VENDOR.KEY=VALUE, got {pair!r}", param_hint="--vendor-option"
            )
        vendors.setdefault(vendor, {})[opt] = _value(val)
    ts: Any = timestamp
    if timestamp and timestamp.isdigit():
        ts = int(timestamp)
    fields = {
        "user": _kv(user, "--user") or None,
        "value": value,
        "currency": currency,
        "event_id": event_id,
        "timestamp": ts,
        "context": _kv(context, "--context") or None,
        "properties": _kv(props, "--property") or None,
        "vendors": vendors or None,
        "consent": _kv(consent, "--consent") or None,
    }
    watch = EventWatch()
    with _errors():
        if dry_run:
            tracker = _tracker(config_path, queue="memory://")
        else:  # this process delivers the event itself, and sees each outcome
            tracker = _tracker(config_path, plugins=[watch], workers=True)
        try:
            if dry_run:
                route = tracker.explain(name, **fields)
                console.print(str(route), markup=False, highlight=False)
                if route.event is not None and route.error is None:
                    for vendor in route.queued:
                        console.rule(vendor)
                        text = request_lines(tracker, tracker.destinations[vendor], route.event)
                        console.print(text, markup=False, highlight=False)
                if route.error is not None or not route.queued:
                    sys.exit(1)
                return
            result = send_and_watch(tracker, watch, name, fields, timeout)
            console.print(str(result.explanation), markup=False, highlight=False)
            if result.event_id is not None and result.explanation.error is None:
                console.print(f"tracked {result.event_id}", highlight=False)
            if result.vendors:
                table = Table(title="delivery", title_justify="left")
                for col in ("vendor", "outcome", "note"):
                    table.add_column(col)
                for r in result.vendors:
                    table.add_row(r.vendor, r.status, escape(r.note))
                console.print(table)
            for line in result.failures:
                err.print(f"not delivered: {line}", markup=False, highlight=False)
            if result.failed:
                sys.exit(1)
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
            f"[red]halted: {r.halted}[/]" if r.halted else "",
        )
    console.print(table)


@main.command()
@click.argument("file", type=click.File("r"))
@config_option
def validate(file: Any, config_path: Path | None) -> None:
    """Validate events in a JSON Lines file (one track() call per line) without sending.

    Each line is an object with "name" and any of user, value, currency, event_id, timestamp,
    context, properties, vendors. Prints one line per problem (and a note per vendor that would
    skip an event, or when no vendor would get it); exits 1 if any event would be refused.
    """
    with _errors():
        tracker = _tracker(config_path, queue="memory://")
    bad = total = 0
    try:
        for lineno, line in enumerate(file, 1):
            if not line.strip():
                continue
            total += 1
            try:
                data = orjson.loads(line)
                if not isinstance(data, dict) or "name" not in data:
                    raise ValueError('each line must be a JSON object with a "name"')
                name = data.pop("name")
                route = tracker.explain(name, **data)
                if route.error is not None:
                    raise route.error
                for r in route.by_status("skipped"):
                    note = f"line {lineno}: note: {r.vendor} would skip it: {r.reason}"
                    console.print(note, markup=False, highlight=False)
                if not route.queued:
                    note = f"line {lineno}: note: no configured vendor would get {route.name!r}"
                    console.print(note, markup=False, highlight=False)
            except InvalidEvent as exc:
                bad += 1
                for p in exc.problems:
                    console.print(f"line {lineno}: {p}", markup=False, highlight=False)
            except (ValueError, TypeError) as exc:
                bad += 1
                console.print(f"line {lineno}: {exc}", markup=False, highlight=False)
    finally:
        tracker.close(timeout=0)
    console.print(f"{total - bad} of {total} events valid", highlight=False)
    if bad:
        sys.exit(1)


# --------------------------------------------------------------------------------------------
# sandbox, demo


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
def sandbox(host: str, port: int) -> None:
    """Serve local emulations of every installed vendor's API on loopback."""
    from postback.sandbox import Sandbox

    if host not in ("127.0.0.1", "localhost", "::1"):
        raise click.BadParameter("the sandbox only listens on loopback", param_hint="--host")
    plugins_host = PluginHost()
    box = Sandbox.from_plugins(plugins_host.emulators, host=host, port=port)
    console.print(f"postback sandbox on {box.url} (Ctrl-C to stop)")
    table = Table(title="point a vendor's base_url here", title_justify="left")
    table.add_column("vendor")
    table.add_column("base_url")
    for vendor in box.emulators:
        table.add_row(vendor, box.base_url(vendor))
    console.print(table)
    console.print("Config with the sandbox credentials:")
    for vendor in box.emulators:
        console.print(f"\n[vendors.{vendor}]", markup=False)
        for k, v in box.vendor_config(vendor).items():
            console.print(f"{k} = {json.dumps(v)}", markup=False, highlight=False)
    try:
        box.serve_forever()
    except KeyboardInterrupt:
        pass


@main.command()
@click.option(
    "--events", "n_events", default=120, show_default=True, help="How many events to track."
)
@click.option("--seed", default=7, show_default=True)
def demo(n_events: int, seed: int) -> None:
    """Track a realistic mix of events to every installed vendor's sandbox emulation."""
    from postback.demo import run_demo

    with _errors():
        run_demo(console, n_events=n_events, seed=seed)


# --------------------------------------------------------------------------------------------
# worker, queue, dead letters, replay


@main.command()
@config_option
@click.option("--stats-every", default=0.0, help="Print stats every N seconds (0: never).")
def worker(config_path: Path | None, stats_every: float) -> None:
    """Deliver queued events until SIGTERM/SIGINT, then finish in-flight requests and stop."""
    from postback.integrations import run_worker

    with _errors():
        tracker = _tracker(config_path, workers=True)
    run_worker(
        tracker,
        stats_every=stats_every,
        write=lambda line: err.print(line, highlight=False, markup=False),
    )


@main.group()
def queue() -> None:
    """Inspect the queue."""


@queue.command("stats")
@config_option
@click.option("--json", "as_json", is_flag=True)
def queue_stats(config_path: Path | None, as_json: bool) -> None:
    """Per-vendor queue depth (ready, retrying, in flight, dead letters) and the events each
    vendor skipped at track(), per reason, counted by every process that uses the queue."""
    with _errors():
        tracker = _tracker(config_path, workers=False)
    try:
        skips = tracker.queue.skip_counts()
        vendors = sorted(set(tracker.destinations) | set(tracker.queue.vendors_seen()) | set(skips))
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
                    why.add_row(v, escape(reason), str(n))
            console.print(why)
        groups = health.get("groups")
        for key, val in health.items():
            if key != "groups":
                console.print(f"{key}: {val}", highlight=False)
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


@main.group()
def deadletters() -> None:
    """Events a vendor refused for good or that ran out of retries."""


def _ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _redacted(tracker: Tracker, vendor: str, text: str) -> str:
    """A stored reason with the vendor's secrets removed (rows written by older versions)."""
    dest = tracker.destinations.get(vendor)
    return dest.redact(text) if dest is not None else text


@deadletters.command("list")
@config_option
@click.option("--vendor", default=None)
@click.option("--since", default=None, help="ISO time, or a duration ago (2h, 7d).")
@click.option("--limit", default=50, show_default=True)
def deadletters_list(
    config_path: Path | None, vendor: str | None, since: str | None, limit: int
) -> None:
    """List dead letters, newest first."""
    with _errors():
        tracker = _tracker(config_path, workers=False)
    try:
        rows = tracker.queue.dead_letters(vendor, _since(since), limit)
        table = Table(title=f"{len(rows)} dead letter(s)", title_justify="left")
        for col in ("id", "vendor", "event", "event id", "failed", "attempts", "reason"):
            table.add_column(col, overflow="fold")
        for d in rows:
            reason = _redacted(tracker, d.vendor, d.reason)
            table.add_row(
                str(d.id), d.vendor, d.name, d.event_id, _ms(d.failed_ms), str(d.attempts), reason
            )
        console.print(table)
    finally:
        tracker.close(timeout=0)


@deadletters.command("show")
@click.argument("dead_id", type=int)
@config_option
def deadletters_show(dead_id: int, config_path: Path | None) -> None:
    """Show one dead letter with its canonical event."""
    with _errors():
        tracker = _tracker(config_path, workers=False)
    try:
        d = tracker.queue.dead_letter(dead_id)
        if d is None:
            err.print(f"no dead letter {dead_id}")
            sys.exit(1)
        event = orjson.loads(d.payload)
        console.print_json(
            json.dumps(
                {
                    "id": d.id,
                    "vendor": d.vendor,
                    "event_id": d.event_id,
                    "name": d.name,
                    "created": _ms(d.created_ms),
                    "failed": _ms(d.failed_ms),
                    "attempts": d.attempts,
                    "reason": _redacted(tracker, d.vendor, d.reason),
                    "event": event,
                }
            )
        )
    finally:
        tracker.close(timeout=0)


@main.command()
@config_option
@click.option("--vendor", default=None, help="Only this vendor's dead letters.")
@click.option("--since", default=None, help="Only those failed since (ISO time or 2h, 7d).")
@click.option("--id", "ids", multiple=True, type=int, help="Only these dead letter ids.")
@click.option("--timeout", default=60.0, show_default=True)
def replay(
    config_path: Path | None,
    vendor: str | None,
    since: str | None,
    ids: tuple[int, ...],
    timeout: float,
) -> None:
    """Re-deliver dead letters: re-transformed from the stored canonical event, so a fixed
    plugin sends them correctly this time."""
    with _errors():
        tracker = _tracker(config_path)
    try:
        rows = tracker.queue.requeue_dead(vendor, _since(since), ids)
        if not rows:
            console.print("nothing to replay")
            return
        for d in rows:  # the stored event must still be readable
            loads_event(d.payload)
        vendors = sorted({d.vendor for d in rows})
        console.print(f"replaying {len(rows)} event(s) to {', '.join(vendors)}")
        tracker.engine.notify(vendors)
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
    finally:
        tracker.close(timeout=0)


@main.command("new-plugin")
@click.argument("name")
@click.option(
    "--directory",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create postback-NAME/.",
)
def new_plugin(name: str, directory: Path) -> None:
    """Scaffold a working, tested vendor plugin package postback-NAME."""
    from postback.scaffold import create_plugin

    try:
        root = create_plugin(name, directory, core_version=__version__)
    except (ValueError, FileExistsError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    console.print(f"created {root}")
    console.print(
        "next:\n"
        f"  cd {root}\n"
        "  pip install -e .[test]\n"
        "  pytest                      # the contract kit and the vendor's own tests\n"
        f"  postback plugins            # lists {name}\n"
        "then adapt destination.py and emulator.py to the vendor's documentation.",
        highlight=False,
        markup=False,
    )


main.add_command(dashboard_command.ui)

if __name__ == "__main__":  # pragma: no cover
    main()

"""``postback plugins``, ``postback config check`` and ``postback doctor``: what is installed,
whether the configuration is valid, and whether this machine can deliver."""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from postback.cli._shared import config_option, console, styled, user_errors
from postback.config import CORE_HELP, find_config, read_config, settings_help
from postback.config.env import apply_overrides
from postback.config.loading import environment_settings
from postback.config.vendors import events_filter_warnings
from postback.destination import Secret, config_warnings
from postback.errors import ConfigError
from postback.plugins import PluginHost
from postback.tracker import Tracker

__all__ = ["config_group", "doctor", "plugins"]


@click.command()
@config_option
def plugins(config_path: Path | None) -> None:
    """List installed vendor plugins, their versions, the event fields they add, and whether
    the config enables them."""
    with user_errors():  # two plugins declaring one field differently: say so, no traceback
        host = PluginHost()
    enabled: set[str] = set()
    path = config_path or find_config()
    if path is not None or environment_settings():  # no file: the environment alone
        try:
            raw, _, _ = read_config(path)
            # A vendor may be configured (or disabled) by POSTBACK_VENDORS__NAME__... alone.
            raw, _ = apply_overrides(raw, list(CORE_HELP), lambda _: None, list(host.destinations))
            tables = raw.get("vendors")  # not a table: 'config check' says so
            enabled = {
                n
                for n, t in (tables.items() if isinstance(tables, Mapping) else ())
                if not (isinstance(t, Mapping) and t.get("enabled") is False)
            }
        except ConfigError:
            pass
    table = Table(title="postback plugins", title_justify="left")
    for col in ("plugin", "distribution", "version", "vendors", "sandbox", "status"):
        table.add_column(col)
    for name, info in sorted(host.infos.items()):
        status: str | Text
        if info.error:
            status = Text(f"failed to load: {info.error}", style="red")
        elif any(v in enabled for v in info.destinations):
            status = Text("enabled", style="green")
        else:
            status = "installed" + (" (not in config)" if path or enabled else "")
        table.add_row(
            name,
            info.distribution or "-",
            info.version or "-",
            ", ".join(info.destinations) or "-",
            ", ".join(info.emulators) or "-",
            status,
        )
    console.print(table)
    for name, info in sorted(host.infos.items()):
        declared = [f.path for v in info.destinations for f in host.destinations[v].fields]
        if declared:
            console.print(f"{name} adds event fields: {', '.join(declared)}")
    if not host.infos:
        console.print("No vendor plugins installed. Install one, e.g. pip install postback-x")
    if path:
        console.print(f"config: {path}")


@click.group("config")
def config_group() -> None:
    """Check the configuration."""


def _env_note(tracker: Tracker, path: str) -> str:
    """`` (from POSTBACK_...)`` when an environment variable set the setting at ``path``."""
    var = tracker.config.from_env.get(path)
    return f" (from {var})" if var else ""


def _core_table(tracker: Tracker, queue: str) -> Table:
    """The ``[postback]`` settings as resolved; the queue as the queue shows its URL (a
    password masked), ``workers = "auto"`` with what it chose and why, every environment
    override named."""
    table = Table(title="[postback]", title_justify="left")
    table.add_column("setting")
    table.add_column("value")
    core = tracker.config.core
    for name in CORE_HELP:
        value = queue if name == "queue" else getattr(core, name)
        shown = str(value) if isinstance(value, enum.Enum) else repr(value)
        if name == "workers" and tracker.auto_workers_reason:  # the setting, then what it chose
            chose = "threads" if value == "thread" else str(value)
            shown = f"auto ({chose} here: {tracker.auto_workers_reason})"
        table.add_row(name, shown + _env_note(tracker, f"postback.{name}"))
    return table


@config_group.command("check")
@config_option
def config_check(config_path: Path | None) -> None:
    """Validate the config; list every problem with its key path, or summarise it."""
    from postback.doctor import checking_tracker

    with user_errors(), checking_tracker(config_path, {}) as (tracker, missing):
        queue = tracker.queue.url if missing is None else f"sqlite:///{missing}"
        console.print(styled("ok", "green", f": {tracker.config.source or 'config'}"))
        note = " (the file does not exist yet: the app creates it on its first event)"
        console.print(f"queue: {queue}" + (note if missing else ""))
        console.print(_core_table(tracker, queue))
        consent = tracker.config.consent
        console.print(
            f"consent: policy {consent.policy}; purposes {', '.join(sorted(consent.purposes))};"
            f" Sec-GPC opts out of {', '.join(consent.gpc) or 'nothing'}"
        )
        for name, vc in tracker.config.vendors.items():
            dest = tracker.destinations.get(name)
            state = "" if vc.enabled else " (disabled)"
            if vc.unchecked_secrets:
                state = " (disabled; secrets not checked)"
            table = Table(title=f"[vendors.{name}]{state}", title_justify="left")
            table.add_column("setting")
            table.add_column("value")
            for fname, _help, secret, _default in settings_help(type(vc.settings)):
                value = getattr(vc.settings, fname)
                shown = "***" if secret or isinstance(value, Secret) else repr(value)
                if fname in vc.unchecked_secrets:
                    shown = "not set (checked when enabled)"
                table.add_row(fname, shown + _env_note(tracker, f"vendors.{name}.{fname}"))
            origin = dest.origin() if dest else repr(vc.base_url)
            table.add_row("base_url", origin + _env_note(tracker, f"vendors.{name}.base_url"))
            if vc.events is not None:
                events = ", ".join(sorted(vc.events))
                table.add_row("events", events + _env_note(tracker, f"vendors.{name}.events"))
            if dest is not None:
                table.add_row("purposes", ", ".join(tracker.consent_gate.needs[name]))
                window = tracker.dedupe.windows_ms.get(name) if tracker.dedupe else None
                table.add_row("dedupe_window", f"{window / 1000:g} s" if window else "off")
            console.print(table)
        filters = {n: vc.events for n, vc in tracker.config.vendors.items()}
        warnings = config_warnings(tracker.destinations, filters)
        for key, message in warnings + events_filter_warnings(
            tracker.config.vendors, tracker.host.destinations
        ):
            console.print(styled("warning", "yellow", f": {key}: {message}"))


@click.command()
@config_option
def doctor(config_path: Path | None) -> None:
    """Check that this machine can deliver: the config, the installed plugins, the queue
    (reachable, writable, file permissions, free disk, Redis persistence), TLS trust, the
    clock, and which vendors each canonical event goes to. Contacts no vendor. Exits 1 when
    something must be fixed (each problem says how)."""
    from postback.doctor import run_checks

    problems = 0
    for check in run_checks(config_path):
        style = {"ok": "green", "warning": "yellow", "problem": "bold red"}[check.level]
        console.print(styled(f"{check.level:>7}", style, f"  {check.topic}: {check.message}"))
        if check.fix:
            console.print(f"{'':>7}  fix: {check.fix}")
        problems += check.level == "problem"
    if problems:
        console.print(f"{problems} problem(s) to fix")
        sys.exit(1)
    console.print("no problems found")

"""``postback doctor``: can this machine deliver? Checks that contact no vendor.

:func:`run_checks` returns one :class:`Check` per finding, each ``ok``, ``warning`` or
``problem`` (with how to fix it): the configuration (and the vendors' own warnings), the
installed plugins and their versions, the queue (reachable, writable, its file's permissions,
free disk, Redis persistence), TLS trust (which CA certificates verify the vendors' hosts),
the clock, and which vendors each canonical event would go to. The command prints them and
exits 1 when there is a problem.

:func:`checking_tracker` builds the tracker that ``doctor`` and ``config check`` inspect
without creating the queue: a ``sqlite://`` file that does not exist yet (a first setup, or a
mistyped path) is reported, not made.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs

import postback
from postback.config.env import apply_overrides, environ_without
from postback.config.vendors import events_filter_warnings
from postback.destination import config_warnings
from postback.errors import ConfigError, PostbackError, QueueNotFound
from postback.events import CANONICAL_EVENTS
from postback.plugins import PluginHost
from postback.tracker import Tracker

__all__ = ["Check", "checking_tracker", "run_checks"]

Level = Literal["ok", "warning", "problem"]
MIN_FREE_BYTES = 200 * 1024 * 1024  # below this, a vendor outage could fill the disk soon


@attrs.frozen
class Check:
    """One finding: its level, what it is about, what was found, and how to fix it."""

    level: Level
    topic: str
    message: str
    fix: str = ""


def run_checks(config_path: Path | str | None) -> list[Check]:
    """Every check, in order; checks that need a valid configuration are left out when it is
    not (the configuration's problems say why)."""
    checks = list(_plugins())
    try:
        # Delivering nothing (workers = false, whatever POSTBACK_WORKERS says).
        with checking_tracker(config_path, {"workers": False}) as (tracker, missing):
            checks += _with_tracker(tracker, missing)
    except ConfigError as exc:
        checks.append(
            Check(
                "problem",
                "config",
                str(exc),
                "fix each key path listed (postback config check repeats them)",
            )
        )
    except PostbackError as exc:
        checks.append(Check("problem", "config", str(exc)))
    return checks


@contextmanager
def checking_tracker(
    config_path: Path | str | None, overrides: Mapping[str, Any]
) -> Iterator[tuple[Tracker, Path | None]]:
    """The configured tracker (``overrides``: as
    :func:`~postback.integrations.tracker_with_overrides`) and, when its ``sqlite://`` queue
    file does not exist, that file's path: the tracker then stands on a queue in a temporary
    directory, removed after, so that checking a config never creates its queue (nor a
    mistyped path's directories), its ``config.from_env`` still naming a ``POSTBACK_QUEUE``
    that set the missing file. Closed on leaving."""
    from postback.integrations import tracker_with_overrides

    try:
        tracker = tracker_with_overrides(config_path, overrides, create_queue=False)
    except QueueNotFound as exc:
        with tempfile.TemporaryDirectory(prefix="postback-check-") as tmp:
            stand_in = {**overrides, "queue": f"sqlite:///{Path(tmp) / 'queue.db'}"}
            tracker = tracker_with_overrides(config_path, stand_in)
            # The stand-in hides POSTBACK_QUEUE from the tracker: name it as the source again.
            _, queue_var = apply_overrides(
                {}, ["queue"], lambda _: None, [], environ_without(overrides)
            )
            from_env = {**tracker.config.from_env, **queue_var}
            tracker.config = attrs.evolve(tracker.config, from_env=from_env)
            try:
                yield tracker, exc.path
            finally:
                tracker.close(timeout=0)
        return
    try:
        yield tracker, None
    finally:
        tracker.close(timeout=0)


def _with_tracker(tracker: Tracker, missing: Path | None) -> list[Check]:
    checks = [Check("ok", "config", f"{tracker.config.source or 'config'} is valid")]
    filters = {n: vc.events for n, vc in tracker.config.vendors.items()}
    warnings = config_warnings(tracker.destinations, filters)
    for key, message in warnings + events_filter_warnings(
        tracker.config.vendors, tracker.host.destinations
    ):
        checks.append(Check("warning", "config", f"{key}: {message}"))
    checks += _disabled(tracker)
    if not tracker.destinations:
        disabled = [n for n, vc in tracker.config.vendors.items() if not vc.enabled]
        checks.append(
            Check(
                "problem",
                "config",
                "no enabled vendor: events would be tracked and sent nowhere",
                f"set enabled = true in [vendors.{disabled[0]}] (with its secrets)"
                if disabled
                else "add a [vendors.NAME] table (postback plugins lists the installed vendors)",
            )
        )
    checks += _missing_queue(missing) if missing is not None else _queue(tracker)
    checks += _tls(tracker)
    checks += _clock()
    checks += _routes(tracker)
    return checks


def _disabled(tracker: Tracker) -> list[Check]:
    """One line per disabled vendor: nothing is sent to it, and its secrets were not checked
    (those not given are empty placeholders, never used; the plugin's own checks of its
    settings run once it is enabled)."""
    out = []
    for name, vc in sorted(tracker.config.vendors.items()):
        if vc.enabled:
            continue
        unset = f" ({', '.join(vc.unchecked_secrets)} not set)" if vc.unchecked_secrets else ""
        out.append(
            Check(
                "warning",
                "vendors",
                f"{name} is disabled (enabled = false): nothing is sent to it, and its secrets "
                f"were not checked{unset}",
                f"to send to it, set enabled = true in [vendors.{name}] and give its secrets",
            )
        )
    return out


def _plugins() -> Iterator[Check]:
    host = PluginHost()
    yield Check("ok", "plugins", f"postback {postback.__version__}")
    if not host.infos:
        yield Check(
            "warning",
            "plugins",
            "no vendor plugin is installed",
            "install one: pip install -e plugins/applovin from a clone, or postback-applovin",
        )
    for name, info in sorted(host.infos.items()):
        what = f"{info.distribution or name} {info.version or '(no version)'}"
        if info.error:
            yield Check(
                "problem",
                "plugins",
                f"{what} failed to load: {info.error}",
                "reinstall it, or upgrade it to a version made for this postback",
            )
        else:
            vendors = ", ".join(info.destinations) or "no vendor"
            yield Check("ok", "plugins", f"{what}: {vendors}")


def _queue(tracker: Tracker) -> Iterator[Check]:
    url = tracker.queue.url
    try:
        health = tracker.queue.health()
        tracker.queue.depth(sorted(tracker.destinations), int(time.time() * 1000))
    except Exception as exc:
        yield Check(
            "problem",
            "queue",
            f"{url} is not usable: {exc}",
            "check [postback] queue (for redis://, that the server is running and reachable)",
        )
        return
    yield Check("ok", "queue", f"{url} is reachable")
    persistence = health.get("persistence")
    if isinstance(persistence, str):
        level: Level = "ok" if persistence.startswith("append-only file on") else "warning"
        fix = "" if level == "ok" else "CONFIG SET appendonly yes (and in redis.conf)"
        yield Check(level, "queue", f"redis persistence: {persistence}", fix)
    if url.startswith("sqlite:"):
        from postback.delivery.queue import sqlite_path

        yield from _sqlite_file(sqlite_path(url))


def _missing_queue(path: Path) -> Iterator[Check]:
    yield Check(
        "warning",
        "queue",
        f"{path} does not exist yet: the app creates it when it tracks its first event",
        "if the app already runs, this is not its queue: check [postback] queue",
    )
    yield from _sqlite_file(path)


def _sqlite_file(path: Path) -> Iterator[Check]:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the queue makes the rest
        folder = folder.parent
    if not os.access(folder, os.W_OK):
        yield Check(
            "problem",
            "queue",
            f"cannot write in {folder}",
            "give the app's user write access to that directory (SQLite writes a journal "
            "next to the file), or point [postback] queue elsewhere",
        )
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            yield Check(
                "problem",
                "queue",
                f"{path} is not readable and writable by this user",
                f"chown or chmod {path} for the app's user",
            )
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            yield Check(
                "warning",
                "queue",
                f"{path} is readable by other users (mode {mode:o}); it holds personal data",
                f"chmod 600 {path}",
            )
        else:
            yield Check("ok", "queue", f"{path} has mode {mode:o}")
    free = shutil.disk_usage(folder).free
    level: Level = "ok" if free >= MIN_FREE_BYTES else "problem"
    yield Check(
        level,
        "queue",
        f"{free / 1e9:.1f} GB free where the queue is",
        "" if level == "ok" else "free some space: events wait on disk while a vendor is down",
    )


def _tls(tracker: Tracker) -> Iterator[Check]:
    """Which CA certificates verify the vendors' hosts (without contacting them)."""
    from postback.delivery.http import ssl_context

    bundle = tracker.config.core.ca_bundle
    try:
        context = ssl_context(bundle)
    except (OSError, ssl.SSLError) as exc:
        yield Check("problem", "tls", f"cannot load the CA certificates: {exc}")
        return
    source = os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")
    if not source:
        try:
            import certifi

            source = f"certifi {certifi.where()}"
        except ImportError:  # pragma: no cover - httpx depends on certifi
            source = "the system's default"
    count = context.cert_store_stats().get("x509_ca", 0)
    extra = f" plus [postback] ca_bundle {bundle}" if bundle else ""
    hosts = sorted(
        {
            urlsplit(d.origin()).hostname or d.origin()
            for d in tracker.destinations.values()
            if d.origin().startswith("https:")
        }
    )
    level: Level = "ok" if count or not hosts else "problem"
    yield Check(
        level,
        "tls",
        f"vendors' certificates are verified against {source}{extra} "
        f"({count} CA certificates loaded)" + (f" for {', '.join(hosts)}" if hosts else ""),
        "" if level == "ok" else "set SSL_CERT_FILE or [postback] ca_bundle to a PEM file",
    )


def _clock() -> Iterator[Check]:
    """The clock cannot be checked against a server offline; it must at least not be earlier
    than the files of this installation (a machine with a reset clock)."""
    now = time.time()
    installed = Path(postback.__file__).stat().st_mtime
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    if now + 86_400 < installed:
        yield Check(
            "problem",
            "clock",
            f"the clock says {stamp}, earlier than this installation's files: vendors refuse "
            "events with timestamps far in the past or future",
            "set the time (enable NTP: timedatectl set-ntp true)",
        )
    else:
        yield Check("ok", "clock", f"now {stamp} (events carry this time; keep NTP on)")


def _routes(tracker: Tracker) -> Iterator[Check]:
    """Per canonical event: the vendors whose configuration takes it (routing only; whether a
    given event has what a vendor needs is ``postback send --dry-run``'s question)."""
    quiet = logging.getLogger("postback")  # the once-per-name routing warnings repeat these
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        lines = []
        for name in sorted(CANONICAL_EVENTS):
            route = tracker.explain(name)
            takes = [r.vendor for r in route.vendors.values() if r.status in ("routed", "skipped")]
            lines.append(f"{name} -> {', '.join(takes) or 'no vendor'}")
    finally:
        quiet.setLevel(level)
    for line in lines:
        yield Check("ok", "routes", line)

"""What every ``postback`` command shares: the consoles, the ``--config`` option, error
printing, tracker construction (with or without the vendors' secrets) and small parsers.

Output is literal: the consoles interpret no rich markup, so brackets in messages, paths and
user data (``[postback]``, ``postback[redis]``, ``[Errno 111]``) print as they are. Styling is
given explicitly with :class:`rich.text.Text`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from postback.config import CORE_HELP, parse_duration, read_config
from postback.config.env import apply_overrides, environ_without
from postback.errors import ConfigError, InvalidEvent, PostbackError
from postback.textmask import public_values
from postback.tracker import Tracker

__all__ = [
    "config_option",
    "console",
    "count_or_id",
    "err",
    "fail",
    "kv_pairs",
    "ms_iso",
    "parse_value",
    "queue_tracker",
    "since_ms",
    "styled",
    "tracker_for",
    "user_errors",
]

# markup=False, highlight=False: nothing a message contains is taken as markup or recoloured.
console = Console(soft_wrap=True, markup=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (postback.toml or pyproject.toml); default: $POSTBACK_CONFIG, "
    "./postback.toml, or ./pyproject.toml [tool.postback].",
)


#: A dead letter id or a row count: a queue's (SQLite's) 64-bit integer, at least 1; larger
#: would raise OverflowError from the queue instead of saying what is wrong.
count_or_id = click.IntRange(1, 2**63 - 1)


def styled(label: str, style: str, rest: str = "") -> Text:
    """``label`` in ``style`` followed by ``rest`` printed literally."""
    text = Text(label, style=style)
    text.append(rest)
    return text


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(styled("error:", "bold red", f" {message}"))
    sys.exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Print postback errors plainly and exit non-zero instead of a traceback."""
    try:
        yield
    except ConfigError as exc:
        fail(str(exc), 2)
    except (InvalidEvent, PostbackError) as exc:
        fail(str(exc), 1)


def tracker_for(
    config_path: Path | None, plugins: Sequence[object] = (), **overrides: Any
) -> Tracker:
    """A tracker for a command; ``overrides`` replace ``[postback]`` settings (a relative
    sqlite queue stays relative to the config file's directory), and win over their
    ``POSTBACK_*`` variables (the command needs them)."""
    if not overrides:
        return Tracker.from_config(config_path, plugins=plugins)
    from postback.integrations import tracker_with_overrides

    return tracker_with_overrides(config_path, overrides, plugins=plugins)


def queue_tracker(
    config_path: Path | None, vendors: Sequence[str] = (), **overrides: Any
) -> tuple[Tracker, list[str]]:
    """A tracker on the config's queue that builds only ``vendors`` (none by default), so that
    reading the local queue needs no vendor's secrets; and the names of every configured
    vendor (``[vendors.NAME]`` tables, enabled or not). For the commands that read or act on
    stored events: a ``sqlite://`` queue file that does not exist (a mistyped path, the wrong
    config) is a QueueError naming it, not a new empty queue reported empty."""
    from postback.integrations import config_with_overrides

    raw = config_with_overrides(config_path, overrides)
    found = raw.get("vendors")
    tables: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    # Vendors configured by POSTBACK_VENDORS__NAME__* variables alone count too (no file).
    made, _ = apply_overrides({}, list(CORE_HELP), lambda _: None, list(tables))
    from_env = made.get("vendors", {})
    configured = sorted(set(tables) | set(from_env))
    kept = {v: tables.get(v, {}) for v in vendors if v in configured}
    _, source, base_dir = read_config(config_path)
    # A POSTBACK_VENDORS__NAME__* variable of a vendor left out would make its table anew,
    # from that one setting: leave those variables out too.
    names = {v.lower().replace("-", "_") for v in kept}
    prefix = "POSTBACK_VENDORS__"
    environ = {
        k: v
        for k, v in environ_without(overrides).items()
        if not k.startswith(prefix) or k[len(prefix) :].lower().split("__")[0] in names
    }
    tracker = Tracker.from_raw(
        {**raw, "vendors": kept},
        source=source,
        base_dir=base_dir,
        environ=environ,
        create_queue=False,
    )
    return tracker, configured


def public_vendor_values(config_path: Path | None, tracker: Tracker) -> frozenset[str]:
    """The configured vendors' non-secret settings a reason shows as they are (an app id, a
    pixel id, an account): what ``deadletters list`` and ``show`` give ``mask_text`` as
    ``keep``. Read from the config as written (and its ``POSTBACK_VENDORS__*`` variables),
    because these commands build no vendor: building one needs its secrets, which reading the
    local queue must not. (:func:`postback.textmask.public_settings` reads built destinations
    instead, for a tracker that has them but maybe no config file.) Both apply one rule,
    :func:`postback.textmask.public_values`."""
    from postback.integrations import config_with_overrides

    classes = tracker.host.destinations
    raw = config_with_overrides(config_path, {})
    raw, _ = apply_overrides(raw, list(CORE_HELP), lambda _: None, list(classes))
    tables = raw.get("vendors")
    found: set[str] = set()
    for name, table in tables.items() if isinstance(tables, Mapping) else ():
        cls = classes.get(name)
        if cls is not None and isinstance(table, Mapping):
            found |= public_values(cls.settings_class, table)
    return frozenset(found)


def kv_pairs(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=what)
        out[key] = parse_value(value)
    return out


def parse_value(text: str) -> Any:
    """JSON when it parses as a list/dict/number/bool, else the plain string."""
    if text[:1] in "[{" or text in ("true", "false", "null"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def since_ms(value: str | None) -> int | None:
    """``--since``: an ISO date/time or a duration ago, as epoch milliseconds."""
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


def ms_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")

"""Web framework integrations, and what they share.

- :mod:`postback.integrations.flask`: the ``Postback`` Flask extension.
- :mod:`postback.integrations.asgi`: a Starlette/FastAPI lifespan, middleware and dependency
  around :class:`~postback.AsyncTracker`.
- :mod:`postback.integrations.django`: a Django app (settings, middleware, the
  ``postback_worker`` management command).

All three fill an event's ``user``/``context`` from the current request in the same way; that
logic, and its settings (:class:`RequestContextSettings`: proxy setup, per-field opt-out), live
in :mod:`postback.integrations._context`. This module adds the other shared pieces: turning
plugin names from settings into objects, loading a config with overrides (a worker forces
``workers = true``), and the worker loop behind ``flask postback worker`` and
``manage.py postback_worker`` with the check of their ``--stats-every`` (:func:`stats_interval`,
``postback worker``'s too). Importing it imports no web framework.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from postback.config import DEFAULT_QUEUE, read_config
from postback.config.env import environ_without
from postback.delivery.queue import sqlite_path
from postback.delivery.worker import run_worker_loop, stop_on_signals, tune_gc_for_delivery
from postback.errors import ConfigError, ConfigProblem
from postback.integrations._context import (
    RequestContext,
    RequestContextSettings,
    RequestInfo,
    current_request_context,
    extract_request_context,
    merge_request_context,
)
from postback.tracker import Tracker

__all__ = [
    "ConfigSource",
    "RequestContext",
    "RequestContextSettings",
    "RequestInfo",
    "config_with_overrides",
    "current_request_context",
    "extract_request_context",
    "merge_request_context",
    "resolve_path",
    "resolve_plugins",
    "run_worker",
    "stats_interval",
    "tracker_with_overrides",
]

ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | None


def resolve_plugins(specs: Iterable[object], *, where: str) -> list[object]:
    """In-process plugins from settings: objects as they are, strings imported.

    A string is a module path (``"myapp.postback_hooks"``) or ``"module:attribute"``.
    Raises :class:`~postback.ConfigError` naming ``where`` for any that cannot be imported.
    """
    if isinstance(specs, (str, bytes)):
        raise ConfigError(
            [
                ConfigProblem(
                    where,
                    "must be a list of plugins (module paths or objects), not a single string",
                )
            ]
        )
    plugins: list[object] = []
    problems: list[ConfigProblem] = []
    for spec in specs:
        if not isinstance(spec, str):
            plugins.append(spec)
            continue
        module_name, _, attribute = spec.partition(":")
        try:
            obj: object = importlib.import_module(module_name)
            for part in filter(None, attribute.split(".")):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            problems.append(
                ConfigProblem(where, f"cannot import plugin {spec!r}: {type(exc).__name__}: {exc}")
            )
            continue
        plugins.append(obj)
    if problems:
        raise ConfigError(problems)
    return plugins


def config_with_overrides(config: ConfigSource, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Read ``config`` (file, dict, or ``None`` for the default search) into a dict with
    ``[postback]`` settings overridden, keeping a relative ``sqlite://`` queue relative to the
    config file's directory as ``Tracker.from_config(path)`` would."""
    raw, source, base_dir = read_config(config)
    given = raw.get("postback")
    if given is not None and not isinstance(given, Mapping):  # not to be replaced silently
        raise ConfigError([ConfigProblem("postback", "must be a table")], source=source)
    core = dict(given or {})
    core.update(overrides)
    queue = core.get("queue", DEFAULT_QUEUE)
    if (
        isinstance(queue, str)
        and queue.startswith("sqlite:")
        and not queue.startswith("sqlite:///")
    ):
        core["queue"] = f"sqlite:///{sqlite_path(queue, base_dir)}"
    return {**raw, "postback": core}


def tracker_with_overrides(
    config: ConfigSource,
    overrides: Mapping[str, Any],
    *,
    plugins: Iterable[object] = (),
    transport: Any = None,
    load_entry_points: bool = True,
    create_queue: bool = True,
) -> Tracker:
    """A tracker from ``config`` with these ``[postback]`` settings fixed (as
    :func:`config_with_overrides`), whatever ``POSTBACK_*`` variables say of them: a worker
    command runs with the app's environment, where ``POSTBACK_WORKERS=false`` keeps the web
    processes from delivering, and must deliver all the same. ``create_queue``: as
    :meth:`Tracker.from_raw`."""
    raw = config_with_overrides(config, overrides)
    _, source, base_dir = read_config(config)
    return Tracker.from_raw(
        raw,
        source=source,
        base_dir=base_dir,
        plugins=plugins,
        transport=transport,
        load_entry_points=load_entry_points,
        environ=environ_without(overrides),
        create_queue=create_queue,
    )


def stats_interval(seconds: float) -> float:
    """``seconds`` as a ``--stats-every`` value, refused (``ValueError``, whose message each
    command shows under the option's name) when negative (stats at every turn of the loop,
    twice a second) or NaN (never due, so never printed). The one check of ``postback worker``,
    ``flask postback worker``, ``manage.py postback_worker`` and :func:`run_worker`."""
    if math.isnan(seconds) or seconds < 0:
        raise ValueError("must be 0 (never) or more seconds")
    return seconds


def run_worker(
    tracker: Tracker,
    *,
    stop: threading.Event | None = None,
    stats_every: float = 0.0,
    write: Callable[[str], None] = print,
    handle_signals: bool = True,
    tune_gc: bool = True,
    format_stats: Callable[[dict[str, dict[str, Any]]], str] = json.dumps,
) -> None:
    """Deliver from ``tracker``'s queue until SIGTERM/SIGINT (or ``stop`` is set), then finish
    the requests in flight and close it. What ``postback worker`` does, for framework CLIs.

    The tracker must have been built with ``workers = true``; with a ``sqlite://`` queue shared
    with web processes that have ``workers = false``, this process becomes the deliverer.
    ``tune_gc`` applies :func:`~postback.delivery.worker.tune_gc_for_delivery` (right for a
    process that only delivers, which is what this is for; pass False to leave the garbage
    collector alone). Every ``stats_every`` seconds it writes ``format_stats(tracker.stats())``
    (one JSON line by default); a negative or NaN ``stats_every`` is a ``ValueError``. The
    loop is :func:`postback.delivery.worker.run_worker_loop`, the one a ``workers = "process"``
    child runs too.
    """
    stats_interval(stats_every)
    stop = stop or threading.Event()
    with stop_on_signals(stop) if handle_signals else contextlib.nullcontext():
        if tune_gc:
            tune_gc_for_delivery()
        write(
            f"postback worker: delivering from {tracker.queue.url} to "
            f"{', '.join(tracker.destinations) or 'no vendor'}"
        )
        run_worker_loop(
            tracker,
            stop,
            every=stats_every,
            tick=lambda: write(format_stats(tracker.stats())),
        )
    write("postback worker: stopped")


def resolve_path(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """``path`` as given if absolute, else relative to ``root`` (a framework's app root)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(root) / p

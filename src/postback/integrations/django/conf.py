"""Django settings for postback, read when needed (never at import time).

``POSTBACK``
    The configuration: a dict of the ``postback.toml`` shape (``{"postback": {...},
    "vendors": {...}}``), or the path of a ``postback.toml`` / ``pyproject.toml`` (use an
    absolute path such as ``BASE_DIR / "postback.toml"``). Unset: the usual search
    (``$POSTBACK_CONFIG``, then ``./postback.toml``).
``POSTBACK_PLUGINS``
    In-process plugins, as import paths (``"myapp.attribution"``, ``"myapp.hooks:Listener"``)
    or objects.
``POSTBACK_REQUEST_CONTEXT``
    How the middleware reads the request context: ``{"trusted_proxy_hops": 1,
    "exclude": ["ip_address"]}`` (see :class:`~postback.integrations.RequestContextSettings`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings

from postback.config import build_config, read_config
from postback.errors import ConfigError, ConfigProblem
from postback.integrations import ConfigSource, resolve_plugins, tracker_with_overrides
from postback.integrations._context import RequestContextSettings
from postback.plugins import PluginHost
from postback.tracker import Tracker

__all__ = [
    "build_tracker",
    "check_config",
    "check_settings",
    "config_source",
    "plugins",
    "request_context_settings",
]


def config_source() -> ConfigSource:
    """``settings.POSTBACK`` as a config source for :meth:`Tracker.from_config`."""
    value = getattr(settings, "POSTBACK", None)
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(Path(value).expanduser())
    raise ConfigError(
        [
            ConfigProblem(
                "POSTBACK",
                "must be a dict of the postback.toml shape ({'postback': {...}, "
                f"'vendors': {{...}}}}) or the path of a config file, got {type(value).__name__}",
            )
        ]
    )


def plugins() -> list[object]:
    """``settings.POSTBACK_PLUGINS``, imported."""
    return resolve_plugins(
        getattr(settings, "POSTBACK_PLUGINS", None) or (), where="POSTBACK_PLUGINS"
    )


def request_context_settings() -> RequestContextSettings:
    """``settings.POSTBACK_REQUEST_CONTEXT``, validated."""
    return RequestContextSettings.coerce(
        getattr(settings, "POSTBACK_REQUEST_CONTEXT", None), where="POSTBACK_REQUEST_CONTEXT"
    )


def build_tracker(**overrides: Any) -> Tracker:
    """A new tracker from the settings; ``overrides`` replace ``[postback]`` settings (the
    worker command passes ``workers=True``)."""
    source = config_source()
    if overrides:  # they win over POSTBACK_* variables too (the worker must deliver)
        return tracker_with_overrides(source, overrides, plugins=plugins())
    return Tracker.from_config(source, plugins=plugins())


def check_settings() -> list[ConfigProblem]:
    """Problems with the Django-side settings (cheap; no configuration file is read)."""
    problems: list[ConfigProblem] = []
    for check in (config_source, plugins, request_context_settings):
        try:
            check()
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def check_config() -> list[ConfigProblem]:
    """Problems with the postback configuration itself, as ``Tracker.from_config`` would find
    them (unknown keys, missing secrets, vendors not installed), without opening the queue."""
    try:
        raw, source, base_dir = read_config(config_source())
        host = PluginHost(plugins())
        broken = {name: info.error for name, info in host.infos.items() if info.error}
        build_config(
            raw,
            host.destinations,
            source=source,
            base_dir=base_dir,
            broken=broken,
            queues=host.queues,
        )
    except ConfigError as exc:
        return exc.problems
    return []

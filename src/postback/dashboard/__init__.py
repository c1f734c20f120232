"""A small web dashboard over a tracker's queue: lanes per vendor, recent deliveries, event
lookup, dead letters (show, replay, discard) and the config in use, secrets redacted.

One job per module:

- :mod:`~postback.dashboard.app`: :class:`Dashboard`, routing and rendering (framework-free)
- :mod:`~postback.dashboard.views`: what each page shows, masked
- :mod:`~postback.dashboard.lanes`: per-vendor figures and the delivery rate
- :mod:`~postback.dashboard.lookup`: where one event stands (the seam a ledger will replace)
- :mod:`~postback.dashboard.sqlite_view`: read-only queries on a SQLite queue file
- :mod:`~postback.dashboard.masking`: personal data masked, secrets redacted
- :mod:`~postback.dashboard.recorder`: recent deliveries and attributions (a plugin)
- :mod:`~postback.dashboard.csrf`, :mod:`~postback.dashboard.http`: tokens, request/response
- :mod:`~postback.dashboard.wsgi`, :mod:`~postback.dashboard.asgi`,
  :mod:`~postback.dashboard.frameworks`: serving and mounting (loopback only without auth)
- the ``postback ui`` command lives with the other commands, in :mod:`postback.cli.ui`

Needs Jinja2: ``pip install 'postback[ui]'``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postback.dashboard.app import Dashboard
    from postback.dashboard.asgi import asgi_app
    from postback.dashboard.frameworks import django_urls, flask_blueprint
    from postback.dashboard.recorder import Recorder
    from postback.dashboard.wsgi import LoopbackOnly, serve, wsgi_app

__all__ = [
    "Dashboard",
    "LoopbackOnly",
    "Recorder",
    "asgi_app",
    "django_urls",
    "flask_blueprint",
    "serve",
    "wsgi_app",
]

# Imported on first use: the CLI imports postback.cli.ui on every start.
_HOME = {
    "Dashboard": "app",
    "asgi_app": "asgi",
    "django_urls": "frameworks",
    "flask_blueprint": "frameworks",
    "Recorder": "recorder",
    "LoopbackOnly": "wsgi",
    "serve": "wsgi",
    "wsgi_app": "wsgi",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'postback.dashboard' has no attribute {name!r}")
    return getattr(importlib.import_module(f"postback.dashboard.{module}"), name)

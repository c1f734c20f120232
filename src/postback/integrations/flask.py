"""The Flask extension: ``Postback(app)`` or ``postback.init_app(app)``, then ``postback.track()``.

::

    from flask import Flask
    from postback.integrations.flask import Postback

    app = Flask(__name__)
    app.config["POSTBACK_CONFIG"] = "postback.toml"        # or app.config["POSTBACK"] = {...}
    postback = Postback(app)

    @app.post("/checkout")
    def checkout():
        postback.track("purchase", user={"email": "a@b.co"}, value=49.99, currency="USD")
        return "ok"

Settings (``app.config``):

``POSTBACK``
    The configuration as a dict of the ``postback.toml`` shape (``{"postback": {...},
    "vendors": {...}}``).
``POSTBACK_CONFIG``
    Or a path to ``postback.toml`` / ``pyproject.toml``, relative to ``app.root_path``. With
    neither, the usual search applies (``$POSTBACK_CONFIG``, then ``./postback.toml``).
``POSTBACK_PLUGINS``
    In-process plugins: objects, or import paths such as ``"myapp.attribution"``.
``POSTBACK_REQUEST_CONTEXT``
    How the request context is read: ``{"trusted_proxy_hops": 1, "exclude": ["ip_address"]}``
    (see :class:`~postback.integrations.RequestContextSettings`); ``{"consent_reader": fn}``
    reads the user's consent from the request (``fn(flask.request) -> {"ads": bool}``).
    ``Sec-GPC: 1`` opts out of the purposes ``[consent] gpc`` names (``ads`` by default).

Keyword arguments of :class:`Postback` (``config``, ``plugins``, ``request_context``) take
precedence over ``app.config``. The tracker is created in ``init_app``, so a bad configuration
fails at start-up, and so it exists before gunicorn ``--preload`` forks (the tracker starts its
threads lazily, in each worker). At interpreter exit the core's exit hook flushes it for
``[postback] exit_timeout`` seconds; what is left stays in the ``sqlite://`` queue.
``flask postback worker`` runs delivery for deployments with ``workers = false``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import click
import flask
from flask.cli import with_appcontext

from postback.delivery.engine import FlushReport
from postback.integrations import (
    ConfigSource,
    resolve_path,
    resolve_plugins,
    run_worker,
    stats_interval,
    tracker_with_overrides,
)
from postback.integrations._context import (
    RequestContext,
    RequestContextSettings,
    RequestInfo,
    extract_request_context,
    gpc_header,
    merge_request_consent,
    merge_request_context,
    read_consent,
)
from postback.routing import Explanation
from postback.tracker import Tracker

__all__ = ["Postback"]

EXTENSION_KEY = "postback"
_CACHE_KEY = "postback.request_context"


@attrs.define
class _AppState:
    """What the extension keeps per app in ``app.extensions["postback"]``."""

    tracker: Tracker
    request_context: RequestContextSettings
    config: ConfigSource
    plugins: list[object]
    load_entry_points: bool
    transport: Any


class Postback:
    """Flask extension owning one :class:`~postback.Tracker` per app.

    ``tracker`` injects a ready tracker instead (tests, or one tracker shared with other code);
    ``transport`` replaces the HTTP transport as in :meth:`Tracker.from_config`.
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        config: ConfigSource = None,
        plugins: Iterable[object] = (),
        request_context: RequestContextSettings | Mapping[str, Any] | None = None,
        transport: Any = None,
        load_entry_points: bool = True,
        tracker: Tracker | None = None,
    ) -> None:
        self._config = config
        self._plugins = list(plugins)
        self._request_context = request_context
        self._transport = transport
        self._load_entry_points = load_entry_points
        self._tracker = tracker
        self._app: weakref.ref[flask.Flask] | None = None
        if app is not None:
            self._app = weakref.ref(app)
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Create the app's tracker from its config and register ``flask postback``."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"postback is already set up for app {app.name!r}; call init_app() once per app "
                "(to start over in tests, create a new app)"
            )
        cfg = app.config
        config: ConfigSource = self._config
        if config is None:
            if cfg.get("POSTBACK") is not None:
                config = cfg["POSTBACK"]
            elif cfg.get("POSTBACK_CONFIG"):
                config = os.fspath(resolve_path(cfg["POSTBACK_CONFIG"], app.root_path))
        plugins = self._plugins + resolve_plugins(
            cfg.get("POSTBACK_PLUGINS") or (), where="POSTBACK_PLUGINS"
        )
        settings = RequestContextSettings.coerce(
            self._request_context
            if self._request_context is not None
            else cfg.get("POSTBACK_REQUEST_CONTEXT"),
            where="POSTBACK_REQUEST_CONTEXT",
        )
        tracker = self._tracker or Tracker.from_config(
            config,
            plugins=plugins,
            transport=self._transport,
            load_entry_points=self._load_entry_points,
        )
        app.extensions[EXTENSION_KEY] = _AppState(
            tracker, settings, config, plugins, self._load_entry_points, self._transport
        )
        app.cli.add_command(_cli)

    # --- per-app state ---------------------------------------------------------------------------

    def _state(self) -> _AppState:
        app: flask.Flask | None
        if flask.has_app_context():
            app = flask.current_app
        else:
            app = self._app() if self._app is not None else None
            if app is None:
                raise RuntimeError(
                    "postback.track() outside an app context, and the extension was set up "
                    "with init_app(): call it inside 'with app.app_context():' or a request"
                )
        try:
            state: _AppState = app.extensions[EXTENSION_KEY]
        except KeyError:
            raise RuntimeError(
                f"postback is not set up for app {app.name!r}: call postback.init_app(app)"
            ) from None
        return state

    @property
    def tracker(self) -> Tracker:
        """The current app's tracker."""
        return self._state().tracker

    # --- the API -------------------------------------------------------------------------------

    def track(
        self,
        name: str,
        *,
        user: Mapping[str, Any] | None = None,
        value: float | int | str | Any = None,
        currency: str | None = None,
        event_id: str | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        vendors: Mapping[str, Any] | None = None,
        consent: Mapping[str, bool] | None = None,
    ) -> str:
        """:meth:`Tracker.track` with the current request's context filled in.

        In a request, the client's ip (as ``POSTBACK_REQUEST_CONTEXT`` trusts proxies), user
        agent, url, referrer, click ids, utm parameters and pixel cookies fill whatever
        ``user``/``context`` leave out; keys you pass win (``None`` sends nothing). ``Sec-GPC:
        1`` and the ``consent_reader`` fill the purposes ``consent`` leaves out.
        """
        state = self._state()
        if flask.has_request_context():
            derived = _request_context(state.request_context)
            user, context = merge_request_context(derived, user, context, state.tracker.host.fields)
            consent = merge_request_consent(derived, consent, state.tracker.config.consent)
        return state.tracker.track(
            name,
            user=user,
            value=value,
            currency=currency,
            event_id=event_id,
            timestamp=timestamp,
            context=context,
            properties=properties,
            vendors=vendors,
            consent=consent,
        )

    def explain(self, name: str, **fields: Any) -> Explanation:
        """What :meth:`track` would do with these arguments (the same keywords), per
        configured vendor, with the current request's context filled in; queues nothing."""
        state = self._state()
        if flask.has_request_context():
            derived = _request_context(state.request_context)
            user, context = merge_request_context(
                derived, fields.get("user"), fields.get("context"), state.tracker.host.fields
            )
            consent = merge_request_consent(
                derived, fields.get("consent"), state.tracker.config.consent
            )
            fields = {**fields, "user": user, "context": context, "consent": consent}
        return state.tracker.explain(name, **fields)

    def flush(self, timeout: float | None = 10.0) -> FlushReport:
        """Deliver what is queued, waiting at most ``timeout`` seconds."""
        return self._state().tracker.flush(timeout)

    def close(self, timeout: float | None = 10.0) -> FlushReport | None:
        """Flush for at most ``timeout`` seconds and stop the app's tracker.

        Not needed at shutdown (the exit hook does it); for tests and app factories that
        create and drop apps.
        """
        return self._state().tracker.close(timeout)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-vendor counters and queue depth of the current app's tracker."""
        return self._state().tracker.stats()


def request_info(request: flask.Request, settings: RequestContextSettings) -> RequestInfo:
    """What a Flask (Werkzeug) request tells about its client."""
    headers = request.headers
    return RequestInfo(
        remote_addr=request.remote_addr,
        forwarded=headers.getlist(settings.forwarded_header),
        user_agent=headers.get("User-Agent"),
        url=request.url,
        referrer=headers.get("Referer"),
        accept_language=headers.get("Accept-Language"),
        query=request.args.items(multi=True),
        cookies=request.cookies,
        gpc=gpc_header(headers.get("Sec-GPC")),
        consent=read_consent(settings, request),
    )


def _request_context(settings: RequestContextSettings) -> RequestContext:
    """The current request's context, extracted once per request."""
    environ = flask.request.environ
    cached = environ.get(_CACHE_KEY)
    if not isinstance(cached, RequestContext):
        cached = extract_request_context(request_info(flask.request, settings), settings)
        environ[_CACHE_KEY] = cached
    return cached


# --------------------------------------------------------------------------------------------
# flask postback ...


@click.group("postback", help="postback: deliver and inspect conversion events.")
def _cli() -> None:
    pass


@_cli.command("worker")
@click.option("--stats-every", default=0.0, help="Print stats every N seconds (0: never).")
@with_appcontext
def _worker(stats_every: float) -> None:
    """Deliver queued events until SIGTERM/SIGINT (for web processes with workers = false)."""
    try:
        stats_interval(stats_every)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--stats-every") from None
    state: _AppState | None = flask.current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise click.ClickException("postback is not set up for this app: call Postback(app)")
    tracker = tracker_with_overrides(
        state.config,
        {"workers": True},
        plugins=state.plugins,
        transport=state.transport,
        load_entry_points=state.load_entry_points,
    )
    run_worker(tracker, stats_every=stats_every, write=lambda line: click.echo(line, err=True))

"""Starlette and FastAPI: a lifespan that owns an :class:`~postback.AsyncTracker`, a middleware
that gives ``await tracker.track(...)`` the request's context, and a dependency to reach it.

::

    from fastapi import Depends, FastAPI
    from postback import AsyncTracker
    from postback.integrations.asgi import PostbackMiddleware, get_tracker, postback_lifespan

    app = FastAPI(lifespan=postback_lifespan("postback.toml"))
    app.add_middleware(PostbackMiddleware, trusted_proxy_hops=1)

    @app.post("/checkout")
    async def checkout(tracker: AsyncTracker = Depends(get_tracker)):
        await tracker.track("purchase", user={"email": "a@b.co"}, value=49.99, currency="USD")

The lifespan creates the tracker at start-up (a bad configuration fails there), stores it as
``app.state.postback`` and closes it at shutdown, flushing for at most ``close_timeout``
seconds. The middleware is plain ASGI (no ``BaseHTTPMiddleware``): per request it sets one
contextvar and parses nothing; headers, query and cookies are read only if the endpoint tracks
an event. Starlette copies contextvars into the thread pool, so a synchronous ``def`` endpoint
can call ``tracker.track_blocking(...)`` and gets the same context.

A note on proxies: uvicorn's ``--proxy-headers`` (on by default, trusting ``127.0.0.1``)
already rewrites the client address from ``X-Forwarded-For``. With it on and your proxy in
``--forwarded-allow-ips``, keep ``trusted_proxy_hops = 0`` here; otherwise run uvicorn with
``--no-proxy-headers`` and configure the proxy setup here (see the FastAPI how-to).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, quote_from_bytes

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from postback.aio import AsyncTracker
from postback.integrations._context import (
    LazyRequestContext,
    RequestContextSettings,
    RequestInfo,
    bind_request_context,
    gpc_header,
    read_consent,
)

__all__ = ["PostbackMiddleware", "get_tracker", "postback_lifespan", "request_info"]

STATE_ATTRIBUTE = "postback"
#: The scope key where the middleware notes the outermost app it served: a mounted sub-app's
#: lifespan never runs, so its endpoints find the tracker on that app's state.
_OUTER_APP = "postback.app"


def postback_lifespan(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    plugins: Iterable[object] = (),
    transport: Any = None,
    load_entry_points: bool = True,
    close_timeout: float | None = 10.0,
    tracker: AsyncTracker | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan for ``Starlette(lifespan=...)`` / ``FastAPI(lifespan=...)``.

    Arguments are those of :meth:`AsyncTracker.from_config`; ``tracker`` hands over a ready
    one instead (it is still closed at shutdown). To combine with your own lifespan, enter it
    inside yours: ``async with postback_lifespan(cfg)(app): ... yield``.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        owned = tracker or AsyncTracker.from_config(
            config, plugins=plugins, transport=transport, load_entry_points=load_entry_points
        )
        state = getattr(app, "state", None)
        if state is not None:
            setattr(state, STATE_ATTRIBUTE, owned)
        try:
            yield
        finally:
            await owned.close(close_timeout)

    return lifespan


def get_tracker(request: HTTPConnection) -> AsyncTracker:
    """The app's tracker; a FastAPI dependency: ``tracker: AsyncTracker = Depends(get_tracker)``.

    Works in Starlette endpoints too: ``get_tracker(request)``, and in the endpoints of a
    mounted sub-app (``app.mount("/v2", sub)``), whose own lifespan never runs: with
    :class:`PostbackMiddleware` on the outer app, the outer app's tracker.
    """
    tracker = getattr(request.app.state, STATE_ATTRIBUTE, None)
    if not isinstance(tracker, AsyncTracker):
        outer = getattr(request.scope.get(_OUTER_APP), "state", None)
        tracker = getattr(outer, STATE_ATTRIBUTE, None)
    if not isinstance(tracker, AsyncTracker):
        raise RuntimeError(
            "no postback tracker on this app: create the app with "
            "lifespan=postback_lifespan(...) (and run it with a server that runs lifespans, "
            "or use TestClient as a context manager)"
        )
    return tracker


class PostbackMiddleware:
    """Binds the request's context for ``await tracker.track(...)`` in endpoints.

    Takes the settings of :class:`~postback.integrations.RequestContextSettings` as keywords
    (``exclude``, ``trusted_proxy_hops``, ``trusted_proxies``, ``forwarded_header``,
    ``consent_reader``: a function of the request's ``HTTPConnection`` returning
    ``{purpose: bool}``), or a ready object / mapping as ``request_context``. ``Sec-GPC: 1``
    opts out of the purposes ``[consent] gpc`` names (``ads`` by default).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        request_context: RequestContextSettings | Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self.app = app
        if request_context is not None and settings:
            raise TypeError("pass either request_context or individual settings, not both")
        self.settings = RequestContextSettings.coerce(
            request_context if request_context is not None else settings,
            where="PostbackMiddleware",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope.setdefault(_OUTER_APP, scope.get("app"))  # for get_tracker in mounted sub-apps
        settings = self.settings
        lazy = LazyRequestContext(settings, lambda: request_info(scope, settings))
        with bind_request_context(lazy):
            await self.app(scope, receive, send)


def request_info(scope: Scope, settings: RequestContextSettings) -> RequestInfo:
    """What an ASGI connection scope tells about its client.

    A query string's bytes that are not ASCII (uvicorn refuses those that are not UTF-8;
    other servers pass them on, and Starlette's ``URL`` raises on them) are percent-encoded
    for the page URL; a query parameter whose name or value is not UTF-8, raw or
    percent-encoded, is left out of the click ids and ``utm_*`` values."""
    query_string: bytes = scope.get("query_string", b"")
    if not query_string.isascii():
        query_string = quote_from_bytes(query_string, safe=_QUERY_SAFE).encode("ascii")
        scope = {**scope, "query_string": query_string}
    conn = HTTPConnection(scope)
    headers = conn.headers
    client = conn.client
    return RequestInfo(
        remote_addr=client.host if client else None,
        forwarded=headers.getlist(settings.forwarded_header),
        user_agent=headers.get("user-agent"),
        url=str(conn.url),
        referrer=headers.get("referer"),
        accept_language=headers.get("accept-language"),
        query=_query(query_string.decode("ascii", "replace")),
        cookies=conn.cookies,
        gpc=gpc_header(headers.get("sec-gpc")),
        consent=read_consent(settings, conn),
    )


#: What stays as it is when a query string's other bytes are percent-encoded: every printable
#: ASCII character (``%`` too: what was percent-encoded stays so).
_QUERY_SAFE = "".join(map(chr, range(0x21, 0x7F)))


def _query(query: str) -> list[tuple[str, str]]:
    """The parameters of a query string (ASCII, percent-encoded), those whose name or value is
    not UTF-8 left out (``parse_qsl`` would give U+FFFD for each byte)."""
    params: list[tuple[str, str]] = []
    for part in query.split("&"):
        try:
            params += parse_qsl(part, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            continue
    return params

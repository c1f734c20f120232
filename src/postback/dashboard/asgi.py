"""The dashboard as an ASGI app (FastAPI, Starlette, Django's ASGI handler), behind the app's
own ``authorize(scope) -> bool`` check. Pages are rendered on a worker thread: they read the
queue, which may block on its file or its Redis connection."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from postback.dashboard.app import Dashboard
from postback.dashboard.http import (
    MAX_FORM_BYTES,
    Request,
    Response,
    parse_cookies,
    parse_form,
    parse_query,
)

__all__ = ["asgi_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_FORM_BYTES:
            chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _request(scope: Scope, body: bytes) -> Request:
    headers = _headers(scope)
    root = str(scope.get("root_path", "")).rstrip("/")
    path = str(scope.get("path", "/"))
    if root and path.startswith(root):
        path = path[len(root) :]
    return Request(
        method=str(scope.get("method", "GET")),
        path=path or "/",
        prefix=root,
        query=parse_query(scope.get("query_string", b"").decode("latin-1")),
        form=parse_form(body, headers.get("content-type")),
        cookies=parse_cookies(headers.get("cookie")),
        origin=headers.get("origin"),
        host=headers.get("host", ""),
    )


async def _send(response: Response, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(k.lower().encode(), v.encode()) for k, v in response.all_headers()],
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def asgi_app(
    dashboard: Dashboard, *, authorize: Callable[[Scope], bool | Awaitable[bool]]
) -> AsgiApp:
    """An ASGI app serving ``dashboard``; every request must pass ``authorize(scope)`` (e.g.
    ``lambda scope: scope["user"].is_authenticated`` behind Starlette's
    ``AuthenticationMiddleware``; an ``async def`` is awaited), else it gets 403."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        allowed = authorize(scope)
        if inspect.isawaitable(allowed):  # an async check: its coroutine object is truthy
            allowed = await allowed
        if not allowed:
            await _send(Response(403, b"forbidden", "text/plain; charset=utf-8"), send)
            return
        body = await _body(receive) if scope.get("method") == "POST" else b""
        response = await asyncio.to_thread(dashboard.handle, _request(scope, body))
        await _send(response, send)

    return app

"""The dashboard as a WSGI app, and the loopback server ``postback ui`` runs it on.

:func:`wsgi_app` takes the app's own ``authorize(environ) -> bool`` check: there is no way to
build a mountable dashboard without one. :func:`serve` runs the stdlib's threading WSGI server
and refuses any address but loopback, since it has no authentication of its own; it also
answers only requests addressed to a loopback name (the ``Host`` header), so that a web page
at another name resolving to 127.0.0.1 (DNS rebinding) cannot read it or post its forms.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from postback.dashboard.app import Dashboard
from postback.dashboard.http import Request, Response, parse_cookies, parse_form, parse_query

__all__ = [
    "LoopbackOnly",
    "addressed_to_loopback",
    "check_loopback",
    "is_loopback",
    "serve",
    "wsgi_app",
]

log = logging.getLogger("postback.dashboard")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_REASONS = {
    200: "OK",
    303: "See Other",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    500: "Internal Server Error",
}


class LoopbackOnly(ValueError):
    """The dashboard was asked to listen on an address other machines can reach."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_loopback(host: str) -> None:
    """Raise :class:`LoopbackOnly`, saying what to do instead, unless ``host`` is loopback."""
    if not is_loopback(host):
        raise LoopbackOnly(
            f"the dashboard has no login of its own, so it only listens on loopback "
            f"(127.0.0.1, ::1), not {host!r}; to reach it from elsewhere, use an SSH tunnel, "
            "or mount it into your app behind its authentication (docs/how-to/dashboard.md)"
        )


def addressed_to_loopback(host_header: str) -> bool:
    """Whether a request's ``Host`` (name and port) names this machine's loopback:
    ``localhost`` or a name under it (RFC 6761), or a loopback address. A browser sends the
    name of the page's origin, so a page at another name is refused even when that name
    resolves to 127.0.0.1 (DNS rebinding)."""
    if host_header.startswith("["):
        name = host_header[: host_header.find("]") + 1]
    else:
        name = host_header.partition(":")[0]
    name = name.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def _request(environ: dict[str, Any]) -> Request:
    body = b""
    if environ.get("REQUEST_METHOD", "GET").upper() == "POST":
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), 64 * 1024)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length else b""
    return Request(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=environ.get("PATH_INFO") or "/",
        prefix=(environ.get("SCRIPT_NAME") or "").rstrip("/"),
        query=parse_query(environ.get("QUERY_STRING", "")),
        form=parse_form(body, environ.get("CONTENT_TYPE")),
        cookies=parse_cookies(environ.get("HTTP_COOKIE")),
        origin=environ.get("HTTP_ORIGIN"),
        host=environ.get("HTTP_HOST", ""),
    )


def _write(response: Response, start_response: Callable[..., Any]) -> list[bytes]:
    status = f"{response.status} {_REASONS.get(response.status, 'Unknown')}"
    start_response(status, response.all_headers())
    return [response.body]


def wsgi_app(dashboard: Dashboard, *, authorize: Callable[[dict[str, Any]], bool]) -> WsgiApp:
    """A WSGI app serving ``dashboard``; each request must pass ``authorize(environ)`` (the
    app's own login check), else it gets 403. Mount it with your framework's dispatcher."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not authorize(environ):
            return _write(Response(403, b"forbidden", "text/plain; charset=utf-8"), start_response)
        return _write(dashboard.handle(_request(environ)), start_response)

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ui: " + format, *args)


def serve(dashboard: Dashboard, host: str = "127.0.0.1", port: int = 8095) -> WSGIServer:
    """A started-but-not-serving server for ``dashboard`` on loopback (call
    ``serve_forever()``); raises :class:`LoopbackOnly` for any other address."""
    check_loopback(host)
    server_class: type[_Server] = _Server6 if ":" in host.strip("[]") else _Server
    dashboard_app = wsgi_app(dashboard, authorize=lambda environ: True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not addressed_to_loopback(environ.get("HTTP_HOST", "")):
            port = environ.get("SERVER_PORT", "")
            body = (
                "This dashboard only answers requests addressed to localhost, 127.0.0.1 or "
                f"[::1]: open http://127.0.0.1:{port}/ (a page at another name that resolves "
                "here is refused).\n"
            ).encode()
            return _write(Response(403, body, "text/plain; charset=utf-8"), start_response)
        return dashboard_app(environ, start_response)

    return make_server(
        host.strip("[]"), port, app, server_class=server_class, handler_class=_QuietHandler
    )

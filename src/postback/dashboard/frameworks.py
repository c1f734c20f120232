"""Mount the dashboard into a Flask app (a blueprint) or a Django project (URL patterns),
behind the app's own ``authorize`` check; neither framework is imported until asked for."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from postback.dashboard.app import Dashboard
from postback.dashboard.http import Request, Response, parse_cookies, parse_form, parse_query

__all__ = ["django_urls", "flask_blueprint"]


async def _awaited(answer: Awaitable[Any]) -> Any:
    return await answer


def flask_blueprint(
    dashboard: Dashboard,
    *,
    authorize: Callable[[], bool | Awaitable[bool]],
    name: str = "postback_dashboard",
) -> Any:
    """A Flask blueprint serving ``dashboard``; register it with a ``url_prefix``. Every
    request must pass ``authorize()`` (called inside the request, e.g. checking
    ``flask_login.current_user``; an ``async def`` is awaited, as Flask runs async views),
    else 403."""
    from flask import Blueprint, abort, current_app, make_response, request

    bp = Blueprint(name, __name__)

    def view(rest: str = "") -> Any:
        allowed = authorize()
        if inspect.isawaitable(allowed):  # an async check: its coroutine object is truthy
            allowed = current_app.async_to_sync(_awaited)(allowed)
        if not allowed:
            abort(403)
        rel = "/" + rest
        full = request.path
        mount = full[: len(full) - len(rel)] if full.endswith(rel) else full.rstrip("/")
        response = dashboard.handle(
            Request(
                method=request.method,
                path=rel,
                prefix=(request.script_root + mount).rstrip("/"),
                query=parse_query(request.query_string.decode("latin-1")),
                form=parse_form(request.get_data(cache=False)[: 64 * 1024], request.content_type),
                cookies=parse_cookies(request.headers.get("Cookie")),
                origin=request.headers.get("Origin"),
                host=request.host,
            )
        )
        return _flask_response(make_response, response)

    bp.add_url_rule("/", "index", view, methods=["GET", "POST"])
    bp.add_url_rule("/<path:rest>", "page", view, methods=["GET", "POST"])
    return bp


def _flask_response(make_response: Any, response: Response) -> Any:
    out = make_response(response.body, response.status)
    out.headers.clear()
    for key, value in response.all_headers():
        out.headers.add(key, value)
    return out


def django_urls(
    dashboard: Dashboard, *, authorize: Callable[[Any], bool | Awaitable[bool]]
) -> list[Any]:
    """URL patterns serving ``dashboard``: ``path("postback/", include(django_urls(...)))``.
    Every request must pass ``authorize(request)`` (e.g. ``lambda r: r.user.is_staff``; an
    ``async def`` is awaited), else 403. The dashboard checks its own CSRF token, so Django's
    middleware is told not to."""
    from asgiref.sync import async_to_sync
    from django.http import HttpResponse, HttpResponseForbidden
    from django.urls import re_path
    from django.views.decorators.csrf import csrf_exempt

    def view(request: Any, rest: str = "") -> Any:
        allowed = authorize(request)
        if inspect.isawaitable(allowed):  # an async check: its coroutine object is truthy
            allowed = async_to_sync(_awaited)(allowed)
        if not allowed:
            return HttpResponseForbidden("forbidden")
        full = request.path
        prefix = full[: len(full) - len(rest)] if rest and full.endswith(rest) else full
        response = dashboard.handle(
            Request(
                method=request.method,
                path="/" + rest,
                prefix=prefix.rstrip("/"),
                query=parse_query(request.META.get("QUERY_STRING", "")),
                form=parse_form(request.body[: 64 * 1024], request.META.get("CONTENT_TYPE")),
                cookies=dict(request.COOKIES),
                origin=request.META.get("HTTP_ORIGIN"),
                host=request.get_host(),
            )
        )
        out = HttpResponse(response.body, status=response.status)
        for key, value in response.all_headers():
            out.headers[key] = value  # at most one Set-Cookie per response
        return out

    exempt: Any = csrf_exempt(view)
    return [re_path(r"^(?P<rest>.*)$", exempt, name="postback-dashboard")]

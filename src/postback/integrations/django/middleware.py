"""``PostbackMiddleware``: makes the current request's context available to ``track()``.

Add ``"postback.integrations.django.middleware.PostbackMiddleware"`` to ``MIDDLEWARE``. It works
in sync and async stacks (WSGI and ASGI) and costs one contextvar per request: headers, query
and cookies are read only when a view tracks an event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost, TooManyFieldsSent
from django.http import HttpRequest, HttpResponseBase

from postback.integrations._context import (
    LazyRequestContext,
    RequestContextSettings,
    RequestInfo,
    bind_request_context,
    gpc_header,
    read_consent,
)
from postback.integrations.django.conf import request_context_settings

__all__ = ["PostbackMiddleware", "request_info"]


class PostbackMiddleware:
    """Bind each request's context (``settings.POSTBACK_REQUEST_CONTEXT``) while it is handled."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.settings = request_context_settings()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        with bind_request_context(self._lazy(request)):
            return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        with bind_request_context(self._lazy(request)):
            return await get_response(request)

    def _lazy(self, request: HttpRequest) -> LazyRequestContext:
        return lazy_context(request, self.settings)


_ATTRIBUTE = "_postback_request_context"


def lazy_context(request: HttpRequest, settings: RequestContextSettings) -> LazyRequestContext:
    """The request's context, read at most once per request (the middleware and
    ``track(request=...)`` share it, so the ``consent_reader`` runs once)."""
    lazy = getattr(request, _ATTRIBUTE, None)
    if not isinstance(lazy, LazyRequestContext):
        lazy = LazyRequestContext(settings, lambda: request_info(request, settings))
        setattr(request, _ATTRIBUTE, lazy)
    return lazy


def request_info(request: HttpRequest, settings: RequestContextSettings) -> RequestInfo:
    """What a Django request tells about its client."""
    meta = request.META
    header_key = "HTTP_" + settings.forwarded_header.upper().replace("-", "_")
    forwarded = meta.get(header_key)
    try:
        url: str | None = request.build_absolute_uri()
    except DisallowedHost:  # a Host header outside ALLOWED_HOSTS: no trustworthy URL
        url = None
    try:
        query = [(key, v) for key, values in request.GET.lists() for v in values]
    except TooManyFieldsSent:  # over DATA_UPLOAD_MAX_NUMBER_FIELDS: the view decides, not us
        query = parse_qsl(meta.get("QUERY_STRING", ""), keep_blank_values=True)
    return RequestInfo(
        remote_addr=meta.get("REMOTE_ADDR"),
        forwarded=[forwarded] if forwarded else [],
        user_agent=meta.get("HTTP_USER_AGENT"),
        url=url,
        referrer=meta.get("HTTP_REFERER"),
        accept_language=meta.get("HTTP_ACCEPT_LANGUAGE"),
        query=query,
        cookies=request.COOKIES,
        gpc=gpc_header(meta.get("HTTP_SEC_GPC")),
        consent=read_consent(settings, request),
    )

"""Views that track events with postback's Django helpers."""

from __future__ import annotations

import os

from django.http import HttpRequest, JsonResponse

from postback.integrations.django import atrack, track


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def buy(request: HttpRequest) -> JsonResponse:
    event_id = track(
        "purchase",
        user={"email": "buyer@example.com"},
        value=49.99,
        currency="USD",
        event_id=request.GET.get("id"),
    )
    return JsonResponse({"event_id": event_id, "pid": os.getpid()})


async def abuy(request: HttpRequest) -> JsonResponse:
    event_id = await atrack(
        "purchase",
        user={"email": "buyer@example.com"},
        value=5,
        currency="EUR",
        event_id=request.GET.get("id"),
    )
    return JsonResponse({"event_id": event_id})


def explicit(request: HttpRequest) -> JsonResponse:
    event_id = track(
        "purchase",
        user={"email": "buyer@example.com", "ip_address": "198.51.100.1", "user_agent": None},
        value=1,
        currency="USD",
        context={"utm_source": "explicit"},
    )
    return JsonResponse({"event_id": event_id})


def with_request(request: HttpRequest) -> JsonResponse:
    """Tracks outside the middleware's binding, passing the request explicitly."""
    from postback.integrations._context import bind_request_context

    with bind_request_context(None):
        event_id = track("sign_up", request=request, user={"user_id": "u-7"})
    return JsonResponse({"event_id": event_id})


def checkout(request: HttpRequest) -> JsonResponse:
    """Reads nothing from the query string itself (the order is in the body)."""
    event_id = track("purchase", user={"email": "buyer@example.com"}, value=3, currency="USD")
    return JsonResponse({"event_id": event_id})


def twice_with_request(request: HttpRequest) -> JsonResponse:
    """Two events for one request, the request passed explicitly (as code outside the
    middleware's reach does)."""
    ids = [track("sign_up", request=request, user={"user_id": f"u-{n}"}) for n in (1, 2)]
    ids.append(track("sign_up", user={"user_id": "u-3"}))  # through the middleware
    return JsonResponse({"event_ids": ids})

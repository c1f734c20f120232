"""The Django app: ``settings.POSTBACK``, a process-wide tracker, request context, a worker.

::

    # settings.py
    INSTALLED_APPS = [..., "postback.integrations.django"]
    MIDDLEWARE = [..., "postback.integrations.django.middleware.PostbackMiddleware"]
    POSTBACK = BASE_DIR / "postback.toml"          # or a dict of the same shape

    # views.py
    from postback.integrations.django import track

    def checkout(request):
        track("purchase", user={"email": request.user.email}, value=49.99, currency="USD")

The tracker is created on first use (:func:`get_tracker`), once per process, and re-creates
its threads after a fork. :func:`track` fills the ip, user agent, url, referrer, click ids,
utm parameters and pixel cookies of the request the middleware is handling (or of the
``request`` you pass); what you pass wins. In ``async def`` views use ``await atrack(...)``,
which never blocks the event loop. ``manage.py postback_worker`` delivers for deployments
whose web processes run with ``workers = false``. Settings are described in
:mod:`postback.integrations.django.conf`; ``manage.py check --deploy`` validates the
configuration itself.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from postback.integrations._context import (
    RequestContext,
    current_request_context,
    merge_request_consent,
    merge_request_context,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django.http import HttpRequest

    from postback.aio import AsyncTracker
    from postback.tracker import Tracker

__all__ = ["atrack", "get_async_tracker", "get_tracker", "reset_tracker", "track"]

_lock = threading.Lock()
_tracker: Tracker | None = None
_async_tracker: AsyncTracker | None = None


def get_tracker() -> Tracker:
    """The process-wide tracker, created from the settings on first use."""
    global _tracker
    tracker = _tracker
    if tracker is None or tracker.closed:
        from postback.integrations.django.conf import build_tracker

        with _lock:
            if _tracker is None or _tracker.closed:
                _tracker = build_tracker()
            tracker = _tracker
    return tracker


def get_async_tracker() -> AsyncTracker:
    """An :class:`~postback.AsyncTracker` around the process-wide tracker (for async views)."""
    global _async_tracker
    tracker = get_tracker()
    wrapper = _async_tracker
    if wrapper is None or wrapper.tracker is not tracker:
        from postback.aio import AsyncTracker

        with _lock:
            if _async_tracker is None or _async_tracker.tracker is not tracker:
                _async_tracker = AsyncTracker(tracker)
            wrapper = _async_tracker
    return wrapper


def reset_tracker(timeout: float | None = 10.0) -> None:
    """Close the process-wide tracker (flushing for at most ``timeout`` seconds); the next
    use creates a new one from the current settings. Runs when a test changes a ``POSTBACK*``
    setting with ``override_settings``."""
    global _tracker, _async_tracker
    with _lock:
        tracker, wrapper = _tracker, _async_tracker
        _tracker = _async_tracker = None
    if wrapper is not None:
        wrapper.close_blocking(timeout)
    elif tracker is not None:
        tracker.close(timeout)


def _derived(request: HttpRequest | None) -> RequestContext | None:
    if request is None:
        return current_request_context()
    from postback.integrations.django.conf import request_context_settings
    from postback.integrations.django.middleware import lazy_context

    return lazy_context(request, request_context_settings()).resolve()


def track(
    name: str,
    *,
    request: HttpRequest | None = None,
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
    """:meth:`Tracker.track` on the process-wide tracker, with the request context filled in.

    The request is the one the middleware is handling, or ``request`` if given.
    """
    derived = _derived(request)
    user, context = merge_request_context(derived, user, context, get_tracker().host.fields)
    consent = merge_request_consent(derived, consent, get_tracker().config.consent)
    return get_tracker().track(
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


async def atrack(
    name: str,
    *,
    request: HttpRequest | None = None,
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
    """:func:`track` for ``async def`` views, through :class:`~postback.AsyncTracker`: a
    write that can wait (``redis://``, ``sqlite_synchronous = "full"``) happens off the event
    loop; the default ``sqlite://`` write (a memory copy) runs inline, as it costs less than a
    hand-off. The first call builds the tracker (reading the config) on the loop."""
    derived = _derived(request)
    user, context = merge_request_context(derived, user, context, get_tracker().host.fields)
    consent = merge_request_consent(derived, consent, get_tracker().config.consent)
    return await get_async_tracker().track(
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


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

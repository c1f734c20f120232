"""The dashboard: routes a :class:`~postback.dashboard.http.Request` to a page and renders it.

:class:`Dashboard` wraps a tracker. It knows no web framework: the adapters
(:func:`~postback.dashboard.wsgi.wsgi_app`, :func:`~postback.dashboard.asgi.asgi_app`, the
Flask blueprint and Django URLs in :mod:`~postback.dashboard.frameworks`, the ``postback ui``
server) call :meth:`Dashboard.handle`. Reads are GETs; replay and discard are POSTs that carry
a CSRF token (:mod:`~postback.dashboard.csrf`) and are reached through a confirmation page.
Templates are Jinja2 with autoescaping on, and every value they output passes through
:func:`~postback.dashboard.masking.visible`; static files are served from the package.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from postback.dashboard import views
from postback.dashboard.csrf import CsrfGuard
from postback.dashboard.http import Request, Response
from postback.dashboard.lanes import RateMeter
from postback.dashboard.masking import visible
from postback.dashboard.recorder import Recorder
from postback.delivery.replayable import why_left

__all__ = ["Dashboard"]

log = logging.getLogger("postback.dashboard")

_STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript"}
_DEAD = re.compile(r"^/deadletters/(\d{1,18})(?:/(replay|discard))?$")
# What an action did, as its redirect says it (?done=replayed-12): the page words it, so a
# link cannot make the dashboard show text of its choosing as its own confirmation.
_DONE = re.compile(r"^(replayed|discarded|gone)-(\d{1,18})$")
_DONE_WORDS = {
    "replayed": "replayed {}",
    "discarded": "discarded {}",
    "gone": "dead letter {} was already gone",
}


def _jinja() -> Any:
    try:
        import jinja2
    except ImportError:  # pragma: no cover - the [ui] extra brings it
        raise ImportError(
            "the postback dashboard needs Jinja2: pip install 'postback[ui]'"
        ) from None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("postback.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=visible,  # every value shown: no control or bidi override character raw
    )
    env.filters["when"] = _when
    env.filters["age"] = _age
    return env


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _flash(done: str) -> str:
    """The confirmation line for an action's ``?done=`` code; nothing for anything else."""
    match = _DONE.match(done)
    return _DONE_WORDS[match[1]].format(match[2]) if match else ""


class Dashboard:
    """The dashboard for one tracker.

    ``recorder`` (a :class:`~postback.dashboard.recorder.Recorder` registered with the tracker)
    feeds the recent deliveries page; ``csrf_key`` signs CSRF tokens (random if not given:
    give the same bytes to every process behind one load balancer).
    """

    def __init__(
        self,
        tracker: Any,
        *,
        recorder: Recorder | None = None,
        csrf_key: bytes | None = None,
        title: str = "postback",
    ) -> None:
        self.tracker = tracker
        self.recorder = recorder
        self.title = title
        self.csrf = CsrfGuard(csrf_key)
        self.meter = RateMeter()
        self._env = _jinja()

    def __repr__(self) -> str:
        return f"<Dashboard for {self.tracker!r}>"

    # --- routing ---------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request (never raises: an unexpected error is logged and shown as 500)."""
        try:
            return self._route(request)
        except Exception:
            log.exception("dashboard error on %s %s", request.method, request.path)
            return self._error(request, 500, "Something went wrong; see the logs.")

    def _route(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        method = request.method.upper()
        if path.startswith("/static/"):
            return self._static(path[len("/static/") :])
        if method == "POST":
            match = _DEAD.match(path)
            if match and match[2]:
                return self._act(request, int(match[1]), match[2])
            return self._error(request, 405, "Only the replay and discard forms POST.")
        if method not in ("GET", "HEAD"):
            return self._error(request, 405, f"{method} is not allowed.")
        q = request.query
        if path == "/":
            return self._page(request, "lanes.html", **views.lanes_page(self.tracker, self.meter))
        if path == "/lanes.fragment":
            ctx = views.lanes_page(self.tracker, self.meter)
            return self._render(request, "_lanes_table.html", 200, ctx)
        if path == "/deliveries":
            return self._page(request, "deliveries.html", **views.deliveries_page(self.recorder))
        if path == "/events":
            return self._page(request, "event.html", **views.event_page(self.tracker, q.get("id")))
        if path == "/deadletters":
            ctx = views.dead_letters_page(self.tracker, q.get("vendor"))
            return self._page(request, "deadletters.html", flash=_flash(q.get("done", "")), **ctx)
        if path == "/config":
            return self._page(request, "config.html", **views.config_page(self.tracker))
        match = _DEAD.match(path)
        if match:
            found = views.dead_letter_page(self.tracker, int(match[1]))
            if found is None:
                return self._page(
                    request,
                    "error.html",
                    404,
                    message=f"No dead letter {match[1]} (replayed or discarded?).",
                )
            if not match[2]:
                return self._page(request, "deadletter.html", action="", **found)
            left = self._left(int(match[1])) if match[2] == "replay" else None
            return self._page(request, "confirm.html", action=match[2], left=left or "", **found)
        return self._error(request, 404, "No such page.")

    # --- actions ---------------------------------------------------------------------------------

    def _act(self, request: Request, dead_id: int, action: str) -> Response:
        problem = self.csrf.problem(request)
        if problem is not None:
            return self._error(request, 403, f"Refused: {problem}.")
        queue = self.tracker.queue
        if action == "replay":
            if left := self._left(dead_id):  # as postback replay: the config decides
                return self._page(request, "error.html", 409, message=left)
            rows = queue.requeue_dead(ids=[dead_id])
            if rows:
                self.tracker.deliverer.notify(sorted({d.vendor for d in rows}))
            done = f"replayed-{dead_id}" if rows else f"gone-{dead_id}"
        else:
            try:
                rows = queue.discard_dead([dead_id])
            except NotImplementedError as exc:
                return self._page(request, "error.html", 409, message=str(exc))
            done = f"discarded-{dead_id}" if rows else f"gone-{dead_id}"
        log.info("dashboard: %s", _flash(done))
        location = f"{request.prefix}/deadletters?done={done}"
        return Response(303, b"", headers=(("Location", location),))

    def _left(self, dead_id: int) -> str | None:
        """Why a replay would leave this dead letter as it is (:mod:`~postback.delivery.
        replayable`, the rule ``postback replay`` follows); None: replayable, or gone."""
        d = self.tracker.queue.dead_letter(dead_id)
        why = why_left(self.tracker.config.vendors, d) if d is not None else None
        if why is None:
            return None
        return f"Not replayed: dead letter {dead_id} {why}. It stays a dead letter."

    # --- rendering -------------------------------------------------------------------------------

    def _static(self, name: str) -> Response:
        kind = _STATIC.get(name)
        if kind is None:
            return Response(404, b"not found", "text/plain; charset=utf-8")
        body = resources.files("postback.dashboard").joinpath("static", name).read_bytes()
        return Response(200, body, kind, headers=(("Cache-Control", "max-age=300"),))

    def _error(self, request: Request, status: int, message: str) -> Response:
        return self._render(request, "error.html", status, {"message": message})

    def _page(self, request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
        return self._render(request, template, status, ctx)

    def _render(
        self, request: Request, template: str, status: int, ctx: dict[str, Any]
    ) -> Response:
        cookie, new = self.csrf.cookie_value(request)
        html = self._env.get_template(template).render(
            title=self.title,
            base=request.prefix,
            path=request.path,
            csrf_token=self.csrf.token(cookie),
            now_ms=time.time_ns() // 1_000_000,
            **ctx,
        )
        headers = (self.csrf.set_cookie_header(cookie, request.prefix or "/"),) if new else ()
        return Response(status, html.encode(), headers=headers)

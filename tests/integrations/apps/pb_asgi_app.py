"""FastAPI and Starlette apps using postback's lifespan and middleware."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pb_settings
from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from postback.aio import AsyncTracker  # also exported as postback.AsyncTracker
from postback.integrations.asgi import PostbackMiddleware, get_tracker, postback_lifespan


def create_fastapi(config: Any = None, request_context: Any = None) -> FastAPI:
    app = FastAPI(
        lifespan=postback_lifespan(
            config if config is not None else pb_settings.postback_config(),
            plugins=pb_settings.PLUGINS,
        )
    )
    app.add_middleware(
        PostbackMiddleware,
        request_context=request_context
        if request_context is not None
        else pb_settings.request_context(),
    )

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/buy")
    async def buy(request: Request, tracker: AsyncTracker = Depends(get_tracker)) -> dict[str, Any]:
        if "sleep" in request.query_params:
            await asyncio.sleep(float(request.query_params["sleep"]))
        event_id = await tracker.track(
            "purchase",
            user={"email": "buyer@example.com"},
            value=49.99,
            currency="USD",
            event_id=request.query_params.get("id"),
            consent={"ads": True} if "grant" in request.query_params else None,
        )
        return {"event_id": event_id, "pid": os.getpid()}

    @app.get("/buy-sync")
    def buy_sync(request: Request, tracker: AsyncTracker = Depends(get_tracker)) -> dict[str, Any]:
        event_id = tracker.track_blocking(
            "purchase",
            user={"email": "buyer@example.com"},
            value=2,
            currency="USD",
            event_id=request.query_params.get("id"),
        )
        return {"event_id": event_id}

    @app.get("/explicit")
    async def explicit(tracker: AsyncTracker = Depends(get_tracker)) -> dict[str, Any]:
        event_id = await tracker.track(
            "purchase",
            user={"email": "buyer@example.com", "ip_address": "198.51.100.1", "user_agent": None},
            value=1,
            currency="USD",
            context={"utm_source": "explicit"},
        )
        return {"event_id": event_id}

    return app


def create_starlette(config: Any = None, request_context: Any = None) -> Starlette:
    async def buy(request: Request) -> JSONResponse:
        event_id = await get_tracker(request).track(
            "sign_up", user={"user_id": "u-1"}, event_id=request.query_params.get("id")
        )
        return JSONResponse({"event_id": event_id})

    return Starlette(
        routes=[Route("/signup", buy)],
        middleware=[Middleware(PostbackMiddleware, request_context=request_context)],
        lifespan=postback_lifespan(
            config if config is not None else pb_settings.postback_config(),
            plugins=pb_settings.PLUGINS,
        ),
    )


# Server processes started by the tests (PB_TEST_SERVER=1) serve this app.
app = create_fastapi() if os.environ.get("PB_TEST_SERVER") else None

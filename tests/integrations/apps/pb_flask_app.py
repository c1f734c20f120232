"""A Flask app using the postback extension (in-process tests and real servers)."""

from __future__ import annotations

import os
import time
from typing import Any

import flask
import pb_settings

from postback.integrations.flask import Postback

CREATED_IN_PID = os.getpid()  # with gunicorn --preload: the master's pid

postback = Postback(plugins=pb_settings.PLUGINS)


def create_app(config: Any = None, request_context: Any = None) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["POSTBACK"] = config if config is not None else pb_settings.postback_config()
    app.config["POSTBACK_REQUEST_CONTEXT"] = (
        request_context if request_context is not None else pb_settings.request_context()
    )
    postback.init_app(app)

    @app.get("/health")
    def health() -> Any:
        return {"ok": True}

    @app.get("/buy")
    def buy() -> Any:
        if "sleep" in flask.request.args:
            time.sleep(float(flask.request.args["sleep"]))
        event_id = postback.track(
            "purchase",
            user={"email": "buyer@example.com"},
            value=49.99,
            currency="USD",
            event_id=flask.request.args.get("id"),
            consent={"ads": True} if "grant" in flask.request.args else None,
        )
        return {"event_id": event_id, "pid": os.getpid(), "tracker_created_in": CREATED_IN_PID}

    @app.get("/explicit")
    def explicit() -> Any:
        event_id = postback.track(
            "purchase",
            user={"email": "buyer@example.com", "ip_address": "198.51.100.1", "user_agent": None},
            value=1,
            currency="USD",
            context={"utm_source": "explicit"},
        )
        return {"event_id": event_id}

    return app


# Server processes started by the tests (PB_TEST_SERVER=1) serve this app.
app = create_app() if os.environ.get("PB_TEST_SERVER") else None

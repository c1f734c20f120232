"""The dashboard mounted into a Flask app, an ASGI app (Starlette/FastAPI) and a Django project,
behind the app's own authorisation: links under the mount point, 403 when refused, replay
through the confirmation form with its CSRF token."""

from __future__ import annotations

import logging
import os
import re
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from postback import Tracker
from postback.dashboard import Dashboard, asgi_app, django_urls, flask_blueprint
from postback.sandbox import Sandbox

USER = {"email": "jane.doe@example.com"}


@pytest.fixture
def tracker(example_config: Callable[..., dict[str, Any]], tmp_path) -> Iterator[Tracker]:
    cfg = example_config(queue=f"sqlite:///{tmp_path}/q.db", workers=True)
    import postback.testing.example as example

    t = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    yield t
    t.close(timeout=1)


def _dead_letter(tracker: Tracker, sandbox: Sandbox, event_id: str) -> int:
    sandbox.set_fault("example", status=422, count=1)
    tracker.track("purchase", user=USER, value=1, currency="USD", event_id=event_id)
    tracker.flush(5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = [d for d in tracker.queue.dead_letters() if d.event_id == event_id]
        if rows:
            return rows[0].id
        time.sleep(0.02)
    raise AssertionError("no dead letter")


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert match
    return match[1]


def test_flask_blueprint(tracker: Tracker, sandbox: Sandbox) -> None:
    from flask import Flask

    allowed = {"yes": False}
    app = Flask(__name__)
    bp = flask_blueprint(Dashboard(tracker), authorize=lambda: allowed["yes"])
    app.register_blueprint(bp, url_prefix="/ops/postback")
    client = app.test_client()
    assert client.get("/ops/postback/").status_code == 403
    allowed["yes"] = True
    page = client.get("/ops/postback/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'href="/ops/postback/static/dashboard.css"' in html
    assert 'href="/ops/postback/deadletters"' in html
    assert client.get("/ops/postback/static/dashboard.css").status_code == 200
    dead_id = _dead_letter(tracker, sandbox, "flask-1")
    confirm = client.get(f"/ops/postback/deadletters/{dead_id}/replay").get_data(as_text=True)
    done = client.post(
        f"/ops/postback/deadletters/{dead_id}/replay", data={"csrf_token": _token(confirm)}
    )
    assert done.status_code == 303
    assert done.headers["Location"].startswith("/ops/postback/deadletters?done=replayed")
    assert tracker.queue.dead_letter(dead_id) is None


@pytest.mark.filterwarnings("ignore")  # starlette.testclient deprecates plain httpx
def test_asgi_app_in_starlette(tracker: Tracker, sandbox: Sandbox) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    def authorize(scope: Any) -> bool:
        return dict(scope["headers"]).get(b"x-operator") == b"yes"

    app = Starlette(routes=[Mount("/ops", app=asgi_app(Dashboard(tracker), authorize=authorize))])
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/ops/").status_code == 403
        client.headers["x-operator"] = "yes"
        html = client.get("/ops/").text
        assert 'href="/ops/events"' in html
        dead_id = _dead_letter(tracker, sandbox, "asgi-1")
        confirm = client.get(f"/ops/deadletters/{dead_id}/discard").text
        refused = client.post(f"/ops/deadletters/{dead_id}/discard", data={"csrf_token": "x"})
        assert refused.status_code == 403
        done = client.post(
            f"/ops/deadletters/{dead_id}/discard",
            data={"csrf_token": _token(confirm)},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert tracker.queue.dead_letter(dead_id) is None


def test_a_post_from_another_origin_is_refused(tracker: Tracker, sandbox: Sandbox) -> None:
    from flask import Flask

    app = Flask(__name__)
    app.register_blueprint(flask_blueprint(Dashboard(tracker), authorize=lambda: True))
    client = app.test_client()
    dead_id = _dead_letter(tracker, sandbox, "origin-1")
    token = _token(client.get(f"/deadletters/{dead_id}/replay").get_data(as_text=True))
    hostile = client.post(
        f"/deadletters/{dead_id}/replay",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert hostile.status_code == 403
    assert tracker.queue.dead_letter(dead_id) is not None


def test_django_urls(tracker: Tracker) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pb_django_site.settings")
    django.setup()
    from django.test import Client, override_settings
    from django.urls import include, path

    urls = types.ModuleType("pb_dashboard_urls")
    dashboard = Dashboard(tracker)
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path(
            "ops/postback/",
            include(django_urls(dashboard, authorize=lambda r: r.headers.get("X-Op") == "1")),
        )
    ]
    with override_settings(ROOT_URLCONF=urls, ALLOWED_HOSTS=["testserver"]):
        client = Client()
        assert client.get("/ops/postback/").status_code == 403
        page = client.get("/ops/postback/config", headers={"X-Op": "1"})
        assert page.status_code == 200
        html = page.content.decode()
        assert 'href="/ops/postback/deadletters"' in html
        assert tracker.config.vendors["example"].settings.api_key.reveal() not in html


def test_an_async_authorize_that_refuses_gets_403(tracker: Tracker) -> None:
    # A coroutine object is truthy: an ``async def authorize`` used to let everyone in.
    import asyncio

    import httpx

    async def authorize(scope: Any) -> bool:
        return dict(scope["headers"]).get(b"x-operator") == b"yes"

    app = asgi_app(Dashboard(tracker), authorize=authorize)

    async def get(headers: dict[str, str]) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return (await client.get("/", headers=headers)).status_code

    assert asyncio.run(get({})) == 403
    assert asyncio.run(get({"x-operator": "yes"})) == 200


def test_an_async_authorize_in_flask_and_django_is_awaited(tracker: Tracker) -> None:
    from flask import Flask, request

    async def flask_authorize() -> bool:
        return request.headers.get("X-Op") == "1"

    app = Flask(__name__)
    app.register_blueprint(
        flask_blueprint(Dashboard(tracker), authorize=flask_authorize), url_prefix="/ops"
    )
    client = app.test_client()
    assert client.get("/ops/").status_code == 403
    assert client.get("/ops/", headers={"X-Op": "1"}).status_code == 200

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pb_django_site.settings")
    django.setup()
    from django.test import Client, override_settings
    from django.urls import include, path

    async def django_authorize(r: Any) -> bool:
        return bool(r.headers.get("X-Op") == "1")

    urls = types.ModuleType("pb_dashboard_async_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("ops/", include(django_urls(Dashboard(tracker), authorize=django_authorize)))
    ]
    with override_settings(ROOT_URLCONF=urls, ALLOWED_HOSTS=["testserver"]):
        assert Client().get("/ops/").status_code == 403
        assert Client().get("/ops/", headers={"X-Op": "1"}).status_code == 200


def test_a_phone_in_the_tracked_page_url_is_masked_on_the_dead_letter_page(
    tracker: Tracker, sandbox: Sandbox
) -> None:
    # A GET form puts the visitor's phone in the query string, percent-encoded ("+" is %2B);
    # the Flask extension stores that URL in context.url, and the dashboard shows it.
    from flask import Flask

    from postback.integrations.flask import Postback

    app = Flask(__name__)
    postback = Postback(app, tracker=tracker)

    @app.get("/thanks")
    def thanks() -> str:
        sandbox.set_fault("example", status=422, count=1)
        postback.track("purchase", user=USER, value=1, currency="USD", event_id="phone-1")
        return "ok"

    app.register_blueprint(flask_blueprint(Dashboard(tracker), authorize=lambda: True))
    client = app.test_client()
    assert client.get("/thanks?phone=%2B14155550123&ref=x").status_code == 200
    tracker.flush(5)
    deadline = time.monotonic() + 10
    while not (rows := [d for d in tracker.queue.dead_letters() if d.event_id == "phone-1"]):
        assert time.monotonic() < deadline, "no dead letter"
        time.sleep(0.02)
    html = client.get(f"/deadletters/{rows[0].id}").get_data(as_text=True)
    assert "/thanks?phone=" in html  # the URL is shown...
    assert "4155550123" not in html  # ...with the phone masked


def test_personal_data_in_the_page_url_and_referrer_is_masked_where_shown(
    tracker: Tracker, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    # A sign-up form sent by GET puts the visitor's details in the query string; the Flask
    # extension stores that URL in context.url (AppLovin sends it on) and the Referer in
    # context.referrer_url. The dashboard and `postback deadletters show` mask them.
    from flask import Flask, request

    from postback.integrations.flask import Postback
    from postback.privacy import shown_dead_letter

    app = Flask(__name__)
    postback = Postback(app, tracker=tracker)

    @app.get("/welcome")
    def welcome() -> str:
        echo = f'{{"error": "bad event_source_url {request.url}"}}'  # a vendor quoting it
        sandbox.set_fault("example", status=400, count=1, body=echo)
        postback.track("sign_up", user=USER, event_id="form-1")
        return "ok"

    app.register_blueprint(flask_blueprint(Dashboard(tracker), authorize=lambda: True))
    client = app.test_client()
    query = "email=a@b.c&First_Name=Ada&lname=Lovelace&zip=90210&utm_source=news"
    referrer = "https://shop.example/form?phone=555-0100&street=Main+St+1&step=2"
    with caplog.at_level(logging.INFO, logger="postback"):
        response = client.get(f"/welcome?{query}", headers={"Referer": referrer})
        assert response.status_code == 200
        tracker.flush(5)
        deadline = time.monotonic() + 10
        while not (rows := [d for d in tracker.queue.dead_letters() if d.event_id == "form-1"]):
            assert time.monotonic() < deadline, "no dead letter"
            time.sleep(0.02)
    assert "bad event_source_url" in caplog.text and "a@b.c" not in caplog.text, caplog.text
    assert "Lovelace" not in caplog.text
    html = client.get(f"/deadletters/{rows[0].id}").get_data(as_text=True)
    cli = shown_dead_letter(rows[0], tracker.destinations.values())
    for shown in (html, cli):
        assert "/welcome?email=" in shown and "utm_source=news" in shown  # the URLs are shown
        assert "form?phone=" in shown and "step=2" in shown
        for personal in ("a@b.c", "Ada", "Lovelace", "90210", "555-0100", "Main+St"):
            assert personal not in shown, (personal, shown)
    # The stored copy keeps them: it is what a vendor (AppLovin) is sent.
    revealed = shown_dead_letter(rows[0], tracker.destinations.values(), reveal=True)
    assert f"/welcome?{query}" in revealed and referrer in revealed

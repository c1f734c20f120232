"""Starlette/FastAPI: lifespan, middleware and dependency, through TestClient and uvicorn."""

from __future__ import annotations

import signal
import time
import warnings

import pb_asgi_app
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from postback import ConfigError
from postback.aio import AsyncTracker
from postback.delivery.sqlite import SQLiteQueue
from postback.integrations.asgi import PostbackMiddleware, get_tracker

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette asks for httpx2 instead of httpx
    from starlette.testclient import TestClient

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

BROWSER = {
    "User-Agent": "Mozilla/5.0 (ASGI test)",
    "Referer": "https://news.example/article",
    "X-Forwarded-For": "6.6.6.6, 203.0.113.7",
}
QUERY = "utm_source=news&utm_medium=cpc&ttclid=TT-1&msclkid=MS-1"
COOKIES = {"_axeid": "ALE-COOKIE", "_fbp": "fb.1.1700000000.42"}


def sqlite_config(example_config, tmp_path):
    return example_config(queue=f"sqlite:///{tmp_path / 'queue.db'}")


def flushed(client):
    tracker = client.app.state.postback
    assert client.portal.call(tracker.flush, 20).complete
    return tracker


def test_fastapi_request_context_reaches_the_vendor(
    example_config, tmp_path, sandbox, received_by_id
):
    app = pb_asgi_app.create_fastapi(
        sqlite_config(example_config, tmp_path), {"trusted_proxy_hops": 1}
    )
    with TestClient(app, client=("10.0.0.2", 40000), cookies=COOKIES) as client:
        response = client.get(f"/buy?id=f-1&{QUERY}", headers=BROWSER)
        assert response.status_code == 200, response.text
        assert response.json()["event_id"] == "f-1"
        sync = client.get("/buy-sync?id=f-sync", headers=BROWSER)
        assert sync.status_code == 200, sync.text
        tracker = flushed(client)
    assert tracker.closed  # the lifespan closed it at shutdown

    got = received_by_id(sandbox)
    event = got["f-1"]
    assert event["ip"] == "203.0.113.7"
    assert event["ua"] == "Mozilla/5.0 (ASGI test)"
    assert event["ctx"] == {
        "url": f"http://testserver/buy?id=f-1&{QUERY}",
        "referrer_url": "https://news.example/article",
        "utm_source": "news",
        "utm_medium": "cpc",
        "ttclid": "TT-1",
        "msclkid": "MS-1",
        "aleid": "ALE-COOKIE",
        "fbp": "fb.1.1700000000.42",
    }
    # A sync endpoint in the thread pool sees the same request context.
    assert got["f-sync"]["ip"] == "203.0.113.7"
    assert got["f-sync"]["ctx"]["fbp"] == "fb.1.1700000000.42"


def test_fastapi_explicit_values_win(example_config, sandbox, received_by_id):
    app = pb_asgi_app.create_fastapi(example_config(), {"trusted_proxy_hops": 1})
    with TestClient(app, client=("10.0.0.2", 40000)) as client:
        event_id = client.get(f"/explicit?{QUERY}", headers=BROWSER).json()["event_id"]
        flushed(client)
    event = received_by_id(sandbox)[event_id]
    assert event["ip"] == "198.51.100.1"
    assert event["ua"] is None
    assert event["ctx"]["utm_source"] == "explicit"
    assert event["ctx"]["ttclid"] == "TT-1"


def test_starlette_defaults_trust_the_peer_only(example_config, sandbox, received_by_id):
    app = pb_asgi_app.create_starlette(example_config(), {"exclude": ["url"]})
    with TestClient(app, client=("198.51.100.77", 40000)) as client:
        response = client.get("/signup?id=s-1&utm_source=news", headers=BROWSER)
        assert response.status_code == 200, response.text
        flushed(client)
    event = received_by_id(sandbox)["s-1"]
    assert event["ip"] == "198.51.100.77"
    assert event["ctx"] == {"utm_source": "news", "referrer_url": "https://news.example/article"}


def test_an_rfc_7239_forwarded_header_gives_the_client_ip(example_config, sandbox, received_by_id):
    settings = {"trusted_proxies": ["10.0.0.0/8"], "forwarded_header": "Forwarded"}
    app = pb_asgi_app.create_fastapi(example_config(), settings)
    forwarded = 'for="[2001:db8::1]:4711";proto=https, for=10.0.0.9'
    with TestClient(app, client=("10.0.0.2", 40000)) as client:
        response = client.get("/buy?id=rfc-1", headers={"Forwarded": forwarded})
        assert response.status_code == 200, response.text
        flushed(client)
    assert received_by_id(sandbox)["rfc-1"]["ip"] == "2001:db8::1"


def test_control_characters_from_the_client_never_fail_track(
    example_config, sandbox, received_by_id
):
    app = pb_asgi_app.create_fastapi(example_config(), {"exclude": ["url"]})
    with TestClient(app, cookies={"_axeid": "ALE\x01"}) as client:
        response = client.get(
            "/buy?id=cc-1&ttclid=TT%0A1&twclid=TW%1B1&msclkid=MS-1",
            headers={"User-Agent": "Mozilla/5.0\t(ASGI test)\x7f"},
        )
        assert response.status_code == 200, response.text
        flushed(client)
    event = received_by_id(sandbox)["cc-1"]
    assert event["ua"] == "Mozilla/5.0(ASGI test)"
    assert event["ctx"] == {"msclkid": "MS-1"}


def test_get_tracker_explains_a_missing_lifespan():
    async def endpoint(request: Request) -> JSONResponse:
        get_tracker(request)
        return JSONResponse({})

    app = Starlette(routes=[Route("/", endpoint)])
    with TestClient(app) as client, pytest.raises(RuntimeError, match="postback_lifespan"):
        client.get("/")


def test_a_mounted_sub_apps_endpoints_get_the_tracker(example_config, sandbox, received_by_id):
    # FastAPI's sub-applications (app.mount("/v2", sub)): Starlette runs only the outer app's
    # lifespan, and sets request.app to the sub-app, so get_tracker found no tracker there and
    # every endpoint of the sub-app that tracked answered 500.
    from fastapi import Depends, FastAPI

    app = pb_asgi_app.create_fastapi(example_config(), {})
    sub = FastAPI()

    @sub.get("/buy")
    async def buy(tracker: AsyncTracker = Depends(get_tracker)) -> dict:
        return {
            "event_id": await tracker.track(
                "purchase",
                user={"email": "b@example.com"},
                event_id="v2-1",
                value=1,
                currency="USD",
            )
        }

    app.mount("/v2", sub)
    with TestClient(app, client=("10.0.0.2", 40000)) as client:
        response = client.get("/v2/buy?gclid=G-1", headers={"User-Agent": "Mozilla/5.0 (sub)"})
        assert response.status_code == 200, response.text
        assert response.json()["event_id"] == "v2-1"
        flushed(client)
    event = received_by_id(sandbox)["v2-1"]
    assert event["ua"] == "Mozilla/5.0 (sub)"
    assert event["ctx"]["url"] == "http://testserver/v2/buy?gclid=G-1"


def test_middleware_settings_are_validated():
    with pytest.raises(ConfigError, match=r"PostbackMiddleware\.trusted_proxy_hops"):
        PostbackMiddleware(Starlette(), trusted_proxy_hops=-1)
    with pytest.raises(TypeError, match="not both"):
        PostbackMiddleware(Starlette(), request_context={}, exclude=["url"])


def test_a_given_tracker_is_closed_at_shutdown(example_config):
    import pb_settings

    from postback.integrations.asgi import postback_lifespan

    tracker = AsyncTracker.from_config(example_config(), plugins=pb_settings.PLUGINS)
    app = Starlette(lifespan=postback_lifespan(tracker=tracker))
    with TestClient(app):
        assert app.state.postback is tracker
    assert tracker.closed


def pending_in(queue_file):
    queue = SQLiteQueue(queue_file)
    try:
        return queue.depth(["example"], int(time.time() * 1000))["example"].pending
    finally:
        queue.close()


@pytest.mark.parametrize(
    ("uvicorn_flags", "hops"),
    [(["--no-proxy-headers"], "1"), ([], "0")],
    ids=["postback-reads-the-header", "uvicorn-reads-the-header"],
)
def test_uvicorn(uvicorn_flags, hops, start_process, sandbox, tmp_path, wait_until, received_by_id):
    server = start_process(
        [
            "uvicorn",
            "pb_asgi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--lifespan",
            "on",
            *uvicorn_flags,
        ],
        {"PB_TEST_QUEUE": f"sqlite:///{tmp_path / 'queue.db'}", "PB_TEST_PROXY_HOPS": hops},
    )
    server.http.cookies.update(COOKIES)
    for i in range(5):
        server.get(f"/buy?id=u-{i}&{QUERY}", headers=BROWSER)
    wait_until(lambda: len(sandbox.received("example")) == 5, "5 events from uvicorn")
    got = received_by_id(sandbox)
    # Either way the client is the entry our (one, loopback) proxy appended.
    assert {e["ip"] for e in got.values()} == {"203.0.113.7"}
    assert {e["ctx"]["aleid"] for e in got.values()} == {"ALE-COOKIE"}
    assert {e["ctx"]["ttclid"] for e in got.values()} == {"TT-1"}
    assert {e["ua"] for e in got.values()} == {BROWSER["User-Agent"]}
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status shows it.
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM), server.output
    assert "Application shutdown complete" in server.output
    assert "Traceback" not in server.output, server.output
    assert pending_in(tmp_path / "queue.db") == 0


def test_a_page_url_with_an_encoded_space_keeps_its_url():
    # uvicorn decodes the path ("/products/red%20shoes" -> "/products/red shoes") and
    # Starlette's URL keeps the space: the page URL must be sent percent-encoded, not left out
    # (and not as a URL with a space, which AppLovin refuses as a malformed event).
    import asyncio

    import httpx

    from postback.integrations._context import current_request_context

    async def page(request: Request) -> JSONResponse:
        return JSONResponse({"url": current_request_context().context.get("url")})

    app = PostbackMiddleware(Starlette(routes=[Route("/products/{slug}", page)]))

    async def get(path: str) -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://shop.example") as c:
            return (await c.get(path)).json()["url"]

    assert asyncio.run(get("/products/red%20shoes?a=1")) == (
        "https://shop.example/products/red%20shoes?a=1"
    )
    assert asyncio.run(get("/products/red%C2%A0shoes")) == (
        "https://shop.example/products/red%C2%A0shoes"
    )


async def _raw_get(app, path: str, query_string: bytes) -> tuple[int, bytes]:
    """One GET through the ASGI interface, with the query string's bytes as a server gives
    them (uvicorn refuses bytes that are not valid UTF-8; other servers pass them on)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "root_path": "",
        "headers": [(b"host", b"shop.example"), (b"user-agent", b"Mozilla/5.0 (raw)")],
        "client": ("198.51.100.7", 40000),
        "server": ("shop.example", 443),
        "state": {},
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_query_string_that_is_not_utf8_never_fails_track(example_config, sandbox, received_by_id):
    """A click id with a byte that is not UTF-8 (raw, or percent-encoded) is dropped; the rest
    of the query is read, and the page URL keeps the bytes, percent-encoded."""
    app = pb_asgi_app.create_fastapi(example_config())
    with TestClient(app) as client:
        raw = b"id=nu-1&gclid=\xff&ttclid=TT%FF1&utm_source=news&utm_campaign=caf\xc3\xa9"
        status, body = client.portal.call(_raw_get, app, "/buy", raw)
        assert status == 200, body
        status, body = client.portal.call(_raw_get, app, "/buy", b"id=nu-2&msclkid=\xfe\xff")
        assert status == 200, body
        flushed(client)
    got = received_by_id(sandbox)
    assert got["nu-1"]["ctx"] == {
        "url": "https://shop.example/buy?id=nu-1&gclid=%FF&ttclid=TT%FF1&utm_source=news"
        "&utm_campaign=caf%C3%A9",
        "utm_source": "news",
        "utm_campaign": "café",
    }
    assert got["nu-2"]["ctx"] == {"url": "https://shop.example/buy?id=nu-2&msclkid=%FE%FF"}

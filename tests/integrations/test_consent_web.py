"""Consent in the web integrations: ``Sec-GPC: 1`` opts out of ``ads`` (configurable), a
``consent_reader`` reads the app's own consent cookie, ``track(consent=...)`` wins over both.
A real Flask app (test client) and a real FastAPI app (Starlette's TestClient, running the
lifespan), delivering over loopback to the sandbox."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flask
import pb_asgi_app
import pb_flask_app
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

GPC = {"Sec-GPC": "1"}


def cookie_reader(request: Any) -> Mapping[str, bool] | None:
    """The app's own consent banner stores "cc=ads" (granted) or "cc=none" (refused)."""
    value = request.cookies.get("cc")
    return None if value is None else {"ads": value == "ads"}


def with_consent(config: dict[str, Any], **table: Any) -> dict[str, Any]:
    return {**config, "consent": table} if table else config


@pytest.fixture
def flask_client(example_config):
    apps = []

    def make(reader=None, **consent):
        app = pb_flask_app.create_app(
            with_consent(example_config(), **consent),
            {"consent_reader": reader} if reader else {},
        )
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["postback"].tracker.close(timeout=0)


def flask_delivered(client: flask.testing.FlaskClient, sandbox) -> list[str]:
    tracker = client.application.extensions["postback"].tracker
    assert tracker.flush(timeout=20).complete
    return sorted(e["event_id"] for e in sandbox.received("example"))


def test_flask_gpc_opts_out_of_ads(flask_client, sandbox) -> None:
    client = flask_client()
    assert client.get("/buy?id=plain").status_code == 200
    assert client.get("/buy?id=gpc", headers=GPC).status_code == 200
    assert client.get("/buy?id=gpc-0", headers={"Sec-GPC": "0"}).status_code == 200
    assert flask_delivered(client, sandbox) == ["gpc-0", "plain"]
    stats = client.application.extensions["postback"].tracker.stats()
    assert stats["example"]["skips"] == {"consent": 1}


def test_flask_gpc_can_be_ignored(flask_client, sandbox) -> None:
    client = flask_client(gpc=[])
    client.get("/buy?id=gpc", headers=GPC)
    assert flask_delivered(client, sandbox) == ["gpc"]


def test_flask_consent_reader_beats_gpc_and_track_beats_the_reader(flask_client, sandbox) -> None:
    client = flask_client(reader=cookie_reader, policy="require")
    client.get("/buy?id=no-cookie")  # require: nothing known, nothing sent
    client.set_cookie("cc", "ads")
    client.get("/buy?id=cookie-yes-gpc", headers=GPC)  # the banner's explicit yes beats GPC
    client.set_cookie("cc", "none")
    client.get("/buy?id=cookie-no")
    client.get("/buy?id=cookie-no-granted&grant=1")  # the app's own consent= wins
    assert flask_delivered(client, sandbox) == ["cookie-no-granted", "cookie-yes-gpc"]


def test_fastapi_gpc_and_consent_reader(example_config, sandbox) -> None:
    config = with_consent(example_config(), policy="require")
    app = pb_asgi_app.create_fastapi(config, {"consent_reader": cookie_reader})
    with TestClient(app) as client:
        assert client.get("/buy?id=nothing").status_code == 200
        assert client.get("/buy?id=gpc-granted&grant=1", headers=GPC).status_code == 200
        client.cookies.set("cc", "ads")
        assert client.get("/buy?id=cookie-yes").status_code == 200
        client.cookies.set("cc", "none")
        assert client.get("/buy?id=cookie-no").status_code == 200
        tracker = client.app.state.postback
        assert client.portal.call(tracker.flush, 20).complete
        stats = tracker.tracker.stats()
    assert sorted(e["event_id"] for e in sandbox.received("example")) == [
        "cookie-yes",
        "gpc-granted",
    ]
    assert stats["example"]["skips"] == {"consent": 2}


def test_fastapi_gpc_alone_opts_out(example_config, sandbox) -> None:
    app = pb_asgi_app.create_fastapi(example_config(), {})
    with TestClient(app) as client:
        client.get("/buy?id=gpc", headers=GPC)
        client.get("/buy?id=plain")
        tracker = client.app.state.postback
        assert client.portal.call(tracker.flush, 20).complete
    assert [e["event_id"] for e in sandbox.received("example")] == ["plain"]


def test_a_consent_reader_must_be_callable(example_config) -> None:
    from postback import ConfigError

    with pytest.raises(ConfigError, match="consent_reader"):
        pb_flask_app.create_app(example_config(), {"consent_reader": "cc"})


def test_an_async_consent_reader_is_refused_when_the_settings_are_made(example_config) -> None:
    # Was: accepted, then every track() failed with "got coroutine" (track() does not await).
    from postback import ConfigError
    from postback.integrations import RequestContextSettings

    async def read(request: Any) -> dict[str, bool]:
        return {"ads": True}

    with pytest.raises(ConfigError, match="consent_reader: must be a plain function"):
        pb_flask_app.create_app(example_config(), {"consent_reader": read})
    with pytest.raises(ConfigError, match="not an async one"):
        RequestContextSettings(consent_reader=read)


def howto_reader() -> dict[str, Any]:
    """The reader of docs/how-to/consent.md, run as written."""
    page = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "consent.md"
    [code] = re.findall(r"```python\n(# myshop/consent.py\n.*?)```", page.read_text(), re.S)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(page), "exec"), namespace)
    return namespace


def test_the_howtos_reader_works_in_flask_and_fastapi(flask_client, example_config, sandbox):
    reader = howto_reader()
    client = flask_client(reader=reader["read_consent"], policy="require")
    client.set_cookie("consent", json.dumps({"ads": True, "measurement": True}))
    client.get("/buy?id=flask-yes")
    client.set_cookie("consent", json.dumps({"ads": False}))
    client.get("/buy?id=flask-no")
    client.set_cookie("consent", "not json")
    client.get("/buy?id=flask-garbage")
    assert flask_delivered(client, sandbox) == ["flask-yes"]

    app = pb_asgi_app.create_fastapi(
        with_consent(example_config(), policy="require"), {"consent_reader": reader["read_consent"]}
    )
    with TestClient(app) as fastapi_client:
        fastapi_client.cookies.set("consent", json.dumps({"ads": True}))
        fastapi_client.get("/buy?id=fastapi-yes")
        tracker = fastapi_client.app.state.postback
        assert fastapi_client.portal.call(tracker.flush, 20).complete
    assert sorted(e["event_id"] for e in sandbox.received("example")) == [
        "fastapi-yes",
        "flask-yes",
    ]


def test_a_consent_reader_that_raises_never_fails_the_request(
    flask_client, example_config, sandbox, caplog
):
    # The reader is the app's code, but postback calls it inside track() with a cookie the
    # client writes: the how-to's own reader raised AttributeError on `consent=1` (valid JSON,
    # not an object), so any client could turn the app's checkout into a 500. A reader that
    # raises is logged and refuses every purpose (as a postback_consent hook that raises).
    reader = howto_reader()
    client = flask_client(reader=reader["read_consent"])
    for forged in ("1", "null", "[true]", '"ads"'):
        client.set_cookie("consent", forged)
        assert client.get(f"/buy?id=flask-{forged}").status_code == 200
    client.set_cookie("consent", json.dumps({"ads": True}))
    assert client.get("/buy?id=flask-yes").status_code == 200
    forged = ['flask-"ads"', "flask-1", "flask-[true]", "flask-null"]  # undecided: policy
    assert flask_delivered(client, sandbox) == sorted([*forged, "flask-yes"])

    def broken(request: Any) -> Mapping[str, bool] | None:
        raise KeyError("cc")

    client = flask_client(reader=broken)
    with caplog.at_level("WARNING", logger="postback"):
        assert client.get("/buy?id=flask-broken").status_code == 200
        assert client.get("/buy?id=flask-broken-granted&grant=1").status_code == 200
    assert "consent_reader" in caplog.text
    assert flask_delivered(client, sandbox) == sorted(
        [*forged, "flask-broken-granted", "flask-yes"]
    )
    stats = client.application.extensions["postback"].tracker.stats()
    assert stats["example"]["skips"] == {"consent": 1}  # refused, not lost

    app = pb_asgi_app.create_fastapi(example_config(), {"consent_reader": broken})
    with TestClient(app) as fastapi_client:
        assert fastapi_client.get("/buy?id=fastapi-broken").status_code == 200
        tracker = fastapi_client.app.state.postback
        assert fastapi_client.portal.call(tracker.flush, 20).complete
    assert "fastapi-broken" not in [e["event_id"] for e in sandbox.received("example")]

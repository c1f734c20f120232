"""The Flask extension, through the test client and through real servers (the Werkzeug dev
server, gunicorn with and without --preload, and ``flask postback worker``)."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import flask
import pb_flask_app
import pb_settings
import pytest

from postback import ConfigError
from postback.delivery.sqlite import SQLiteQueue
from postback.integrations.flask import Postback

pytestmark = pytest.mark.timeout(90)

BROWSER = {
    "User-Agent": "Mozilla/5.0 (Flask test)",
    "Referer": "https://news.example/article",
    "Accept-Language": "fr-FR,fr;q=0.9",
    "X-Forwarded-For": "6.6.6.6, 203.0.113.7",
}
QUERY = "utm_source=news&utm_campaign=spring&gclid=GCLID-1&aleid=ALE-URL"


@pytest.fixture
def make_app(example_config):
    apps = []

    def make(request_context=None, **core):
        app = pb_flask_app.create_app(example_config(**core), request_context or {})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["postback"].tracker.close(timeout=0)


def delivered(app, sandbox, wait_until, n):
    with app.app_context():
        pb_flask_app.postback.flush(timeout=20)
    wait_until(lambda: len(sandbox.received("example")) >= n, f"{n} events in the sandbox")
    return {e["event_id"]: e for e in sandbox.received("example")}


def test_request_context_reaches_the_vendor(make_app, sandbox, wait_until):
    app = make_app({"trusted_proxy_hops": 1})
    client = app.test_client()
    client.set_cookie("_axwrt", "WRT-1")
    client.set_cookie("_axart", "ART-1")
    client.set_cookie("_axeid", "ALE-COOKIE")
    response = client.get(
        f"/buy?id=o-1&{QUERY}", headers=BROWSER, environ_base={"REMOTE_ADDR": "10.0.0.2"}
    )
    assert response.status_code == 200, response.text
    assert response.json["event_id"] == "o-1"

    event = delivered(app, sandbox, wait_until, 1)["o-1"]
    assert event["ip"] == "203.0.113.7"  # one trusted proxy: its entry, not the client's
    assert event["ua"] == "Mozilla/5.0 (Flask test)"
    assert event["ctx"] == {
        "url": f"http://localhost/buy?id=o-1&{QUERY}",
        "referrer_url": "https://news.example/article",
        "language": "fr-FR",
        "utm_source": "news",
        "utm_campaign": "spring",
        "gclid": "GCLID-1",
        "aleid": "ALE-URL",
        "alart": "ART-1",
        "axwrt": "WRT-1",
    }


def test_forwarded_for_is_ignored_by_default_and_fields_can_be_excluded(
    make_app, sandbox, wait_until
):
    app = make_app({"exclude": ["user_agent", "utm", "url", "referrer_url", "language"]})
    response = app.test_client().get(
        f"/buy?id=o-2&{QUERY}", headers=BROWSER, environ_base={"REMOTE_ADDR": "198.51.100.20"}
    )
    assert response.status_code == 200
    event = delivered(app, sandbox, wait_until, 1)["o-2"]
    assert event["ip"] == "198.51.100.20"
    assert event["ua"] is None
    assert event["ctx"] == {"gclid": "GCLID-1", "aleid": "ALE-URL"}


def test_an_rfc_7239_forwarded_header_gives_the_client_ip(make_app, sandbox, wait_until):
    app = make_app({"trusted_proxy_hops": 1, "forwarded_header": "Forwarded"})
    client = app.test_client()
    forwarded = 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'
    response = client.get(
        "/buy?id=rfc-1", headers={"Forwarded": forwarded}, environ_base={"REMOTE_ADDR": "10.0.0.2"}
    )
    assert response.status_code == 200, response.text
    response = client.get(
        "/buy?id=rfc-2",
        headers={"Forwarded": "For=192.0.2.60;proto=http, for=_hidden"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert response.status_code == 200, response.text
    got = delivered(app, sandbox, wait_until, 2)
    assert got["rfc-1"]["ip"] == "2001:db8::1"
    assert got["rfc-2"]["ip"] is None  # an obfuscated identifier is no address


def test_control_characters_from_the_client_never_fail_track(make_app, sandbox, wait_until):
    app = make_app()
    client = app.test_client()
    client.set_cookie("_axeid", "ALE\x01COOKIE")
    response = client.get(
        "/buy?id=cc-1&gclid=G%0A1&fbclid=FB%001&msclkid=MS-1&utm_source=ne%01ws",
        headers={"User-Agent": "Mozilla/5.0\t(Flask test)\x01\x7f"},
    )
    assert response.status_code == 200, response.text
    event = delivered(app, sandbox, wait_until, 1)["cc-1"]
    assert event["ua"] == "Mozilla/5.0(Flask test)"
    assert event["ctx"] == {"url": "http://localhost/buy?id=cc-1&gclid=G%0A1&fbclid=FB%001"
                            "&msclkid=MS-1&utm_source=ne%01ws", "msclkid": "MS-1"}  # fmt: skip


def test_a_campaign_name_keeps_its_spaces_of_any_script(make_app, sandbox, wait_until):
    """Only control characters are dropped from campaign parameters: U+3000 (an ideographic
    space) is text. A click id is URL text: one with a no-break space is dropped."""
    app = make_app()
    spring_sale = "%E6%98%A5%E3%80%80%E3%82%BB%E3%83%BC%E3%83%AB"  # 春　セール
    response = app.test_client().get(f"/buy?id=cc-2&utm_campaign={spring_sale}&gclid=G%C2%A01")
    assert response.status_code == 200, response.text
    ctx = delivered(app, sandbox, wait_until, 1)["cc-2"]["ctx"]
    assert ctx.get("utm_campaign") == "\u6625\u3000\u30bb\u30fc\u30eb"
    assert "gclid" not in ctx


def test_explicit_values_win(make_app, sandbox, wait_until):
    app = make_app({"trusted_proxy_hops": 1})
    response = app.test_client().get(f"/explicit?{QUERY}", headers=BROWSER)
    event = delivered(app, sandbox, wait_until, 1)[response.json["event_id"]]
    assert event["ip"] == "198.51.100.1"
    assert event["ua"] is None  # None in track() means: send nothing
    assert event["ctx"]["utm_source"] == "explicit"
    assert event["ctx"]["gclid"] == "GCLID-1"


def test_app_factory_and_contexts(example_config, sandbox, wait_until):
    ext = Postback(plugins=pb_settings.PLUGINS)
    first, second = flask.Flask("first"), flask.Flask("second")
    first.config["POSTBACK"] = example_config()
    second.config["POSTBACK"] = example_config()
    ext.init_app(first)
    ext.init_app(second)
    try:
        assert first.extensions["postback"].tracker is not second.extensions["postback"].tracker
        with pytest.raises(RuntimeError, match="already set up"):
            ext.init_app(first)
        with pytest.raises(RuntimeError, match="app context"):
            ext.track("sign_up", user={"user_id": "u"})
        with second.app_context():  # outside a request: no request context, still works
            ext.track("sign_up", user={"user_id": "u"}, event_id="from-cli-job")
            assert ext.tracker is second.extensions["postback"].tracker
            assert ext.flush(timeout=20).complete
            assert ext.stats()["example"]["delivered"] == 1
        got = {e["event_id"]: e for e in sandbox.received("example")}
        assert got["from-cli-job"]["ip"] is None
    finally:
        for app in (first, second):
            with app.app_context():
                ext.close(timeout=0)


def test_settings_from_a_config_file_relative_to_the_app(tmp_path, sandbox, wait_until):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "postback.toml").write_text(
        '[postback]\nqueue = "sqlite://events.db"\n\n'
        f'[vendors.example]\napi_key = "sandbox-example-key"\nbase_url = "{sandbox.base_url("example")}"\n'
    )
    app = flask.Flask("filebased", root_path=str(tmp_path))
    app.config["POSTBACK_CONFIG"] = "conf/postback.toml"
    app.config["POSTBACK_PLUGINS"] = ["postback.testing.example", "pb_context_echo"]
    ext = Postback(app)
    with app.test_request_context("/?utm_source=file", environ_base={"REMOTE_ADDR": "192.0.2.1"}):
        ext.track("sign_up", user={"user_id": "u"}, event_id="file-1")
    tracker = app.extensions["postback"].tracker
    assert tracker.queue.url == f"sqlite:///{tmp_path / 'conf' / 'events.db'}"
    ext.track("lead", user={"user_id": "u"})  # outside any context: the app given to Postback()
    assert tracker.flush(timeout=20).complete
    got = {e["event_id"]: e for e in sandbox.received("example")}
    assert got["file-1"]["ctx"]["utm_source"] == "file"
    assert got["file-1"]["ip"] == "192.0.2.1"
    tracker.close(timeout=0)


def test_configuration_errors_fail_at_startup():
    app = flask.Flask("broken")
    app.config["POSTBACK"] = {
        "postback": {"queue": "memory://", "colour": "red"},
        "vendors": {"nonesuch": {}},
    }
    with pytest.raises(ConfigError) as info:
        Postback(app)
    assert "postback.colour" in str(info.value)
    assert "nonesuch" in str(info.value)
    app.config["POSTBACK"] = {"postback": {"queue": "memory://"}}
    app.config["POSTBACK_REQUEST_CONTEXT"] = {"trusted_proxy_hops": "one"}
    with pytest.raises(ConfigError, match=r"POSTBACK_REQUEST_CONTEXT\.trusted_proxy_hops"):
        Postback(app)
    app.config["POSTBACK_REQUEST_CONTEXT"] = {}
    app.config["POSTBACK_PLUGINS"] = ["no_such_module_here"]
    with pytest.raises(ConfigError, match="no_such_module_here"):
        Postback(app)


# --------------------------------------------------------------------------------------------
# Real servers


def server_env(tmp_path, **extra):
    return {"PB_TEST_QUEUE": f"sqlite:///{tmp_path / 'queue.db'}", **extra}


def pending_in(queue_file):
    queue = SQLiteQueue(queue_file)
    try:
        return queue.depth(["example"], int(time.time() * 1000))["example"].pending
    finally:
        queue.close()


def test_werkzeug_dev_server(start_process, sandbox, tmp_path, wait_until, received_by_id):
    server = start_process(
        [
            "python",
            "-m",
            "flask",
            "--app",
            "pb_flask_app",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ],
        server_env(tmp_path, PB_TEST_PROXY_HOPS="1"),
    )
    server.http.cookies.set("_axeid", "ALE-COOKIE")
    server.http.cookies.set("_axwrt", "WRT-DEV")
    for i in range(3):
        server.get(f"/buy?id=dev-{i}&{QUERY}", headers=BROWSER)
    wait_until(lambda: len(sandbox.received("example")) == 3, "3 events from the dev server")
    event = received_by_id(sandbox)["dev-0"]
    assert event["ip"] == "203.0.113.7"
    assert event["ua"] == BROWSER["User-Agent"]
    assert event["ctx"]["utm_campaign"] == "spring"
    assert event["ctx"]["aleid"] == "ALE-URL"  # the click in the URL beats the older cookie
    assert event["ctx"]["axwrt"] == "WRT-DEV"
    assert server.stop(signal.SIGINT) == 0, server.output  # Ctrl-C: exit hook runs
    assert pending_in(tmp_path / "queue.db") == 0


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
@pytest.mark.parametrize("preload", [False, True], ids=["gunicorn", "gunicorn-preload"])
def test_gunicorn(preload, start_process, sandbox, tmp_path, wait_until, received_by_id):
    argv = [
        "gunicorn",
        "--workers",
        "2",
        "--bind",
        "127.0.0.1:{port}",
        "--no-control-socket",
        "--graceful-timeout",
        "20",
        *(["--preload"] if preload else []),
        "pb_flask_app:app",
    ]
    server = start_process(argv, server_env(tmp_path))
    wait_until(lambda: server.output.count("Booting worker") >= 2, "both gunicorn workers")
    server.http.cookies.set("_axart", "ART-G")

    # Sync workers serve one request at a time: slow concurrent requests reach both workers.
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda i: server.get(f"/buy?id=g-{i}&sleep=0.5&{QUERY}", headers=BROWSER).json(),
                range(4),
            )
        )
    for i in range(4, 10):
        answers.append(server.get(f"/buy?id=g-{i}&{QUERY}", headers=BROWSER).json())
    worker_pids = {a["pid"] for a in answers}
    assert len(worker_pids) == 2
    assert server.proc.pid not in worker_pids
    if preload:  # the tracker was built in the master before fork; workers used it as is
        assert {a["tracker_created_in"] for a in answers} == {server.proc.pid}
    else:
        assert {a["tracker_created_in"] for a in answers} == worker_pids

    wait_until(lambda: len(sandbox.received("example")) == 10, "10 events from gunicorn")
    got = received_by_id(sandbox)
    assert set(got) == {f"g-{i}" for i in range(10)}
    assert {e["ip"] for e in got.values()} == {"127.0.0.1"}  # X-Forwarded-For not trusted
    assert {e["ctx"]["gclid"] for e in got.values()} == {"GCLID-1"}
    assert {e["ctx"]["alart"] for e in got.values()} == {"ART-G"}
    assert {e["ua"] for e in got.values()} == {BROWSER["User-Agent"]}
    assert server.stop(signal.SIGTERM) == 0, server.output
    assert "Traceback" not in server.output, server.output
    assert pending_in(tmp_path / "queue.db") == 0


def test_flask_cli_worker_delivers_for_enqueue_only_apps(
    start_process, sandbox, tmp_path, wait_until, monkeypatch
):
    queue_url = f"sqlite:///{tmp_path / 'queue.db'}"
    monkeypatch.setenv("PB_TEST_QUEUE", queue_url)
    monkeypatch.setenv("PB_TEST_WORKERS", "false")
    app = pb_flask_app.create_app()
    client = app.test_client()
    for i in range(5):
        assert client.get(f"/buy?id=w-{i}").status_code == 200
    app.extensions["postback"].tracker.close(timeout=0)
    assert pending_in(tmp_path / "queue.db") == 5
    assert sandbox.received("example") == []  # workers = false: nothing delivered from here

    # The worker runs with the app's environment (docs/how-to/environment.md), where
    # POSTBACK_WORKERS=false keeps web processes from delivering: the worker delivers anyway.
    worker = start_process(
        ["python", "-m", "flask", "--app", "pb_flask_app", "postback", "worker"],
        server_env(tmp_path, PB_TEST_WORKERS="false", POSTBACK_WORKERS="false"),
        serve=False,
    )
    wait_until(lambda: len(sandbox.received("example")) == 5, "the worker to deliver 5 events")
    assert worker.stop(signal.SIGTERM) == 0, worker.output
    assert "postback worker: stopped" in worker.output
    assert pending_in(tmp_path / "queue.db") == 0


@pytest.mark.timeout(20)
@pytest.mark.parametrize("value", ["nan", "-1"])
def test_the_worker_refuses_a_stats_interval_that_is_not_a_number_of_seconds(make_app, value):
    """``flask postback worker --stats-every nan`` was taken and printed no stats ever; ``-1``
    printed them twice a second. A usage error before any delivery, as for ``postback worker``
    (the worker, were it started, would run until the test's timeout)."""
    app = make_app()
    result = app.test_cli_runner().invoke(args=["postback", "worker", "--stats-every", value])
    assert result.exit_code == 2, result.output
    assert "--stats-every" in result.output and "0 (never) or more seconds" in result.output
    assert "delivering from" not in result.output


def test_explain_sees_the_request_like_track(make_app):
    app = make_app()
    postback = pb_flask_app.postback
    with app.test_request_context("/buy?aleid=A-1", headers=BROWSER):
        route = postback.explain("sign_up", user={"email": "a@b.co"})
        assert postback.stats()["example"]["tracked"] == 0
    assert route.queued == ("example",)
    assert route.event is not None and route.event.user.user_agent == BROWSER["User-Agent"]


@pytest.mark.parametrize(
    "host", ["shop.example:abc", "shop.example:99999", "user:pw@shop.example", "shop example"]
)
def test_a_forged_host_header_does_not_fail_track(host):
    # The page URL is rebuilt from the Host header, which any client writes. AppLovin refuses
    # a URL without a host or with a port that is not one as a malformed event: filled in from
    # the request, it turned every such request into a 500 of the app's checkout.
    import postback_applovin

    config = {
        "postback": {"queue": "memory://"},
        "vendors": {
            "applovin": {
                "api_key": "sbx-axon-capi-7f3c9e21b4d86a05e1f2c3d4",
                "pixel_id": "sbx-axon-event-key-4d2a91",
                "base_url": "http://127.0.0.1:9/applovin",
            }
        },
    }
    app = flask.Flask(__name__)
    postback = Postback(app, config=config, plugins=[postback_applovin], load_entry_points=False)

    @app.post("/checkout")
    def checkout():
        item = {"item_id": "SKU-1", "price": 5, "quantity": 1}
        event_id = postback.track(
            "purchase",
            user={"email": "buyer@example.com"},
            value=5,
            currency="USD",
            properties={"items": [item]},
        )
        return {"event_id": event_id}

    try:
        client = app.test_client()
        headers = {"User-Agent": "Mozilla/5.0"}
        good = client.post("/checkout?gclid=G-1", headers={**headers, "Host": "shop.example"})
        assert good.status_code == 200, good.text
        forged = client.post("/checkout?gclid=G-1", headers={**headers, "Host": host})
        assert forged.status_code == 200, forged.text
        assert postback.stats()["applovin"]["skips"].get("no page URL") == 1  # the forged one
    finally:
        postback.close(timeout=0)

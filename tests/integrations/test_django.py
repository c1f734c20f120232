"""The Django app: settings, middleware, sync and async views, checks, and a real deployment
(gunicorn enqueuing with ``workers = false``, ``manage.py postback_worker`` delivering)."""

from __future__ import annotations

import os
import signal
import time

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pb_django_site.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError, SystemCheckError  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from postback.delivery.sqlite import SQLiteQueue  # noqa: E402
from postback.integrations.django import (  # noqa: E402
    get_async_tracker,
    get_tracker,
    reset_tracker,
)

pytestmark = pytest.mark.timeout(90)

HEADERS = {
    "User-Agent": "Mozilla/5.0 (Django test)",
    "Referer": "https://news.example/",
    "X-Forwarded-For": "6.6.6.6, 203.0.113.7",
    "Accept-Language": "nl-BE",
}
QUERY = "utm_source=news&utm_term=shoes&twclid=TW-1&li_fat_id=LI-1"


@pytest.fixture
def postback_settings(example_config):
    """Point the process-wide tracker at the sandbox (override_settings resets it)."""
    enabled = []

    def use(request_context=None, **core):
        override = override_settings(
            POSTBACK=example_config(**core), POSTBACK_REQUEST_CONTEXT=request_context or {}
        )
        override.enable()
        enabled.append(override)

    yield use
    for override in reversed(enabled):
        override.disable()
    reset_tracker(timeout=0)


def client(**meta):
    c = Client(REMOTE_ADDR="10.0.0.2", headers=HEADERS, **meta)
    c.cookies["_axeid"] = "ALE-COOKIE"
    c.cookies["_axart"] = "ART-1"
    c.cookies["_fbc"] = "fb.1.1700000000.abc"
    return c


def delivered(sandbox, wait_until, n):
    assert get_tracker().flush(timeout=20).complete
    wait_until(lambda: len(sandbox.received("example")) >= n, f"{n} events")
    return {e["event_id"]: e for e in sandbox.received("example")}


def test_sync_and_async_views_send_the_request_context(postback_settings, sandbox, wait_until):
    postback_settings({"trusted_proxy_hops": 1})
    c = client()
    assert c.get(f"/buy?id=d-1&{QUERY}").json()["event_id"] == "d-1"
    assert c.get(f"/abuy?id=d-async&{QUERY}").json()["event_id"] == "d-async"
    got = delivered(sandbox, wait_until, 2)
    for event_id in ("d-1", "d-async"):
        event = got[event_id]
        assert event["ip"] == "203.0.113.7", event_id
        assert event["ua"] == "Mozilla/5.0 (Django test)"
        assert event["ctx"]["utm_term"] == "shoes"
        assert event["ctx"]["twclid"] == "TW-1"
        assert event["ctx"]["li_fat_id"] == "LI-1"
        assert event["ctx"]["aleid"] == "ALE-COOKIE"
        assert event["ctx"]["alart"] == "ART-1"
        assert event["ctx"]["fbc"] == "fb.1.1700000000.abc"
        assert event["ctx"]["language"] == "nl-BE"
    assert got["d-1"]["ctx"]["url"] == f"http://testserver/buy?id=d-1&{QUERY}"
    assert got["d-async"]["value_micros"] == 5_000_000


def test_defaults_trust_only_the_peer_and_explicit_values_win(
    postback_settings, sandbox, wait_until
):
    postback_settings({"exclude": ["cookies"]})
    c = client()
    c.get("/buy?id=d-2")
    explicit_id = c.get(f"/explicit?{QUERY}").json()["event_id"]
    got = delivered(sandbox, wait_until, 2)
    assert got["d-2"]["ip"] == "10.0.0.2"
    assert "aleid" not in got["d-2"]["ctx"]
    assert got[explicit_id]["ip"] == "198.51.100.1"
    assert got[explicit_id]["ua"] is None
    assert got[explicit_id]["ctx"]["utm_source"] == "explicit"
    assert got[explicit_id]["ctx"]["twclid"] == "TW-1"


def test_an_rfc_7239_forwarded_header_gives_the_client_ip(postback_settings, sandbox, wait_until):
    postback_settings({"trusted_proxy_hops": 2, "forwarded_header": "Forwarded"})
    forwarded = 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'
    assert client().get("/buy?id=rfc-1", HTTP_FORWARDED=forwarded).status_code == 200
    assert delivered(sandbox, wait_until, 1)["rfc-1"]["ip"] == "192.0.2.60"


def test_control_characters_from_the_client_never_fail_track(
    postback_settings, sandbox, wait_until
):
    postback_settings({"exclude": ["url", "referrer_url", "language", "cookies"]})
    c = Client(REMOTE_ADDR="10.0.0.2", HTTP_USER_AGENT="Mozilla/5.0\x00 (Django test)\r")
    assert c.get("/buy?id=cc-1&gclid=G%0A1&li_fat_id=LI%7F1&rdt_cid=RD-1").status_code == 200
    event = delivered(sandbox, wait_until, 1)["cc-1"]
    assert event["ua"] == "Mozilla/5.0 (Django test)"
    assert event["ctx"] == {"rdt_cid": "RD-1"}


def test_track_with_an_explicit_request_and_a_disallowed_host(
    postback_settings, sandbox, wait_until
):
    postback_settings()
    response = client(HTTP_HOST="evil.example").get("/with-request?gclid=G-9")
    event_id = response.json()["event_id"]
    event = delivered(sandbox, wait_until, 1)[event_id]
    assert event["ip"] == "10.0.0.2"
    assert event["ctx"]["gclid"] == "G-9"
    assert "url" not in event["ctx"]  # no URL from a Host outside ALLOWED_HOSTS


def test_one_lazy_tracker_per_process_reset_when_settings_change(postback_settings):
    postback_settings()
    first = get_tracker()
    assert get_tracker() is first
    assert get_async_tracker().tracker is first
    postback_settings(exit_timeout=1)
    assert first.closed
    second = get_tracker()
    assert second is not first
    assert second.config.core.exit_timeout == 1


def test_system_checks(postback_settings):
    with (
        override_settings(POSTBACK_REQUEST_CONTEXT={"exclude": ["nonsense"]}),
        pytest.raises(SystemCheckError, match=r"postback\.E001"),
    ):
        call_command("check", verbosity=0)
    postback_settings()
    call_command("check", deploy=True, tags=["postback"], verbosity=0)
    with (
        override_settings(POSTBACK={"vendors": {"nonesuch": {}}}),
        pytest.raises(SystemCheckError, match=r"postback\.E002.*nonesuch"),
    ):
        call_command("check", deploy=True, tags=["postback"], verbosity=0)


def pending_in(queue_file):
    queue = SQLiteQueue(queue_file)
    try:
        return queue.depth(["example"], int(time.time() * 1000))["example"].pending
    finally:
        queue.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("args", "options"),
    [(["--stats-every", "nan"], {}), (["--stats-every=-1"], {}), ([], {"stats_every": -0.5})],
)
def test_the_worker_refuses_a_stats_interval_that_is_not_a_number_of_seconds(
    postback_settings, capsys, args, options
):
    """``manage.py postback_worker --stats-every nan`` was taken and printed no stats ever;
    ``-1`` printed them twice a second. A CommandError before any delivery, as ``postback
    worker`` refuses them (the worker, were it started, would run until the test's timeout)."""
    postback_settings()
    with pytest.raises(CommandError, match=r"--stats-every must be 0 \(never\) or more"):
        call_command("postback_worker", *args, **options)
    assert "delivering from" not in capsys.readouterr().out


@pytest.mark.slow  # real processes, seconds: run on 3.11 only (tox.ini)
def test_gunicorn_enqueues_and_the_management_command_delivers(
    start_process, sandbox, tmp_path, wait_until
):
    env = {
        "DJANGO_SETTINGS_MODULE": "pb_django_site.settings",
        "PB_TEST_QUEUE": f"sqlite:///{tmp_path / 'queue.db'}",
        "PB_TEST_WORKERS": "false",
    }
    web = start_process(
        [
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            "127.0.0.1:{port}",
            "--no-control-socket",
            "pb_django_site.wsgi:application",
        ],
        env,
    )
    web.http.cookies.set("_axwrt", "WRT-DJ")
    for i in range(6):
        web.get(f"/buy?id=dj-{i}&{QUERY}", headers=HEADERS)
    assert pending_in(tmp_path / "queue.db") == 6
    assert sandbox.received("example") == []  # workers = false: the web processes only enqueue

    worker = start_process(
        ["python", "-m", "django", "postback_worker"],
        # The command forces workers = true for itself, whatever the app's settings and its
        # environment (POSTBACK_WORKERS=false, as the web processes run) say.
        {**env, "PB_TEST_WORKERS": "false", "POSTBACK_WORKERS": "false"},
        serve=False,
    )
    wait_until(lambda: len(sandbox.received("example")) == 6, "the worker to deliver 6 events")
    got = {e["event_id"]: e for e in sandbox.received("example")}
    assert {e["ip"] for e in got.values()} == {"127.0.0.1"}
    assert {e["ctx"]["li_fat_id"] for e in got.values()} == {"LI-1"}
    assert {e["ctx"]["axwrt"] for e in got.values()} == {"WRT-DJ"}
    assert {e["ua"] for e in got.values()} == {HEADERS["User-Agent"]}
    assert worker.stop(signal.SIGTERM) == 0, worker.output
    assert "postback worker: stopped" in worker.output
    assert web.stop(signal.SIGTERM) == 0, web.output
    assert "Traceback" not in web.output + worker.output
    assert pending_in(tmp_path / "queue.db") == 0


def test_gpc_and_a_consent_reader_from_settings(postback_settings, sandbox, wait_until):
    postback_settings({"consent_reader": "pb_settings:consent_cookie_reader"})
    c = client()
    c.get("/buy?id=gpc", headers={"Sec-GPC": "1"})
    c.get("/abuy?id=gpc-async", headers={"Sec-GPC": "1"})
    c.cookies["cc"] = "ads"
    c.get("/buy?id=gpc-cookie-yes", headers={"Sec-GPC": "1"})
    c.cookies["cc"] = "none"
    c.get("/buy?id=cookie-no")
    c.get("/abuy?id=cookie-no-async")
    got = delivered(sandbox, wait_until, 1)
    assert sorted(got) == ["gpc-cookie-yes"]
    assert get_tracker().stats()["example"]["skips"] == {"consent": 4}


def test_a_query_string_with_too_many_fields_does_not_fail_the_view(
    postback_settings, sandbox, wait_until
):
    # Django refuses to parse more than DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) parameters:
    # reading request.GET for the click ids must not turn the view's answer into a 400.
    postback_settings()
    junk = "&".join(f"p{i}=1" for i in range(1001))
    response = client().post(f"/checkout?gclid=G-7&{junk}")
    assert response.status_code == 200, response.content
    event = delivered(sandbox, wait_until, 1)[response.json()["event_id"]]
    assert event["ip"] == "10.0.0.2"
    assert event["ctx"]["gclid"] == "G-7"


def test_the_consent_reader_runs_once_per_request_even_with_an_explicit_request(
    postback_settings,
):
    import pb_settings

    postback_settings({"consent_reader": "pb_settings:counting_consent_reader"})
    pb_settings.READER_CALLS.clear()
    response = client().get("/twice-with-request")
    assert response.status_code == 200, response.content
    assert len(response.json()["event_ids"]) == 3
    assert len(pb_settings.READER_CALLS) == 1  # "called at most once per request"

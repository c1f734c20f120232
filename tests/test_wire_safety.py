"""No control character reaches the wire: event ids, settings and request headers (issue 23
item 6)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

import postback.testing.example as example
from postback import ConfigError, InvalidEvent, Tracker
from postback.delivery.http import DeliveryClients, UnsafeHeader
from postback.destination import Secret
from postback.events import make_event


@pytest.mark.parametrize("eid", ["order-1\n", "order-1\r\n", "order\n-1", "\norder-1", "o\x00"])
def test_event_ids_with_line_breaks_are_refused(eid: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        make_event("purchase", event_id=eid)
    assert [p.field for p in info.value.problems] == ["event_id"]


def _config(api_key: object) -> dict[str, object]:
    return {
        "postback": {"queue": "memory://", "workers": False},
        "vendors": {"example": {"base_url": "http://127.0.0.1:9/example", "api_key": api_key}},
    }


@pytest.mark.parametrize("key", ["secret\n", "secret\r\n", "sec\nret", "\tsecret", "s\x7f"])
def test_a_secret_with_a_control_character_is_a_config_error_naming_the_key(key: str) -> None:
    for given in (key, Secret(key)):
        with pytest.raises(ConfigError) as info:
            Tracker.from_config(_config(given), plugins=[example], load_entry_points=False)
        message = str(info.value)
        assert "vendors.example.api_key" in message
        assert "secret" not in message.replace("a secret read", "")  # the value is not shown


def test_control_characters_in_any_string_setting_name_the_key() -> None:
    cfg = _config("k")
    cfg["vendors"]["example"]["base_url"] = "http://127.0.0.1:9/example\n"  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    assert "vendors.example.base_url: contains a line break (at the end)" in str(info.value)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A raw loopback socket that records every byte any connection sends."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.5)
                try:
                    got.append(conn.recv(65536))
                except TimeoutError:
                    pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield srv.getsockname()[1], got
    stop.set()
    t.join()
    srv.close()


@pytest.mark.parametrize("value", ["order-1\n", "a\r\nX-Injected: 1", "k\x00"])
def test_a_header_with_a_control_character_is_never_written(
    listener: tuple[int, list[bytes]], value: str
) -> None:
    port, got = listener
    clients = DeliveryClients()
    request = httpx.Request("POST", f"http://127.0.0.1:{port}/x", headers={"x-key": value})
    with pytest.raises(UnsafeHeader) as info:
        clients.send(request, 1.0)
    assert "'x-key'" in str(info.value) and value not in str(info.value)
    clients.close()
    assert got == []


def test_track_refuses_an_event_id_ending_in_a_newline(
    make_tracker: Callable[..., Tracker],
) -> None:
    tracker = make_tracker(core={"workers": False})
    with pytest.raises(InvalidEvent):
        tracker.track("purchase", user={"user_id": "u"}, event_id="order-1\n")

"""The engine's pooled stdlib transport, against real loopback servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from postback.delivery.transport import PooledTransport, default_transport


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.seen.append((self.path, dict(self.headers), body, self.client_address[1]))
        if self.path.startswith("/slow"):
            time.sleep(0.5)
        payload = b'{"ok": true}'
        self.send_response(201 if self.path.startswith("/created") else 200)
        self.send_header("content-type", "application/json")
        self.send_header("x-rate-limit-remaining", "7")
        self.send_header("content-length", str(len(payload)))
        if self.path.startswith("/close"):
            self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[str, dict[str, str], bytes, int]]


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.seen = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv: _Server, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def test_exact_request_and_response(server: _Server) -> None:
    t = PooledTransport()
    # An already percent-encoded query must go on the wire byte for byte (OAuth signs it).
    req = httpx.Request(
        "POST",
        url(server, "/created/v1?t=2014-05-22T02%3A38%3A28.103Z&a=b%2Cc"),
        headers={"authorization": "Bearer k", "x-custom": "1"},
        content=b'{"events": []}',
    )
    resp = t.handle_request(req)
    assert resp.status_code == 201
    assert resp.json() == {"ok": True}
    assert resp.headers["x-rate-limit-remaining"] == "7"
    path, headers, body, _ = server.seen[0]
    assert path == "/created/v1?t=2014-05-22T02%3A38%3A28.103Z&a=b%2Cc"
    assert headers["authorization"] == "Bearer k" and headers["x-custom"] == "1"
    assert body == b'{"events": []}'
    t.close()


def test_connections_are_kept_alive_and_reused(server: _Server) -> None:
    t = PooledTransport()
    for _ in range(5):
        t.handle_request(httpx.Request("POST", url(server, "/a"), content=b"x"))
    ports = {port for *_, port in server.seen}
    assert len(ports) == 1  # one TCP connection for all five requests
    t.handle_request(httpx.Request("POST", url(server, "/close"), content=b"x"))
    t.handle_request(httpx.Request("POST", url(server, "/a"), content=b"x"))
    assert len({port for *_, port in server.seen}) == 2  # the server said close: a new one
    t.close()


def test_an_idle_connection_closed_by_the_server_is_replaced(server: _Server) -> None:
    t = PooledTransport()
    t.handle_request(httpx.Request("POST", url(server, "/a"), content=b"x"))
    # Simulate the server dropping the idle keep-alive connection.
    (conn,) = t._idle[("http", "127.0.0.1", server.server_address[1])]
    assert conn.sock is not None
    conn.sock.shutdown(socket.SHUT_RDWR)
    resp = t.handle_request(httpx.Request("POST", url(server, "/a"), content=b"x"))
    assert resp.status_code == 200
    t.close()


def test_transport_errors_are_httpx_errors(server: _Server) -> None:
    t = PooledTransport()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        t.handle_request(httpx.Request("POST", f"http://127.0.0.1:{free}/", content=b"x"))
    slow = httpx.Request(
        "POST",
        url(server, "/slow"),
        content=b"x",
        extensions={"timeout": {"connect": 1.0, "read": 0.1}},
    )
    with pytest.raises(httpx.ReadTimeout):
        t.handle_request(slow)
    t.close()


def test_proxies_from_the_environment_use_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(default_transport(8), PooledTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    transport = default_transport(8)
    assert not isinstance(transport, PooledTransport)
    transport.close()


def _canned(responses: list[bytes]) -> tuple[int, threading.Thread]:
    """A loopback server answering one request per connection with each canned response."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            for raw in responses:
                conn, _ = listener.accept()
                with conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    conn.sendall(raw)
                    conn.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_response_framings() -> None:
    port, thread = _canned(
        [
            # chunked, with a chunk extension and a trailer, after a 100 Continue
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            # no length: the body runs until the server closes
            b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 3\r\n\r\ndown for now",
            # a body cut short
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
            # not HTTP at all
            b"SSH-2.0-OpenSSH_9.0\r\n",
        ]
    )
    t = PooledTransport()
    target = f"http://127.0.0.1:{port}/v1"
    first = t.handle_request(httpx.Request("POST", target, content=b"{}"))
    assert (first.status_code, first.content, first.headers["x-a"]) == (200, b"hello world", "1")
    second = t.handle_request(httpx.Request("POST", target, content=b"{}"))
    assert second.status_code == 503 and second.content == b"down for now"
    assert second.headers["retry-after"] == "3"
    with pytest.raises(httpx.RemoteProtocolError, match="ended after 9 of 100 bytes"):
        t.handle_request(httpx.Request("POST", target, content=b"{}"))
    with pytest.raises(httpx.RemoteProtocolError, match=r"not an HTTP/1\.x status line"):
        t.handle_request(httpx.Request("POST", target, content=b"{}"))
    thread.join(5)
    t.close()

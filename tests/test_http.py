"""The engine's HTTP clients (postback.delivery.http) against real loopback servers: no request
is ever sent twice, trust comes from SSL_CERT_FILE or ca_bundle, and every wait and body is
bounded."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
import trustme

from postback.delivery.http import DeliveryClients, ResponseTooLarge, _DeadlineStream
from postback.delivery.http import _local as http_local

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


class RawServer:
    """A loopback server that runs ``answer(conn, request_number)`` for each request it
    reads, and counts the requests and connections it saw."""

    def __init__(
        self,
        answer: Callable[[socket.socket, int], bool],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answer = answer
        self.tls = tls
        self.requests = 0
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://localhost:{self.port}/v1/events"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                with self._lock:
                    self.requests += 1
                    number = self.requests
                if not self.answer(conn, number):
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def make(answer: Callable[[socket.socket, int], bool], **kw: object) -> RawServer:
        server = RawServer(answer, **kw)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def clients() -> Iterator[DeliveryClients]:
    c = DeliveryClients()
    yield c
    c.close()


def post(url: str) -> httpx.Request:
    return httpx.Request("POST", url, content=b'{"events": []}')


def answer_ok(conn: socket.socket, n: int) -> bool:
    conn.sendall(OK)
    return True


# --- at most once ----------------------------------------------------------------------------


def test_no_answer_on_a_fresh_connection_is_an_error_not_a_second_request(
    serve: Callable[..., RawServer], clients: DeliveryClients
) -> None:
    server = serve(lambda conn, n: False)  # read the request, close without a word
    with pytest.raises(httpx.RemoteProtocolError):
        clients.send(post(server.url), timeout=5)
    assert server.requests == 1


def test_no_answer_on_a_reused_connection_is_an_error_not_a_second_request(
    serve: Callable[..., RawServer], clients: DeliveryClients
) -> None:
    server = serve(lambda conn, n: n == 1 and answer_ok(conn, n))  # answers only the first
    assert clients.send(post(server.url), timeout=5).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        clients.send(post(server.url), timeout=5)
    assert (server.requests, server.connections) == (2, 1)  # sent once, on the same connection


def test_an_idle_connection_the_server_closed_costs_a_reconnect_not_a_duplicate(
    serve: Callable[..., RawServer], clients: DeliveryClients
) -> None:
    def answer_then_close(conn: socket.socket, n: int) -> bool:
        conn.sendall(OK)  # keep-alive as far as the client knows, then closed while idle
        return False

    server = serve(answer_then_close)
    for _ in range(3):
        time.sleep(0.05)  # the close reaches the client before it reuses the connection
        assert clients.send(post(server.url), timeout=5).status_code == 200
    assert (server.requests, server.connections) == (3, 3)


# --- one send per request ---------------------------------------------------------------------


def test_a_requests_head_and_body_go_out_in_one_write(
    serve: Callable[..., RawServer], clients: DeliveryClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One socket write per request with a body (head and body together), one for a request
    without; the server reads each whole and answers."""
    writes: list[bytes] = []
    write = httpcore._backends.sync.SyncStream.write

    def recording(self: Any, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:  # httpcore writes an empty end of message; the socket sees nothing
            writes.append(bytes(buffer))
        write(self, buffer, timeout)

    monkeypatch.setattr(httpcore._backends.sync.SyncStream, "write", recording)
    server = serve(answer_ok)
    assert clients.send(post(server.url), timeout=5).status_code == 200
    assert clients.send(httpx.Request("GET", server.url), timeout=5).status_code == 200
    assert clients.send(post(server.url), timeout=5).status_code == 200
    assert len(writes) == 3 and server.requests == 3
    assert writes[0].startswith(b"POST /v1/events") and writes[0].endswith(b'{"events": []}')
    assert writes[1].startswith(b"GET /v1/events") and writes[1].endswith(b"\r\n\r\n")
    assert writes[2] == writes[0]


class _Recorded(httpcore.NetworkStream):
    def __init__(self, fail_writes: bool = False) -> None:
        self.log: list[tuple[str, bytes]] = []
        self.fail_writes = fail_writes

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.log.append(("write", buffer))
        if self.fail_writes:
            raise httpcore.WriteError("broken pipe")

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.log.append(("read", b""))
        return b"HTTP/1.1 200 OK\r\n"

    def close(self) -> None:
        self.log.append(("close", b""))


@pytest.mark.parametrize("fail_writes", [False, True])
def test_a_held_head_is_sent_before_the_response_is_read(fail_writes: bool) -> None:
    """A head held for a body that never follows goes out before the read; a failed write
    there is left for the read to report, as httpcore does with a failed write."""
    raw = _Recorded(fail_writes)
    stream = _DeadlineStream(raw)
    http_local.hold_head = True
    try:
        stream.write(b"HEAD")
    finally:
        http_local.hold_head = False
    assert raw.log == []
    assert stream.read(100) == b"HTTP/1.1 200 OK\r\n"
    assert raw.log == [("write", b"HEAD"), ("read", b"")]
    if fail_writes:
        with pytest.raises(httpcore.WriteError):  # nothing held any more: written at once
            stream.write(b"next")
    else:
        stream.write(b"next")  # nothing held any more: written at once
    assert raw.log[-1] == ("write", b"next")


# --- bounded waits and bodies ----------------------------------------------------------------


def test_a_slow_trickle_of_headers_is_cut_at_the_timeout(
    serve: Callable[..., RawServer], clients: DeliveryClients
) -> None:
    def slowloris(conn: socket.socket, n: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for i in range(100):  # a header line every 0.2 s: each read is well within timeout
            time.sleep(0.2)
            conn.sendall(f"x-{i}: y\r\n".encode())
        return False

    server = serve(slowloris)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout, match=r"within 1 s \(the vendor's timeout\)"):
        clients.send(post(server.url), timeout=1.0)
    assert time.monotonic() - started < 10  # generous: without the deadline it takes 20 s


def test_a_10_mib_response_is_not_read(
    serve: Callable[..., RawServer], clients: DeliveryClients
) -> None:
    big = b"x" * (10 * 1024 * 1024)

    def chunked(conn: socket.socket, n: int) -> bool:  # no Content-Length to refuse it early
        conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(0, len(big), 1 << 16):
            piece = big[i : i + (1 << 16)]
            conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.sendall(b"0\r\n\r\n")
        return True

    def declared(conn: socket.socket, n: int) -> bool:
        conn.sendall(f"HTTP/1.1 200 OK\r\ncontent-length: {len(big)}\r\n\r\n".encode() + big)
        return True

    for answer, note in ((chunked, "bytes and more"), (declared, "it declared 10,485,760")):
        server = serve(answer)
        with pytest.raises(ResponseTooLarge, match=note) as info:
            clients.send(post(server.url), timeout=10)
        assert "larger than the 1,024 KiB postback reads" in str(info.value)
        assert isinstance(info.value, httpx.TransportError)  # classified by the vendor's plugin
        assert server.requests == 1


# --- trust -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA, serve: Callable[..., RawServer]) -> RawServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return serve(answer_ok, tls=context)


def test_a_private_ca_is_trusted_through_ssl_cert_file(
    ca: trustme.CA, tls_server: RawServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    clients = DeliveryClients()
    try:
        assert clients.send(post(tls_server.url), timeout=5).status_code == 200
    finally:
        clients.close()


def test_a_private_ca_is_trusted_through_ca_bundle(
    ca: trustme.CA, tls_server: RawServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    clients = DeliveryClients(ca_bundle=str(pem))
    try:
        assert clients.send(post(tls_server.url), timeout=5).status_code == 200
    finally:
        clients.close()


def test_an_untrusted_certificate_is_refused_with_how_to_fix_it(
    tls_server: RawServer, clients: DeliveryClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(httpx.ConnectError) as info:
        clients.send(post(tls_server.url), timeout=5)
    text = str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in text
    assert "ca_bundle" in text and "SSL_CERT_FILE" in text
    assert tls_server.requests == 0  # nothing was sent to a server we could not verify


def test_each_thread_has_its_own_client(
    serve: Callable[..., RawServer], clients: DeliveryClients
) -> None:
    server = serve(answer_ok)
    seen: list[httpx.Client] = []

    def work() -> None:
        seen.append(clients.client())
        clients.send(post(server.url), timeout=5)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 4
    assert server.requests == 4


def test_ca_bundle_is_read_relative_to_the_config_and_checked_at_start_up(
    ca: trustme.CA, tmp_path: Path
) -> None:
    from postback import ConfigError
    from postback.config import build_config
    from postback.testing.example import ExampleDestination

    (tmp_path / "certs").mkdir()
    ca.cert_pem.write_to_path(str(tmp_path / "certs" / "ca.pem"))
    vendors = {"example": {"api_key": "k"}}
    dests = {"example": ExampleDestination}
    cfg = build_config(
        {"postback": {"ca_bundle": "certs/ca.pem"}, "vendors": vendors}, dests, base_dir=tmp_path
    )
    assert cfg.core.ca_bundle == str(tmp_path / "certs" / "ca.pem")
    with pytest.raises(ConfigError, match=r"postback\.ca_bundle: cannot load CA certificates"):
        build_config(
            {"postback": {"ca_bundle": "certs/missing.pem"}, "vendors": vendors},
            dests,
            base_dir=tmp_path,
        )

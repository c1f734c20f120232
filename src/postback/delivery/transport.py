"""The engine's default HTTP transport: keep-alive HTTP/1.1 connections on plain sockets.

Vendors build ``httpx.Request`` objects and read ``httpx.Response`` objects; that is the
sans-I/O seam and it stays httpx's. What carries the bytes is an ``httpx.BaseTransport``. httpx's
own transport (httpcore + h11, pure Python) spends several hundred microseconds of CPU per
request, which caps one-event-per-request vendors well below what the network allows when
dozens of requests are in flight (see docs/performance.md); the standard library's
``http.client`` is cheaper, but parses every response's headers with the ``email`` package,
which was a tenth of the delivery process's CPU in a profile. :class:`PooledTransport` writes
the request that httpx built in one ``sendall`` and reads the response with a small HTTP/1.1
parser (status line, headers, ``Content-Length``, chunked or read-to-close bodies, ``1xx``
interim responses). It is what the engine uses unless proxy environment variables are set
(then httpx's transport, which honours them, is used) or the application passes its own.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections import defaultdict
from typing import BinaryIO

import httpx

__all__ = ["PooledTransport", "default_transport"]

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_MAX_LINE = 65536
_MAX_HEADERS = 200


class _Stale(Exception):
    """A reused connection turned out closed before any byte of a response came back."""


def _ssl_context() -> ssl.SSLContext:
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()


class _Connection:
    __slots__ = ("rfile", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile: BinaryIO = sock.makefile("rb")

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


class PooledTransport(httpx.BaseTransport):
    """HTTP/1.1 with a keep-alive pool per (scheme, host, port).

    Thread-safe: each request checks a connection out of the pool and returns it when the
    response is read. Timeouts come from ``request.extensions["timeout"]`` (set by the engine
    from the vendor's ``timeout`` setting). Transport failures are raised as the matching
    ``httpx`` exceptions (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``ReadError``,
    ``RemoteProtocolError``), so vendors classify them as they would with httpx's transport.
    A pooled connection that the server closed while idle is replaced and the request sent
    once more (nothing was received for it), as urllib3 does.
    """

    def __init__(self, *, max_idle_per_host: int = 64) -> None:
        self.max_idle_per_host = max_idle_per_host
        self._idle: dict[tuple[str, str, int], list[_Connection]] = defaultdict(list)
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    def _connect(
        self, request: httpx.Request, scheme: str, host: str, port: int, timeout: float | None
    ) -> _Connection:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect to {host}:{port}: {exc}", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"connect to {host}:{port}: {exc}", request=request) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                if self._ssl is None:
                    self._ssl = _ssl_context()
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(f"TLS with {host}:{port}: {exc}", request=request) from exc
        except OSError as exc:
            sock.close()
            raise httpx.ConnectError(f"TLS with {host}:{port}: {exc}", request=request) from exc
        return _Connection(sock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        host = url.host
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        timeouts = request.extensions.get("timeout") or {}
        head = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        data = b"".join(head) + request.read()

        for attempt in (1, 2):
            with self._lock:
                idle = self._idle[key]
                conn = idle.pop() if idle else None
            reused = conn is not None
            if conn is None:
                conn = self._connect(request, scheme, host, port, timeouts.get("connect"))
            try:
                conn.sock.settimeout(timeouts.get("read"))
                try:
                    conn.sock.sendall(data)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
                    raise _Stale(str(exc)) from exc
                status, headers, content, keep = _read_response(conn.rfile, request.method)
            except _Stale as exc:
                conn.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle connection: once more, fresh
                raise httpx.RemoteProtocolError(
                    f"the server closed the connection without a response ({exc})",
                    request=request,
                ) from exc
            except TimeoutError as exc:
                conn.close()
                raise httpx.ReadTimeout(
                    f"no response from {host}:{port} in time", request=request
                ) from exc
            except httpx.RemoteProtocolError as exc:
                conn.close()
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            except OSError as exc:
                conn.close()
                raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
            pooled = False
            if keep:
                with self._lock:
                    idle = self._idle[key]
                    if len(idle) < self.max_idle_per_host:
                        idle.append(conn)
                        pooled = True
            if not pooled:
                conn.close()
            return httpx.Response(status, headers=headers, content=content, request=request)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _read_response(
    rfile: BinaryIO, method: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """Read one response: (status, headers, body, whether the connection may be reused).

    Raises :class:`_Stale` if the connection ended before the first byte, and
    ``httpx.RemoteProtocolError`` for anything that is not HTTP/1.x.
    """
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if not line:
            raise _Stale("end of stream before the status line")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(line) > _MAX_LINE:
            raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad status code in {line[:80]!r}") from None
        headers = _read_headers(rfile)
        if not 100 <= status < 200 or status == 101:
            break  # 1xx (100 Continue, 103 Early Hints) come before the real response
    length: int | None = None
    chunked = False
    close = parts[0] == b"HTTP/1.0"
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise httpx.RemoteProtocolError(f"bad Content-Length {value!r}") from None
        elif lname == b"transfer-encoding":
            chunked = value.lower().endswith(b"chunked")
        elif lname == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                close = True
            elif b"keep-alive" in tokens:
                close = False
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", not close
    if chunked:
        return status, headers, _read_chunked(rfile), not close
    if length is not None:
        body = rfile.read(length)
        if len(body) != length:
            raise httpx.RemoteProtocolError(
                f"the response ended after {len(body)} of {length} bytes"
            )
        return status, headers, body, not close
    return status, headers, rfile.read(), False  # delimited by the server closing


def _read_headers(rfile: BinaryIO) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise httpx.RemoteProtocolError("the response ended inside its headers")
        if len(line) > _MAX_LINE or len(headers) >= _MAX_HEADERS:
            raise httpx.RemoteProtocolError("response headers too long")
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError(f"bad header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))


def _read_chunked(rfile: BinaryIO) -> bytes:
    out: list[bytes] = []
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad chunk size line {line[:80]!r}") from None
        if size == 0:
            _read_headers(rfile)  # trailers, up to the blank line
            return b"".join(out)
        chunk = rfile.read(size)
        if len(chunk) != size or rfile.read(2) != b"\r\n":
            raise httpx.RemoteProtocolError("the response ended inside a chunk")
        out.append(chunk)


def default_transport(total_connections: int) -> httpx.BaseTransport:
    """The pooled stdlib transport, or httpx's when proxies are configured by environment."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return _proxied(total_connections)
    return PooledTransport(max_idle_per_host=max(total_connections, 8))


def _proxied(total_connections: int) -> httpx.BaseTransport:
    # httpx.Client resolves HTTP(S)_PROXY / NO_PROXY per URL; reuse that by sending through a
    # client-backed transport.
    client = httpx.Client(
        limits=httpx.Limits(
            max_connections=total_connections, max_keepalive_connections=total_connections
        ),
        trust_env=True,
    )
    return _ClientTransport(client)


class _ClientTransport(httpx.BaseTransport):
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.client.send(request)
        response.read()
        return response

    def close(self) -> None:
        self.client.close()

"""The engine's default HTTP transport: keep-alive connections on the standard library.

Vendors build ``httpx.Request`` objects and read ``httpx.Response`` objects; that is the
sans-I/O seam and it stays httpx's. What carries the bytes is an ``httpx.BaseTransport``. httpx's
own transport (httpcore + h11, pure Python) spends several hundred microseconds of CPU per
request, which caps one-event-per-request vendors well below what the network allows when
dozens of requests are in flight (see docs/performance.md). :class:`PooledTransport` sends the
same requests through ``http.client`` connections kept alive per host, at a fraction of the
cost. It is what the engine uses unless proxy environment variables are set (then httpx's
transport, which honours them, is used) or the application passes its own transport.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
from collections import defaultdict

import httpx

__all__ = ["PooledTransport", "default_transport"]

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_STALE = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)


def _ssl_context() -> ssl.SSLContext:
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()


class PooledTransport(httpx.BaseTransport):
    """HTTP/1.1 over ``http.client`` with a keep-alive pool per (scheme, host, port).

    Thread-safe: each request checks a connection out of the pool and returns it when the
    response is read. Timeouts come from ``request.extensions["timeout"]`` (set by the engine
    from the vendor's ``timeout`` setting). Transport failures are raised as the matching
    ``httpx`` exceptions (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
    ``RemoteProtocolError``), so vendors classify them as they would with httpx's transport.
    A pooled connection that the server closed while idle is replaced and the request sent
    once more (nothing was received for it), as urllib3 does.
    """

    def __init__(self, *, max_idle_per_host: int = 64) -> None:
        self.max_idle_per_host = max_idle_per_host
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = defaultdict(list)
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    def _new(
        self, scheme: str, host: str, port: int, connect_timeout: float | None
    ) -> http.client.HTTPConnection:
        if scheme == "https":
            if self._ssl is None:
                self._ssl = _ssl_context()
            return http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=self._ssl
            )
        return http.client.HTTPConnection(host, port, timeout=connect_timeout)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, url.host, port)
        timeouts = request.extensions.get("timeout") or {}
        connect_timeout = timeouts.get("connect")
        read_timeout = timeouts.get("read")
        target = url.raw_path.decode("ascii")
        body = request.read()
        headers = request.headers.raw

        for attempt in (1, 2):
            with self._lock:
                idle = self._idle[key]
                conn = idle.pop() if idle else None
            reused = conn is not None
            if conn is None:
                conn = self._new(scheme, url.host, port, connect_timeout)
            try:
                if conn.sock is None:
                    try:
                        conn.connect()
                    except TimeoutError as exc:
                        raise httpx.ConnectTimeout(
                            f"connect to {url.host}:{port}: {exc}", request=request
                        ) from exc
                    except OSError as exc:
                        raise httpx.ConnectError(
                            f"connect to {url.host}:{port}: {exc}", request=request
                        ) from exc
                assert conn.sock is not None
                conn.sock.settimeout(read_timeout)
                conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders(body or None)
                response = conn.getresponse()
                content = response.read()
            except httpx.TransportError:
                conn.close()
                raise
            except _STALE as exc:
                conn.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle connection: once more, fresh
                raise httpx.RemoteProtocolError(
                    f"{type(exc).__name__}: {exc}", request=request
                ) from exc
            except TimeoutError as exc:
                conn.close()
                raise httpx.ReadTimeout(
                    f"no response from {url.host}:{port} in time", request=request
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
            if response.will_close:
                conn.close()
            else:
                with self._lock:
                    idle = self._idle[key]
                    if len(idle) < self.max_idle_per_host:
                        idle.append(conn)
                        conn = None
                if conn is not None:
                    conn.close()
            return httpx.Response(
                response.status,
                headers=response.getheaders(),
                content=content,
                request=request,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


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

"""HTTP for delivery: an ``httpx.Client`` per request thread, with bounded waits and bodies.

Vendors build ``httpx.Request`` objects and read ``httpx.Response`` objects (the sans-I/O seam);
:class:`DeliveryClients` carries them. Its duties:

* **One client per request thread.** Each thread that sends gets its own ``httpx.Client``
  (keep-alive HTTP/1.1, a small pool, explicit timeouts), so threads never wait on one shared
  pool's lock: with 64 threads on one client, httpcore's pool lock cut the rate in half
  (docs/performance.md). The clients share one TLS context.
* **Trust.** TLS is always verified: against certifi's roots, or ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR`` when set (``trust_env``, as httpx does), plus the CA certificates of
  ``[postback] ca_bundle`` (a private CA, a TLS-inspecting proxy). ``HTTP(S)_PROXY`` /
  ``NO_PROXY`` are honoured by httpx.
* **Never a second copy.** Nothing here resends a request: httpx does not retry (``retries=0``
  only retries connecting), and httpcore checks that an idle connection is still open before
  it reuses it, so a connection the server closed costs a reconnect, not a duplicate. A request
  whose response did not come is an error for the vendor's plugin to classify.
* **Bounded waits and bodies.** The vendor's ``timeout`` bounds the whole exchange (connect,
  send, response headers and body), not each read: every socket operation gets at most what
  is left of it, so a server that answers one byte a second cannot hold a request thread.
  A response body larger than :data:`MAX_RESPONSE_BYTES` is not read: :class:`ResponseTooLarge`.
* **No credential in httpcore's log.** At DEBUG, httpcore logs each response's headers; a
  vendor echoing the request in a header would show its credential there. While a thread
  sends, that log's lines are redacted with the vendor's secrets (:class:`_RedactSecrets`).
* **No unchecked header.** A request whose header name or value holds a line break or other
  control character is never written (:class:`UnsafeHeader`): it would split the request on
  the connection, so that the next request reads this one's response.
"""

from __future__ import annotations

import http.cookiejar
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpcore
import httpx

from postback.delivery import timing

__all__ = [
    "MAX_RESPONSE_BYTES",
    "DeliveryClients",
    "ResponseTooLarge",
    "UnsafeHeader",
    "ca_bundle_problem",
    "check_headers",
    "resolve_ca_bundle",
    "ssl_context",
]

log = logging.getLogger("postback.delivery")

#: The largest response body read from a vendor (vendors answer with a few hundred bytes).
MAX_RESPONSE_BYTES = 1024 * 1024


class ResponseTooLarge(httpx.RemoteProtocolError):
    """The vendor's response body is larger than the engine reads (:data:`MAX_RESPONSE_BYTES`).

    The request was sent and answered, but with something no vendor documents: its outcome is
    unknown, as after a dropped connection (an ``httpx.TransportError``, classified by the
    vendor's plugin).
    """


class UnsafeHeader(ValueError):
    """A request header holds a control character (CR, LF, NUL...): the request is not sent.

    Names the header, never its value (it may be a credential). Core validation keeps such
    values out of events and settings; this is the last check before the wire."""


_UNSAFE_HEADER_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
_UNSAFE_NAME_BYTES = re.compile(rb"[\x00-\x20\x7f:]")


def check_headers(request: httpx.Request) -> None:
    """Raise :class:`UnsafeHeader` if a header of ``request`` could split it on the wire."""
    for name, value in request.headers.raw:
        if _UNSAFE_NAME_BYTES.search(name) or not name:
            raise UnsafeHeader(f"request header name {name!r} holds a character not allowed")
        if _UNSAFE_HEADER_BYTES.search(value):
            raise UnsafeHeader(
                f"request header {name.decode('latin-1')!r} holds a line break or other control "
                "character; the request was not sent (value withheld)"
            )


def ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The TLS context of every delivery: verified against certifi's roots, or
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, plus the CA certificates in ``ca_bundle``
    (a PEM file or a directory of them)."""
    ctx = httpx.create_ssl_context(verify=True, trust_env=True)
    if ca_bundle:
        if os.path.isdir(ca_bundle):
            ctx.load_verify_locations(capath=ca_bundle)
        else:
            ctx.load_verify_locations(cafile=ca_bundle)
    return ctx


def resolve_ca_bundle(value: str, base_dir: Path) -> tuple[str | None, str | None]:
    """``[postback] ca_bundle`` resolved against the config's directory, and loaded once:
    ``(absolute path, None)``, or ``(None, what is wrong and how to fix it)``."""
    path = str(base_dir / Path(value).expanduser())
    problem = ca_bundle_problem(path)
    return (None, problem) if problem is not None else (path, None)


def ca_bundle_problem(path: str) -> str | None:
    """Why the CA certificates at ``path`` cannot be used, or None when they load."""
    try:
        ssl.create_default_context().load_verify_locations(
            **({"capath": path} if os.path.isdir(path) else {"cafile": path})
        )
    except (OSError, ssl.SSLError) as exc:
        return (
            f"cannot load CA certificates from {path!r} ({exc}); give the path of a PEM file "
            "(-----BEGIN CERTIFICATE-----) of the CA that signed the vendor's or your proxy's "
            "certificate"
        )
    return None


#: The loggers httpcore traces a request on (``logging.getLogger`` names in its source).
HTTPCORE_LOGGERS = (
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _RedactSecrets(logging.Filter):
    """Redacts what httpcore logs on a thread while it sends a delivery, with that vendor's
    secrets (:meth:`DeliveryClients.send` sets them): a response header echoing the request
    (``receive_response_headers.complete return_value=(..., [(b'x-echo', b'<key>')])``) is
    logged with the key masked. Records on other threads (the app's own httpx) pass as they
    are. Costs nothing unless an app logs httpcore at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact: Callable[[str], str] | None = getattr(_local, "redact", None)
        if redact is not None:
            record.msg = redact(record.getMessage())
            record.args = ()
        return True


_REDACT_SECRETS = _RedactSecrets()


def _guard_httpcore_logs() -> None:
    for name in HTTPCORE_LOGGERS:  # a filter on a logger is not inherited by its children
        logging.getLogger(name).addFilter(_REDACT_SECRETS)  # once: addFilter checks


class _NoCookies(http.cookiejar.CookieJar):
    """Deliveries are stateless: a vendor's ``Set-Cookie`` is neither kept nor sent back
    (and parsing it was a tenth of httpx's work per request)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


# --------------------------------------------------------------------------------------------
# The deadline: the vendor's timeout bounds the whole exchange


_local = threading.local()


def _left() -> float | None:
    """Seconds left before this thread's request must be done, or None if none is set."""
    deadline: float | None = getattr(_local, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()


def _late() -> str:
    budget = getattr(_local, "budget", 0.0)
    return f"no complete response within {budget:g} s (the vendor's timeout)"


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    left = _left()
    if left is None:
        return timeout
    if left <= 0:
        raise error(_late())
    return left if timeout is None or left < timeout else timeout


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write waits at most what is left of the deadline.

    It also sends a request's head and body in one ``send()``: httpcore writes them apart, and
    on loopback each ``send()`` costs the sender the receiver's TCP work too (about 150 µs of
    CPU for a request of 100 events, measured). When :meth:`DeliveryClients.send` says a body
    follows, the first write (the head) is held and goes out with the next one; a read with
    the head still held sends it first (as httpcore would have, ignoring a failed write: the
    read then reports what went wrong)."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._held = b""

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._held:
            held, self._held = self._held, b""
            try:
                self._stream.write(held, _bounded(timeout, httpcore.WriteTimeout))
            except httpcore.WriteError:
                pass  # httpcore goes on to read the response after a failed write, too
        bounded = _bounded(timeout, httpcore.ReadTimeout)
        try:
            return self._stream.read(max_bytes, bounded)
        except httpcore.ReadTimeout:
            left = _left()
            if left is not None and left <= 0.001:
                raise httpcore.ReadTimeout(_late()) from None
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # h11's end of a message: nothing to send (a held head waits on)
            return
        if self._held:
            buffer, self._held = self._held + buffer, b""
        elif getattr(_local, "hold_head", False):
            _local.hold_head = False  # the head of a request whose body follows
            self._held = buffer
            return
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._held = b""
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and getattr(_local, "releasing", False):
            # httpcore asks whether an idle connection was closed by the server both when a
            # response is closed and before the connection's next request; only the second
            # check keeps a request off a dead connection, and each is a poll() that hands
            # the interpreter lock to another thread. The first is answered "no".
            return False
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, with every wait bounded by the request's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound_total_time(client: httpx.Client) -> bool:
    """Put the deadline backend under each of ``client``'s connection pools.

    httpx has no overall timeout for a synchronous request (its timeouts apply to each socket
    operation) and does not let a caller choose httpcore's network backend, so this sets the
    backend of the pools it made. Returns False (and the per-operation timeouts still apply)
    if a future httpx arranges its pools otherwise; tests/test_http.py notices that.
    """
    transports = [client._transport, *client._mounts.values()]
    done = True
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend):
            if not isinstance(backend, _DeadlineBackend):
                pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
        elif transport is not None and isinstance(transport, httpx.HTTPTransport):
            done = False
    return done


# --------------------------------------------------------------------------------------------
# The clients


class _Borrowed(httpx.BaseTransport):
    """An application's transport (``Tracker.from_config(transport=...)``), shared by the
    request threads' clients and never closed by them: it stays the application's."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self.transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.transport.handle_request(request)


class DeliveryClients:
    """The HTTP clients of one delivery engine: one ``httpx.Client`` per thread that sends.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests). ``ca_bundle`` adds
    trusted CA certificates. Thread-safe; :meth:`close` closes every client it made.
    """

    def __init__(
        self,
        *,
        transport: httpx.BaseTransport | None = None,
        ca_bundle: str | None = None,
        max_body: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.transport = transport
        self.ca_bundle = ca_bundle
        self.max_body = max_body
        self._ssl: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._clients: list[httpx.Client] = []
        self._local = threading.local()
        self._warned = False
        _guard_httpcore_logs()

    def _new_client(self) -> httpx.Client:
        common: dict[str, Any] = {
            # One request at a time per thread; a second connection for the rare thread that
            # talks to two origins. Timeouts are set per request from the vendor's settings.
            "limits": httpx.Limits(
                max_connections=2,
                max_keepalive_connections=2,
                keepalive_expiry=timing.KEEPALIVE_EXPIRY,
            ),
            "timeout": httpx.Timeout(10.0),
            "cookies": _NoCookies(),
            "follow_redirects": False,
        }
        if self.transport is not None:
            return httpx.Client(transport=_Borrowed(self.transport), trust_env=False, **common)
        with self._lock:
            if self._ssl is None:
                self._ssl = ssl_context(self.ca_bundle)
        client = httpx.Client(verify=self._ssl, trust_env=True, **common)
        if not _bound_total_time(client) and not self._warned:
            self._warned = True
            log.warning(
                "this httpx (%s) arranges its connection pools in a way postback does not "
                "know: a vendor's timeout bounds each read, not the whole response",
                httpx.__version__,
            )
        return client

    def client(self) -> httpx.Client:
        """This thread's client (made on first use)."""
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._new_client()
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def send(
        self,
        request: httpx.Request,
        timeout: float,
        redact: Callable[[str], str] | None = None,
    ) -> httpx.Response:
        """Send ``request`` on this thread's client and read the response, all within
        ``timeout`` seconds; raises ``httpx.TransportError`` (``ReadTimeout``,
        :class:`ResponseTooLarge`, ...) when that fails. ``redact`` (the vendor's
        :meth:`~postback.Destination.redact`) masks its secrets in httpcore's DEBUG log."""
        check_headers(request)
        client = self.client()
        _local.deadline = time.monotonic() + timeout
        _local.budget = timeout
        _local.redact = redact
        # A body follows the head: the stream sends both in one write (_DeadlineStream).
        _local.hold_head = request.headers.get("content-length", "0") != "0"
        try:
            # The transport httpx.Client chose for this URL (its own, a proxy's from the
            # environment, or the one respx mocks), called directly: Client.send's auth,
            # redirect, cookie and event-hook machinery, none of which a delivery uses, added
            # 40% to the CPU of a request with dozens of threads sending (docs/performance.md).
            # OpenTelemetry's httpx instrumentation and respx hook the transport and the
            # connection pool, so they see every request all the same.
            transport = client._transport_for_url(request.url)
            response = transport.handle_request(request)
            response.request = request
            _local.releasing = True  # the body is read and the connection given back
            try:
                _read_capped(response, self.max_body)
            finally:
                try:
                    response.close()
                finally:
                    _local.releasing = False
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" not in str(exc):
                raise
            raise httpx.ConnectError(
                f"{exc} (the server's TLS certificate is not signed by a CA this process "
                "trusts; if a private CA or a TLS-inspecting proxy signs it, give its CA "
                "certificate as [postback] ca_bundle or in SSL_CERT_FILE)",
                request=request,
            ) from exc
        finally:
            _local.deadline = None
            _local.hold_head = False
            _local.redact = None
        return response

    def close(self) -> None:
        """Close every client (their connections); threads make new ones if they send again."""
        with self._lock:
            clients, self._clients = self._clients, []
            self._local = threading.local()
        for client in clients:
            try:
                client.close()
            except Exception:  # a client closed while its thread was sending
                log.debug("closing an HTTP client failed", exc_info=True)


def _read_capped(response: httpx.Response, cap: int) -> None:
    """Read the body of a streamed response, at most ``cap`` bytes (decoded)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ResponseTooLarge(
            _too_large(response, cap, f"it declared {int(declared):,} bytes"),
            request=response.request,
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > cap:
            raise ResponseTooLarge(
                _too_large(response, cap, f"{size:,} bytes and more"), request=response.request
            )
        chunks.append(chunk)
    # What Response.read() stores; httpx has no public way to read a body with a bound.
    response._content = b"".join(chunks)


def _too_large(response: httpx.Response, cap: int, what: str) -> str:
    return (
        f"the response of {response.request.url.host} (HTTP {response.status_code}) is larger "
        f"than the {cap // 1024:,} KiB postback reads ({what}); it was not read, so the "
        "request's outcome is unknown"
    )

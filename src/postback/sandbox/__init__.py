"""``postback sandbox``: local emulations of the vendors' APIs, served on loopback.

Every :class:`~postback.Emulator` that a plugin registers is mounted under ``/<vendor>`` (one
per vendor: two for one vendor are refused, by the plugin host and here), so a tracker whose
vendor has ``base_url = "http://127.0.0.1:PORT/<vendor>"`` talks to it exactly as it would
talk to the vendor. The sandbox also injects faults for reliability tests::

    POST /_sandbox/faults   {"vendor": "x", "status": 503, "count": 3}      next 3 answers fail
                            {"vendor": "x", "latency": 0.02}                 add 20 ms to each
                            {"vendor": "x", "hang": 30, "count": 1}          never answer in time
                            {"vendor": "x", "body": "<html>", "status": 200} answer garbage
    GET  /_sandbox/received  what each emulator accepted
    POST /_sandbox/reset     forget faults and received events

The same controls are methods on :class:`Sandbox` for tests in the same process.
:meth:`Sandbox.vendor_toml` renders a vendor's sandbox settings as a ``[vendors.NAME]`` TOML
table (what ``postback sandbox`` prints for pasting into postback.toml), and
:attr:`Sandbox.on_request` is told of every request served over the socket.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import httpx

from postback.destination import Emulator

__all__ = ["Fault", "Sandbox", "toml_value"]

log = logging.getLogger("postback.sandbox")


@attrs.define
class Fault:
    """What the sandbox does to the next ``count`` requests for a vendor (None: all of them)."""

    status: int | None = None
    count: int | None = None
    latency: float = 0.0
    hang: float = 0.0
    body: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict)

    def take(self) -> bool:
        """Consume one use; False when used up."""
        if self.count is None:
            return True
        if self.count <= 0:
            return False
        self.count -= 1
        return True


class Sandbox:
    """Serve emulators on ``127.0.0.1`` in a background thread."""

    def __init__(
        self,
        emulators: Iterable[Emulator] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.emulators: dict[str, Emulator] = {}
        for emulator in emulators:
            known = self.emulators.setdefault(emulator.vendor, emulator)
            if known is not emulator:  # one would be served, the other never: say so
                raise ValueError(
                    f"two emulators of vendor {emulator.vendor!r}: "
                    f"{type(known).__qualname__} and {type(emulator).__qualname__}; "
                    "pass one per vendor"
                )
        self._in_process = False
        self.faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._address = (host, port)
        self._server_obj: _Server | None = None
        self._thread: threading.Thread | None = None
        #: Called with one line per request served over the socket (``POST /x/... -> 200``).
        self.on_request: Callable[[str], None] | None = None

    @property
    def _server(self) -> _Server:
        # Bound lazily: an in-process sandbox (transport()) never opens a socket.
        if self._server_obj is None:
            self._server_obj = _Server(self._address, _Handler)
            self._server_obj.sandbox = self
        return self._server_obj

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that answers from the emulators in-process, with no socket.

        Pair it with base URLs of the form ``http://sandbox.invalid/<vendor>``
        (:meth:`vendor_config` with ``in_process=True``).
        """
        return httpx.MockTransport(self.handle)

    @classmethod
    def from_plugins(
        cls,
        emulator_classes: Mapping[str, type[Emulator]],
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Sandbox:
        """One emulator per registered class (with ``settings[vendor]`` or its demo settings)."""
        settings = settings or {}
        return cls(
            [klass(settings.get(name)) for name, klass in sorted(emulator_classes.items())],
            **kwargs,
        )

    IN_PROCESS_URL = "http://sandbox.invalid"

    @property
    def url(self) -> str:
        if self._server_obj is None and self._thread is None and self._in_process:
            return self.IN_PROCESS_URL
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def base_url(self, vendor: str) -> str:
        """The ``base_url`` a tracker uses to reach ``vendor``'s emulator."""
        return f"{self.url}/{vendor}"

    def vendor_config(self, vendor: str) -> dict[str, Any]:
        """The ``[vendors.NAME]`` table that points a tracker at this emulator."""
        return {**self.emulators[vendor].settings, "base_url": self.base_url(vendor)}

    def vendor_toml(self, vendor: str) -> str:
        """:meth:`vendor_config` as a ``[vendors.NAME]`` TOML table, ready to paste."""
        lines = [f"[vendors.{vendor}]"]
        settings = self.vendor_config(vendor)
        lines += [f"{_toml_key(k)} = {toml_value(v)}" for k, v in settings.items()]
        return "\n".join(lines) + "\n"

    def config(self, **core: Any) -> dict[str, Any]:
        """A whole config dict with every emulated vendor pointed at the sandbox."""
        return {
            "postback": {"queue": "memory://", **core},
            "vendors": {v: self.vendor_config(v) for v in self.emulators},
        }

    def start(self) -> Sandbox:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="postback-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def in_process(self) -> Sandbox:
        """Use this sandbox without a socket: URLs point at :attr:`IN_PROCESS_URL`."""
        self._in_process = True
        return self

    def stop(self) -> None:
        if self._server_obj is None:
            return
        if self._thread is not None:
            self._server_obj.shutdown()
            self._thread.join(5)
        self._server_obj.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults and inspection ---------------------------------------------------------------

    def set_fault(self, vendor: str, **fault: Any) -> None:
        """Inject a fault for ``vendor`` (see :class:`Fault`)."""
        with self._lock:
            self.faults[vendor] = Fault(**fault)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            for e in self.emulators.values():
                e.received.clear()
                e.requests = 0

    def received(self, vendor: str) -> list[dict[str, Any]]:
        return list(self.emulators[vendor].received)

    # --- request handling --------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        vendor, _, rest = path.lstrip("/").partition("/")
        if vendor == "_sandbox":
            return self._control(rest, request)
        emulator = self.emulators.get(vendor)
        if emulator is None:
            return httpx.Response(
                404, json={"error": f"no emulator for {vendor!r}; have {sorted(self.emulators)}"}
            )
        with self._lock:
            fault = self.faults.get(vendor)
            active = fault is not None and fault.take()
        if active and fault is not None:
            if fault.latency:
                time.sleep(fault.latency)
            if fault.hang:
                time.sleep(fault.hang)
            if fault.status is not None or fault.body is not None:
                return httpx.Response(
                    fault.status or 200,
                    content=(fault.body or json.dumps({"error": "injected fault"})).encode(),
                    headers={"content-type": "application/json", **fault.headers},
                )
        url = request.url.copy_with(path="/" + rest)
        # The emulator sees the vendor's own path; x-forwarded-prefix says where it was mounted
        # (an emulator that checks signatures over the URL needs the URL as it was sent).
        headers = httpx.Headers(request.headers)
        headers["x-forwarded-prefix"] = f"/{vendor}"
        inner = httpx.Request(request.method, url, headers=headers, content=request.content)
        emulator.requests += 1
        try:
            return emulator.handle(inner)
        except Exception as exc:  # an emulator bug: answer 500 like a broken server would
            log.exception("emulator %s failed", vendor)
            return httpx.Response(500, json={"error": f"emulator error: {exc}"})

    def _control(self, what: str, request: httpx.Request) -> httpx.Response:
        if what == "received":
            return httpx.Response(200, json={v: e.received for v, e in self.emulators.items()})
        if what == "reset" and request.method == "POST":
            self.reset()
            return httpx.Response(200, json={"ok": True})
        if what == "faults" and request.method == "POST":
            body = json.loads(request.content or b"{}")
            vendor = body.pop("vendor")
            self.set_fault(vendor, **body)
            return httpx.Response(200, json={"ok": True})
        return httpx.Response(404, json={"error": f"unknown sandbox control {what!r}"})


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """A TOML value for a setting (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__} {value!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sandbox: Sandbox


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        host, port = self.server.server_address[:2]
        request = httpx.Request(
            self.command,
            f"http://{host!s}:{port}{self.path}",
            headers=list(self.headers.items()),
            content=body,
        )
        response = self.server.sandbox.handle(request)
        content = response.content
        self.send_response(response.status_code)
        for k, v in response.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
        report = self.server.sandbox.on_request
        if report is not None:
            line = f"{self.command} {self.path.partition('?')[0]} -> {response.status_code}"
            if response.status_code >= 400:
                line += f": {content[:200].decode('utf-8', 'replace')}"
            report(line)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox: " + format, *args)

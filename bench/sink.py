"""A lean loopback HTTP sink for the benchmarks: answers like a vendor, counts events by id.

Run it as its own process (``python bench/sink.py --port 0``; it prints ``READY <port>``) so it
does not share the tracking process's GIL. It is a single asyncio ``Protocol`` with a minimal
HTTP/1.1 parser (keep-alive, ``Content-Length`` bodies), so one core serves well over ten
thousand small requests a second: fast enough that the clients under test, not the sink, set
the pace (``run.py`` records the sink's CPU share next to every result to show it).

What it answers (any path prefix is accepted, so a vendor's ``base_url`` may carry one):

``POST .../v1/batch``
    Segment's batch endpoint: ``{"batch": [{"messageId": ...}, ...]}`` -> ``{"success": true}``.
``POST .../v1/events``
    postback's example vendor (``postback.testing.example``) and the bench vendors derived from
    it: ``{"events": [{"id": ...}, ...]}`` -> ``{"results": [{"id": ..., "status": "ok"}, ...]}``.
``POST .../v1/event``
    AppLovin's Axon Conversion API: ``{"events": [{"dedupe_id": ...}]}`` or a bare array ->
    200 with an empty JSON object.

Events are counted (unique ids and total) when the response is written, i.e. after the
configured latency, the moment a real vendor would have accepted them. Control endpoints, all
under ``/_sink/``:

``POST /_sink/config``  ``{"latency": 0.02, "status": 503}`` (``status`` null: answer normally)
``POST /_sink/reset``   forget every id and counter
``GET  /_sink/stats``   counters, the ``CLOCK_MONOTONIC`` time of the first and last event, and
                        the sink's own CPU time (``cpu_s``)
``GET  /_sink/ids``     every unique id received since the last reset
``GET  /_sink/wait?count=N&timeout=S``  long-poll until N unique ids were received; answers
                        with ``reached`` and ``reached_ns`` (``time.monotonic_ns()`` of the
                        moment the Nth id arrived, comparable across processes on Linux)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

__all__ = ["SinkState", "main", "serve"]

_HEADER_END = b"\r\n\r\n"
_MAX_HEADER = 64 * 1024


class SinkState:
    """Counters and settings shared by every connection of one sink process."""

    def __init__(self) -> None:
        self.latency = 0.0
        self.status: int | None = None
        self.ids: set[str] = set()
        self.received = 0
        self.requests = 0
        self.refused = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.reached_ns: dict[int, int] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def reset(self) -> None:
        self.ids.clear()
        self.received = self.requests = self.refused = 0
        self.first_ns = self.last_ns = None
        self.reached_ns.clear()

    def record(self, ids: list[str]) -> None:
        """Count the ids of one accepted request; wake the waiters whose count is reached."""
        now = time.monotonic_ns()
        if self.first_ns is None:
            self.first_ns = now
        self.last_ns = now
        self.received += len(ids)
        self.ids.update(ids)
        if self._waiters:
            unique = len(self.ids)
            keep = []
            for count, fut in self._waiters:
                if unique >= count:
                    self.reached_ns.setdefault(count, now)
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((count, fut))
            self._waiters = keep

    async def wait_for(self, count: int, timeout: float) -> dict[str, Any]:
        if len(self.ids) < count:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((count, fut))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, timeout)
        reached = len(self.ids) >= count
        return {
            "reached": reached,
            "reached_ns": self.reached_ns.get(count, self.last_ns) if reached else None,
            "unique": len(self.ids),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "unique": len(self.ids),
            "received": self.received,
            "requests": self.requests,
            "refused": self.refused,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "latency": self.latency,
            "status": self.status,
            "cpu_s": time.process_time(),
        }


def _ids_and_reply(path: str, body: bytes) -> tuple[list[str], bytes]:
    """The event ids a vendor request carries and the body a successful answer has."""
    data = orjson.loads(body) if body else None
    if path.endswith("/v1/batch"):
        return [str(m["messageId"]) for m in data["batch"]], b'{"success":true}'
    if path.endswith("/v1/events"):
        events = data["events"]
        ids = [str(e["id"]) for e in events]
        return ids, orjson.dumps({"results": [{"id": i, "status": "ok"} for i in ids]})
    if path.endswith("/v1/event"):
        events = data if isinstance(data, list) else data["events"]
        return [str(e["dedupe_id"]) for e in events], b"{}"
    raise LookupError(path)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


def _response(status: int, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"{'connection: close' if close else 'connection: keep-alive'}\r\n\r\n"
    )
    return head.encode("ascii") + body


class SinkProtocol(asyncio.Protocol):
    """One client connection: parse requests in order, answer each after the latency."""

    def __init__(self, state: SinkState) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a response is pending (clients here never pipeline)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        buf = self.buffer
        end = buf.find(_HEADER_END)
        if end < 0:
            if len(buf) > _MAX_HEADER and self.transport is not None:
                self.transport.close()
            return
        head = bytes(buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        total = end + 4 + length
        if len(buf) < total:
            return
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        self.busy = True
        self._handle(method, target, body, close)

    def _finish(self, payload: bytes, close: bool) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(payload)
            if close:
                transport.close()
        self.busy = False
        if self.buffer:
            self._next()

    def _handle(self, method: str, target: str, body: bytes, close: bool) -> None:
        state = self.state
        url = urlsplit(target)
        path = url.path
        if path.startswith("/_sink/"):
            self._control(method, path, url.query, body, close)
            return
        state.requests += 1
        if state.status is not None:
            state.refused += 1
            reply = _response(state.status, b'{"error":"sink is down"}', close=close)
            self._later(lambda: self._finish(reply, close))
            return
        try:
            ids, answer = _ids_and_reply(path, body)
        except LookupError:
            self._finish(_response(404, b'{"error":"unknown path"}', close=close), close)
            return
        except (ValueError, KeyError, TypeError) as exc:
            msg = orjson.dumps({"error": f"malformed body: {exc}"})
            self._finish(_response(400, msg, close=close), close)
            return
        reply = _response(200, answer, close=close)

        def respond() -> None:
            state.record(ids)
            self._finish(reply, close)

        self._later(respond)

    def _later(self, callback: Callable[[], None]) -> None:
        if self.state.latency > 0:
            asyncio.get_running_loop().call_later(self.state.latency, callback)
        else:
            callback()

    def _control(self, method: str, path: str, query: str, body: bytes, close: bool) -> None:
        state = self.state
        name = path.removeprefix("/_sink/")
        if name == "config" and method == "POST":
            conf = orjson.loads(body or b"{}")
            if "latency" in conf:
                state.latency = float(conf["latency"])
            if "status" in conf:
                state.status = None if conf["status"] is None else int(conf["status"])
            self._finish(_response(200, orjson.dumps(state.stats()), close=close), close)
        elif name == "reset" and method == "POST":
            state.reset()
            self._finish(_response(200, b"{}", close=close), close)
        elif name == "stats":
            self._finish(_response(200, orjson.dumps(state.stats()), close=close), close)
        elif name == "ids":
            payload = orjson.dumps({"ids": list(state.ids)})
            self._finish(_response(200, payload, close=close), close)
        elif name == "wait":
            args = parse_qs(query)
            count = int(args["count"][0])
            timeout = float(args.get("timeout", ["60"])[0])

            async def wait() -> None:
                result = await state.wait_for(count, timeout)
                self._finish(_response(200, orjson.dumps(result), close=close), close)

            task = asyncio.ensure_future(wait())
            _background.add(task)
            task.add_done_callback(_background.discard)
        else:
            self._finish(_response(404, b'{"error":"unknown control"}', close=close), close)


_background: set[asyncio.Future[None]] = set()


async def serve(host: str, port: int, ready: Callable[[int], None]) -> None:
    """Serve until SIGTERM/SIGINT; ``ready`` gets the bound port."""
    loop = asyncio.get_running_loop()
    state = SinkState()
    server = await loop.create_server(lambda: SinkProtocol(state), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready(server.sockets[0].getsockname()[1])
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)

    def ready(port: int) -> None:
        print(f"READY {port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, ready))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

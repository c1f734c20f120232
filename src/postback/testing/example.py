"""A small, complete vendor: the reference for plugin authors and the core's own tests.

``example`` takes batches of up to 50 events as JSON at ``POST {base}/v1/events`` with a bearer
key, answers ``{"results": [{"id": ..., "status": "ok" | "error", "error": ...}]}`` per event,
refuses a bad key with 401, and returns a toy attribution for events with a ``click_id``.

Its validation shows both kinds of finding: it *skips* an event it cannot use (no user id, or a
purchase without a value: :class:`~postback.Skip`, the other vendors still get it) and refuses
a malformed one (an email without ``@``, an unknown option: :class:`~postback.Problem`).
Register it in-process: ``Tracker.from_config(cfg, plugins=[postback.testing.example])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import httpx
import orjson

from postback.plugin import (
    Attribution,
    Delivered,
    Destination,
    Emulator,
    Event,
    Halt,
    Outcome,
    Prepared,
    Problem,
    RateLimit,
    Rejected,
    RejectedBatch,
    Retry,
    Secret,
    Skip,
    hookimpl,
    retry_after_seconds,
    setting,
)

__all__ = ["ExampleDestination", "ExampleEmulator", "ExampleSettings"]


_DELIVERED = Delivered()  # outcomes are immutable: one for every plain success


@attrs.frozen
class ExampleSettings:
    api_key: Secret = setting(help="Bearer key for the example API.", secret=True)
    account: str = setting(help="Account the events belong to.", default="acme")


_NO_USER = Skip(
    "no user id",
    "user",
    "pass user={'email': ...} or user={'user_id': ...}, or list the events example should get "
    "with events = [...] in [vendors.example]",
)
_NO_VALUE = Skip(
    "purchase without value", "value", "pass value=49.99 and currency='USD' with every purchase"
)


class ExampleDestination(Destination):
    name = "example"
    settings_class = ExampleSettings
    default_origin = "https://api.example.invalid"
    default_event_map = {
        "purchase": "purchase",
        "sign_up": "signup",
        "lead": "lead",
        "add_to_cart": "cart",
    }
    accepts_custom_events = True
    max_batch_size = 50
    default_rate_limit = RateLimit(6000, 60)
    option_keys = frozenset({"click_id"})
    settings: ExampleSettings

    def validate(self, event: Event) -> Iterable[Problem | Skip]:
        # What the vendor cannot do without: a Skip (built once, then counted by reason).
        if not (event.user.email or event.user.user_id):
            yield _NO_USER
        if event.name == "purchase" and event.value_micros is None:
            yield _NO_VALUE
        # What is malformed: a Problem, which refuses the event.
        if event.user.email is not None and "@" not in event.user.email:
            yield Problem("user.email", "is not an email address (name@example.com)")

    def transform(self, event: Event) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": event.event_id,
            "event": self.vendor_event_name(event.name),
            "ts": event.timestamp_ms,
            "user": event.user.email or event.user.user_id,
        }
        if event.value_micros is not None:
            record["value_micros"] = event.value_micros
            record["currency"] = event.currency
        click = event.options_for(self.name).get("click_id")
        if click:
            record["click_id"] = click
        return record

    def build_request(self, batch: Sequence[Prepared]) -> httpx.Request:
        return httpx.Request(
            "POST",
            self.parsed_url("/v1/events"),
            headers={
                "authorization": f"Bearer {self.settings.api_key.reveal()}",
                "content-type": "application/json",
            },
            content=orjson.dumps(
                {"account": self.settings.account, "events": [p.record for p in batch]}
            ),
        )

    def parse_response(
        self, batch: Sequence[Prepared], response: httpx.Response
    ) -> Outcome | Sequence[Outcome]:
        status = response.status_code
        if status in (401, 403):
            return Halt(f"API key refused ({status})", status)
        if status == 429 or status >= 500:
            return Retry(f"HTTP {status}", retry_after_seconds(response))
        if status == 400:
            return RejectedBatch(f"HTTP 400: {response.text[:200]}", 400)
        if status != 200:
            return Rejected(f"HTTP {status}", status)
        try:
            results = orjson.loads(response.content)["results"]
            if not isinstance(results, list) or len(results) != len(batch):
                raise ValueError(f"{len(results)} results for {len(batch)} events")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # A 200 we cannot read: the vendor may or may not have the events; retry (the
            # event ids make a repeat harmless at a vendor that dedupes).
            return Retry(f"unreadable response (HTTP 200): {exc}")
        outcomes: list[Outcome] = []
        for p, r in zip(batch, results, strict=True):
            if r["status"] == "ok":
                attribution = None
                if r.get("campaign"):
                    attribution = Attribution(
                        vendor=self.name,
                        event_id=p.event.event_id,
                        campaign_id=r["campaign"],
                        raw=r,
                    )
                outcomes.append(Delivered(attribution) if attribution else _DELIVERED)
            else:
                outcomes.append(Rejected(r.get("error", "refused")))
        return outcomes


class ExampleEmulator(Emulator):
    vendor = "example"

    @classmethod
    def demo_settings(cls) -> dict[str, Any]:
        return {"api_key": "sandbox-example-key", "account": "acme"}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/events" or request.method != "POST":
            return httpx.Response(404, json={"error": "not found"})
        if request.headers.get("authorization") != f"Bearer {self.settings['api_key']}":
            return httpx.Response(401, json={"error": "bad key"})
        try:
            body = orjson.loads(request.content)
            events = body["events"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return httpx.Response(400, json={"error": "malformed body"})
        if any(e.get("event") == "poison" for e in events):
            return httpx.Response(400, json={"error": "one event is invalid"})
        results = []
        for e in events:
            if e.get("value_micros", 0) < 0:
                results.append({"id": e["id"], "status": "error", "error": "negative value"})
                continue
            self.received.append({"event_id": e["id"], "name": e["event"], **e})
            r = {"id": e["id"], "status": "ok"}
            if e.get("click_id"):
                r["campaign"] = f"cmp-{e['click_id']}"
            results.append(r)
        return httpx.Response(200, json={"results": results})


@hookimpl
def postback_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(ExampleDestination)


@hookimpl
def postback_register_emulators(register: Callable[[type[Emulator]], None]) -> None:
    register(ExampleEmulator)

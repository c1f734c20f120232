"""``postback new-plugin NAME``: scaffold a working, tested vendor plugin package.

The generated package is a complete vendor (a JSON batch API with a bearer key), its sandbox
emulation, a README and tests (the contract kit plus golden and loopback tests) that pass as
generated. Adapt ``destination.py`` and ``emulator.py`` to the real vendor's documentation;
the how-to guide "Write a vendor plugin" walks through it.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

__all__ = ["create_plugin", "valid_plugin_name"]

# Ends with a letter or digit: the distribution postback-NAME must (PEP 508).
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,29}[a-z0-9]\Z")

PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[project]
name = "postback-$dash"
version = "0.1.0"
description = "postback vendor plugin: $Title."
readme = "README.md"
requires-python = ">=3.11"
# postback 0.x may change the plugin API in a minor release: stay below the next one.
dependencies = ["postback>=$core_version,<$core_next"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-timeout>=2"]

# The entry point is what makes postback find the plugin: group "postback", name = vendor name.
[project.entry-points.postback]
$name = "postback_$name"

[tool.hatch.build.targets.wheel]
packages = ["src/postback_$name"]

# How postback's README lists this plugin, should it join the repository's plugins/ (read by
# docs/_readme_table.py there, as for the first-party plugins): the vendor's name, and in a few
# words what its API speaks. Keep it true as you adapt the plugin.
[tool.postback-plugin]
vendor = "$Title"
speaks = "JSON batches of 50, bearer key"

[tool.pytest.ini_options]
testpaths = ["tests"]
timeout = 60
"""

README = """\
# postback-$dash

A [postback](https://pypi.org/project/postback/) vendor plugin for $Title.

    pip install postback-$dash

## Configuration

```toml
[vendors.$name]
api_key = "$${${UPPER}_API_KEY}"   # secret: from the environment
account = "acme"
# base_url = "http://127.0.0.1:8090/$name"   # the sandbox, a proxy, tests
```

| setting | required | meaning |
|---|---|---|
| `api_key` | yes (secret) | Bearer key for the $Title API. |
| `account` | no (`"default"`) | Account the events belong to. |

Every vendor also takes the common settings (`base_url`, `events`, `event_map`, `rate_limit`,
`concurrency`, `timeout`, `batch_size`, `retry`): see postback's configuration reference.

## Events

| canonical event | $Title event |
|---|---|
| `purchase` | `purchase` |
| `sign_up` | `signup` |
| `lead` | `lead` |

## Event fields it adds

| field | meaning |
|---|---|
| `context.${name}_click_id` | $Title's click id, from the ad's landing page URL |

With this plugin installed, `track(context={"${name}_click_id": ...})` accepts it; without it,
that is an unknown field.

## What $Title cannot use

A *skip* leaves $Title out of that event (the other vendors get it); a *problem* makes
`track()` raise `InvalidEvent`.

| finding | when |
|---|---|
| skip `no user id` | neither `user.email` nor `user.user_id` |
| skip `purchase without value` | a `purchase` without `value` |
| problem `value` | a negative value |

## Delivery

Batches of up to 50 events per request; HTTP 429 and 5xx are retried (honouring Retry-After),
401/403 pause delivery without dropping events, other 4xx go to the dead-letter store with the
vendor's reason.

## Development

    pip install -e .[test]
    pytest
"""

INIT = '''\
"""postback plugin for $Title: registers the destination and its sandbox emulation."""

from __future__ import annotations

from collections.abc import Callable

from postback.plugin import Destination, Emulator, hookimpl

from postback_$name.destination import ${Camel}Destination, ${Camel}Settings
from postback_$name.emulator import ${Camel}Emulator

__all__ = ["${Camel}Destination", "${Camel}Emulator", "${Camel}Settings"]


@hookimpl
def postback_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(${Camel}Destination)


@hookimpl
def postback_register_emulators(register: Callable[[type[Emulator]], None]) -> None:
    register(${Camel}Emulator)
'''

DESTINATION = '''\
"""$Title: map canonical events to its API, sans-I/O (no network code here).

Adapt this file to the vendor's documentation: the endpoint and auth in ``build_request``, the
wire record in ``transform``, the vendor's rules in ``validate`` and its answers in
``parse_response``. postback's delivery engine does the I/O, batching, rate limits and retries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import httpx
import orjson

from postback.plugin import (
    DEFAULT_STATUS_OUTCOMES,
    Delivered,
    Destination,
    Event,
    Outcome,
    Prepared,
    Problem,
    RateLimit,
    Rejected,
    Secret,
    Skip,
    body_snippet,
    context_field,
    hash_email,
    json_or_none,
    setting,
)

#: What $Title cannot do without. A Skip leaves $Title out of an event it cannot use as given
#: (the other vendors still get it; the skip is counted, logged once and shown by explain()).
#: Build each Skip once: they are counted by reason.
NO_USER = Skip(
    "no user id",
    "user",
    "pass user={'email': ...} or user={'user_id': ...}, or list the events $Title should get "
    "with events = [...] in [vendors.$name]",
)
NO_VALUE = Skip("purchase without value", "value", "pass value=49.99 and currency='USD'")

#: How $Title's HTTP statuses read: postback's usual ladder (401/403 halt the lane, 408/429
#: and 5xx are retried, other 4xx rejected) plus $Title's own: a 400 refuses the whole batch
#: without saying which event was bad (the engine splits it to find out).
STATUSES = DEFAULT_STATUS_OUTCOMES.extend({400: "reject_batch"})


@attrs.frozen
class ${Camel}Settings:
    """The ``[vendors.$name]`` settings of this vendor (the core adds the common ones)."""

    api_key: Secret = setting(help="Bearer key for the $Title API.", secret=True)
    account: str = setting(help="Account the events belong to.", default="default")


class ${Camel}Destination(Destination):
    name = "$name"
    settings_class = ${Camel}Settings
    default_origin = "https://api.$name.example"
    default_event_map = {"purchase": "purchase", "sign_up": "signup", "lead": "lead"}
    max_batch_size = 50
    default_rate_limit = RateLimit(600, 60)
    #: Event fields only $Title uses, declared here rather than in postback: with this plugin
    #: installed, track(context={"${name}_click_id": ...}) accepts it (a did-you-mean
    #: includes it), and validate/transform read it with event.context.get(...).
    fields = (
        context_field(
            "${name}_click_id",
            help="$Title's click id, from the ad's landing page URL (?${name}_click_id=...).",
        ),
    )
    settings: ${Camel}Settings

    def validate(self, event: Event) -> Iterable[Problem | Skip]:
        """Runs in track(), once per event: check presence and formats only, cheaply.

        Yield a Skip when $Title cannot use the event as given (an identifier or a field it
        requires is missing), a Problem when the event is malformed (a wrong type or format),
        which refuses the whole event with InvalidEvent.
        """
        if not (event.user.email or event.user.user_id):
            yield NO_USER
        if event.name == "purchase" and event.value_micros is None:
            yield NO_VALUE
        if event.value_micros is not None and event.value_micros < 0:
            yield Problem("value", "must not be negative (send refunds elsewhere)")

    def transform(self, event: Event) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": event.event_id,
            "event": self.vendor_event_name(event.name),
            "time_ms": event.timestamp_ms,
        }
        # Personal data leaves hashed: SHA-256 of the normalised address, never the address.
        if event.user.email:
            record["email_sha256"] = hash_email(event.user.email)
        else:
            record["user_id"] = event.user.user_id
        if event.value_micros is not None:
            record["value_micros"] = event.value_micros
            record["currency"] = event.currency
        if click_id := event.context.get("${name}_click_id"):
            record["click_id"] = click_id
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
        said = body_snippet(response, self.redact, empty="(empty body)")  # never a secret
        if status != 200:
            reason = f"$Title answered HTTP {status}: {said}"
            if status in (401, 403):
                reason += " (check api_key in [vendors.$name])"
            return STATUSES.outcome(self, response, reason, detail=said)
        body = json_or_none(response)
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            # A 2xx means the vendor took the request: resending could count it twice, so the
            # events are delivered, with a note the engine logs.
            return Delivered(note=f"$Title answered 200 without one result per event: {said}")
        return [
            Delivered() if r.get("status") == "ok" else Rejected(str(r.get("error", "refused")))
            for r in results
        ]
'''

EMULATOR = '''\
"""A local emulation of the $Title API for ``postback sandbox`` and tests.

It checks requests as the vendor's docs say and answers as the vendor does. Triggers: an event
named ``"poison"`` makes the whole batch fail with 400; a negative ``value_micros`` is refused.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from postback.plugin import Emulator


class ${Camel}Emulator(Emulator):
    vendor = "$name"

    @classmethod
    def demo_settings(cls) -> dict[str, Any]:
        return {"api_key": "sandbox-$dash-key", "account": "demo"}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or request.url.path != "/v1/events":
            return httpx.Response(404, json={"error": "not found"})
        if request.headers.get("authorization") != f"Bearer {self.settings['api_key']}":
            return httpx.Response(401, json={"error": "invalid API key"})
        try:
            events = orjson.loads(request.content)["events"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return httpx.Response(400, json={"error": "malformed body"})
        if any(e.get("event") == "poison" for e in events):
            return httpx.Response(400, json={"error": "invalid event in batch"})
        results = []
        for e in events:
            if e.get("value_micros", 0) < 0:
                results.append({"id": e["id"], "status": "error", "error": "negative value"})
                continue
            self.received.append({"event_id": e["id"], "name": e["event"], **e})
            results.append({"id": e["id"], "status": "ok"})
        return httpx.Response(200, json={"results": results})
'''

TEST_CONTRACT = '''\
"""postback's plugin contract, run against this plugin."""

from postback.testing.contract import DestinationContract


class Test${Camel}Contract(DestinationContract):
    vendor = "$name"
    sample_events = [
        {"name": "purchase", "value": 49.99, "currency": "USD", "user": {"email": "a@b.co"},
         "context": {"${name}_click_id": "clk-1"}, "event_id": "order-1-purchase"},
        {"name": "sign_up", "user": {"user_id": "u-1"}},
    ]
'''

TEST_VENDOR = '''\
"""$Title specifics: the exact wire format, validation, and responses."""

from __future__ import annotations

import httpx
import orjson
import pytest

from postback import InvalidEvent
from postback.plugin import Delivered, Halt, Prepared, Rejected, RejectedBatch, Retry
from postback.testing import recording_tracker


@pytest.fixture
def tracker():
    t = recording_tracker(vendors=["$name"])
    yield t
    t.close()


def test_golden_purchase(tracker) -> None:
    tracker.track("purchase", user={"email": "Ada@Example.com"}, value=49.99,
                  currency="usd", event_id="order-1", timestamp=1_764_000_000_000)
    assert tracker.received("$name") == [{
        "event_id": "order-1", "name": "purchase", "id": "order-1", "event": "purchase",
        "time_ms": 1_764_000_000_000,
        # SHA-256 of "ada@example.com": the address is normalised, then hashed
        "email_sha256": "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72",
        "value_micros": 49_990_000, "currency": "USD",
    }]
    tracker.assert_sent("purchase", vendor="$name", value=49.99, currency="USD")


def test_the_click_id_field_it_declares(tracker) -> None:
    tracker.track("sign_up", user={"user_id": "u-1"}, context={"${name}_click_id": "clk-7"})
    assert tracker.received("$name")[0]["click_id"] == "clk-7"
    with pytest.raises(InvalidEvent, match="did you mean '${name}_click_id'"):
        tracker.track("sign_up", user={"user_id": "u-1"}, context={"${name}_clickid": "x"})


def test_an_event_it_cannot_use_is_skipped(tracker) -> None:
    route = tracker.explain("purchase", user={"ip_address": "203.0.113.1"})
    assert route.vendors["$name"].status == "skipped"
    assert [s.field for s in route.vendors["$name"].skips] == ["user", "value"]
    tracker.track("purchase", user={"ip_address": "203.0.113.1"})  # nothing raises
    assert tracker.stats()["$name"]["skips"] == {"no user id": 1}


def test_a_malformed_event_is_refused(tracker) -> None:
    with pytest.raises(InvalidEvent) as info:
        tracker.track("purchase", user={"email": "a@b.co"}, value=-1, currency="USD")
    assert [(p.vendor, p.field) for p in info.value.problems] == [("$name", "value")]


@pytest.mark.parametrize(("status", "outcome"), [
    (401, Halt), (403, Halt), (429, Retry), (500, Retry), (503, Retry),
    (400, RejectedBatch), (404, Rejected),
])
def test_status_codes(tracker, status, outcome) -> None:
    event, (dest,) = tracker.prepare("sign_up", user={"email": "a@b.co"})
    batch = [Prepared(event, dest.transform(event))]
    assert isinstance(dest.parse_response(batch, httpx.Response(status)), outcome)


def test_per_event_results(tracker) -> None:
    event, (dest,) = tracker.prepare("sign_up", user={"email": "a@b.co"})
    batch = [Prepared(event, dest.transform(event))] * 2
    body = orjson.dumps({"results": [{"status": "ok"}, {"status": "error", "error": "dup"}]})
    got = dest.parse_response(batch, httpx.Response(200, content=body))
    assert isinstance(got[0], Delivered) and got[1] == Rejected("dup")


def test_an_unreadable_200_is_delivered_not_resent(tracker) -> None:
    event, (dest,) = tracker.prepare("sign_up", user={"email": "a@b.co"})
    batch = [Prepared(event, dest.transform(event))]
    got = dest.parse_response(batch, httpx.Response(200, text="<html>ok</html>"))
    assert isinstance(got, Delivered) and "<html>ok</html>" in got.note
'''


def valid_plugin_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))


def _next_minor(version: str) -> str:
    """``"0.1.3"`` -> ``"0.2"``: the first release that may change the plugin API."""
    major, minor = (int(p) for p in re.findall(r"\d+", version)[:2])
    return f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"


def create_plugin(name: str, directory: Path, *, core_version: str = "0.1") -> Path:
    """Write the package ``postback-NAME`` into ``directory/postback-NAME`` and return it."""
    if not valid_plugin_name(name):
        raise ValueError(
            f"{name!r} is not a usable vendor name: use 2 to 31 characters, lower-case letters, "
            "digits and underscores, starting with a letter and ending with a letter or digit "
            "(e.g. 'acme' or 'acme_ads')"
        )
    dash = name.replace("_", "-")
    root = directory / f"postback-{dash}"
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another directory or name")
    words = {
        "name": name,
        "dash": dash,
        "UPPER": name.upper(),
        "Camel": "".join(part.title() for part in name.split("_")),
        "Title": " ".join(part.title() for part in name.split("_")),
        "core_version": core_version,
        "core_next": _next_minor(core_version),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/postback_{name}/__init__.py": INIT,
        f"src/postback_{name}/destination.py": DESTINATION,
        f"src/postback_{name}/emulator.py": EMULATOR,
        f"src/postback_{name}/py.typed": "",
        "tests/test_contract.py": TEST_CONTRACT,
        # tests/test_contract.py is the contract kit's: a vendor so named keeps both files.
        f"tests/test_{name}{'_vendor' if name == 'contract' else ''}.py": TEST_VENDOR,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(words))
    return root

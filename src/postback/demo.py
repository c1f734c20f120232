"""``postback demo``: the whole path, end to end, against the built-in sandbox.

Starts the sandbox with every installed vendor's emulation, builds a tracker with each of those
vendors pointed at it (a SQLite queue in a temporary directory), tracks a realistic mix of
events with a progress bar (app users with device ids, web shoppers without), and prints per
vendor what was delivered, what it skipped at ``track()`` and why (an event it cannot use, which
the other vendors still got), what the vendor rejected and what it attributed. It calls
``track()`` as an app would: nothing is caught, no vendor is picked by hand. Vendors plugged in
by third parties take part the same way.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from postback.events import Attribution, Event
from postback.fields import FieldSet
from postback.hookspecs import hookimpl
from postback.plugins import PluginHost
from postback.sandbox import Sandbox
from postback.tracker import Tracker

__all__ = ["demo_events", "run_demo"]

_FIRST = ["ada", "grace", "alan", "edsger", "barbara", "ken", "margaret", "linus", "guido", "anita"]
_PRODUCTS = [
    ("sku-tee", "T-Shirt", 19.99),
    ("sku-mug", "Mug", 9.5),
    ("sku-hat", "Hat", 24.0),
    ("sku-pro", "Pro plan", 49.99),
    ("sku-book", "Book", 35.25),
]
_UAS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Safari/605.1.15",
]


class _AttributionLog:
    """An in-process plugin, as an app would write one: it listens for attribution."""

    def __init__(self) -> None:
        self.seen: dict[str, list[Attribution]] = defaultdict(list)

    @hookimpl
    def postback_on_attribution(self, attribution: Attribution, event: Event) -> None:
        self.seen[attribution.vendor].append(attribution)


def _user(rng: random.Random, i: int) -> dict[str, Any]:
    """An app user (device ids, Telegram id) or, one in four, a web shopper (none of them)."""
    name = rng.choice(_FIRST)
    ios = rng.random() < 0.5
    user = {
        "user_id": f"user-{1000 + i}",
        "email": f"{name}.{i}@example.com",
        "phone": f"+1415555{rng.randrange(1000, 9999)}",
        "ip_address": f"203.0.113.{rng.randrange(1, 254)}",
        "user_agent": rng.choice(_UAS),
        "install_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "ifa": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "os": "ios" if ios else "android",
        "telegram_user_id": str(rng.randrange(10**8, 10**10)),
        "client_id": f"cid-{rng.getrandbits(40):x}",
        "country": rng.choice(["US", "GB", "DE", "FR", "BR"]),
        "zip": f"{rng.randrange(10000, 99999)}",
        "first_name": name.title(),
    }
    if i % 4 == 1:  # a web shopper: the app-only vendors will skip their events
        for key in ("install_id", "ifa", "os", "telegram_user_id"):
            del user[key]
    return user


def demo_events(n: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """A realistic, deterministic mix of ``track()`` calls (name, keywords)."""
    rng = random.Random(seed)
    users = [_user(rng, i) for i in range(max(n // 4, 3))]
    out: list[tuple[str, dict[str, Any]]] = []
    now_ms = int(time.time() * 1000)
    for i in range(n):
        u = rng.choice(users)
        ctx = {
            "url": f"https://shop.example.com/p/{rng.randrange(1, 50)}?utm_source=x",
            "utm_source": rng.choice(["x", "applovin", "newsletter"]),
            "utm_campaign": "black-friday",
            "action_source": rng.choice(["website", "app"]),
        }
        if rng.random() < 0.5:
            ctx["aleid"] = f"al-{rng.getrandbits(32):x}"
        sku, title, price = rng.choice(_PRODUCTS)
        qty = rng.randrange(1, 4)
        items = [{"item_id": sku, "item_name": title, "price": price, "quantity": qty}]
        kind = rng.random()
        ts = now_ms - rng.randrange(0, 3_600_000)
        common = {"user": u, "context": ctx, "timestamp": ts}
        if kind < 0.30:
            currency = "USD" if rng.random() < 0.85 else "EUR"
            value = round(price * qty, 2)
            out.append(
                (
                    "purchase",
                    {
                        **common,
                        "value": value,
                        "currency": currency,
                        "event_id": f"order-{5000 + i}-purchase",
                        "properties": {"transaction_id": f"order-{5000 + i}", "items": items},
                    },
                )
            )
        elif kind < 0.45:
            out.append(
                (
                    "add_to_cart",
                    {**common, "value": price, "currency": "USD", "properties": {"items": items}},
                )
            )
        elif kind < 0.55:
            out.append(("view_item", {**common, "properties": {"items": items}}))
        elif kind < 0.70:
            out.append(("sign_up", {**common, "properties": {"method": "email"}}))
        elif kind < 0.78:
            out.append(("install", common))
        elif kind < 0.86:
            out.append(("lead", {**common, "value": 0, "currency": "USD"}))
        elif kind < 0.92:
            out.append(("login", common))
        else:
            out.append(("search", {**common, "properties": {"search_term": "mug"}}))
    return out


def _short(text: str, limit: int = 150) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def flawed_events(emulators: dict[str, Any], seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """Events that show what a vendor does not take: three that some vendors skip at
    ``track()`` (the others get them), and one per emulator that its vendor rejects
    (``Emulator.demo_rejection``)."""
    rng = random.Random(seed + 1)
    user = _user(rng, 999)
    ctx = {"url": "https://shop.example.com/checkout/done", "action_source": "website"}
    items = [{"item_id": "sku-mug", "item_name": "Mug", "price": 9.5, "quantity": 1}]
    base = {
        "user": user,
        "context": ctx,
        "value": 9.5,
        "currency": "USD",
        "properties": {"transaction_id": "order-9000", "items": items},
    }
    out: list[tuple[str, dict[str, Any]]] = [
        # A currency not every vendor can take (one without a conversion rate).
        (
            "purchase",
            _merge(
                base,
                {
                    "currency": "BRL",
                    "event_id": "order-9001-purchase",
                    "properties": {"transaction_id": "order-9001"},
                },
            ),
        ),
        # A server-side event that lost the browser's IP address and user agent.
        (
            "sign_up",
            {
                "user": {k: v for k, v in user.items() if k not in ("ip_address", "user_agent")},
                "context": ctx,
            },
        ),
        # A sign-up from a web form: no Telegram user id, no device.
        (
            "sign_up",
            {
                "user": {
                    k: v
                    for k, v in user.items()
                    if k not in ("telegram_user_id", "ifa", "install_id")
                },
                "context": ctx,
            },
        ),
    ]
    for vendor, emulator in sorted(emulators.items()):
        patch = emulator.demo_rejection()
        if not patch:
            continue
        name = patch.pop("name", "purchase")
        others = {v: False for v in emulators if v != vendor}
        routing = {**others, **patch.pop("vendors", {})}
        out.append((name, _merge(base, {**patch, "vendors": routing})))
    return out


def _accepted(kwargs: dict[str, Any], fields: FieldSet) -> dict[str, Any]:
    """``track()`` keywords without the user and context fields no installed plugin declares
    (the demo's Telegram ids when Ton AI is not installed, AppLovin's click ids ...)."""
    out = dict(kwargs)
    for group, known in (("user", fields.user), ("context", fields.context)):
        given = out.get(group)
        if isinstance(given, dict) and not given.keys() <= known:
            out[group] = {k: v for k, v in given.items() if k in known}
    return out


def run_demo(console: Console, *, n_events: int = 120, seed: int = 7) -> dict[str, Any]:
    """Run the demo; returns the figures it printed (for tests)."""
    # The summary reports every rejection and skip; the engine's warnings and the once-per-
    # reason skip warnings would repeat them.
    quiet = [logging.getLogger("postback.delivery"), logging.getLogger("postback")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        if lg.getEffectiveLevel() >= logging.WARNING:
            lg.setLevel(logging.ERROR)
    try:
        return _run_demo(console, n_events, seed)
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def _run_demo(console: Console, n_events: int, seed: int) -> dict[str, Any]:
    host = PluginHost()
    vendors = sorted(set(host.destinations) & set(host.emulators))
    if not vendors:
        console.print(
            "No vendor plugin with a sandbox emulation is installed "
            "(pip install postback-x, postback-applovin, ...)."
        )
        return {}
    listener = _AttributionLog()
    with (
        Sandbox.from_plugins({v: host.emulators[v] for v in vendors}) as box,
        tempfile.TemporaryDirectory(prefix="postback-demo-") as tmp,
    ):
        config = {
            "postback": {"queue": f"sqlite:///{tmp}/queue.db", "default_currency": "USD"},
            "vendors": {
                v: {
                    **box.vendor_config(v),
                    "retry": {"initial_backoff": 0.05, "max_backoff": 0.2, "max_attempts": 3},
                }
                for v in vendors
            },
        }
        console.print(f"sandbox on {box.url}: {', '.join(vendors)}")
        tracker = Tracker.from_config(config, plugins=[listener])
        flawed = flawed_events({v: host.emulators[v] for v in vendors}, seed)
        events = [
            (name, _accepted(kwargs, tracker.host.fields))
            for name, kwargs in demo_events(n_events, seed) + flawed
        ]
        tracked = 0
        started = time.perf_counter()
        with Progress(
            TextColumn("tracking"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("track", total=len(events))
            for name, kwargs in events:
                tracker.track(name, **kwargs)  # a vendor that cannot use it skips it
                tracked += 1
                bar.update(task, advance=1)
        report = tracker.flush(timeout=30)
        elapsed = time.perf_counter() - started
        dead = tracker.queue.dead_letters(limit=10_000)
        stats = tracker.stats()
        tracker.close(timeout=5)

    title = (
        f"postback demo: {tracked} events in {elapsed:.1f}s ({tracked - len(flawed)} ordinary,"
        f" {len(flawed)} that a vendor skips or rejects)"
    )
    table = Table(title=title, title_justify="left")
    for col in (
        "vendor",
        "delivered",
        "skipped at track()",
        "rejected by vendor",
        "attributed",
        "pending",
    ):
        table.add_column(col, justify="right" if col != "vendor" else "left")
    figures: dict[str, Any] = {}
    for v in vendors:
        r = report.vendors[v]
        skipped = Counter(stats[v]["skips"])
        n_skipped = sum(skipped.values())
        table.add_row(
            v,
            str(r.delivered),
            str(n_skipped),
            str(r.dead),
            str(len(listener.seen[v])),
            str(r.pending),
        )
        figures[v] = {
            "delivered": r.delivered,
            "skipped": n_skipped,
            "dead": r.dead,
            "attributed": len(listener.seen[v]),
            "pending": r.pending,
            "requests": stats[v]["requests"],
        }
    console.print(table)

    for v in vendors:
        reasons = Counter(d.reason for d in dead if d.vendor == v)
        skipped = Counter(stats[v]["skips"])
        lines = [f"  skipped at track(), {n}x: {why}" for why, n in skipped.most_common(3)]
        lines += [f"  rejected by {v}, {n}x: {_short(why)}" for why, n in reasons.most_common(3)]
        for a in listener.seen[v][:2]:
            lines.append(
                f"  attributed {a.event_id}: network={a.network} campaign={a.campaign_id}"
                f" ad_group={a.ad_group_id} creative={a.creative_id}"
            )
        if lines:
            console.print(Text(v, style="bold"))
            for line in lines:
                console.print(line, markup=False, highlight=False)
    complete = "all delivered or settled" if report.complete else "some events still queued"
    console.print(f"done: {complete}.")
    return figures

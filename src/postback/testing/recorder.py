"""A tracker for tests: every vendor answered by its emulator in-process, every delivery recorded.

::

    from postback.testing import recording_tracker

    tracker = recording_tracker("postback.toml")        # your app's config, or None for all
    checkout(tracker)                                    # code under test calls tracker.track()
    tracker.assert_sent("purchase", vendor="x", value=49.99, currency="USD")

Nothing leaves the process: the vendors' ``base_url`` points at an in-process
:class:`~postback.sandbox.Sandbox` reached through an ``httpx.MockTransport``, so the real
vendor code runs (validation, wire format, auth, response parsing) without a socket. Secrets the
config takes from unset environment variables are replaced by the emulators' sandbox values.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Generator, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from postback.config import VENDOR_COMMON_HELP, read_config
from postback.destination import Delivered, Destination, Outcome, Prepared
from postback.events import Event, normalize_currency, normalize_event_name, to_micros
from postback.hookspecs import hookimpl
from postback.plugins import PluginHost
from postback.sandbox import Sandbox
from postback.tracker import Tracker

__all__ = ["Delivery", "DeliveryRecorder", "RecordingTracker", "recording_tracker"]

_UNSET_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@attrs.frozen
class Delivery:
    """One event's delivery attempt to one vendor: the canonical event, the wire record, the
    outcome."""

    vendor: str
    event: Event
    record: Any
    outcome: Outcome

    @property
    def name(self) -> str:
        return self.event.name

    @property
    def value(self) -> Decimal | None:
        return self.event.value

    @property
    def delivered(self) -> bool:
        return isinstance(self.outcome, Delivered)

    def describe(self) -> str:
        money = f" {self.value} {self.event.currency}" if self.value is not None else ""
        status = "" if self.delivered else f" [{type(self.outcome).__name__}]"
        return f"{self.name}{money}{status}"


class DeliveryRecorder:
    """An in-process plugin that records every batch a vendor delivers (a deliver wrapper)."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    @hookimpl(wrapper=True)
    def postback_deliver(
        self, destination: Destination, batch: Sequence[Prepared], send: Any
    ) -> Generator[None, Sequence[Outcome], Sequence[Outcome]]:
        outcomes = yield
        with self._lock:
            for prepared, outcome in zip(batch, outcomes, strict=False):
                self.deliveries.append(
                    Delivery(destination.name, prepared.event, prepared.record, outcome)
                )
        return outcomes


class RecordingTracker:
    """A :class:`~postback.Tracker` wired to in-process emulators, with assertion helpers.

    With ``autoflush`` (the default) every ``track()`` waits until its deliveries are done, so
    tests can assert right after the code under test returns.
    """

    def __init__(
        self, tracker: Tracker, sandbox: Sandbox, recorder: DeliveryRecorder, autoflush: bool
    ) -> None:
        self.tracker = tracker
        self.sandbox = sandbox
        self.recorder = recorder
        self.autoflush = autoflush

    # --- the Tracker API -----------------------------------------------------------------------

    def track(self, name: str, **fields: Any) -> str:
        event_id = self.tracker.track(name, **fields)
        if self.autoflush:
            self.tracker.flush(timeout=10)
        return event_id

    def flush(self, timeout: float | None = 10.0) -> Any:
        return self.tracker.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> Any:
        return self.tracker.close(timeout)

    def stats(self) -> dict[str, dict[str, Any]]:
        return self.tracker.stats()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)

    def __enter__(self) -> RecordingTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- inspection ----------------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery attempt so far, in order."""
        return list(self.recorder.deliveries)

    def sent(self, name: str | None = None, *, vendor: str | None = None) -> list[Delivery]:
        """Delivered events, optionally only those named ``name`` or sent to ``vendor``."""
        want = normalize_event_name(name) if name else None
        return [
            d
            for d in self.recorder.deliveries
            if d.delivered
            and (want is None or d.name == want)
            and (vendor is None or d.vendor == vendor)
        ]

    def received(self, vendor: str) -> list[dict[str, Any]]:
        """What the vendor's emulator accepted, in its wire format."""
        return self.sandbox.received(vendor)

    def reset(self) -> None:
        """Forget recorded deliveries and what the emulators received."""
        with self.recorder._lock:
            self.recorder.deliveries.clear()
        self.sandbox.reset()

    def assert_sent(
        self,
        name: str,
        *,
        vendor: str | None = None,
        value: float | int | str | Decimal | None = None,
        currency: str | None = None,
        count: int | None = None,
        user: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> list[Delivery]:
        """Assert that a ``name`` event matching the given details was delivered.

        ``tracker.assert_sent("purchase", vendor="x", value=49.99, currency="USD")`` reads as
        "a purchase of 49.99 USD was sent to x". Returns the matching deliveries.
        """
        if self.autoflush is False:
            self.tracker.flush(timeout=10)
        micros = to_micros(value) if value is not None else None
        cur = normalize_currency(currency) if currency is not None else None
        matches = [
            d
            for d in self.sent(name, vendor=vendor)
            if (micros is None or d.event.value_micros == micros)
            and (cur is None or d.event.currency == cur)
            and all(getattr(d.event.user, k) == v for k, v in (user or {}).items())
            and all(d.event.properties.get(k) == v for k, v in (properties or {}).items())
        ]
        ok = len(matches) == count if count is not None else bool(matches)
        if not ok:
            what = normalize_event_name(name)
            if value is not None:
                what += f" of {value}{' ' + cur if cur else ''}"
            where = f" to {vendor}" if vendor else ""
            times = f" {count} time(s)" if count is not None else ""
            raise AssertionError(
                f"expected a {what} sent{where}{times}; found {len(matches)}.\n"
                + self._summary(vendor)
            )
        return matches

    def assert_not_sent(self, name: str, *, vendor: str | None = None) -> None:
        """Assert that no ``name`` event was delivered (to ``vendor``, if given)."""
        found = self.sent(name, vendor=vendor)
        if found:
            raise AssertionError(
                f"expected no {normalize_event_name(name)} sent"
                f"{' to ' + vendor if vendor else ''}; found {len(found)}.\n"
                + self._summary(vendor)
            )

    def _summary(self, vendor: str | None) -> str:
        by_vendor: dict[str, list[str]] = {}
        for d in self.recorder.deliveries:
            if vendor is None or d.vendor == vendor:
                by_vendor.setdefault(d.vendor, []).append(d.describe())
        if not by_vendor:
            return "Nothing was delivered" + (f" to {vendor}" if vendor else "") + "."
        return "Delivered so far:\n" + "\n".join(
            f"  {v}: {', '.join(items)}" for v, items in sorted(by_vendor.items())
        )


def _resolve_for_tests(value: Any, demo: Any) -> Any:
    """A ``${VAR}`` whose variable is unset falls back to the emulator's sandbox value."""
    if isinstance(value, str):
        m = _UNSET_ENV.fullmatch(value.strip())
        if m and not os.environ.get(m.group(1)):
            return demo
    return value


def recording_tracker(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    vendors: Iterable[str] | None = None,
    plugins: Iterable[object] = (),
    autoflush: bool = True,
    load_entry_points: bool = True,
    strict: bool | None = None,
) -> RecordingTracker:
    """Build a :class:`RecordingTracker`.

    ``config`` is your app's config (file or dict) so its routing and settings are what gets
    tested; ``None`` enables every installed vendor that has an emulator (or those in
    ``vendors``) with the emulators' sandbox settings. The queue is always ``memory://``.
    ``strict`` overrides ``[postback] strict`` (the ``postback_tracker`` fixture passes True).
    """
    plugins = list(plugins)
    host = PluginHost(plugins, load_entry_points=load_entry_points)
    if config is None:
        raw: dict[str, Any] = {"postback": {}, "vendors": {}}
        names = (
            list(vendors)
            if vendors is not None
            else sorted(set(host.destinations) & set(host.emulators))
        )
        for n in names:
            raw["vendors"][n] = {}
    else:
        raw, _, _ = read_config(config if isinstance(config, Mapping) else Path(config))
        raw = {
            "postback": dict(raw.get("postback", {})),
            "vendors": {k: dict(v) for k, v in raw.get("vendors", {}).items()},
        }
        if vendors is not None:
            keep = set(vendors)
            raw["vendors"] = {k: v for k, v in raw["vendors"].items() if k in keep}
    sandbox = Sandbox().in_process()
    for name, table in raw["vendors"].items():
        emulator_cls = host.emulators.get(name)
        if emulator_cls is None:
            raise ValueError(
                f"vendor {name!r} has no sandbox emulator, so recording_tracker cannot answer "
                "for it: leave it out with vendors=[...]"
            )
        demo = emulator_cls.demo_settings()
        own = {
            k: _resolve_for_tests(v, demo.get(k))
            for k, v in table.items()
            if k not in VENDOR_COMMON_HELP
        }
        settings = {**demo, **{k: v for k, v in own.items() if v is not None}}
        emulator = emulator_cls(settings)
        sandbox.emulators[name] = emulator
        common = {k: v for k, v in table.items() if k in VENDOR_COMMON_HELP}
        common.pop("rate_limit", None)
        raw["vendors"][name] = {
            **settings,
            **common,
            "base_url": sandbox.base_url(name),
            "retry": {
                "initial_backoff": 0.01,
                "max_backoff": 0.05,
                "max_attempts": 3,
                **common.get("retry", {}),
            },
            "linger": 0,
        }
    raw["postback"]["queue"] = "memory://"
    if strict is not None:
        raw["postback"]["strict"] = strict
    recorder = DeliveryRecorder()
    tracker = Tracker.from_config(
        raw,
        plugins=[*plugins, recorder],
        transport=sandbox.transport(),
        load_entry_points=load_entry_points,
    )
    return RecordingTracker(tracker, sandbox, recorder, autoflush)

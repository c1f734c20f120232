"""The contract test kit: the checks every vendor plugin must pass, as a pytest base class.

A vendor plugin (ours or a third party's) runs them against itself::

    from postback.testing.contract import DestinationContract

    class TestAcmeContract(DestinationContract):
        vendor = "acme"
        sample_events = [
            {"name": "purchase", "value": 49.99, "currency": "USD", "user": {"email": "a@b.co"}},
        ]

The plugin must be installed (its entry point is part of the contract). The checks cover
registration, documented settings and declared fields, secret handling, the sans-I/O steps
(``validate`` yields only :class:`~postback.Problem` and :class:`~postback.Skip`, and the
sample events pass it), a batch of the sample events reaching the emulator whole, delivery of
the sample events through the vendor's emulator (in-process and over loopback HTTP), retry on
server errors, and a halt (nothing dropped) when the vendor refuses the credentials.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import httpx
import pytest

from postback.config import VENDOR_COMMON_HELP, build_config
from postback.destination import (
    Delivered,
    Destination,
    Emulator,
    Halt,
    Prepared,
    Retry,
    Secret,
    Skip,
    SkipEvent,
)
from postback.errors import Problem
from postback.plugins import PluginHost
from postback.sandbox import Sandbox
from postback.testing.recorder import recording_tracker
from postback.tracker import Tracker

__all__ = ["DestinationContract"]


class DestinationContract:
    """Subclass in a plugin's tests and set :attr:`vendor` and :attr:`sample_events`."""

    #: The vendor (entry-point) name.
    vendor: ClassVar[str]
    #: Valid ``track()`` calls as dicts with a ``name`` key; each must be delivered.
    sample_events: ClassVar[list[dict[str, Any]]]
    #: Extra ``[vendors.NAME]`` settings the samples need on top of the emulator's demo ones.
    extra_settings: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def host(self) -> PluginHost:
        return PluginHost()

    @pytest.fixture
    def destination_class(self, host: PluginHost) -> type[Destination]:
        assert self.vendor in host.destinations, (
            f"{self.vendor!r} is not registered through the 'postback' entry-point group; "
            f"installed vendors: {sorted(host.destinations)}"
        )
        return host.destinations[self.vendor]

    @pytest.fixture
    def emulator_class(self, host: PluginHost) -> type[Emulator]:
        assert self.vendor in host.emulators, (
            f"{self.vendor!r} registers no sandbox emulator (postback_register_emulators)"
        )
        return host.emulators[self.vendor]

    @pytest.fixture
    def settings(self, emulator_class: type[Emulator]) -> dict[str, Any]:
        return {**emulator_class.demo_settings(), **self.extra_settings}

    @pytest.fixture
    def destination(
        self, destination_class: type[Destination], settings: dict[str, Any]
    ) -> Destination:
        cfg = build_config({"vendors": {self.vendor: settings}}, {self.vendor: destination_class})
        return cfg.vendors[self.vendor].make_destination(destination_class)

    @pytest.fixture
    def loopback(
        self, emulator_class: type[Emulator], settings: dict[str, Any], tmp_path: Path
    ) -> Iterator[tuple[Tracker, Sandbox]]:
        with Sandbox([emulator_class(settings)]) as box:
            cfg = {
                "postback": {"queue": f"sqlite:///{tmp_path}/contract.db"},
                "vendors": {
                    self.vendor: {
                        **box.vendor_config(self.vendor),
                        "retry": {"initial_backoff": 0.01, "max_backoff": 0.05},
                    }
                },
            }
            tracker = Tracker.from_config(cfg)
            try:
                yield tracker, box
            finally:
                tracker.close(timeout=2)

    # --- registration and settings ---------------------------------------------------------------

    def test_registered_with_its_distribution(
        self, host: PluginHost, destination_class: type[Destination]
    ) -> None:
        assert destination_class.name == self.vendor
        owners = [i for i in host.infos.values() if self.vendor in i.destinations]
        assert owners and owners[0].distribution, "the plugin must come from a distribution"

    def test_settings_are_documented(self, destination_class: type[Destination]) -> None:
        cls = destination_class.settings_class
        assert attrs.has(cls), "settings_class must be an attrs class"
        for field in attrs.fields(cls):
            meta = field.metadata or {}
            assert meta.get("help"), f"setting {field.name!r} needs help=... (use postback.setting)"
            assert field.name not in VENDOR_COMMON_HELP, (
                f"{field.name!r} is a common setting handled by the core; remove it"
            )
            kinds = {field.type, *typing.get_args(field.type)}
            is_secret_type = bool(kinds & {Secret, "Secret", "Secret | None"})
            assert bool(meta.get("secret")) == is_secret_type, (
                f"setting {field.name!r}: secret=True and the Secret type go together"
            )

    def test_declared_fields_are_documented_and_merge(
        self, destination_class: type[Destination]
    ) -> None:
        """``fields``: made with user_field/context_field, with help text, and accepted by the
        host next to the core's and the other installed plugins' (no conflict)."""
        from postback.fields import FieldSet

        for f in destination_class.fields:
            assert f.help.strip(), f"declared field {f.path} needs help=... (one line)"
        fields = FieldSet.of(PluginHost().destinations.values())
        for f in destination_class.fields:
            assert f.name in fields.known(f.group)

    def test_secrets_stay_secret(self, destination: Destination, settings: dict[str, Any]) -> None:
        secrets = [
            getattr(destination.settings, f.name).reveal()
            for f in attrs.fields(type(destination.settings))
            if isinstance(getattr(destination.settings, f.name), Secret)
        ]
        text = repr(destination.settings) + repr(destination) + str(destination.settings)
        for s in secrets:
            assert s not in text

    def test_sample_events_exist(self) -> None:
        assert self.sample_events, "give at least one sample event"
        assert all("name" in e for e in self.sample_events)

    # --- the sans-I/O steps ----------------------------------------------------------------------

    def test_sample_events_validate_and_build_requests(self, destination: Destination) -> None:
        tracker = recording_tracker(vendors=[self.vendor])
        try:
            for sample in self.sample_events:
                fields = {k: v for k, v in sample.items() if k != "name"}
                route = tracker.explain(sample["name"], **fields)
                assert route.queued == (self.vendor,), (
                    f"sample {sample['name']!r} does not go to {self.vendor}:\n{route}"
                )
                event, _ = tracker.prepare(sample["name"], **fields)
                record = destination.transform(event)
                request = destination.build_request([Prepared(event, record)])
                assert isinstance(request, httpx.Request)
                assert str(request.url).startswith(destination.origin())
        finally:
            tracker.close()

    def test_hostile_inputs_are_refused_or_sendable(self, destination: Destination) -> None:
        """Each sample with one field swapped for a catalogued hostile value
        (:mod:`postback.testing.hostile`): ``track()`` refuses it with ``InvalidEvent``, or this
        vendor's transform and request build take what was accepted without raising."""
        from postback.errors import InvalidEvent
        from postback.testing import hostile

        swaps: list[tuple[str, Any]] = [("value", v) for v in hostile.HOSTILE_VALUES]
        swaps += [("timestamp", v) for v in hostile.HOSTILE_TIMESTAMPS]
        swaps += [("event_id", v) for v in hostile.HOSTILE_EVENT_IDS]
        swaps += [("properties", v) for v in hostile.HOSTILE_PROPERTIES]
        tracker = recording_tracker(vendors=[self.vendor])
        try:
            for sample in self.sample_events:
                fields = {k: v for k, v in sample.items() if k != "name"}
                user = dict(fields.get("user") or {})
                cases = list(swaps)
                for key in user:
                    cases += [("user", {**user, key: v}) for v in hostile.HOSTILE_STRINGS]
                for keyword, value in cases:
                    try:
                        event, dests = tracker.prepare(sample["name"], **{**fields, keyword: value})
                    except InvalidEvent:
                        continue
                    if not any(d.name == self.vendor for d in dests):
                        continue
                    try:
                        record = destination.transform(event)
                    except SkipEvent:
                        continue
                    destination.build_request([Prepared(event, record)])
        finally:
            tracker.close()

    def test_validate_yields_problems_and_skips_only(self, destination: Destination) -> None:
        """A Skip says what is missing and how to fix it; a reason is short (it is counted)."""
        from postback.events import make_event
        from postback.fields import FieldSet

        declared = FieldSet.of([type(destination)])
        for sample in self.sample_events:
            fields = {k: v for k, v in sample.items() if k != "name"}
            bare = {**fields, "user": None, "context": None, "properties": None}
            for event in (
                make_event(sample["name"], fields=declared, **fields),
                make_event(sample["name"], fields=declared, **bare),
            ):
                for finding in destination.validate(event):
                    assert isinstance(finding, Problem | Skip), (
                        f"validate yielded {finding!r}: yield postback.Problem (malformed) or "
                        "postback.Skip (this vendor cannot use the event)"
                    )
                    if isinstance(finding, Skip):
                        assert finding.reason and len(finding.reason) <= 60, finding
                        assert finding.fix, f"say how to fix it: {finding!r}"

    def test_batches_respect_the_maximum(self, destination_class: type[Destination]) -> None:
        assert destination_class.max_batch_size >= 1

    def test_server_errors_are_retried(self, destination: Destination) -> None:
        tracker = recording_tracker(vendors=[self.vendor])
        try:
            sample = self.sample_events[0]
            event, _ = tracker.prepare(
                sample["name"], **{k: v for k, v in sample.items() if k != "name"}
            )
        finally:
            tracker.close()
        batch = [Prepared(event, destination.transform(event))]
        outcome = destination.parse_response(batch, httpx.Response(503, json={}))
        outcomes = [outcome] if not isinstance(outcome, list | tuple) else list(outcome)
        assert all(isinstance(o, Retry) for o in outcomes)

    def test_a_batch_arrives_whole(
        self,
        destination_class: type[Destination],
        emulator_class: type[Emulator],
        settings: dict[str, Any],
    ) -> None:
        """``build_request`` carries every event of its batch: the sample events sent as one
        batch (up to ``max_batch_size``) each reach the emulator, and ``parse_response``
        answers Delivered for each. The delivery tests below send one event per request, and
        a ``Delivered`` outcome proves nothing about an event the request left out."""
        n = min(destination_class.max_batch_size, len(self.sample_events))
        if n < 2:
            pytest.skip("one event per request (max_batch_size = 1), or a single sample")
        box = Sandbox([emulator_class(settings)]).in_process()
        table = {**settings, "base_url": box.base_url(self.vendor)}
        cfg = build_config({"vendors": {self.vendor: table}}, {self.vendor: destination_class})
        destination = cfg.vendors[self.vendor].make_destination(destination_class)
        tracker = recording_tracker(vendors=[self.vendor])
        try:
            batch: list[Prepared] = []
            for sample in self.sample_events[:n]:
                fields = {k: v for k, v in sample.items() if k != "name"}
                event, _ = tracker.prepare(sample["name"], **fields)
                try:
                    batch.append(Prepared(event, destination.transform(event)))
                except SkipEvent:
                    continue
        finally:
            tracker.close()
        if len(batch) < 2:
            pytest.skip("fewer than two sample events make a wire record")
        with httpx.Client(transport=box.transport()) as client:
            response = client.send(destination.build_request(batch))
        ids = [p.event.event_id for p in batch]
        arrived = [r.get("event_id") for r in box.received(self.vendor)]
        assert len(arrived) == len(ids) and all(i is None or i in ids for i in arrived), (
            f"a batch of {len(ids)} events (ids {ids}) reached the {self.vendor} emulator as "
            f"{len(arrived)} (ids {arrived}): build_request must carry every event of its "
            "batch (and the emulator append each event it accepts to received)"
        )
        outcome = destination.parse_response(batch, response)
        outcomes = [outcome] if not isinstance(outcome, list | tuple) else list(outcome)
        assert all(isinstance(o, Delivered) for o in outcomes), outcomes

    # --- delivery ----------------------------------------------------------------------------

    def test_sample_events_are_delivered_in_process(self) -> None:
        tracker = recording_tracker(vendors=[self.vendor], autoflush=False)
        try:
            for sample in self.sample_events:
                tracker.track(sample["name"], **{k: v for k, v in sample.items() if k != "name"})
            report = tracker.flush(timeout=10)
            assert report.complete, report
            failed = [d.describe() for d in tracker.deliveries if not d.delivered]
            assert not failed, f"not delivered: {failed}"
            assert len(tracker.sent(vendor=self.vendor)) == len(self.sample_events)
        finally:
            tracker.close()

    def test_delivery_over_loopback_http(self, loopback: tuple[Tracker, Sandbox]) -> None:
        tracker, box = loopback
        box.set_fault(self.vendor, status=503, count=1)
        for sample in self.sample_events:
            tracker.track(sample["name"], **{k: v for k, v in sample.items() if k != "name"})
        report = tracker.flush(timeout=15)
        assert report.complete and report[self.vendor].delivered == len(self.sample_events)

    def test_refused_credentials_halt_without_dropping(
        self,
        emulator_class: type[Emulator],
        settings: dict[str, Any],
        destination_class: type[Destination],
        tmp_path: Path,
    ) -> None:
        secret_fields = [
            f.name
            for f in attrs.fields(destination_class.settings_class)
            if (f.metadata or {}).get("secret")
        ]
        if not secret_fields:
            pytest.skip(f"{self.vendor} has no credentials")
        wrong = {**settings}
        for name in secret_fields:
            value = settings.get(name)
            if isinstance(value, str):
                # keep the format (base64, hex...) but change the value
                wrong[name] = value[::-1] if value[::-1] != value else value + "x"
        with Sandbox([emulator_class(settings)]) as box:
            cfg = {
                "postback": {"queue": f"sqlite:///{tmp_path}/halt.db"},
                "vendors": {self.vendor: {**wrong, "base_url": box.base_url(self.vendor)}},
            }
            tracker = Tracker.from_config(cfg)
            try:
                sample = self.sample_events[0]
                tracker.track(sample["name"], **{k: v for k, v in sample.items() if k != "name"})
                report = tracker.flush(timeout=1.5)
                assert report[self.vendor].halted, (
                    "refused credentials must halt the lane (postback.Halt), not drop events"
                )
                assert report[self.vendor].pending == 1 and report[self.vendor].dead == 0
            finally:
                tracker.close(timeout=0)

    def test_parse_response_never_raises_on_garbage(self, destination: Destination) -> None:
        tracker = recording_tracker(vendors=[self.vendor])
        try:
            sample = self.sample_events[0]
            event, _ = tracker.prepare(
                sample["name"], **{k: v for k, v in sample.items() if k != "name"}
            )
        finally:
            tracker.close()
        batch = [Prepared(event, destination.transform(event))]
        for response in (
            httpx.Response(200, content=b"<html>"),
            httpx.Response(500, content=b""),
            httpx.Response(200, content=b"\xff\xfe"),
        ):
            outcome = destination.parse_response(batch, response)
            outcomes = [outcome] if not isinstance(outcome, list | tuple) else list(outcome)
            assert all(
                not isinstance(o, Delivered) or response.status_code == 200 for o in outcomes
            )
            assert all(
                isinstance(o, Delivered | Retry | Halt) or hasattr(o, "reason") for o in outcomes
            )

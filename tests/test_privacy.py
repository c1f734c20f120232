"""Privacy at rest: dead letters shown masked unless revealed, never with secrets, and deleted
after ``dead_letter_retention`` by the deliverer (SQLite file and memory here; Redis in
tests/redis/test_privacy_redis.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from postback import Destination, Event, Tracker, hookimpl
from postback.cli import main
from postback.config import CoreSettings
from postback.delivery.erase import ErasureReport
from postback.delivery.queue import Claimed, DeadLetter
from postback.privacy import shown_dead_letter
from postback.sandbox import Sandbox
from tests.cli_support import run
from tests.privacy_support import ERASE_RETRY, check_erase, check_retention, check_second_erase


def test_retention_default_is_30_days() -> None:
    assert CoreSettings().dead_letter_retention == 30 * 86400


@pytest.mark.parametrize("queue", ["sqlite", "memory://"])
def test_dead_letters_expire(
    queue: str, make_tracker: Callable[..., Tracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = make_tracker(
        queue=None if queue == "sqlite" else queue, core={"dead_letter_retention": "1h"}
    )
    check_retention(t, monkeypatch)


def test_deadletters_show_masks_unless_revealed(config_file: Path) -> None:
    t = Tracker.from_config(config_file)
    # A vendor error that quotes the secret and the email must show neither.
    t.track(
        "sign_up",
        user={
            "email": "Jane.Doe@Example.com",
            "phone": "+14155550123",
            "user_id": "user-8842",
            "ip_address": "203.0.113.7",
            "first_name": "Jane",
        },
        context={"fbclid": "IwAR3xyzfbclid"},
        value=-1,
        currency="USD",
        event_id="neg-1",
    )
    t.flush(timeout=5)
    t.close()
    code, out = run("deadletters", "show", "1", "--config", str(config_file))
    assert code == 0, out
    shown = json.loads(out)
    assert shown["masked"] is True and shown["event_id"] == "neg-1"
    for personal in ("jane.doe@example.com", "4155550123", "user-8842", "203.0.113.7", "Jane"):
        assert personal not in out
    assert "IwAR3xyzfbclid" not in out
    assert shown["event"]["user"]["user_id"] == "us•••"
    assert "sandbox-example-key" not in out
    code, out = run("deadletters", "show", "1", "--reveal", "--config", str(config_file))
    assert code == 0, out
    shown = json.loads(out)
    assert shown["masked"] is False
    assert shown["event"]["user"]["email"] == "jane.doe@example.com"
    assert shown["event"]["user"]["user_id"] == "user-8842"
    assert "sandbox-example-key" not in out  # not stored with the event, so never shown


def test_shown_dead_letter_removes_vendor_secrets(make_tracker: Callable[..., Tracker]) -> None:
    t = make_tracker(core={"workers": False})
    secret = t.destinations["example"].settings.api_key.reveal()
    d = DeadLetter(1, "example", "e1", "sign_up", 0, 0, 3, f"refused key {secret}", b"{}")
    for reveal in (False, True):
        shown = shown_dead_letter(d, t.destinations.values(), reveal=reveal)
        assert secret not in shown and "refused key ***" in shown


def test_erasure_file_is_owner_only(make_tracker: Callable[..., Tracker], tmp_path: Path) -> None:
    t = make_tracker(core={"workers": False})
    t.erase(email="a@b.co")
    assert (tmp_path / "queue.db.erased").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("queue", ["sqlite", "memory://"])
def test_erase_a_person_while_the_vendor_is_down(
    queue: str, make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    t = make_tracker(queue=None if queue == "sqlite" else queue, vendor={"retry": ERASE_RETRY})
    check_erase(t, sandbox)


@pytest.mark.parametrize("queue", ["sqlite", "memory://"])
def test_a_second_erase_counts_the_events_the_first_dropped_apart(
    queue: str, make_tracker: Callable[..., Tracker]
) -> None:
    # Was: until the deliverer dropped them, every erase counted the person's events again
    # under "pending", as if it had just erased them.
    t = make_tracker(queue=None if queue == "sqlite" else queue, core={"workers": False})
    check_second_erase(t)


def test_erase_matches_user_id_and_phone_digits(make_tracker: Callable[..., Tracker]) -> None:
    t = make_tracker(core={"workers": False})
    t.track("purchase", user={"user_id": "u-1"}, value=1, currency="USD", event_id="a")
    t.track(
        "purchase",
        user={"user_id": "u-2", "phone": "+1 415 555 0100"},
        value=1,
        currency="USD",
        event_id="b",
    )
    t.track(
        "purchase",
        user={"user_id": "u-3", "phone": "+14155550101"},
        value=1,
        currency="USD",
        event_id="c",
    )
    assert t.erase(user_id=" u-1 ").pending == 1
    report = t.erase(phone="(+1) 415-555-0100")
    assert (report.pending, report.dead_letters, report.in_flight) == (1, 0, None)
    with pytest.raises(ValueError, match="at least one of"):
        t.erase(email=" ")


def test_erase_command(config_file: Path, sandbox: Sandbox) -> None:
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.track("sign_up", user={"email": "b@b.co"}, value=-1, currency="USD", event_id="neg-2")
    t.flush(timeout=5)
    t.close()
    code, out = run("erase", "--email", "A@B.co", "--json", "--config", str(config_file))
    assert code == 0, out
    assert json.loads(out) == {
        "pending": 0,
        "dead_letters": 1,
        "in_flight": None,
        "in_flight_outcome": "finished",
        "not_forgotten": [],
        "unreadable": 0,
        "already_erased": 0,
    }
    code, out = run("deadletters", "list", "--config", str(config_file))
    assert "neg-2" in out and "neg-1" not in out
    code, out = run("erase", "--config", str(config_file))
    assert code == 2 and "at least one of" in out
    args = ("erase", "--phone", "415 555 0100", "--config", str(config_file))
    code, out = run(*args, "--phone-region", "XX")
    assert code == 2 and "--phone-region" in out
    code, out = run(*args, "--phone-region", "US")
    assert code == 0, out
    code, out = run("erase", "--user", "ifa=AB-12", "--config", str(config_file))
    assert code == 0, out
    code, out = run("erase", "--user", "ifaa=AB-12", "--config", str(config_file))
    assert code == 2 and "user.ifaa" in out
    code, out = run("erase", "--user", "ifa", "--config", str(config_file))
    assert code == 2 and "NAME=VALUE" in out


def test_erase_command_run_twice_says_what_an_earlier_erase_dropped(
    config_file: Path, sandbox: Sandbox
) -> None:
    sandbox.set_fault("example", status=503, count=10**6)  # the events wait in the file
    t = Tracker.from_config(config_file)
    t.track("purchase", user={"email": "a@b.co"}, value=1, currency="USD", event_id="p-1")
    t.close(timeout=0)
    args = ("erase", "--email", "a@b.co", "--config", str(config_file))
    code, out = run(*args)
    assert code == 0 and "erased: 1 queued event(s) dropped" in out, out
    assert "already erased" not in out
    code, out = run(*args)
    assert code == 0 and "erased: 0 queued event(s) dropped" in out, out
    assert "1 queued event(s) already erased earlier, awaiting cleanup" in out
    code, out = run(*args, "--json")
    assert (json.loads(out)["pending"], json.loads(out)["already_erased"]) == (0, 1)


_KEEPER_PLUGIN = """
from postback import hookimpl
from postback.testing.example import ExampleDestination


class Keeper(ExampleDestination):
    name = "keeper"

    def __init__(self, *args, **kwargs):
        raise RuntimeError("vault https://ops:hunter2@vault.internal refused")

    def erase_user(self, user):
        pass


@hookimpl
def postback_register_destinations(register):
    register(Keeper)
"""


def test_erase_command_erases_when_a_vendor_keeping_marks_fails_to_build(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: a vendor whose plugin overrides erase_user and raised anything but a ConfigError
    # when built crashed `postback erase` with a traceback before the erase (which built no
    # vendor before, and so erased), and printed the exception's text.
    from tests._distributions import add_entry_point_dist

    add_entry_point_dist(
        monkeypatch,
        tmp_path / "site2",
        "postback-keeper",
        {"keeper": "keeper_plugin"},
        {"keeper_plugin": _KEEPER_PLUGIN},
    )
    with config_file.open("a") as f:
        f.write('\n[vendors.keeper]\napi_key = "k"\n')
    t = Tracker.from_raw(
        {"postback": {"queue": f"sqlite:///{tmp_path / 'queue.db'}", "workers": False}}
    )
    t.queue.put(
        "e-1", "sign_up", 0, ["example"], json.dumps({"user": {"email": "a@b.co"}}).encode()
    )
    t.close(timeout=0)
    result = CliRunner().invoke(
        main, ["erase", "--email", "a@b.co", "--json", "--config", str(config_file)]
    )
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["pending"] == 1  # the rest of the erase is done
    assert json.loads(result.stdout)["not_forgotten"] == ["keeper"]
    assert "not forgotten by keeper" in result.stderr and "RuntimeError" in result.stderr
    assert "hunter2" not in result.output


def test_erase_command_says_plainly_when_two_plugins_register_one_vendor(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: the erase command's own look at the plugins (which vendors keep marks) ran outside
    # its error handling: a traceback instead of the error naming both plugins.
    from tests._distributions import add_entry_point_dist

    add_entry_point_dist(
        monkeypatch,
        tmp_path / "site2",
        "postback-example-again",
        {"example-again": "example_again"},
        {
            "example_again": "from postback import hookimpl\n"
            "from postback.testing.example import ExampleDestination\n"
            "class Again(ExampleDestination):\n    pass\n"
            "@hookimpl\ndef postback_register_destinations(register):\n    register(Again)\n"
        },
    )
    result = CliRunner().invoke(main, ["erase", "--email", "a@b.co", "--config", str(config_file)])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert "registered twice" in result.stderr and "POSTBACK_DISABLE_PLUGINS" in result.stderr


def test_shown_dead_letter_removes_a_hex_secret_before_masking(
    make_tracker: Callable[..., Tracker],
) -> None:
    # Was: the reason was masked first, which cut a hex key to its first characters (as a
    # hash), so redaction no longer found it and they were shown.
    secret = "deadbeef0123456789abcdef0123456789abcdef"
    t = make_tracker(core={"workers": False}, vendor={"api_key": secret})
    d = DeadLetter(1, "example", "e1", "sign_up", 0, 0, 3, f"refused key {secret}", b"{}")
    for reveal in (False, True):
        shown = shown_dead_letter(d, t.destinations.values(), reveal=reveal)
        assert "deadbeef" not in shown and "refused key ***" in shown


def test_erase_takes_a_numeric_id_as_track_does(make_tracker: Callable[..., Tracker]) -> None:
    # Was: track() stores user_id=42 as "42", but erase(user_id=42, email=...) ignored the
    # number without a word (and erase(user_id=42) alone said it was given nothing).
    t = make_tracker(core={"workers": False})
    t.track("purchase", user={"user_id": 42}, value=1, currency="USD", event_id="a")
    t.track(
        "purchase",
        user={"user_id": "u-b", "phone": 14155550100},
        value=1,
        currency="USD",
        event_id="b",
    )
    assert t.erase(user_id=42, email="someone@else.co").pending == 1
    assert t.erase(phone=14155550100).pending == 1
    with pytest.raises(ValueError, match="user_id"):
        t.erase(user_id=["u-1"], email="a@b.co")  # type: ignore[arg-type]


def test_a_second_erase_within_one_timestamp_tick_reaches_other_processes(
    tmp_path: Path,
) -> None:
    # Another process's deliverer sees a new erase by the tombstone file's version. It was
    # (mtime, size): where file times are coarse (a kernel tick, as on most kernels before
    # 6.13, or NFS) two erases within one tick leave both alike, and the second person's
    # events went out. The file time is set back here to stand for such a tick.
    from postback.delivery.erase import ErasureFilter, Person, SQLiteErasureLog, payload_keys

    path = tmp_path / "queue.db.erased"
    writer, other = SQLiteErasureLog(path), ErasureFilter(SQLiteErasureLog(path))
    alice, bob = Person(email="alice@example.com"), Person(email="bob@example.com")
    writer.add(alice.keys(), 1_000)
    other.refresh()
    before = path.stat()
    writer.add(bob.keys(), 1_000)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    other.refresh()
    payload = json.dumps({"user": {"email": "bob@example.com"}}).encode()
    assert payload_keys(payload) == bob.keys()
    assert other.erased(Claimed(1, "bob-1", payload, 0, 500))


def test_a_tombstone_file_made_again_is_read_again(tmp_path: Path) -> None:
    # A deliverer keeps the tombstone file open to read its header before every batch: when
    # the file is deleted and made again (by hand, a restore), the new one is what counts.
    from postback.delivery.erase import ErasureFilter, Person, SQLiteErasureLog

    path = tmp_path / "queue.db.erased"
    alice, bob = Person(email="alice@example.com"), Person(email="bob@example.com")
    SQLiteErasureLog(path).add(alice.keys(), 1_000)
    other = ErasureFilter(SQLiteErasureLog(path))
    other.refresh()
    assert other.active
    path.unlink()
    SQLiteErasureLog(path).add(bob.keys(), 1_000)
    other.refresh()
    payload = json.dumps({"user": {"email": "bob@example.com"}}).encode()
    assert other.erased(Claimed(1, "bob-1", payload, 0, 500))
    gone = json.dumps({"user": {"email": "alice@example.com"}}).encode()
    assert not other.erased(Claimed(2, "alice-1", gone, 0, 500))


class _EraseDuringTransform:
    """Erases the person from inside the vendor's transform: after the lane looked for
    tombstones, before its request is sent."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.report: ErasureReport | None = None

    @hookimpl(tryfirst=True)
    def postback_transform(self, event: Event, destination: Destination) -> Any:
        if self.tracker is not None and self.report is None:
            self.report = self.tracker.erase(email=event.user.email)
        return None


def test_an_erase_that_returns_while_a_batch_is_prepared_stops_it(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox
) -> None:
    # Was: the lane looked for tombstones only before transforming its batch, so an erase that
    # returned meanwhile (neither seen by the lane nor seeing the batch in flight) let the
    # person's event be sent, and the report counted it as pending, which no vendor would get.
    plugin = _EraseDuringTransform()
    t = make_tracker(plugins=[plugin])
    plugin.tracker = t
    t.track("purchase", user={"email": "ada@example.com"}, value=1, currency="USD")
    t.flush(timeout=10)
    assert plugin.report is not None
    assert sandbox.received("example") == []
    assert t.stats()["example"]["skipped"] == 1


def test_a_dead_letter_masks_numbers_under_personal_keys(
    make_tracker: Callable[..., Tracker],
) -> None:
    # Was: only strings were masked, so a phone number or an id given as a number in
    # properties was shown as is.
    t = make_tracker(core={"workers": False})
    event = {
        "name": "purchase",
        "user": {"email": "ada@example.com"},
        "properties": {"phone": 14155550123, "customer": {"user_id": 987654321, "n": 3}},
    }
    d = DeadLetter(1, "example", "e1", "purchase", 0, 0, 3, "refused", json.dumps(event).encode())
    shown = shown_dead_letter(d, t.destinations.values())
    assert "4155550123" not in shown and "987654321" not in shown
    assert json.loads(shown)["event"]["properties"]["customer"]["n"] == 3


def test_a_dead_letter_shows_the_event_name_unmasked(make_tracker: Callable[..., Tracker]) -> None:
    # Was: the canonical event's "name" (the event's name, "install") was masked as if it
    # were a person's name ("i•••"), while the top level of the same output showed it whole.
    t = make_tracker(core={"workers": False})
    event = {"name": "install", "user": {"email": "ada@example.com", "first_name": "Ada"}}
    d = DeadLetter(1, "example", "e1", "install", 0, 0, 1, "refused", json.dumps(event).encode())
    shown = json.loads(shown_dead_letter(d, t.destinations.values()))
    assert shown["event"]["name"] == "install"
    assert shown["event"]["user"]["first_name"] == "A•••"  # a person's name stays masked


class _EraseDuringRequest:
    """Erases the person while the lane's request for their event is being sent."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.report: ErasureReport | None = None

    @hookimpl(wrapper=True)
    def postback_deliver(self, destination: Destination, batch: Any, send: Any) -> Any:
        if self.tracker is not None and self.report is None:
            self.report = self.tracker.erase(email=batch[0].event.user.email)
        return (yield)


def test_an_in_flight_event_refused_after_an_erase_leaves_no_dead_letter(
    make_tracker: Callable[..., Tracker],
) -> None:
    # Was: the erase deleted the person's dead letters, then their request in flight was
    # refused for good and written as a new dead letter, kept for dead_letter_retention.
    plugin = _EraseDuringRequest()
    t = make_tracker(plugins=[plugin])
    plugin.tracker = t
    t.track("sign_up", user={"email": "ada@example.com"}, value=-1, currency="USD")
    t.flush(timeout=10)
    assert plugin.report is not None and plugin.report.in_flight == 1
    assert t.queue.dead_letters() == []


def test_erase_returns_when_the_wall_clock_steps_back(
    make_tracker: Callable[..., Tracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: erase() waited for the wall clock to pass the erase's millisecond, however long:
    # stepped back 10 s (NTP) right after the tombstone was written, it blocked 10 s.
    import time
    import types

    from postback.delivery import erase as erase_mod

    t = make_tracker(core={"workers": False})
    calls = 0

    def stepped_ns() -> int:
        nonlocal calls
        calls += 1
        return time.time_ns() - (0 if calls == 1 else 10_000_000_000)

    clock = types.SimpleNamespace(
        time_ns=stepped_ns, sleep=time.sleep, monotonic=time.monotonic, time=time.time
    )
    monkeypatch.setattr(erase_mod, "time", clock)
    started = time.monotonic()
    t.erase(email="ada@example.com")
    assert time.monotonic() - started < 2.0


def test_a_dead_letter_masks_identifiers_however_their_keys_are_written(
    make_tracker: Callable[..., Tracker],
) -> None:
    # Was: only the snake_case key was recognised: a JavaScript app's "userId" or "sessionId"
    # in properties was shown whole.
    t = make_tracker(core={"workers": False})
    props = {"userId": "u-445566", "SESSION_ID": "s-778899", "order": {"externalId": "x-112233"}}
    event = {"name": "purchase", "user": {"email": "ada@example.com"}, "properties": props}
    d = DeadLetter(1, "example", "e1", "purchase", 0, 0, 3, "refused", json.dumps(event).encode())
    shown = shown_dead_letter(d, t.destinations.values())
    for value in ("u-445566", "s-778899", "x-112233"):
        assert value not in shown
    assert json.loads(shown)["event"]["properties"]["userId"] == "u-•••"


def test_the_delivery_child_spec_repr_shows_no_secret(make_tracker: Callable[..., Tracker]) -> None:
    # Was: the spec's repr (a traceback's locals, a debug log) printed the raw configuration,
    # vendor keys included.
    from postback.delivery.spec import tracker_spec

    t = make_tracker(core={"workers": False})
    secret = t.destinations["example"].settings.api_key.reveal()
    spec = tracker_spec(t.config, t.queue.url, t.host)
    assert secret in str(spec.raw)  # sent to the child as it is
    assert secret not in repr(spec) and secret not in str(spec)


@pytest.mark.parametrize("given", [("--phone", "+++"), ("--email", "  "), ("--user-id", " ")])
def test_erase_command_with_nothing_to_match_is_a_usage_error(
    config_file: Path, given: tuple[str, str]
) -> None:
    code, out = run("erase", *given, "--config", str(config_file))
    assert code == 2, out
    assert "at least one of --user-id, --email, --phone" in out


def _user_payload(**user: object) -> bytes:
    import orjson

    return orjson.dumps({"name": "purchase", "user": user})


def test_erase_matches_an_email_tracked_already_hashed() -> None:
    # Was: an app that tracked the SHA-256 of the normalised email (which vendors accept)
    # could not erase the person by their email, nor a plain email by its hash.
    from postback.delivery.erase import Person, payload_keys
    from postback.pii import sha256_hex

    hashed = sha256_hex("jane@example.com")
    jane = Person(email=" Jane@Example.com ").keys()
    assert jane & payload_keys(_user_payload(email=hashed))
    assert jane & payload_keys(_user_payload(email="jane@example.com"))
    assert not jane & payload_keys(_user_payload(email=sha256_hex("john@example.com")))
    by_hash = Person(email=hashed.upper()).keys()
    assert by_hash & payload_keys(_user_payload(email="jane@example.com"))
    assert by_hash & payload_keys(_user_payload(email=hashed))


def test_erase_matches_a_phone_in_national_and_international_form(
    make_tracker: Callable[..., Tracker],
) -> None:
    # Was: phones matched by their digits alone, so "(415) 555-0100" (4155550100) never
    # matched "+1 415 555 0100" (14155550100), nor "020 7946 0958" "+44 20 7946 0958".
    from postback.delivery.erase import ErasureFilter, MemoryErasureLog, Person, payload_keys

    t = make_tracker(core={"workers": False})
    for i, phone in enumerate(["+1 415 555 0100", "(415) 555-0100", "+1 415 555 0199"]):
        t.track("purchase", user={"user_id": f"u-{i}", "phone": phone}, value=1, currency="USD")
    assert t.erase(phone="415.555.0100", phone_region="us").pending == 2
    with pytest.raises(ValueError, match="phone_region"):
        t.erase(phone="415.555.0100", phone_region="USA")

    uk = Person(phone="020 7946 0958", phone_regions=("GB",)).keys()
    assert uk & payload_keys(_user_payload(phone="+44 20 7946 0958"))
    assert not uk & payload_keys(_user_payload(phone="+44 20 7946 0959"))
    # The other way round, the deliverer reads a national number with its vendors' region.
    log = MemoryErasureLog()
    log.add(Person(phone="+44 20 7946 0958").keys(), 1_000)
    erasures = ErasureFilter(log, phone_regions=("GB",))
    erasures.refresh()
    assert erasures.erased(Claimed(1, "a", _user_payload(phone="020 7946 0958"), 0, 500))
    regionless = ErasureFilter(log)
    regionless.refresh()
    assert not regionless.erased(Claimed(1, "a", _user_payload(phone="020 7946 0958"), 0, 500))


def test_a_vendor_that_cannot_forget_the_person_is_named_in_the_report(
    make_tracker: Callable[..., Tracker],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Was: the exception escaped erase() after the tombstones and dead letters were done, so
    # the caller got no report, and its message (which may quote the identifier) with it.
    t = make_tracker(core={"workers": False})
    t.track("purchase", user={"phone": "+14155550123"}, value=1, currency="USD")

    def fail(user: dict[str, str]) -> None:
        raise RuntimeError(f"the marks store is down for {user['phone']}")

    monkeypatch.setattr(t.destinations["example"], "erase_user", fail)
    with caplog.at_level("ERROR", logger="postback"):
        report = t.erase(phone="+1 415 555 0123")
    assert report.not_forgotten == ("example",)
    assert "example" in caplog.text and "RuntimeError" in caplog.text
    assert "555" not in caplog.text


KEY_1 = "k1:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2U="


@pytest.mark.parametrize(
    "keys",
    [
        None,
        "k2:b3RoZXJvdGhlcm90aGVyb3RoZXJvdGhlcm90aGVyb3Q=",
        # the id the dead letter names, but another key under it (changed, or the bytes
        # damaged): AES-GCM's InvalidTag made the erase end in a traceback
        "k1:b3RoZXJvdGhlcm90aGVyb3RoZXJvdGhlcm90aGVyb3Q=",
    ],
)
def test_erase_without_the_key_of_encrypted_dead_letters_fails_saying_so(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, keys: str | None
) -> None:
    """Run without the app's POSTBACK_ENCRYPTION_KEYS (or with a rotated key alone), ``erase``
    could not read the sealed dead letters, so it matched none, said "0 dead letter(s)
    deleted" and exited 0: the person's data stayed stored while the erase looked done."""
    monkeypatch.setenv("POSTBACK_ENCRYPTION_KEYS", KEY_1)
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    if keys is None:
        monkeypatch.delenv("POSTBACK_ENCRYPTION_KEYS")
    else:
        monkeypatch.setenv("POSTBACK_ENCRYPTION_KEYS", keys)
    code, out = run("erase", "--email", "a@b.co", "--json", "--config", str(config_file))
    assert code == 1, out
    assert '"unreadable": 1' in out
    assert "1 dead letter(s) could not be read here" in out and "POSTBACK_ENCRYPTION_KEYS" in out
    monkeypatch.setenv("POSTBACK_ENCRYPTION_KEYS", KEY_1)  # with the app's keys: done
    code, out = run("erase", "--email", "a@b.co", "--json", "--config", str(config_file))
    assert code == 0, out
    assert json.loads(out)["dead_letters"] == 1 and json.loads(out)["unreadable"] == 0

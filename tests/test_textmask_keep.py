"""What a reason keeps unmasked as a vendor's configured id, and what it never does: a short or
common setting value ("1", "US", "true", " ") must not make a phone or an email visible."""

from __future__ import annotations

from pathlib import Path

import attrs

from postback import Tracker
from postback.cli._shared import public_vendor_values, queue_tracker
from postback.testing.example import ExampleDestination, ExampleSettings
from postback.textmask import mask_text, public_settings
from tests.cli_support import run

REASON = "account {} refused +1 415 555 0100 and jane.doe@example.com from 203.0.113.9"
COMMON = ["1", "US", "true", " ", "+1", "415", "example.com", "jane.doe", "0100"]


def test_short_or_common_kept_values_unmask_nothing() -> None:
    for value in COMMON:
        shown = mask_text(REASON.format(value), {value})
        assert "415 555 0100" not in shown and "jane.doe@example.com" not in shown, value
        assert "203.0.113.9" not in shown, value


def test_a_kept_value_given_as_one_string_is_one_value_not_its_substrings() -> None:
    """``keep`` is a collection of values; one str given as ``keep`` was tested by substring,
    so any phone number found inside it was shown."""
    shown = mask_text("refused +1 415 555 0100", "note: +1 415 555 0100 is ours")
    assert "415 555 0100" not in shown, shown


def test_only_values_masking_would_change_are_kept() -> None:
    """``public_settings`` and the CLI's ``public_vendor_values`` kept every non-secret text
    setting ("1", "US", "true"): nothing masking touches needs keeping, and a short common
    value is no vendor id. Both now apply one rule (``textmask.public_values``)."""
    for value in ["1", "US", "true", " ", "acme"]:
        dest = ExampleDestination(attrs.evolve(_settings(), account=value))
        assert public_settings([dest]) == frozenset(), value
    dest = ExampleDestination(attrs.evolve(_settings(), account="424242424242"))
    assert public_settings([dest]) == {"424242424242"}


def _settings() -> ExampleSettings:
    from postback.destination import Secret

    return ExampleSettings(api_key=Secret("k" * 20))


def test_cli_public_values_follow_the_same_rule(config_file: Path) -> None:
    Tracker.from_config(config_file).close()  # makes the queue file
    for value, kept in [("1", set()), ("US", set()), ("424242424242", {"424242424242"})]:
        text = config_file.read_text().split("\naccount =")[0]
        config_file.write_text(text + f'\naccount = "{value}"\n')
        tracker, _ = queue_tracker(config_file)
        try:
            assert public_vendor_values(config_file, tracker) == kept, value
        finally:
            tracker.close(timeout=0)


def test_a_configured_1_does_not_unmask_a_phone_in_deadletters(config_file: Path) -> None:
    import sqlite3

    config_file.write_text(config_file.read_text() + 'account = "1"\n')
    t = Tracker.from_config(config_file)
    t.track("sign_up", user={"email": "a@b.co"}, value=-1, currency="USD", event_id="neg-1")
    t.flush(timeout=5)
    t.close()
    with sqlite3.connect(config_file.parent / "queue.db") as db:
        db.execute("UPDATE dead_letters SET reason = ?", (REASON.format("1"),))
    for args in (("deadletters", "list"), ("deadletters", "show", "1")):
        code, out = run(*args, "--config", str(config_file))
        assert code == 0, out
        flat = " ".join(out.split())
        assert "415 555 0100" not in flat and "jane.doe@example.com" not in flat, out


def test_an_id_label_keeps_a_bare_number_not_a_formatted_phone() -> None:
    """A vendor id label kept whatever phone-shaped text followed it: "no user for account id
    +1 415 555 0100" showed the number. A vendor's id is a bare run of digits (or a hash);
    a number written with "+", spaces, dots, dashes or brackets is masked after a label too."""
    for text in [
        "no user for account id +1 415 555 0100",
        "app_id: (415) 555-0100",
        "pixel id 415.555.0100",
    ]:
        assert "555" not in mask_text(text), text
    assert mask_text("No app found for app_id 333903271") == "No app found for app_id 333903271"
    assert "333903271" in mask_text("account_id=333903271; phone +1 415 555 0100")

"""The privacy commands: ``postback deadletters show`` (masked unless ``--reveal``) and
``postback erase`` (a person's pending events, retries and dead letters). Each is registered
in the CLI with one line; the work is done by :mod:`postback.privacy` and the tracker.

Like the other queue commands they build no vendor, so they need no vendor's secrets (and so
cannot print one: dead letters and their reasons are stored without them). The exception:
``erase`` builds the configured vendors whose plugin keeps something of its own about a person
(it overrides :meth:`~postback.Destination.erase_user`: Ton AI's once-per-user marks), so that
they forget it too; where their settings cannot be read in this shell (a secret's variable is
unset), the rest of the erase is done, they are named, and the command exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs
import click

from postback.cli._shared import (
    config_option,
    count_or_id,
    public_vendor_values,
    queue_tracker,
    user_errors,
)
from postback.errors import ConfigError
from postback.privacy import shown_dead_letter
from postback.tracker import Tracker

__all__ = ["deadletters_show", "erase"]


@click.command("show")
@click.argument("dead_id", type=count_or_id)
@config_option
@click.option(
    "--reveal",
    is_flag=True,
    help="Show personal data (emails, phones, IPs, user and device ids) as stored; vendor "
    "secrets stay hidden.",
)
def deadletters_show(dead_id: int, config_path: Path | None, reveal: bool) -> None:
    """Show one dead letter with its canonical event, personal data masked unless --reveal."""
    with user_errors():
        tracker, _ = queue_tracker(config_path, workers=False)
    try:
        with user_errors():
            d = tracker.queue.dead_letter(dead_id)
        if d is None:
            click.echo(f"no dead letter {dead_id} (deadletters list shows the ids)", err=True)
            sys.exit(1)
        keep = public_vendor_values(config_path, tracker)  # app ids are nobody's data
        click.echo(shown_dead_letter(d, tracker.destinations.values(), reveal=reveal, keep=keep))
    finally:
        tracker.close(timeout=0)


@click.command("erase")
@config_option
@click.option("--user-id", default=None, help="The person's user_id, as tracked.")
@click.option(
    "--email",
    default=None,
    help="The person's email (matched trimmed, lower-case, or as its SHA-256 hex).",
)
@click.option(
    "--phone",
    default=None,
    help="The person's phone number (matched by its digits and its E.164 form).",
)
@click.option(
    "--phone-region",
    default=None,
    help="Where a --phone in national form is numbered (ISO 3166 alpha-2, e.g. US).",
)
@click.option(
    "--user",
    "ids",
    multiple=True,
    metavar="NAME=VALUE",
    help="Another identifier of the person: a core id (ifa, external_id...) or a user field "
    "a vendor plugin declares (telegram_user_id=1728125519). Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def erase(
    config_path: Path | None,
    user_id: str | None,
    email: str | None,
    phone: str | None,
    phone_region: str | None,
    ids: tuple[str, ...],
    as_json: bool,
) -> None:
    """Erase a person: their queued events and retries never reach a vendor (every deliverer
    drops them, on any process or host sharing the queue), their dead letters are deleted.
    Prints how many; an event being sent at that moment finishes. A vendor that keeps records
    of its own (Ton AI's once-per-user marks) forgets them too; one that cannot (its settings
    unreadable here) is named, and the command exits 1 once the rest is done."""
    from postback.delivery.erase import Person, check_region

    if phone_region:
        try:
            check_region(phone_region)
        except ValueError as exc:
            click.echo(f"error: --phone-region: {exc}", err=True)
            sys.exit(2)
    user = {k: v for k, _, v in (i.partition("=") for i in ids)}
    if any("=" not in i for i in ids):
        click.echo("error: --user takes NAME=VALUE (e.g. telegram_user_id=1728125519)", err=True)
        sys.exit(2)
    given = tuple((k, v.strip()) for k, v in user.items() if v.strip())
    try:  # each blank (or a phone without digits) is nothing to match
        Person(user_id=user_id or None, email=email or None, phone=phone or None, user=given)
    except ValueError:
        click.echo(
            "error: give at least one of --user-id, --email, --phone, --user with something to "
            "match (not blank; a phone number with digits)",
            err=True,
        )
        sys.exit(2)
    tracker, unbuilt = _erasing_tracker(config_path)
    try:
        with user_errors():
            report = tracker.erase(
                user_id=user_id, email=email, phone=phone, phone_region=phone_region, user=user
            )
    except ValueError as exc:  # a --user field unknown here, or malformed
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        tracker.close(timeout=0)
    if unbuilt is not None:
        report = attrs.evolve(report, not_forgotten=(*report.not_forgotten, *unbuilt[0]))
    if as_json:
        click.echo(json.dumps(attrs.asdict(report)))
    else:
        click.echo(
            f"erased: {report.pending} queued event(s) dropped, {report.dead_letters} dead "
            "letter(s) deleted"
        )
        if report.already_erased:
            click.echo(
                f"{report.already_erased} queued event(s) already erased earlier, awaiting "
                "cleanup (the deliverer removes them when it next takes them up)"
            )
        if report.in_flight is None:
            click.echo(
                "an event a deliverer was sending at that moment finishes (it cannot be recalled)"
            )
        elif report.in_flight:
            click.echo(f"{report.in_flight} event(s) being sent at that moment finish")
    if report.unreadable:
        click.echo(
            f"error: {report.unreadable} dead letter(s) could not be read here: they are "
            "encrypted with a key POSTBACK_ENCRYPTION_KEYS does not list in this shell, so the "
            "person's may be among them and were not deleted. Set it to the app's keys (the "
            "rotated-out ones too) and erase again.",
            err=True,
        )
    if report.not_forgotten:
        cause = unbuilt[1] if unbuilt is not None else "see the error logged above"
        click.echo(
            f"error: not forgotten by {', '.join(report.not_forgotten)}: what a vendor keeps "
            "of its own about the person (such as Ton AI's once-per-user marks) is still "
            f"there, as {cause}"
            "\nThe rest of the erase is done; run it again once that is fixed (or call "
            "tracker.erase() in the app).",
            err=True,
        )
    if report.unreadable or report.not_forgotten:
        sys.exit(1)


def _erasing_tracker(config_path: Path | None) -> tuple[Tracker, tuple[list[str], str] | None]:
    """A tracker on the config's queue with only the configured vendors that keep something
    of their own about a person (their plugin overrides ``Destination.erase_user``), so that
    the erase reaches it; and None, or (those vendors, why) when they could not be built here
    (a ``${VAR}`` secret unset in this shell, or their plugin failed): then the tracker has no
    vendor."""
    from postback.destination import Destination
    from postback.plugins import PluginHost

    with user_errors():  # two plugins registering one vendor, say
        classes = PluginHost().destinations
    keepers = [n for n, c in classes.items() if c.erase_user is not Destination.erase_user]
    why = ""
    if keepers:
        try:
            tracker, _ = queue_tracker(config_path, keepers, workers=False)
            return tracker, None
        except ConfigError as exc:
            why = f"its settings could not be read here: {exc}"
        except Exception as exc:  # the plugin's own failure: the rest of the erase is still due
            why = (
                f"building it failed here with {type(exc).__name__} (its text is not shown: it "
                "may quote a secret)"
            )
    with user_errors():
        tracker, configured = queue_tracker(config_path, workers=False)
    missed = [n for n in keepers if n in configured]
    return tracker, ((missed, why) if missed else None)

"""``manage.py postback_worker``: deliver queued events until SIGTERM, like ``postback worker``.

Run it next to web processes whose configuration says ``workers = false``: they only enqueue
into the shared ``sqlite://`` (or ``redis://``) queue and this process delivers. It builds its
own tracker from ``settings.POSTBACK`` with ``workers = true``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from postback.errors import PostbackError
from postback.integrations import run_worker, stats_interval
from postback.integrations.django.conf import build_tracker


class Command(BaseCommand):  # type: ignore[misc]  # django ships no type hints
    help = (
        "Deliver queued postback events until SIGTERM/SIGINT, then finish the requests in "
        "flight and stop (for web processes configured with workers = false)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stats-every",
            type=float,
            default=0.0,
            help="Print per-vendor stats as JSON every N seconds (0: never).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            stats_interval(options["stats_every"])
        except ValueError as exc:
            raise CommandError(f"--stats-every {exc}") from None
        try:
            tracker = build_tracker(workers=True)
        except PostbackError as exc:
            raise CommandError(str(exc)) from None
        run_worker(tracker, stats_every=options["stats_every"], write=self.stdout.write)

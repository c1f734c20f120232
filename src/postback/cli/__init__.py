"""The ``postback`` command line: the ``main`` click group and its commands, one module per
group (click for parsing, rich for tables and progress bars; output is never read as markup).

Commands: plugins, config check, doctor (:mod:`.checks`); send [--dry-run], validate
(:mod:`.events`); sandbox, demo (:mod:`.sandbox`); worker, queue stats, deadletters
list, replay (:mod:`.queue`); deadletters show, erase (:mod:`.privacy`); new-plugin
(:mod:`.plugin`); ui (:mod:`.ui`); status (:mod:`.status`).
"""

from __future__ import annotations

import logging

import click

from postback import __version__
from postback.cli._shared import since_ms as _since
from postback.cli.checks import config_group, doctor, plugins
from postback.cli.events import send, validate
from postback.cli.plugin import new_plugin
from postback.cli.privacy import deadletters_show, erase
from postback.cli.queue import deadletters, queue, replay, worker
from postback.cli.sandbox import demo, sandbox
from postback.cli.status import status as status_command
from postback.cli.ui import ui

__all__ = ["_since", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postback")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """postback: send server-side conversion events to ad and attribution vendors."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        logging.getLogger("httpx").setLevel(logging.WARNING)


for _command in (
    plugins,
    config_group,
    doctor,
    send,
    validate,
    sandbox,
    demo,
    worker,
    queue,
    deadletters,
    replay,
    new_plugin,
    ui,
    status_command,
    erase,
):
    main.add_command(_command)
deadletters.add_command(deadletters_show)

if __name__ == "__main__":  # pragma: no cover
    main()

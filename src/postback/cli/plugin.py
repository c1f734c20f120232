"""``postback new-plugin``: scaffold a vendor plugin package, refusing a name that clashes
with an installed vendor."""

from __future__ import annotations

from pathlib import Path

import click

from postback import __version__
from postback.cli._shared import console, fail
from postback.plugins import PluginHost

__all__ = ["new_plugin"]


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--directory",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create postback-NAME/.",
)
def new_plugin(name: str, directory: Path) -> None:
    """Scaffold a working, tested vendor plugin package postback-NAME.

    NAME is the vendor's name in [vendors.NAME]: 2 to 31 characters, lower-case letters,
    digits and underscores, starting with a letter and ending with a letter or digit, and not
    an installed vendor's name.
    """
    from postback.scaffold import create_plugin

    installed = PluginHost().infos
    for plugin, info in sorted(installed.items()):
        if name in info.destinations or name in info.emulators:
            fail(
                f"a vendor named {name!r} is already installed "
                f"({info.distribution or plugin} {info.version or ''}".rstrip()
                + "): two plugins cannot register the same vendor; choose another name",
                2,
            )
    try:
        root = create_plugin(name, directory, core_version=__version__)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc), 2)
    except OSError as exc:  # the directory cannot be made or written (a file in the way ...)
        fail(f"cannot create the package in {directory}: {exc.strerror or exc}", 2)
    console.print(f"created {root}")
    console.print(
        "next:\n"
        f"  cd {root}\n"
        "  pip install -e '.[test]'\n"
        "  pytest                      # the contract kit and the vendor's own tests\n"
        f"  postback plugins            # lists {name}\n"
        "then adapt destination.py and emulator.py to the vendor's documentation."
    )

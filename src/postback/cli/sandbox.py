"""``postback sandbox`` (the vendors' emulations served on loopback, with the config that
points at them) and ``postback demo`` (a realistic mix of events through that sandbox)."""

from __future__ import annotations

import errno
from datetime import datetime

import click
from rich.table import Table

from postback.cli._shared import console, fail, user_errors
from postback.plugins import PluginHost

__all__ = ["demo", "sandbox"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535))
@click.option("--quiet", "-q", is_flag=True, help="Do not print a line per request.")
def sandbox(host: str, port: int, quiet: bool) -> None:
    """Serve local emulations of every installed vendor's API on loopback.

    Prints each vendor's base_url and a [vendors.NAME] table per vendor to paste into
    postback.toml, then one line per request. GET /_sandbox/received lists what each
    emulator accepted; POST /_sandbox/reset forgets it.
    """
    from postback.sandbox import Sandbox

    if host not in ("127.0.0.1", "localhost", "::1"):
        raise click.BadParameter("the sandbox only listens on loopback", param_hint="--host")
    plugins_host = PluginHost()
    box = Sandbox.from_plugins(plugins_host.emulators, host=host, port=port)
    try:
        url = box.url  # binds the socket
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"port {port} on {host} is already in use (another postback sandbox?): stop "
                f"that one, or pick a free port with --port (and use it in your base_url)",
                2,
            )
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 2)
    if not box.emulators:
        console.print(
            "No installed vendor plugin has a sandbox emulation; install one, e.g. "
            "pip install -e plugins/applovin (from a clone) or pip install postback-applovin."
        )
    console.print(f"postback sandbox on {url} (Ctrl-C to stop)")
    table = Table(title="point a vendor's base_url here", title_justify="left")
    table.add_column("vendor")
    table.add_column("base_url")
    for vendor in box.emulators:
        table.add_row(vendor, box.base_url(vendor))
    console.print(table)
    console.print("Config with the sandbox credentials (paste into postback.toml):\n")
    for vendor in box.emulators:
        console.print(box.vendor_toml(vendor))
    console.print(f"What each emulator accepted: GET {url}/_sandbox/received")
    if not quiet:
        box.on_request = lambda line: console.print(f"{datetime.now().strftime('%H:%M:%S')} {line}")
    try:
        box.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        box.stop()


@click.command()
@click.option(
    "--events",
    "n_events",
    default=120,
    show_default=True,
    help="How many ordinary events to track (the demo adds a few that vendors skip or "
    "reject, one per case it shows).",
)
@click.option("--seed", default=7, show_default=True)
def demo(n_events: int, seed: int) -> None:
    """Track a realistic mix of events to every installed vendor's sandbox emulation. Exits 1
    when a vendor still had events pending at the end (its emulation did not take them)."""
    from postback.demo import run_demo

    with user_errors():
        figures = run_demo(console, n_events=n_events, seed=seed)
    stuck = {v: f["pending"] for v, f in figures.items() if f["pending"]}
    if stuck:
        fail(
            "still pending after the demo's flush: "
            + ", ".join(f"{v} {n}" for v, n in sorted(stuck.items()))
            + " (its sandbox emulation did not take them; `postback sandbox` runs it alone)"
        )

"""``postback ui``: serve the dashboard for a config on loopback. It builds its own tracker
for the config, with a :class:`~postback.dashboard.recorder.Recorder`, delivering on threads:
when no other process delivers from the queue, it does (so replayed dead letters go out); when
one does, it stands by. It shows an existing queue: a ``sqlite://`` file that does not exist
(a mistyped path, the wrong config) is an error, not a new empty queue.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import click

from postback.cli._shared import config_option, fail

__all__ = ["ui"]


@click.command("ui")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback only.")
@click.option("--port", default=8095, show_default=True, type=click.IntRange(0, 65535))
def ui(config_path: Path | None, host: str, port: int) -> None:
    """Serve the dashboard (lanes, deliveries, event lookup, dead letters, config) on
    loopback; Ctrl-C to stop. To reach it from elsewhere, tunnel over SSH or mount it into
    your app behind its login (docs/how-to/dashboard.md)."""
    from postback.dashboard.wsgi import LoopbackOnly, check_loopback, serve
    from postback.errors import PostbackError

    try:
        check_loopback(host)
    except LoopbackOnly as exc:
        raise click.BadParameter(str(exc), param_hint="--host") from None
    try:
        import jinja2  # noqa: F401
    except ImportError:
        click.echo("error: the dashboard needs Jinja2: pip install 'postback[ui]'", err=True)
        sys.exit(2)
    from postback.config import read_config
    from postback.config.env import environ_without
    from postback.dashboard.app import Dashboard
    from postback.dashboard.recorder import Recorder
    from postback.integrations import config_with_overrides
    from postback.tracker import Tracker

    recorder = Recorder()
    try:
        raw = config_with_overrides(config_path, {"workers": True})  # replays go out
        _, source, base_dir = read_config(config_path)
        tracker = Tracker.from_raw(
            raw,
            source=source,
            base_dir=base_dir,
            plugins=[recorder],
            environ=environ_without(["workers"]),  # delivers, whatever POSTBACK_WORKERS says
            create_queue=False,  # a mistyped path: an error, not an empty dashboard
        )
    except PostbackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    try:
        tracker.start()
        try:
            server = serve(Dashboard(tracker, recorder=recorder), host, port)
        except OSError as exc:  # as postback sandbox says it
            if exc.errno == errno.EADDRINUSE:
                fail(f"port {port} on {host} is already in use: pick a free one with --port", 2)
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 2)
        bare = host.strip("[]")
        shown = f"[{bare}]" if ":" in bare else bare
        click.echo(f"postback dashboard on http://{shown}:{server.server_port}/ (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        tracker.close(timeout=2)

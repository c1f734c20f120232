"""What a ``workers = "process"`` child needs to build the same tracker: :class:`TrackerSpec`.

The tracking process describes its tracker as a plain, picklable value (:func:`tracker_spec`):
the configuration mapping it was built from, the in-process plugins by reference, and the
plugin host's options. The child (:mod:`postback.delivery.child`) receives it over its socket
and builds its tracker with ``Tracker.from_raw``, the one build path ``Tracker.from_config``
also takes; nothing reaches into a tracker's internals from the other side.

Plugins travel as references, resolved only in the child and only after it extended
``sys.path`` like the parent's: a module by name, any other object pickled on its own (its
class must be importable there). A plugin that cannot travel makes :func:`tracker_spec` raise
:class:`~postback.ConfigError` at start-up, and ``workers = "auto"`` asks
:func:`child_spec_problem` first, to keep delivery on threads instead.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from postback.errors import ConfigError

if TYPE_CHECKING:
    from postback.config import Config
    from postback.plugins import PluginHost

__all__ = ["PluginRef", "TrackerSpec", "child_spec_problem", "load_message", "tracker_spec"]

#: How the child finds one in-process plugin: ``("module", "name")`` or ``("object", pickle)``.
PluginRef = tuple[Literal["module"], str] | tuple[Literal["object"], bytes]


def load_message(data: bytes) -> Any:
    """Unpickle what the other end of a delivery socket pair sent."""
    # Only ever bytes from the other end of a socketpair this process created with its own
    # child (no name, no address, not reachable by anyone else): as trusted as our memory.
    return pickle.loads(data)  # noqa: S301


@attrs.frozen
class TrackerSpec:
    """A tracker described for a delivery child: ``Tracker.from_raw`` arguments, by value."""

    #: The configuration mapping, with ``[postback] workers = true`` (the child delivers on
    #: its threads) and the queue's URL made absolute (the child may not share our directory).
    #: Left out of the repr: it holds the vendors' secrets.
    raw: Mapping[str, Any] = attrs.field(repr=False)
    source: str | None
    base_dir: str
    plugins: tuple[PluginRef, ...]
    load_entry_points: bool
    disable: tuple[str, ...] | None
    #: The parent's import path, so that plugin modules import the same way in the child.
    sys_path: tuple[str, ...]
    log_level: int

    def build_args(self) -> dict[str, Any]:
        """Keyword arguments of ``Tracker.from_raw`` besides ``raw`` (imports the plugins)."""
        plugins = [
            importlib.import_module(ref) if isinstance(ref, str) else load_message(ref)
            for _kind, ref in self.plugins
        ]
        return {
            "source": self.source,
            "base_dir": Path(self.base_dir),
            "plugins": plugins,
            "load_entry_points": self.load_entry_points,
            "disable": self.disable,
            "environ": {},  # the parent's POSTBACK_* overrides are in ``raw`` already
        }


def tracker_spec(config: Config, queue_url: str, host: PluginHost) -> TrackerSpec:
    """The spec of a tracker built from ``config`` and ``host`` on the queue at ``queue_url``
    (raises :class:`~postback.ConfigError` if an in-process plugin cannot be sent). The
    configuration itself is plain values, as :func:`postback.config.build_config` accepts."""
    raw = dict(config.raw)
    core = dict(raw.get("postback") or {})
    core["workers"] = True
    core["queue"] = queue_url
    raw["postback"] = core
    return TrackerSpec(
        raw=raw,
        source=config.source,
        base_dir=str(config.base_dir),
        plugins=tuple(_plugin_refs(host)),
        load_entry_points=host.load_entry_points,
        disable=None if host.disable is None else tuple(host.disable),
        sys_path=tuple(sys.path),
        log_level=logging.getLogger("postback").getEffectiveLevel(),
    )


def _plugin_refs(host: PluginHost) -> list[PluginRef]:
    """How the child rebuilds each in-process plugin: a module by name, an object pickled
    (raises ConfigError for one that cannot be sent)."""
    plugins: list[PluginRef] = []
    for plugin in host.in_process:
        module = (
            plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
        )
        if module == "__main__":
            raise _unsendable(f"{plugin!r} is defined in the script being run, not a module")
        if isinstance(plugin, types.ModuleType):
            plugins.append(("module", plugin.__name__))
            continue
        try:
            plugins.append(("object", pickle.dumps(plugin)))
        except Exception as exc:
            raise _unsendable(f"{plugin!r} cannot be pickled: {exc}") from None
    return plugins


def child_spec_problem(host: PluginHost) -> str | None:
    """Why a delivery child could not rebuild ``host``'s in-process plugins, or None."""
    try:
        _plugin_refs(host)
    except ConfigError as exc:
        return str(exc)
    return None


def _unsendable(why: str) -> ConfigError:
    return ConfigError(
        [
            "workers = 'process' delivers from a child process, which must rebuild this "
            f"tracker's in-process plugins, and one cannot be sent to it: {why}. Pass plugins "
            "as importable modules or picklable objects of importable classes, or use "
            "workers = true"
        ]
    )

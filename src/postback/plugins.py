"""The plugin host: one per tracker, never a module global.

It loads the ``postback`` entry points one at a time (a plugin that fails to import is logged
and skipped, so one broken package cannot take the application down), registers the core's
built-in plugins and the tracker's in-process plugins, checks that every hook implementation
matches a spec (``check_pending``), and collects the destinations and emulators that plugins
register and the event fields those destinations declare (:class:`~postback.fields.FieldSet`:
two that disagree on a field stop the host with an error naming both, as do two plugins
registering one vendor's destination or emulator). :class:`PluginHost` is also the typed
facade over ``pm.hook``: no other module calls hooks untyped.

``POSTBACK_DISABLE_PLUGINS`` (comma-separated entry-point names, or ``*`` for all) keeps
entry-point plugins from loading, e.g. to rule one out while debugging.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import logging
import os
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from postback import hookspecs
from postback.default_plugins.core import postback_deliver as builtin_deliver
from postback.delivery.queue import QueueBackend
from postback.delivery.registry import QueueRegistry
from postback.destination import Destination, Emulator, Secret, Skip
from postback.errors import PluginError, Problem
from postback.fields import FieldSet

if TYPE_CHECKING:
    import httpx

    from postback.destination import Outcome, Prepared, Reported
    from postback.events import Attribution, Event

__all__ = ["DEFAULT_PLUGINS", "ENTRY_POINT_GROUP", "PluginHost", "PluginInfo", "with_vendor"]

log = logging.getLogger("postback.plugins")

ENTRY_POINT_GROUP = "postback"
#: The core's own behaviour, shipped as plugins registered by module name.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "postback.default_plugins.core",
    "postback.default_plugins.queues",
)


@attrs.frozen
class PluginInfo:
    """What ``postback plugins`` shows about one loaded (or broken) plugin."""

    name: str
    distribution: str | None
    version: str | None
    destinations: tuple[str, ...] = ()
    emulators: tuple[str, ...] = ()
    error: str | None = None
    queues: tuple[str, ...] = ()


class PluginHost:
    """Owns a ``pluggy.PluginManager`` for one tracker (or one CLI command)."""

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        load_entry_points: bool = True,
        disable: Iterable[str] | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager("postback")
        #: What it was built from (a worker process builds its own host the same way).
        self.in_process: list[object] = list(plugins)
        self.load_entry_points = load_entry_points
        self.disable = None if disable is None else list(disable)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._entry_point_names: dict[str, tuple[str | None, str | None]] = {}
        for modname in DEFAULT_PLUGINS:
            self.pm.register(importlib.import_module(modname), name=modname)
        if load_entry_points:
            self._load_entry_points(self._disabled(disable))
        for i, plugin in enumerate(self.in_process):
            name = getattr(plugin, "__name__", None) or f"in-process-{i}:{type(plugin).__name__}"
            self.pm.register(plugin, name=name)
        self.pm.check_pending()
        while True:
            self.destinations: dict[str, type[Destination]] = {}
            self.emulators: dict[str, type[Emulator]] = {}
            #: The installed queue backends by URL scheme (``postback_register_queues``).
            self.queues = QueueRegistry()
            try:
                self._collect()
                break
            except _BrokenRegistration as broken:  # leave it out, collect the others again
                self.pm.unregister(name=broken.name)
                dist, version = self._entry_point_names.pop(broken.name)
                self._skip_broken(broken.name, dist or broken.name, dist, version, broken.exc)
        # Where only the core's own implementation of a per-event hook exists, the facade calls
        # it directly: the hook machinery would cost more than the step on the hot paths.
        builtin = ["postback.default_plugins.core"]

        def only_builtin(hook: str) -> bool:
            impls = getattr(self.pm.hook, hook).get_hookimpls()
            return [i.plugin_name for i in impls] == builtin

        self._validate_is_builtin_only = only_builtin("postback_validate")
        self._transform_is_builtin_only = only_builtin("postback_transform")
        self._deliver_is_builtin_only = only_builtin("postback_deliver")
        #: The user and context fields ``track()`` accepts: the core's and those the
        #: installed destinations declare (``Destination.fields``), merged once here.
        self.fields = FieldSet.of(self.destinations.values())

    # --- loading -------------------------------------------------------------------------------

    @staticmethod
    def _disabled(disable: Iterable[str] | None) -> set[str]:
        names = set(disable or ())
        env = os.environ.get("POSTBACK_DISABLE_PLUGINS", "")
        names.update(n.strip() for n in env.split(",") if n.strip())
        return names

    def _load_entry_points(self, disabled: set[str]) -> None:
        if "*" in disabled:
            log.info("POSTBACK_DISABLE_PLUGINS=*: no entry-point plugins loaded")
            return
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disabled:
                log.info("plugin %r disabled by POSTBACK_DISABLE_PLUGINS", ep.name)
                continue
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            if self.pm.has_plugin(ep.name):
                continue  # the same distribution seen twice on sys.path
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
                self._check_hook_names(plugin, ep.name)
            except Exception as exc:  # a broken plugin must not take the app down
                self._skip_broken(ep.name, dist or ep.value, dist, version, exc)
                continue
            self._entry_point_names[ep.name] = (dist, version)

    def _check_hook_names(self, plugin: object, name: str) -> None:
        """Raise :class:`PluginError` (after unregistering ``plugin``) when it implements a
        hook postback has no spec for: a misspelled hook would otherwise never be called, and
        ``check_pending`` would refuse the whole host."""
        unknown = sorted(
            caller.name
            for caller in self.pm.get_hookcallers(plugin) or ()
            if not caller.has_spec()
            and not any(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin)
        )
        if not unknown:
            return
        self.pm.unregister(name=name)
        hooks = [n for n in dir(hookspecs) if n.startswith("postback_")]
        said = []
        for hook in unknown:
            close = difflib.get_close_matches(hook, hooks, n=1)
            said.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise PluginError(f"unknown hook {', '.join(said)}")

    def _skip_broken(
        self,
        name: str,
        where: str,
        dist: str | None,
        version: str | None,
        exc: Exception,
    ) -> None:
        """Log and record an entry-point plugin left out because it is broken."""
        log.warning(
            "skipping postback plugin %r from %s: it failed to load: %s: %s",
            name,
            where,
            type(exc).__name__,
            exc,
        )
        self.infos[name] = PluginInfo(name, dist, version, error=f"{type(exc).__name__}: {exc}")

    def _collect(self) -> None:
        owners: dict[str, str] = {}

        def call(impl: pluggy.HookImpl, register: Callable[[Any], None]) -> None:
            """A registration hook: one of an entry-point plugin that raises (its vendor's
            SDK imported there, missing) is a plugin that failed to load."""
            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                if impl.plugin_name in self._entry_point_names:
                    raise _BrokenRegistration(impl.plugin_name, exc) from exc
                raise

        def register_destination(plugin_name: str) -> Callable[[type[Destination]], None]:
            def register(cls: type[Destination]) -> None:
                if not (isinstance(cls, type) and issubclass(cls, Destination)):
                    raise PluginError(
                        f"plugin {plugin_name!r} registered {cls!r}, which is not a "
                        "postback.Destination subclass"
                    )
                name = getattr(cls, "name", None)
                if not isinstance(name, str) or not name:
                    raise PluginError(f"destination {cls.__qualname__} has no 'name'")
                untyped = _secret_not_typed_secret(cls)
                if untyped is not None:
                    raise PluginError(
                        f"plugin {plugin_name!r} registered vendor {name!r}, whose setting "
                        f"{untyped!r} is declared secret=True but not typed postback.Secret: "
                        "type it Secret (read it with .reveal() where it goes on the wire), or "
                        "its value is shown in reprs and never redacted"
                    )
                if name in self.destinations and self.destinations[name] is not cls:
                    raise PluginError(
                        f"vendor {name!r} is registered twice: by {owners[name]!r} and by "
                        f"{plugin_name!r}; uninstall one or disable it with "
                        "POSTBACK_DISABLE_PLUGINS"
                    )
                self.destinations[name] = cls
                owners[name] = plugin_name

            return register

        emulator_owners: dict[str, str] = {}

        def register_emulator(plugin_name: str) -> Callable[[type[Emulator]], None]:
            def register(cls: type[Emulator]) -> None:
                if not (isinstance(cls, type) and issubclass(cls, Emulator)):
                    raise PluginError(f"{cls!r} is not a postback.Emulator subclass")
                vendor = cls.vendor
                known = self.emulators.get(vendor)
                if known is not None and known is not cls:
                    raise PluginError(
                        f"the emulator of vendor {vendor!r} is registered twice: by "
                        f"{emulator_owners[vendor]!r} ({known.__qualname__}) and by "
                        f"{plugin_name!r} ({cls.__qualname__}); uninstall one or disable it "
                        "with POSTBACK_DISABLE_PLUGINS"
                    )
                self.emulators[vendor] = cls
                emulator_owners[vendor] = plugin_name

            return register

        # Call each plugin's registration hook on its own, so we know who registered what.
        dest_by_plugin: dict[str, tuple[str, ...]] = {}
        emu_by_plugin: dict[str, tuple[str, ...]] = {}
        for impl in self.pm.hook.postback_register_destinations.get_hookimpls():
            before = set(self.destinations)
            call(impl, register_destination(impl.plugin_name))
            dest_by_plugin[impl.plugin_name] = tuple(sorted(set(self.destinations) - before))
        for impl in self.pm.hook.postback_register_emulators.get_hookimpls():
            before = set(self.emulators)
            call(impl, register_emulator(impl.plugin_name))
            emu_by_plugin[impl.plugin_name] = tuple(sorted(set(self.emulators) - before))
        queues_by_plugin: dict[str, tuple[str, ...]] = {}
        for impl in self.pm.hook.postback_register_queues.get_hookimpls():
            before = set(self.queues.schemes)

            def register_queue(backend: QueueBackend, owner: str = impl.plugin_name) -> None:
                self.queues.register(backend, owner)

            call(impl, register_queue)
            queues_by_plugin[impl.plugin_name] = tuple(sorted(set(self.queues.schemes) - before))
        for plugin_name, (dist, version) in self._entry_point_names.items():
            self.infos[plugin_name] = PluginInfo(
                plugin_name,
                dist,
                version,
                dest_by_plugin.get(plugin_name, ()),
                emu_by_plugin.get(plugin_name, ()),
                queues=queues_by_plugin.get(plugin_name, ()),
            )

    # --- typed facade over pm.hook ----------------------------------------------------------

    def validate(self, event: Event, destination: Destination) -> Sequence[Problem | Skip]:
        """Every finding of every ``postback_validate`` implementation for ``destination``:
        :class:`~postback.Problem` (malformed: refuse) and :class:`~postback.Skip` (this
        vendor cannot use it), each with ``vendor`` set. Raises :class:`PluginError` for
        anything else, naming the vendor."""
        if self._validate_is_builtin_only:
            # Only the core's implementation exists: skip the hook machinery on the hot path,
            # and hand back the vendor's own list when every finding already names it.
            found: Any = destination.validate(event)
            if found.__class__ is list or found.__class__ is tuple:
                for f in found:
                    if f.__class__ is not Skip or f.vendor is None:
                        break
                else:
                    return found
            return [with_vendor(f, destination.name) for f in found]
        findings: list[Problem | Skip] = []
        for result in self.pm.hook.postback_validate(event=event, destination=destination):
            if result:
                findings.extend(with_vendor(f, destination.name) for f in result)
        return findings

    @property
    def only_core_validates(self) -> bool:
        """Whether the core's implementation is the only ``postback_validate``: then
        ``track()`` calls each destination's ``validate`` itself (one call less per vendor on
        the hot path) and sets ``vendor`` with :func:`with_vendor` where a finding has none."""
        return self._validate_is_builtin_only

    def consent_hook(
        self,
    ) -> Callable[[Event, Destination, Mapping[str, bool] | None], bool | None] | None:
        """``postback_consent`` as a function for :class:`~postback.consent.ConsentGate`, or
        ``None`` when no plugin implements it (then nothing is called per event). A plugin
        that raises is logged and counts as ``False``."""
        if not self.pm.hook.postback_consent.get_hookimpls():
            return None
        hook = self.pm.hook.postback_consent

        def decide(
            event: Event, destination: Destination, consent: Mapping[str, bool] | None
        ) -> bool | None:
            try:
                result = hook(event=event, destination=destination, consent=consent)
                # bool() inside the guard: an answer without a truth value (an array) is a
                # plugin's bug too.
                return result if result is None else bool(result)
            except Exception:
                log.exception(
                    "a postback_consent hook failed for %s: the event is not sent to it",
                    destination.name,
                )
                return False

        return decide

    def transform(self, event: Event, destination: Destination) -> Any:
        if self._transform_is_builtin_only:
            return destination.transform(event)
        return self.pm.hook.postback_transform(event=event, destination=destination)

    def transformer(self, destination: Destination) -> Callable[[Event], Any]:
        """``transform`` for one destination, as a callable of the event: the destination's
        own method while no plugin wraps transforms (a lane calls it per event, and a call
        through :meth:`transform` costs one more Python frame each)."""
        if self._transform_is_builtin_only:
            return destination.transform
        return functools.partial(self._transform_with_hooks, destination=destination)

    def _transform_with_hooks(self, event: Event, destination: Destination) -> Any:
        return self.pm.hook.postback_transform(event=event, destination=destination)

    def deliver(
        self,
        destination: Destination,
        batch: Sequence[Prepared],
        send: Callable[[httpx.Request], httpx.Response],
    ) -> Sequence[Outcome]:
        if self._deliver_is_builtin_only:
            return builtin_deliver(destination, batch, send)
        result = self.pm.hook.postback_deliver(destination=destination, batch=batch, send=send)
        if result is None:
            raise PluginError(f"no plugin delivered the batch for {destination.name!r}")
        return result  # type: ignore[no-any-return]

    def on_attribution(self, attribution: Attribution, event: Event) -> None:
        try:
            self.pm.hook.postback_on_attribution(attribution=attribution, event=event)
        except Exception:
            log.exception("a postback_on_attribution hook failed (delivery is unaffected)")

    def on_delivery(
        self, vendor: str, event: Event, outcome: Reported, attempt: int, latency: float
    ) -> None:
        try:
            self.pm.hook.postback_on_delivery(
                vendor=vendor, event=event, outcome=outcome, attempt=attempt, latency=latency
            )
        except Exception:
            log.exception("a postback_on_delivery hook failed (delivery is unaffected)")

    def has_delivery_listeners(self) -> bool:
        return bool(self.pm.hook.postback_on_delivery.get_hookimpls())


def _secret_not_typed_secret(cls: type[Destination]) -> str | None:
    """The first setting of ``cls`` declared ``secret=True`` with a type other than
    :class:`~postback.Secret` (or a type holding it, ``Secret | None``), if any. Untyped
    settings and a ``settings_class`` that is not an attrs class are the config's to say."""
    settings = getattr(cls, "settings_class", None)
    if not (isinstance(settings, type) and attrs.has(settings)):
        return None
    for field in attrs.fields(settings):
        if not (field.metadata or {}).get("secret") or field.type is None:
            continue
        kind = field.type
        if isinstance(kind, str):  # ``from __future__ import annotations``
            typed = re.search(r"\bSecret\b", kind) is not None
        else:
            typed = kind is Secret or Secret in typing.get_args(kind)
        if not typed:
            return str(field.name)
    return None


class _BrokenRegistration(Exception):
    """An entry-point plugin's registration hook raised ``exc``."""

    def __init__(self, name: str, exc: Exception) -> None:
        super().__init__(name)
        self.name = name
        self.exc = exc


def with_vendor(finding: object, vendor: str) -> Problem | Skip:
    """``finding`` with ``vendor`` set (kept as is when it already names one)."""
    if isinstance(finding, Skip):
        return finding if finding.vendor else attrs.evolve(finding, vendor=vendor)
    if isinstance(finding, Problem):
        return finding if finding.vendor else Problem(finding.field, finding.message, vendor)
    raise PluginError(
        f"validation for {vendor!r} returned {finding!r}, which is neither a postback.Problem "
        "(the event is malformed) nor a postback.Skip (this vendor cannot use it)"
    )

"""The queue backends that are installed, by URL scheme, and :func:`open_queue` to open one.

Backends register through the ``postback_register_queues`` hook (see
:mod:`postback.hookspecs`): ``memory://``, ``sqlite://`` and ``redis://`` are registered by the
core's default plugin (:mod:`postback.default_plugins.queues`) exactly as a third party's
backend is by its entry point. A registration is a :class:`~postback.delivery.queue.QueueBackend`:
its URL schemes, what it can do (:class:`~postback.delivery.queue.QueueCapabilities`), an
example URL for error messages, and a function that opens a queue from a URL and
:class:`~postback.delivery.queue.QueueOptions`.

The registry never imports a backend's module before it is opened: a registration names its
opener, and the opener imports what it needs (the Redis client, say) on first use.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from postback.default_plugins.queues import BUILTIN_QUEUES
from postback.delivery.queue import Queue, QueueBackend, QueueOptions
from postback.errors import PluginError

__all__ = ["QueueBackend", "QueueOptions", "QueueRegistry", "open_queue", "url_scheme"]


def url_scheme(url: str) -> str:
    """``"redis+sentinel://h/x"`` -> ``"redis+sentinel"`` (lower case; ``""`` if none)."""
    scheme, sep, _ = url.partition(":")
    return scheme.strip().lower() if sep else ""


class QueueRegistry:
    """Installed queue backends by URL scheme; a scheme belongs to one backend."""

    def __init__(self, backends: Iterable[QueueBackend] = ()) -> None:
        self._by_scheme: dict[str, QueueBackend] = {}
        self._owners: dict[str, str] = {}
        for backend in backends:
            self.register(backend)

    @classmethod
    def builtin(cls) -> QueueRegistry:
        """The core's own backends only (no plugin host): what tools without a config use."""
        return cls(BUILTIN_QUEUES)

    def register(self, backend: QueueBackend, owner: str = "") -> None:
        if not isinstance(backend, QueueBackend):
            raise PluginError(
                f"plugin {owner or '?'!r} registered {backend!r} as a queue backend: register a "
                "postback.delivery.queue.QueueBackend"
            )
        if not backend.schemes:
            raise PluginError(f"queue backend {backend.name!r} ({owner}) names no URL scheme")
        for scheme in backend.schemes:
            key = scheme.lower()
            if key in self._by_scheme:
                raise PluginError(
                    f"queue scheme {key}:// is registered twice: by "
                    f"{self._owners[key] or self._by_scheme[key].name!r} and by "
                    f"{owner or backend.name!r}; uninstall one of them"
                )
            self._by_scheme[key] = backend
            self._owners[key] = owner

    @property
    def schemes(self) -> list[str]:
        return sorted(self._by_scheme)

    @property
    def backends(self) -> list[QueueBackend]:
        seen: dict[int, QueueBackend] = {}
        for backend in self._by_scheme.values():
            seen.setdefault(id(backend), backend)
        return list(seen.values())

    def backend_for(self, url: str) -> QueueBackend | None:
        return self._by_scheme.get(url_scheme(url))

    def unknown_url_message(self, url: str) -> str:
        """Why ``url`` names no installed backend, and which ones are."""
        shown = url.partition("://")[0] if "@" in url else url  # never echo a password
        examples = ", ".join(f"'{b.example}'" for b in self.backends)
        return (
            f"{shown!r} is not a queue URL of an installed backend; installed schemes: "
            f"{', '.join(s + '://' for s in self.schemes)} (e.g. {examples}). A queue backend "
            "from another package registers its scheme through postback_register_queues"
        )

    def open(self, url: str, options: QueueOptions | None = None) -> Queue:
        backend = self.backend_for(url)
        if backend is None:
            raise ValueError(self.unknown_url_message(url))
        return backend.open(url, options or QueueOptions())


def open_queue(
    url: str,
    base_dir: Path | None = None,
    *,
    max_size: int = 100_000,
    synchronous: str = "normal",
    delivers_on_threads: bool = True,
    registry: QueueRegistry | None = None,
    create: bool = True,
) -> Queue:
    """Open the queue backend a ``queue`` URL names, from ``registry`` (default: the
    built-in backends).

    ``delivers_on_threads``: whether this process will also deliver (``workers = true`` or
    ``"process"``); the SQLite queue then writes its spool through a memory mapping, which
    never releases the interpreter lock to a delivery thread (see
    :mod:`postback.delivery.spool`). ``create``: see :attr:`QueueOptions.create`.
    """
    options = QueueOptions(
        base_dir=base_dir,
        max_size=max_size,
        synchronous=synchronous,
        delivers_on_threads=delivers_on_threads,
        create=create,
    )
    return (registry or QueueRegistry.builtin()).open(url, options)

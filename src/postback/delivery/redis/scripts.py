"""The Redis queue's Lua scripts, kept as package data files in ``lua/``.

Each script is one atomic step of the queue (see :mod:`postback.delivery.redis`); the header of
each file names its KEYS and ARGV. KEYS are declared so that the scripts also run on Redis
Cluster (all keys share the ``{prefix}`` hash tag). ``claim``, ``maintain`` and ``depth`` start
with ``fields.lua`` (``fields_of``: a stream entry's field list as a table).
"""

from __future__ import annotations

import functools
from importlib.resources import files

__all__ = ["SCRIPTS", "lua"]

#: Every script the queue registers, by file name (without ``.lua``).
SCRIPTS = (
    "put",
    "put_unique",
    "claim",
    "settle",
    "renew",
    "maintain",
    "depth",
    "requeue",
    "acquire_window",
    "get_window",
)
_WITH_FIELDS = frozenset({"claim", "maintain", "depth"})


@functools.cache
def lua(name: str) -> str:
    """The source of script ``name`` (``fields.lua`` prepended where it uses it)."""
    folder = files(__package__).joinpath("lua")
    text = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    if name in _WITH_FIELDS:
        text = folder.joinpath("fields.lua").read_text(encoding="utf-8") + text
    return text

"""Which dead letters a replay sends and which it leaves, and why: one rule for every replay.

``postback replay`` and the dashboard's **Replay…** both ask here. A dead letter is replayed
to its vendor as the config has it *now*: one whose vendor has no ``[vendors.NAME]`` table, is
disabled (``enabled = false``), or whose ``events`` filter no longer takes its event name is
left a dead letter (:func:`why_left` says why, in words that say how to replay it), so a replay
never sends an event the config says that vendor does not get.

:meth:`postback.delivery.queue.Queue.requeue_dead` stays the low-level primitive: it requeues
exactly the dead letters it is given, with no rule of its own; call :func:`split` first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from postback.delivery.queue import DeadLetter

__all__ = ["filtered_note", "not_taken", "split", "why_left"]


def why_left(vendors: Mapping[str, Any], d: DeadLetter) -> str | None:
    """Why a replay leaves ``d`` a dead letter, to follow ``dead letter ID`` ("is a sign_up
    event, which ...: add ... to replay it"); None: it is replayable. ``vendors`` is the
    config's ``[vendors]`` (name to :class:`~postback.config.vendors.VendorConfig`)."""
    cfg = vendors.get(d.vendor)
    if cfg is None:
        return (
            f"is for {d.vendor}, which the config has no [vendors.{d.vendor}] table for: "
            "add it to replay it"
        )
    if not cfg.enabled:
        return f"is for {d.vendor}, which is disabled (enabled = false): enable it to replay it"
    if cfg.events is not None and d.name not in cfg.events:
        return (
            f"is a {d.name} event, which [vendors.{d.vendor}] events no longer takes: "
            f"add {d.name!r} to events to replay it"
        )
    return None


def not_taken(vendors: Mapping[str, Any], dead: Iterable[DeadLetter]) -> list[DeadLetter]:
    """Those of ``dead`` whose vendor's ``events`` filter no longer takes their event name."""
    out = []
    for d in dead:
        cfg = vendors.get(d.vendor)
        if cfg is not None and cfg.events is not None and d.name not in cfg.events:
            out.append(d)
    return out


def split(
    vendors: Mapping[str, Any], dead: Iterable[DeadLetter]
) -> tuple[list[DeadLetter], list[tuple[DeadLetter, str]]]:
    """``dead`` as (those a replay sends, those it leaves with :func:`why_left`'s reason)."""
    sent: list[DeadLetter] = []
    left: list[tuple[DeadLetter, str]] = []
    for d in dead:
        why = why_left(vendors, d)
        if why is None:
            sent.append(d)
        else:
            left.append((d, why))
    return sent, left


def filtered_note(filtered: Iterable[DeadLetter]) -> str:
    """What a replay left as dead letters because each vendor's ``events`` filter no longer
    takes them (:func:`not_taken`): how many per vendor, by event name, and how to replay them."""
    filtered = list(filtered)
    parts = []
    for vendor in sorted({d.vendor for d in filtered}):
        names = Counter(d.name for d in filtered if d.vendor == vendor)
        counts = ", ".join(f"{n} {c}" for n, c in sorted(names.items()))
        total = sum(names.values())
        parts.append(
            f"left {total} dead letter(s) that [vendors.{vendor}] events no longer takes "
            f"({counts}): add those events to its events to replay them"
        )
    return "; ".join(parts)

"""Built-in hook implementations: delegate each step to the vendor's Destination.

They are ``trylast`` so that any other plugin can take over a step (``tryfirst``) or wrap it
(``wrapper=True``) without knowing vendor names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx

from postback.destination import (
    Delivered,
    Destination,
    Halt,
    Outcome,
    Prepared,
    Rejected,
    RejectedBatch,
    Retry,
    Skip,
)
from postback.errors import Problem
from postback.events import Event
from postback.hookspecs import hookimpl

_SINGLE = (Delivered, Retry, Rejected, RejectedBatch, Halt)


@hookimpl(trylast=True)
def postback_validate(event: Event, destination: Destination) -> Iterable[Problem | Skip]:
    return list(destination.validate(event))


@hookimpl(trylast=True)
def postback_transform(event: Event, destination: Destination) -> Any:
    return destination.transform(event)


@hookimpl(trylast=True)
def postback_deliver(
    destination: Destination,
    batch: Sequence[Prepared],
    send: Callable[[httpx.Request], httpx.Response],
) -> Sequence[Outcome]:
    request = destination.build_request(batch)
    try:
        response = send(request)
    except httpx.HTTPError as exc:
        return [destination.classify_exception(exc)] * len(batch)
    result = destination.parse_response(batch, response)
    if isinstance(result, _SINGLE):
        return [result] * len(batch)
    outcomes = list(result)
    if len(outcomes) != len(batch):
        raise ValueError(
            f"{destination.name}: parse_response returned {len(outcomes)} outcomes "
            f"for a batch of {len(batch)}"
        )
    return outcomes

"""The delivery mode is chosen once, from the resolved ``workers`` setting."""

from __future__ import annotations

from pathlib import Path

import pytest

import postback.testing.example as example
from postback import Tracker
from postback.delivery.deliverer import EnqueueOnlyDeliverer, ProcessDeliverer
from postback.delivery.engine import DeliveryEngine
from postback.delivery.mode import DeliveryMode


@pytest.mark.parametrize(
    ("workers", "mode"),
    [
        (True, DeliveryMode.THREADS),
        ("thread", DeliveryMode.THREADS),
        ("process", DeliveryMode.PROCESS),
        (False, DeliveryMode.ENQUEUE_ONLY),
        ("auto", DeliveryMode.THREADS),  # under pytest, auto keeps delivery on threads
    ],
)
def test_the_tracker_names_its_mode(
    tmp_path: Path, workers: bool | str, mode: DeliveryMode
) -> None:
    cfg = {
        "postback": {"queue": f"sqlite:///{tmp_path}/q.db", "workers": workers},
        "vendors": {"example": {"api_key": "k", "base_url": "http://127.0.0.1:9/"}},
    }
    tracker = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    try:
        assert tracker.mode is mode
        kinds = {
            DeliveryMode.THREADS: DeliveryEngine,
            DeliveryMode.PROCESS: ProcessDeliverer,
            DeliveryMode.ENQUEUE_ONLY: EnqueueOnlyDeliverer,
        }
        assert type(tracker.deliverer) is kinds[mode]
        if mode is DeliveryMode.THREADS:  # the engine's lanes deliver
            assert tracker.deliverer is tracker.engine
    finally:
        tracker.close(timeout=0)


def test_auto_must_be_resolved_first() -> None:
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        DeliveryMode.from_workers("auto")

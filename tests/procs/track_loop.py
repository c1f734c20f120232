"""Child process for reliability tests: track events and print each id once track() returned.

usage: python -m tests.procs.track_loop QUEUE_URL BASE_URL COUNT MODE [WORKERS]
MODE "loop": track COUNT events then sleep forever (to be SIGKILLed);
MODE "exit": track COUNT events then exit normally without flush or close.
"""

from __future__ import annotations

import sys
import time

import postback.testing.example as example
from postback import Tracker
from postback.delivery.deliverer import ProcessDeliverer


def main() -> None:
    queue, base_url, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    workers: bool | str = sys.argv[5] if len(sys.argv) > 5 else True
    cfg = {
        "postback": {"queue": queue, "exit_timeout": 0.5, "workers": workers},
        "vendors": {
            "example": {
                "api_key": "sandbox-example-key",
                "base_url": base_url,
                "retry": {"initial_backoff": 0.05, "max_backoff": 0.2, "max_attempts": 10000},
            }
        },
    }
    tracker = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    out = sys.stdout
    if workers == "process":
        tracker.start(timeout=30)
        assert isinstance(tracker.deliverer, ProcessDeliverer)
        out.write(f"CHILD {tracker.deliverer.process.pid}\n")
    for i in range(count):
        eid = tracker.track("sign_up", user={"email": f"u{i}@x.co"}, event_id=f"evt-{i}")
        out.write(eid + "\n")
        out.flush()
    out.write("DONE\n")
    out.flush()
    if mode == "loop":
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()

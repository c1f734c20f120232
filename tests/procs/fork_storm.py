"""Child process for the fault suite: fork storms from a tracker that is already delivering.

usage: python -m tests.procs.fork_storm QUEUE_URL BASE_URL RUNS CHILDREN PER_CHILD

The parent (a preloaded tracker, as in a pre-forking server) tracks events while delivering,
then in each run forks CHILDREN children at once while its own threads keep ingesting and
settling. Each child tracks PER_CHILD events and ends through the normal exit path (the exit
hook's flush). The parent prints, as JSON: the ids that track() returned (in every process),
each child's exit code and how long it took, and what the parent's flush reported.
"""

from __future__ import annotations

import json
import os
import sys
import time

import postback.testing.example as example
from postback import Tracker

USER = {"email": "u@x.co"}


def main() -> None:
    queue, base_url = sys.argv[1], sys.argv[2]
    runs, children, per_child = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    cfg = {
        "postback": {"queue": queue, "exit_timeout": 2.0, "workers": True},
        "vendors": {
            "example": {
                "api_key": "sandbox-example-key",
                "base_url": base_url,
                "retry": {"initial_backoff": 0.05, "max_backoff": 0.2, "max_attempts": 10000},
            }
        },
    }
    tracker = Tracker.from_config(cfg, plugins=[example], load_entry_points=False)
    accepted: list[str] = []
    exits: list[tuple[int, float]] = []
    read_fd, write_fd = os.pipe()
    for run in range(runs):
        for i in range(20):  # the parent keeps the deliverer busy around every fork
            accepted.append(tracker.track("sign_up", user=USER, event_id=f"p{run}-{i}"))
        started = time.monotonic()
        pids = []
        for c in range(children):
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                ids = [
                    tracker.track("sign_up", user=USER, event_id=f"c{run}-{c}-{i}")
                    for i in range(per_child)
                ]
                os.write(write_fd, ("\n".join(ids) + "\n").encode())
                sys.exit(0)  # through the exit hooks, as a worker process ends
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            exits.append((os.waitstatus_to_exitcode(status), time.monotonic() - started))
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        accepted.extend(line for line in pipe.read().split("\n") if line)
    report = tracker.flush(timeout=60)
    pending = {v: r.pending for v, r in report.vendors.items()}
    tracker.close(timeout=5)
    print(
        json.dumps(
            {"accepted": accepted, "exits": exits, "complete": report.complete, "pending": pending}
        )
    )


if __name__ == "__main__":
    main()

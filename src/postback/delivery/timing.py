"""Every timing constant of delivery, in one place: how often things are looked at, how long
things wait, how long a fault pauses a lane. All in seconds.

Duties: only the values and why each is what it is. The modules that use them read them
from here at the moment of use (``timing.NAME``), so a test may patch one here. Sizes and
counts (bytes per read, rows per delete, events held) stay with the code they size.
"""

from __future__ import annotations

# --- the engine (postback.delivery.engine) -----------------------------------------------------

NUDGE_EVERY = 0.02  # track() nudges a delivery process at most this often
POLL_BUSY = 0.002  # between looks at other processes' events while they come
MAINTENANCE_EVERY = 1.0  # between runs of the queue's maintenance (cursors, GC, checkpoints)
EXPIRE_EVERY = 60.0  # between deletions of dead letters past their retention
#: flush() counts what is left (a query and a read of the spool: 0.3-1 ms of CPU) at most every
#: FLUSH_RECOUNT_MIN, and for at most a tenth of the time: not once per request settled, which,
#: one request at a time, cost as much CPU as the deliveries. It waits at most
#: FLUSH_RECOUNT_MAX between counts, however long one took (a big backlog's first count).
FLUSH_RECOUNT_MIN = 0.005
FLUSH_RECOUNT_MAX = 0.05

# --- the lanes (postback.delivery.lanes, .settle) ----------------------------------------------

LINGER_STEP = 0.005  # between looks for more events while a batch lingers
BURST_END_STEP = 0.001  # the same after a full batch: is the burst over?
IDLE_POLL_SHARED = 0.2  # an idle lane of a cross-process queue: another process may enqueue
IDLE_POLL_PRIVATE = 5.0  # an idle lane of a queue only this process writes (it is woken)
LANE_ERROR_PAUSE = 1.0  # a lane waits after an unexpected error before going on
#: A failing operation (a settle, a claim, maintenance) is logged as working again once it
#: has worked this long without failing (postback.delivery.faultlog): a nearly full disk or
#: threads retrying the same write make it fail and work by turns, one outage, not many.
FAULT_SETTLED = 1.0
HALT_PAUSE = 60.0  # a lane waits after the vendor refused our credentials
#: At stop, beyond a vendor's request timeout, for its requests in flight to be settled when
#: abandoning them would send them again (retry_unconfirmed = false).
STOP_GRACE = 1.0

# --- the HTTP transport (postback.delivery.http) -----------------------------------------------

#: An idle keep-alive connection is kept this long (httpx's default): less than the idle
#: timeout of any vendor's servers, so that we close an idle connection before they do.
KEEPALIVE_EXPIRY = 5.0

# --- the delivery process (postback.delivery.process) ------------------------------------------

START_TIMEOUT = 60.0  # for the child to import and build its tracker
RESTART_PAUSE = 1.0  # before replacing a child that died
POLL_EVERY = 0.05  # between the supervisor's looks at the queue
#: A request's reply (flush, stats) may take this long beyond the timeout it was asked to keep,
#: or beyond its abort: flush(timeout, abort=...) returns within it whatever the child does.
REPLY_GRACE = 1.0
#: stop() waits this long beyond its timeout and the settle wait for the child to reply and
#: exit, then kills it: one wait, not one for the reply and another for the exit. The child
#: closes its tracker: a flush of that timeout, then up to 1 s for its coordinator and 1 s
#: (and the settle wait) for its lanes, then it writes what settled meanwhile and exits. Killed
#: before that write, a request an at-most-once vendor answered would be sent again at the
#: next start: hence 3 s beyond those two.
STOP_REPLY_GRACE = 5.0

# --- the sqlite:// queue (postback.delivery.sqlite and its parts, .spool, .ledger_sqlite) ------

BUSY_TIMEOUT = 10.0  # a write waits for another process's transaction (queue and ledger files)
INGEST_POLL = 0.05  # between the deliverer's looks at other processes' spool files
HOT_LOOK = 0.002  # a lane with nothing held for it looks at the spool again after this
HOT_STALE = 2.0  # an unsettled held event may wait this long before it is written to the log
STARVING_AFTER = 1.0  # a vendor that took held events this recently and has none is starving
PERSIST_EVERY = 0.01  # between saves of delivery progress (offsets, cursors, spool_sent)
STALE_NEW_SEGMENT = 60.0  # a ".new" spool file unlocked this long was left by a crash
CHECK_EVERY = 0.05  # between a spool writer's checks that its segment still has a name
FORK_LOCK_WAIT = 5.0  # a fork waits for a queue's work to pause (else the child can't read)

# --- the redis:// queue (postback.delivery.redis.queue) ----------------------------------------

TRIM_EVERY = 10.0  # between stream trims (per process)
CONSUMER_SWEEP_EVERY = 60.0  # between sweeps of consumers that went away
MAX_HOLD = 1800.0  # a claimed entry is renewed at most this long (a rate-limit wait fits)

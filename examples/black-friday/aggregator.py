#!/usr/bin/env python3
"""The Black Friday aggregator: a consumer of the `sales` stream that adds up totals per
product in Redis, each sale exactly once.

One replica is one consumer of the group, named after shoal's replica index
(`aggregator-0`, `aggregator-1`, …), so a replica restarted after a crash is the same
consumer and takes back its own pending messages at once. The loop:

1. on start, re-read this consumer's pending entries (XREADGROUP … 0): what a previous
   life of this replica had read but not acknowledged;
2. every CLAIM_EVERY_MS, take over entries that other consumers left pending for longer
   than CLAIM_IDLE_MS (XAUTOCLAIM): a replica killed and never restarted, or scaled away;
3. otherwise read new entries (XREADGROUP … >, up to BATCH, blocking 500 ms).

Each entry costs WORK_MS of "work" (a sleep: the call to a fraud check, say), then is
applied by a Lua script that adds it to the totals only if its stream id is not yet in the
`seen` set, then acknowledged (XACK). Apply and ack are two steps, as they are when the
totals and the queue live in different systems: a crash between them leaves the entry
pending, it is delivered again, and the script recognises it (counted in
`sales:duplicates`) instead of counting it twice.

SIGTERM (shoal's stop): finish the batch in hand, acknowledge it, leave the group if
nothing is pending for this consumer, exit 0.

Environment: REDIS_URL (redis://127.0.0.1:6391), STREAM (sales), GROUP (aggregators),
WORK_MS (20), BATCH (10), CLAIM_IDLE_MS (10000), CLAIM_EVERY_MS (2000), and for tests
CRASH_ONCE_AFTER=N: the first replica to apply its N-th entry exits with status 1 before
acknowledging it (once per Redis database).
"""

import os
import signal
import sys
import time

import redis

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6391")
STREAM = os.environ.get("STREAM", "sales")
GROUP = os.environ.get("GROUP", "aggregators")
WORK_MS = float(os.environ.get("WORK_MS", "20"))
BATCH = int(os.environ.get("BATCH", "10"))
CLAIM_IDLE_MS = int(os.environ.get("CLAIM_IDLE_MS", "10000"))
CLAIM_EVERY_MS = int(os.environ.get("CLAIM_EVERY_MS", "2000"))
CRASH_ONCE_AFTER = int(os.environ.get("CRASH_ONCE_AFTER", "0"))
NAME = f"{os.environ.get('SHOAL_SERVICE', 'aggregator')}-{os.environ.get('SHOAL_REPLICA', '0')}"

# Keys shared with ingest.py.
SEEN = f"{STREAM}:seen"  # set: stream ids already added to the totals
COUNTS = f"{STREAM}:count"
CENTS = f"{STREAM}:cents"
PROCESSED = f"{STREAM}:processed"
DUPLICATES = f"{STREAM}:duplicates"

# Add one sale to the totals unless its stream id was added before. Atomic in Redis.
APPLY = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  redis.call('INCR', KEYS[5])
  return 0
end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('HINCRBY', KEYS[3], ARGV[2], ARGV[3])
redis.call('INCR', KEYS[4])
return 1
"""

stopping = False


def on_signal(signum, _frame):
    global stopping
    stopping = True
    log(f"{signal.Signals(signum).name}: finishing the batch in hand")


def log(message):
    print(f"{NAME}: {message}", flush=True)


db = redis.Redis.from_url(
    REDIS_URL, decode_responses=True, socket_timeout=5, socket_connect_timeout=1
)
apply_sale = db.register_script(APPLY)
handled = 0


def handle(entry_id, fields):
    """Work on one entry, add it to the totals once, acknowledge it."""
    global handled
    if fields:  # None or empty: the entry was deleted from the stream meanwhile
        time.sleep(WORK_MS / 1000)
        apply_sale(
            keys=[SEEN, COUNTS, CENTS, PROCESSED, DUPLICATES],
            args=[entry_id, fields.get("product", "?"), int(fields.get("cents", 0))],
        )
        handled += 1
        if handled == CRASH_ONCE_AFTER and db.set(f"{STREAM}:crashed", NAME, nx=True):
            log(f"CRASH_ONCE_AFTER={CRASH_ONCE_AFTER}: exiting after applying {entry_id}, before XACK")
            os._exit(1)
    db.xack(STREAM, GROUP, entry_id)


def handle_all(reply):
    """Handle every entry of an XREADGROUP reply; how many there were."""
    n = 0
    for _stream, entries in reply or []:
        for entry_id, fields in entries:
            handle(entry_id, fields)
            n += 1
    return n


def ensure_group():
    try:
        db.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def take_back_own_pending():
    """Entries a previous life of this consumer read but did not acknowledge."""
    total = 0
    while not stopping:
        n = handle_all(db.xreadgroup(GROUP, NAME, {STREAM: "0"}, count=BATCH))
        if n == 0:
            break
        total += n
    if total:
        log(f"took back {total} entries left pending by a previous run")


def claim_abandoned():
    """Entries other consumers left pending for longer than CLAIM_IDLE_MS."""
    start, total = "0-0", 0
    while not stopping:
        start, entries, *_deleted = db.xautoclaim(
            STREAM, GROUP, NAME, min_idle_time=CLAIM_IDLE_MS, start_id=start, count=BATCH
        )
        for entry_id, fields in entries:
            handle(entry_id, fields)
        total += len(entries)
        if start == "0-0":
            break
    if total:
        log(f"claimed {total} entries idle for over {CLAIM_IDLE_MS} ms")


def leave_group():
    """Leave the group, so that its consumer count is the live one, if nothing is pending
    (deleting a consumer drops its pending entries)."""
    try:
        mine = db.xpending_range(STREAM, GROUP, min="-", max="+", count=1, consumername=NAME)
        if not mine:
            db.xgroup_delconsumer(STREAM, GROUP, NAME)
    except redis.RedisError as e:
        log(f"could not leave the group: {e}")


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log(f"consuming {STREAM!r} as {GROUP}/{NAME} at {REDIS_URL}, {WORK_MS:g} ms per sale")
    started, last_claim, last_report, reported = time.monotonic(), 0.0, time.monotonic(), 0
    ready = False
    while not stopping:
        try:
            if not ready:
                ensure_group()
                take_back_own_pending()
                ready = True
            if time.monotonic() - last_claim >= CLAIM_EVERY_MS / 1000:
                last_claim = time.monotonic()
                claim_abandoned()
            handle_all(db.xreadgroup(GROUP, NAME, {STREAM: ">"}, count=BATCH, block=500))
        except (redis.ConnectionError, redis.TimeoutError) as e:
            log(f"redis: {e}; retrying")
            time.sleep(0.5)
        now = time.monotonic()
        if now - last_report >= 10:
            log(f"handled {handled} ({(handled - reported) / (now - last_report):.0f}/s)")
            last_report, reported = now, handled
    leave_group()
    log(f"stopped after {time.monotonic() - started:.1f}s: handled {handled}, all acknowledged")
    return 0


if __name__ == "__main__":
    sys.exit(main())

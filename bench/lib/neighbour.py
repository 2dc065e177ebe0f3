#!/usr/bin/env python3
"""A noisy neighbour for tail experiments: busy for BURST ms every PERIOD ms, for at most
SECS seconds, on whatever core it is pinned to (`taskset -c 0 neighbour.py ...`). It stands in
for what shares a proxy's core on a real host (a compile, a backup, another tenant): the
proxy's tail shows the bursts, whichever proxy it is.

usage: neighbour.py [--burst-ms 10] [--period-ms 300] [--secs 60]
"""
import argparse, time

ap = argparse.ArgumentParser()
ap.add_argument("--burst-ms", type=float, default=10)
ap.add_argument("--period-ms", type=float, default=300)
ap.add_argument("--secs", type=float, default=60)
a = ap.parse_args()
assert 0 < a.burst_ms < a.period_ms and 0 < a.secs <= 600, "bounds"
end = time.monotonic() + a.secs
while time.monotonic() < end:
    start = time.monotonic()
    while time.monotonic() - start < a.burst_ms / 1e3:
        pass
    time.sleep(max(0.0, a.period_ms / 1e3 - (time.monotonic() - start)))

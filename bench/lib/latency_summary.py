#!/usr/bin/env python3
"""Each candidate's tail over the rounds of a latency.sh run (JSONL): p99 and p99.9 as
min / median / max, how many rounds had a p99.9 over the spike bound, CPU per request and the
worst steal seen. One round's p99.9 rests on its slowest 0.1 % (50 requests at 5,000 req/s for
10 s), so a single stall of a few ms moves it: judge the distribution, not one round.

usage: latency_summary.py [--spike-ms 5] FILE.jsonl...
"""
import argparse, json, statistics

ap = argparse.ArgumentParser()
ap.add_argument("--spike-ms", type=float, default=5.0)
ap.add_argument("files", nargs="+")
a = ap.parse_args()

by = {}
for path in a.files:
    for line in open(path):
        r = json.loads(line)
        if r.get("test") == "latency" and r.get("ok"):
            by.setdefault(r["candidate"], []).append(r)


def spread(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return "–"
    return f"{vals[0]:.3f} / {statistics.median(vals):.3f} / {vals[-1]:.3f}"


print(f"{'candidate':<16} {'rounds':>6}  {'p99 ms min/med/max':<24} {'p99.9 ms min/med/max':<24} "
      f"{'p99.9>' + format(a.spike_ms, 'g') + 'ms':>9} {'µs/req':>7} {'steal% max':>10}")
for c, rs in by.items():
    cpu = [r["proxy_cpu_us_per_req"] for r in rs if r.get("proxy_cpu_us_per_req") is not None]
    st = [x for r in rs for x in (r.get("steal_pct") or []) if x is not None]
    spikes = sum(1 for r in rs if (r.get("p999_ms") or 0) > a.spike_ms)
    print(f"{c:<16} {len(rs):>6}  {spread(r['p99_ms'] for r in rs):<24} "
          f"{spread(r['p999_ms'] for r in rs):<24} {spikes:>9} "
          f"{statistics.median(cpu) if cpu else float('nan'):>7.2f} {max(st) if st else 0:>10.1f}")

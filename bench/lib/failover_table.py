#!/usr/bin/env python3
"""Summarise failover.sh JSONL files as a Markdown table per mode (medians over rounds).

usage: failover_table.py FILE.jsonl [FILE.jsonl ...]
"""
import json
import statistics
import sys
from collections import defaultdict

runs = defaultdict(list)
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs[(r["mode"], r["candidate"])].append(r)

for mode in sorted({m for m, _ in runs}):
    print(f"\n### failover.sh -m {mode}\n")
    print("| candidate | failed per round (of 10,000) | p99 ms, whole run (median) | p99 ms while r2 is down | max ms (median) | r2 responses while down | r2 serving again after restart/SIGCONT, s (per round) |")
    print("|---|---|---|---|---|---|---|")
    for (m, cand), rs in sorted(runs.items(), key=lambda kv: statistics.median(r["lat_p99_ms"] for r in kv[1])):
        if m != mode:
            continue
        failed = "/".join(str(r["failed"]) for r in rs)
        p99 = statistics.median(r["lat_p99_ms"] for r in rs)
        mx = statistics.median(r["lat_max_ms"] for r in rs)
        down = "/".join(str(r["phases"]["r2_down"]["replicas"].get("r2", 0)) for r in rs)
        down_p99 = statistics.median(r["phases"]["r2_down"]["lat_p99_ms"] for r in rs)
        rec = "/".join(str(r.get("victim_recovery_s")) for r in rs)
        print(f"| {cand} | {failed} | {p99:.2f} | {down_p99:.2f} | {mx:.1f} | {down} | {rec} |")

#!/usr/bin/env python3
"""Line up a tail.sh round's slow requests with what ran on the proxy's core.

For every window of slow requests (start as scheduled, corrected for coordinated omission, to
end; overlapping ones merged) it prints the time each process spent on the proxy's core, the
longest wake-up-to-run delay of the proxy's threads, their longest run, how long it waited
for the core after being preempted, and where the proxy's on-CPU samples were. Then the share of the proxy's samples per kind of work over the whole
round and inside the slow windows: a control-plane task that stalls the event loop shows up
as its kind inside the windows; a neighbour on the core as delays; a delay elsewhere (the
load generator's core, the backends) as an idle proxy core.

usage: tail_timeline.py [--slow-ms 1] DIR     (DIR holds t0, pids, req.db, perf.data)
"""
import argparse, bisect, collections, re, sqlite3, subprocess

ap = argparse.ArgumentParser()
ap.add_argument("--slow-ms", type=float, default=1.0)
ap.add_argument("--windows", type=int, default=6, help="how many of the longest windows to show")
ap.add_argument("dir")
a = ap.parse_args()
d, slow_s = a.dir, a.slow_ms / 1e3

t0 = float(open(f"{d}/t0").read())
pids = {int(p) for p in open(f"{d}/pids").read().split()}
rows = sqlite3.connect(f"{d}/req.db").execute(
    "select coalesce(start_latency_correction, start), end from oha order by 1").fetchall()
lat = sorted(e - s for s, e in rows)
n = len(lat)
if not n:
    raise SystemExit(f"{d}: no requests recorded")
pct = lambda q: lat[min(n - 1, int(n * q))] * 1e3
print(f"{d}: {n} requests; p50 {pct(.5):.3f} ms, p99 {pct(.99):.3f} ms, "
      f"p99.9 {pct(.999):.3f} ms, max {lat[-1] * 1e3:.3f} ms")

windows = []  # [start, end, requests], monotonic seconds
for s, e in ((t0 + s, t0 + e) for s, e in rows if e - s > slow_s):
    if windows and s <= windows[-1][1]:
        windows[-1][1] = max(windows[-1][1], e)
        windows[-1][2] += 1
    else:
        windows.append([s, e, 1])

# perf script: "comm pid/tid time: event: ..." lines, each sample followed by its stack.
out = subprocess.run(["perf", "script", "-i", f"{d}/perf.data", "-F",
                      "comm,pid,tid,time,event,trace,ip,sym"],
                     capture_output=True, text=True).stdout
head = re.compile(r"\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)")
switch = re.compile(r"prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")
wake = re.compile(r"comm=(.*?) pid=(\d+) ")
tgid, events, sample = {}, [], None
for line in out.splitlines():
    m = head.match(line)
    if m:
        comm, pid, tid, t, ev, rest = m.groups()
        tgid[int(tid)] = int(pid)
        sample = None
        if ev == "sched:sched_switch" and (s := switch.search(rest)):
            events.append((float(t), "switch", (s[1], int(s[2]), s[3], s[4], int(s[5]))))
        elif ev == "sched:sched_wakeup" and (w := wake.search(rest)):
            events.append((float(t), "wakeup", int(w[2])))
        elif ev == "cpu-clock":
            sample = (float(t), int(pid), [])
            events.append((sample[0], "sample", sample))
    elif sample is not None and line.strip():
        sample[2].append(line.strip())
times = [e[0] for e in events]
proxy = lambda tid: tgid.get(tid) in pids

KINDS = [("health checks", r"shoal_health|health::run|Checker"), ("autoscaler", r"autoscal"),
         ("admin/dashboard", r"shoal_admin|dashboard|axum"), ("supervisor", r"shoal_supervise"),
         ("metrics render", r"render|shoal_core::prom"), ("pool sweep", r"upstream::sweep"),
         ("timers", r"runtime::time"), ("allocator purge", r"decay|purge|madvise"),
         ("request path", r"shoal_proxy|httparse|hyper")]


def kind(stack):
    text = " ".join(stack)
    return next((k for k, rx in KINDS if re.search(rx, text)), "kernel (network) / other")


def window(a0, b0):
    """Time on the core per process, proxy runs and waits after preemption, sample kinds.

    (Wake-ups issued from the other core are not traced here, so a wait is measured from a
    preemption: the thread left the core runnable, state R, until it ran again.)"""
    oncpu, preempted, waits, runs, kinds = collections.Counter(), {}, [], [], collections.Counter()
    since, running = a0, None
    for t, k, x in events[bisect.bisect_left(times, a0 - 0.1):bisect.bisect_right(times, b0)]:
        if k == "switch":
            prev_comm, prev_tid, state, next_comm, next_tid = x
            if t >= a0:
                oncpu[prev_comm] += t - max(since, a0)
                if proxy(prev_tid):
                    runs.append(t - since)
            if proxy(prev_tid) and state.startswith("R"):
                preempted[prev_tid] = t
            if next_tid in preempted:
                waited = t - preempted.pop(next_tid)
                if t >= a0:
                    waits.append(waited)
            since, running = t, next_comm
        elif k == "sample" and t >= a0 and x[1] in pids:
            kinds[kind(x[2])] += 1
    if running:
        oncpu[running] += b0 - max(since, a0)
    return oncpu, waits, runs, kinds


print(f"{len(windows)} windows of requests slower than {a.slow_ms:g} ms")
for s, e, cnt in sorted(windows, key=lambda w: w[0] - w[1])[:a.windows]:
    oncpu, waits, runs, kinds = window(s, e)
    print(f"  +{s - t0:6.3f}s {1e3 * (e - s):6.1f} ms, {cnt} requests: on the core "
          + ", ".join(f"{c} {1e3 * v:.1f} ms" for c, v in oncpu.most_common(4)))
    print(f"      proxy: longest run {1e3 * max(runs, default=0):.2f} ms, longest wait after "
          f"preemption {1e3 * max(waits, default=0):.2f} ms; samples: "
          + (", ".join(f"{k} {v}" for k, v in kinds.most_common(3)) or "none"))

starts = [w[0] for w in windows]


def in_slow(t):
    i = bisect.bisect_right(starts, t) - 1
    return i >= 0 and windows[i][0] <= t <= windows[i][1]


total, slow = collections.Counter(), collections.Counter()
for t, k, x in events:
    if k == "sample" and x[1] in pids:
        total[kind(x[2])] += 1
        if in_slow(t):
            slow[kind(x[2])] += 1
nt, ns = sum(total.values()), sum(slow.values())
print(f"proxy on-CPU samples (250 µs each): {nt} in the round, {ns} inside slow windows")
for k, v in total.most_common():
    print(f"  {k:<26} {100 * v / nt:5.1f} % of the round   {100 * slow[k] / ns if ns else 0:5.1f} % inside slow windows")

#!/usr/bin/env python3
"""Autoscaling benchmark (issue 5): shoal's autoscaler under the shoal, hpa and kpa presets.

For each round, profile and policy (interleaved) this script
  1. writes a stack file (one `shoal sample-app --capacity 4` service behind the gateway,
     `autoscale: {min, max, concurrency: 4, preset: POLICY}`), starts `shoal up` in its own
     temp dir and waits until the service has ready == 1;
  2. drives an OPEN-model load following the profile: request i is scheduled at its time
     whatever the responses do; each is `GET /sleep?ms=50` on a keep-alive connection from a
     lazily grown pool (at most --max-conns); a request fails on a status != 200, a
     connection error, or no answer within --timeout of its scheduled time. The admin API is
     polled every --poll seconds (desired, ready, autoscale readings);
  3. stops shoal (SIGTERM to its PID, SIGKILL after 20 s), reads the `scaled` events
     fetched just before, and scores the run.

Everything is on 127.0.0.1; every loop is bounded in time and count; only processes this
script started are signalled, by PID. Stdlib only.

Output: raw per-second series (and the finer admin polls and events) as JSONL in
bench/results/raw/autoscale-<profile>-<policy>-r<round>.jsonl, a summary JSON
bench/results/raw/autoscale-summary.json, a Markdown table on stdout, and the plot
docs/img/autoscale-step.svg (replicas and offered load over time, step profile).
"""
import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RAW_DIR = os.path.join(REPO, "bench", "results", "raw")
SVG_PATH = os.path.join(REPO, "docs", "img", "autoscale-step.svg")

SLEEP_MS = 50          # service time of one request
CAPACITY = 4           # sample-app --capacity (requests served at once per replica)
TARGET = 4             # autoscale concurrency target per replica
POLICIES = ["shoal", "hpa", "kpa"]

# Profiles: list of (duration s, rate req/s) phases. `steps` are the times (s from the
# start of the load) where the load rises; the first is the one the table reports.
PROFILES = {
    "step": {"phases": [(10, 60), (60, 240), (40, 60)], "steps": [10]},
    "spike": {"phases": [(20, 60), (10, 400), (40, 60)], "steps": [20]},
    "onoff": {"phases": [(15, 240), (15, 0)] * 4, "steps": [0, 30, 60, 90]},
}


def needed_replicas(rate):
    """Replicas the offered rate needs: concurrency = rate × service time, / target."""
    return max(1, math.ceil(rate * SLEEP_MS / 1000.0 / TARGET - 1e-9))


def rate_at(phases, t):
    acc = 0.0
    for dur, rate in phases:
        if t < acc + dur:
            return rate
        acc += dur
    return 0


def schedule(phases):
    """Scheduled send times (s from start): evenly spaced within each phase."""
    times, t0 = [], 0.0
    for dur, rate in phases:
        if rate > 0:
            n = int(round(dur * rate))
            times.extend(t0 + i / rate for i in range(n))
        t0 += dur
    return times


def pct(vals, p):
    if not vals:
        return None
    s = sorted(vals)
    k = min(len(s) - 1, max(0, int(math.ceil(p / 100.0 * len(s))) - 1))
    return s[k]


def free_port(used):
    for _ in range(200):
        p = random.randint(10000, 19999)
        if p in used:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        used.add(p)
        return p
    raise RuntimeError("no free port in 10000-19999")


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


# ---------------------------------------------------------------- stack control

STACK = """\
gateway:
  listen: 127.0.0.1:{gw}
  replica_header: true
admin:
  listen: 127.0.0.1:{adm}
services:
  app:
    command: [shoal, sample-app, --capacity, '{cap}']
    replicas: 1
    health: {{ path: /health, interval: 200ms }}
    autoscale: {{ min: 1, max: {max}, concurrency: {target}, preset: {policy} }}
routes:
  - match: PathPrefix(`/`)
    service: app
"""


def admin_get(adm, path, timeout=2.0):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (adm, path), timeout=timeout) as r:
        return json.loads(r.read().decode())


class Stack:
    def __init__(self, shoal, policy, max_replicas, used_ports):
        self.shoal, self.policy = shoal, policy
        self.dir = tempfile.mkdtemp(prefix="shoal-autoscale-")
        self.gw = free_port(used_ports)
        self.adm = free_port(used_ports)
        self.file = os.path.join(self.dir, "stack.yaml")
        with open(self.file, "w") as f:
            f.write(STACK.format(gw=self.gw, adm=self.adm, cap=CAPACITY, max=max_replicas,
                                 target=TARGET, policy=policy))
        self.proc = None
        self.log = open(os.path.join(self.dir, "shoal.log"), "wb")

    def start(self, ready_timeout=40.0):
        self.proc = subprocess.Popen(
            [self.shoal, "up", "-f", self.file, "--quiet", "--state-dir",
             os.path.join(self.dir, "state")],
            cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT,
            env=dict(os.environ, PATH=os.path.dirname(self.shoal) + ":" + os.environ.get("PATH", "")))
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("shoal up exited with %s (see %s)" % (self.proc.returncode, self.dir))
            try:
                s = admin_get(self.adm, "/api/v1/services/app", timeout=1.0)
                if s.get("ready") == 1:
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError("service not ready within %.0f s (see %s)" % (ready_timeout, self.dir))

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()          # by PID: the Popen object's own child
            self.proc.wait(timeout=10)
        self.log.close()


# ---------------------------------------------------------------- open-model client

class Pool:
    """Keep-alive connections to the gateway, created on demand up to max_conns."""

    def __init__(self, port, max_conns):
        self.port, self.max = port, max_conns
        self.idle = []
        self.count = 0
        self.waiters = asyncio.Queue()   # futures of requests waiting for a connection
        self.waited = 0                  # requests that had to wait for a connection
        self.peak = 0
        self.expired = 0                 # idle connections closed by IDLE_MAX

    IDLE_MAX = 30.0   # drop connections idle this long: below the gateway's 60 s client_idle,
                      # so a request is never written on a connection the gateway is closing

    async def get(self):
        now = time.time()
        while self.idle:
            conn, since = self.idle.pop()
            if now - since < self.IDLE_MAX:
                return conn
            try:
                conn[1].close()
            except Exception:
                pass
            self.count -= 1
            self.expired += 1
        if self.count < self.max:
            self.count += 1
            self.peak = max(self.peak, self.count)
            try:
                return await asyncio.open_connection("127.0.0.1", self.port)
            except BaseException:
                self.count -= 1
                raise
        self.waited += 1
        fut = asyncio.get_running_loop().create_future()
        await self.waiters.put(fut)
        return await fut

    def put(self, conn):
        while not self.waiters.empty():
            fut = self.waiters.get_nowait()
            if not fut.done():
                fut.set_result(conn)
                return
        self.idle.append((conn, time.time()))

    def discard(self, conn):
        if conn is not None:
            try:
                conn[1].close()
            except Exception:
                pass
        self.count -= 1
        # a waiter may now open a new connection
        while not self.waiters.empty():
            fut = self.waiters.get_nowait()
            if not fut.done():
                self.count += 1
                asyncio.ensure_future(self._open_for(fut))
                return

    async def _open_for(self, fut):
        try:
            conn = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as e:
            self.count -= 1
            if not fut.done():
                fut.set_exception(e)
            return
        if fut.done():
            self.put(conn)
        else:
            fut.set_result(conn)

    def close_all(self):
        for (r, w), _ in self.idle:
            try:
                w.close()
            except Exception:
                pass
        self.idle = []


REQ = ("GET /sleep?ms=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % SLEEP_MS).encode()


async def one_request(pool, res, idx, t_sched, timeout):
    """Returns nothing; fills res[idx] = (sent_at, done_at, status or error string)."""
    conn = None
    sent_at = None

    async def go():
        nonlocal conn, sent_at
        conn = await pool.get()
        r, w = conn
        sent_at = time.time()
        w.write(REQ)
        head = await r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        n, close, chunked = 0, False, False
        for l in lines[1:]:
            k, _, v = l.partition(":")
            k = k.strip().lower()
            if k == "content-length":
                n = int(v.strip())
            elif k == "connection" and v.strip().lower() == "close":
                close = True
            elif k == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
                await r.readexactly(size + 2)
                if size == 0:
                    break
        elif n:
            await r.readexactly(n)
        return status, close

    remaining = t_sched + timeout - time.time()
    try:
        status, close = await asyncio.wait_for(go(), max(0.01, remaining))
        if close:
            pool.discard(conn)
        else:
            pool.put(conn)
        res[idx] = (sent_at, time.time(), status)
    except asyncio.TimeoutError:
        if conn is not None:
            pool.discard(conn)
        res[idx] = (sent_at, time.time(), "timeout")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
            IndexError) as e:
        if conn is not None:
            pool.discard(conn)
        res[idx] = (sent_at, time.time(), "conn:" + type(e).__name__)


async def poller(adm, t0, stop_at, interval, polls, events):
    """Polls the service every `interval`, and the event log (incrementally) every 2 s, so
    that the log's 1000-event ring cannot drop the run's events."""
    loop = asyncio.get_running_loop()
    n = 0
    since = 0
    while time.time() < stop_at and n < 100000:
        n += 1
        t = time.time()
        if n % max(1, int(round(2.0 / interval))) == 1:
            try:
                new = await loop.run_in_executor(None, admin_get, adm, "/api/v1/events?since=%d" % since, 1.5)
                for e in new:
                    since = max(since, e.get("seq", 0))
                    events.append(e)
            except Exception as e:
                polls.append({"t": round(t - t0, 3), "error": "events: %r" % e})
        try:
            s = await loop.run_in_executor(None, admin_get, adm, "/api/v1/services/app", 1.5)
            a = s.get("autoscale") or {}
            polls.append({
                "t": round(t - t0, 3), "desired": s.get("desired"), "ready": s.get("ready"),
                "states": [r.get("state") for r in s.get("replicas", [])],
                "as_desired": a.get("desired"), "readings": a.get("readings"),
                "panic": a.get("panic"), "reason": a.get("reason"),
                "limited_by": a.get("limited_by"),
            })
        except Exception as e:
            polls.append({"t": round(t - t0, 3), "error": repr(e)})
        await asyncio.sleep(max(0.0, interval - (time.time() - t)))


async def drive(stack, phases, timeout, max_conns, poll_interval):
    times = schedule(phases)
    total = sum(d for d, _ in phases)
    res = [None] * len(times)
    pool = Pool(stack.gw, max_conns)
    polls, events = [], []
    lag = []                     # how late the scheduler started each request (s)
    t0 = time.time() + 0.5
    poll_task = asyncio.ensure_future(poller(stack.adm, t0, t0 + total + timeout + 1.0,
                                              poll_interval, polls, events))
    tasks = []
    for i, ts in enumerate(times):
        delay = t0 + ts - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.append(time.time() - (t0 + ts))
        tasks.append(asyncio.ensure_future(one_request(pool, res, i, t0 + ts, timeout)))
    # wait for the last requests (each bounded by its own timeout), then for the poller
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 5.0)
    await asyncio.sleep(max(0.0, t0 + total + 1.0 - time.time()))
    poll_task.cancel()
    try:
        await poll_task
    except asyncio.CancelledError:
        pass
    pool.close_all()
    try:
        since = max([e.get("seq", 0) for e in events] or [0])
        events.extend(admin_get(stack.adm, "/api/v1/events?since=%d" % since, 3.0))
    except Exception as e:
        print("events: %r" % e, file=sys.stderr)
    return t0, times, res, polls, events, lag, pool


# ---------------------------------------------------------------- scoring

def per_second(phases, t0, times, res, polls, timeout):
    total = sum(d for d, _ in phases)
    n = int(math.ceil(total))
    secs = [{"t": s, "offered": 0, "sent": 0, "completed": 0, "ok": 0, "errors": 0,
             "lat": []} for s in range(n)]
    for ts, r in zip(times, res):
        s = min(n - 1, int(ts))
        b = secs[s]
        b["offered"] += 1
        if r is None:
            b["errors"] += 1
            b["lat"].append(timeout * 1000.0)
            continue
        sent_at, done_at, st = r
        if sent_at is not None:
            ss = int(sent_at - t0)
            if 0 <= ss < n:
                secs[ss]["sent"] += 1
        cs = int(done_at - t0)
        if 0 <= cs < n and st == 200:
            secs[cs]["completed"] += 1
        if st == 200:
            b["ok"] += 1
            b["lat"].append((done_at - (t0 + ts)) * 1000.0)
        else:
            b["errors"] += 1
            # a failure counts at the timeout in the latency percentiles (censored)
            b["lat"].append(timeout * 1000.0 if st == "timeout" else (done_at - (t0 + ts)) * 1000.0)
    good = [p for p in polls if "error" not in p]
    for b in secs:
        # the last admin poll taken in this second (else the one before)
        inside = [p for p in good if b["t"] <= p["t"] < b["t"] + 1]
        before = [p for p in good if p["t"] < b["t"] + 1]
        p = inside[-1] if inside else (before[-1] if before else None)
        b["desired"] = p["desired"] if p else None
        b["ready"] = p["ready"] if p else None
        # time-weighted over the polls in this second (0.25 s apart by default)
        rs = [q["ready"] for q in inside if q.get("ready") is not None] or (
            [b["ready"]] if b["ready"] is not None else [])
        b["ready_avg"] = round(sum(rs) / len(rs), 3) if rs else None
        b["rate"] = rate_at(phases, b["t"])
        b["needed"] = needed_replicas(b["rate"])
        b["under_frac"] = (round(sum(1 for r in rs if r < b["needed"]) / len(rs), 3)
                           if rs else None)
        b["p99_ms"] = round(pct(b["lat"], 99), 1) if b["lat"] else None
        del b["lat"]
    return secs


def score(profile, phases, steps, t0, times, res, polls, events, timeout, secs):
    total = sum(d for d, _ in phases)
    good = [p for p in polls if "error" not in p]
    scaled = []
    for e in events:
        if e.get("kind") != "scaled":
            continue
        msg = e.get("message", "")
        if not msg.startswith("autoscaler:"):
            continue
        try:
            body = msg.split(":", 1)[1].strip()
            ab, _, reason = body.partition(":")
            a, b = [int(x.strip()) for x in ab.replace("→", "->").split("->")]
        except (ValueError, IndexError):
            continue
        t = e.get("at_ms", 0) / 1000.0 - t0
        if -1.0 <= t <= total + timeout + 2:
            scaled.append({"t": round(t, 3), "from": a, "to": b, "reason": reason.strip()})
    scaled.sort(key=lambda x: x["t"])

    cycles = []
    for st in steps:
        rate = rate_at(phases, st)
        need = needed_replicas(rate)
        # end of this high phase
        acc, end = 0.0, total
        for dur, r in phases:
            if acc <= st < acc + dur:
                end = acc + dur
            acc += dur
        nxt = [x for x in steps if x > st]
        up_end = nxt[0] if nxt else total + timeout
        ups = [x for x in scaled if x["t"] >= st - 0.5 and x["to"] > x["from"] and x["t"] < up_end]
        decide = round(ups[0]["t"] - st, 2) if ups else None
        # already at capacity when the step came (onoff cycles after the first)?
        at_step = [p for p in good if p["t"] <= st]
        already = bool(at_step) and at_step[-1]["ready"] is not None and at_step[-1]["ready"] >= need
        cap = [p for p in good if st <= p["t"] < end and (p["ready"] or 0) >= need]
        to_cap = 0.0 if already else (round(cap[0]["t"] - st, 2) if cap else None)
        cycles.append({"step_at": st, "rate": rate, "needed": need, "first_up_s": decide,
                       "to_capacity_s": to_cap, "already_at_capacity": already})

    # app start time from the event log: each scale-up decision to the `ready` event of each
    # replica `started` after it (and before the next decision); also started -> ready.
    evs = sorted(events, key=lambda e: e.get("seq", 0))
    started_at, decide_to_ready, proc_start = {}, [], []
    ups_t = [x["t"] for x in scaled if x["to"] > x["from"]]
    for e in evs:
        t = e.get("at_ms", 0) / 1000.0 - t0
        key = e.get("replica")
        if e.get("kind") == "started":
            started_at[key] = t
        elif e.get("kind") == "ready" and key in started_at:
            ts = started_at.pop(key)
            proc_start.append(round(t - ts, 3))
            prior = [u for u in ups_t if u <= ts + 0.001]
            if prior and ts - prior[-1] < 5.0:
                decide_to_ready.append(round(t - prior[-1], 3))
    # (also from the polls) each scale-up decision A -> B to the first poll with ready >= B
    starts = []
    for x in scaled:
        if x["to"] <= x["from"]:
            continue
        later = [p for p in good if p["t"] >= x["t"] and (p["ready"] or 0) >= x["to"]]
        # skip if the count was changed again before it got there
        nxt = [y for y in scaled if y["t"] > x["t"]]
        if later and (not nxt or later[0]["t"] <= nxt[0]["t"] + 0.3):
            starts.append(round(later[0]["t"] - x["t"], 3))

    n_req = len(times)
    fails = sum(1 for r in res if r is None or r[2] != 200)
    kinds = {}
    for r in res:
        k = "none" if r is None else r[2]
        if k != 200:
            kinds[str(k)] = kinds.get(str(k), 0) + 1
    lats = []
    for ts, r in zip(times, res):
        if r is None or r[2] == "timeout":
            lats.append(timeout * 1000.0)
        else:
            lats.append((r[1] - (t0 + ts)) * 1000.0)
    ready_series = [b["ready"] for b in secs if b["ready"] is not None]
    desired_series = [b["desired"] for b in secs if b["desired"] is not None]
    # share of time under-provisioned: per second, the share of its admin polls with
    # ready < needed (so a replica that turns ready at x.9 s counts as 0.9 s short)
    under = sum(b["under_frac"] for b in secs if b["under_frac"] is not None)
    ready_series = [b["ready_avg"] for b in secs if b["ready_avg"] is not None]
    return {
        "profile": profile,
        "cycles": cycles,
        "first_up_s": cycles[0]["first_up_s"],
        "to_capacity_s": cycles[0]["to_capacity_s"],
        "under_pct": round(100.0 * under / max(1, len(secs)), 1),
        "replica_seconds": round(sum(ready_series), 1),
        "desired_seconds": sum(desired_series),
        "scaling_actions": len(scaled),
        "desired_changes": sum(1 for a, b in zip(desired_series, desired_series[1:]) if a != b),
        "max_ready": max(ready_series) if ready_series else None,
        "requests": n_req,
        "failed": fails,
        "fail_kinds": kinds,
        "p99_ms": round(pct(lats, 99), 1) if lats else None,
        "p50_ms": round(pct(lats, 50), 1) if lats else None,
        "app_start_s": starts,
        "decision_to_ready_s": decide_to_ready,
        "started_to_ready_s": proc_start,
        "scaled": scaled,
    }


# ---------------------------------------------------------------- plot

def svg_plot(runs, path):
    """runs: {policy: (phases, secs)} for one profile."""
    colors = {"shoal": "#1f77b4", "hpa": "#d62728", "kpa": "#2ca02c"}
    W, H, ml, mr, mt, mb = 760, 380, 55, 60, 30, 70
    pw, ph = W - ml - mr, H - mt - mb
    T = max(len(s) for _, s in runs.values())
    ymax = max(max(max(b["ready"] or 0, b["desired"] or 0, b["needed"]) for b in s) for _, s in runs.values())
    ymax = max(ymax + 1, 5)
    rmax = max(max(b["rate"] for b in s) for _, s in runs.values())
    rmax = int(math.ceil(rmax / 100.0) * 100) or 100

    def X(t):
        return ml + pw * t / T

    def Y(v):
        return mt + ph * (1 - v / ymax)

    def YR(v):
        return mt + ph * (1 - v / rmax)

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif" font-size="11">' % (W, H, W, H),
           '<rect width="100%" height="100%" fill="white"/>']
    # grid and axes
    for v in range(0, ymax + 1):
        out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>' % (ml, Y(v), ml + pw, Y(v)))
        out.append('<text x="%.1f" y="%.1f" text-anchor="end">%d</text>' % (ml - 5, Y(v) + 4, v))
    for t in range(0, T + 1, 10):
        out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ccc"/>' % (X(t), mt + ph, X(t), mt + ph + 4))
        out.append('<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>' % (X(t), mt + ph + 16, t))
    for v in range(0, rmax + 1, 100 if rmax > 200 else 50):
        out.append('<text x="%.1f" y="%.1f" fill="#888">%d</text>' % (ml + pw + 5, YR(v) + 4, v))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>' % (ml, mt, pw, ph))
    out.append('<text x="%.1f" y="%.1f" text-anchor="middle">time since the load started (s)</text>' % (ml + pw / 2, H - 38))
    out.append('<text transform="translate(14,%.1f) rotate(-90)" text-anchor="middle">replicas</text>' % (mt + ph / 2))
    out.append('<text transform="translate(%.1f,%.1f) rotate(90)" text-anchor="middle" fill="#888">offered load (req/s)</text>' % (W - 12, mt + ph / 2))
    out.append('<text x="%d" y="18" font-weight="bold">step profile: replicas (solid = ready, dashed = desired) and offered load (grey)</text>' % ml)

    def poly(pts, color, dash=None, width=1.8):
        d = " ".join("%.1f,%.1f" % p for p in pts)
        return '<polyline points="%s" fill="none" stroke="%s" stroke-width="%.1f"%s/>' % (
            d, color, width, ' stroke-dasharray="%s"' % dash if dash else "")

    def steps_pts(secs, key, f):
        pts = []
        for b in secs:
            v = b[key]
            if v is None:
                continue
            pts.append((X(b["t"]), f(v)))
            pts.append((X(b["t"] + 1), f(v)))
        return pts

    first = next(iter(runs.values()))
    out.append(poly(steps_pts(first[1], "rate", YR), "#bbb", width=6))
    out.append(poly(steps_pts(first[1], "needed", Y), "#000", dash="2,3", width=1))
    for i, (pol, (_, secs)) in enumerate(runs.items()):
        off = (i - 1) * 0.06   # keep overlapping lines apart
        out.append(poly(steps_pts(secs, "desired", lambda v: Y(v + off)), colors.get(pol, "#555"), dash="5,3", width=1.2))
        out.append(poly(steps_pts(secs, "ready", lambda v: Y(v + off)), colors.get(pol, "#555")))
    # legend
    lx, ly = ml, H - 18
    items = [(p, colors.get(p, "#555"), None) for p in runs] + [("needed", "#000", "2,3"), ("offered req/s", "#bbb", None)]
    for name, c, dash in items:
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%d"%s/>' % (
            lx, ly - 4, lx + 22, ly - 4, c, 6 if name.startswith("offered") else 2,
            ' stroke-dasharray="%s"' % dash if dash else ""))
        out.append('<text x="%d" y="%d">%s</text>' % (lx + 27, ly, name))
        lx += 40 + 7 * len(name)
    out.append("</svg>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# ---------------------------------------------------------------- main

def fmt(v, unit=""):
    return "–" if v is None else ("%s%s" % (v, unit))


def table(summaries):
    lines = ["| profile | policy | first scale-up decision (s) | time to capacity (s) | "
             "under-provisioned (% of s) | replica-seconds | scaling actions | failed requests | p99 (ms) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        fails = "%d / %d" % (s["failed"], s["requests"])
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            s["profile"], s["policy"], fmt(s["first_up_s"]),
            "not reached" if s["to_capacity_s"] is None else s["to_capacity_s"],
            s["under_pct"], s["replica_seconds"], s["scaling_actions"], fails, s["p99_ms"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shoal", default="/work/target-bench/release/shoal")
    ap.add_argument("--profiles", default="step,spike,onoff")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("-r", "--rounds", type=int, default=1)
    ap.add_argument("--max-replicas", type=int, default=8)
    ap.add_argument("--max-conns", type=int, default=2500,
                    help="client connection cap (rate × timeout at 400 req/s is 2000)")
    ap.add_argument("--timeout", type=float, default=5.0, help="client timeout per request (s)")
    ap.add_argument("--poll", type=float, default=0.25, help="admin API poll interval (s)")
    ap.add_argument("--spike-rate", type=int, default=400)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply phase durations (smoke tests)")
    ap.add_argument("--tag", default="", help="suffix for the raw file names")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--from-raw", action="store_true",
                    help="no runs: rebuild the table and plot from the raw files")
    args = ap.parse_args()

    if args.from_raw:
        # rebuild the table and the plot from bench/results/raw (no runs)
        with open(os.path.join(RAW_DIR, "autoscale-summary%s.json" % args.tag)) as f:
            data = json.load(f)
        step_runs = {}
        for pol in POLICIES:
            path = os.path.join(RAW_DIR, "autoscale-step-%s-r1%s.jsonl" % (pol, args.tag))
            if os.path.exists(path):
                secs = [json.loads(l) for l in open(path)]
                step_runs[pol] = (None, [x for x in secs if x["type"] == "second"])
        if step_runs and not args.no_plot:
            svg_plot(step_runs, SVG_PATH)
        print(table(data["runs"]))
        print("\nload average: start %s, end %s" % (data["env"]["loadavg_start"], data["env"]["loadavg_end"]))
        return

    profiles = {}
    for name in args.profiles.split(","):
        p = json.loads(json.dumps(PROFILES[name]))
        if name == "spike":
            p["phases"][1] = [p["phases"][1][0], args.spike_rate]
        p["phases"] = [(d * args.scale, r) for d, r in p["phases"]]
        p["steps"] = [s * args.scale for s in p["steps"]]
        profiles[name] = p
    policies = args.policies.split(",")
    os.makedirs(RAW_DIR, exist_ok=True)
    used_ports = set()
    summaries, step_runs = [], {}
    env = {"loadavg_start": loadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "nproc": os.cpu_count(), "args": vars(args)}
    for rnd in range(1, args.rounds + 1):
        for name, prof in profiles.items():
            order = policies if rnd % 2 else list(reversed(policies))
            for pol in order:
                la0 = loadavg()
                stack = Stack(args.shoal, pol, args.max_replicas, used_ports)
                print("== round %d  %s  %s  (load %s)" % (rnd, name, pol, la0), file=sys.stderr, flush=True)
                try:
                    stack.start()
                    t0, times, res, polls, events, lag, pool = asyncio.run(
                        drive(stack, prof["phases"], args.timeout, args.max_conns, args.poll))
                finally:
                    stack.stop()
                la1 = loadavg()
                shutil.rmtree(stack.dir, ignore_errors=True)   # kept only when a run fails
                secs = per_second(prof["phases"], t0, times, res, polls, args.timeout)
                s = score(name, prof["phases"], prof["steps"], t0, times, res, polls, events,
                          args.timeout, secs)
                lag_sorted = sorted(lag)
                s.update({"policy": pol, "round": rnd, "loadavg_before": la0, "loadavg_after": la1,
                          "sched_lag_p99_ms": round(pct(lag_sorted, 99) * 1000, 1) if lag else None,
                          "sched_lag_max_ms": round(max(lag) * 1000, 1) if lag else None,
                          "sent_total": sum(b["sent"] for b in secs),
                          "offered_total": sum(b["offered"] for b in secs),
                          "conn_peak": pool.peak, "conn_waits": pool.waited,
                          "conn_expired": pool.expired})
                summaries.append(s)
                raw = os.path.join(RAW_DIR, "autoscale-%s-%s-r%d%s.jsonl" % (name, pol, rnd, args.tag))
                with open(raw, "w") as f:
                    f.write(json.dumps({"type": "summary", **s}) + "\n")
                    for b in secs:
                        f.write(json.dumps({"type": "second", **b}) + "\n")
                    for p in polls:
                        f.write(json.dumps({"type": "poll", **p}) + "\n")
                    for e in events:
                        f.write(json.dumps({"type": "event", **e}) + "\n")
                if name == "step" and rnd == 1:
                    step_runs[pol] = (prof["phases"], secs)
                print("   first-up %s s, capacity %s s, under %s%%, replica-s %s, actions %s, failed %d/%d, "
                      "p99 %s ms, decision->ready %s, sched lag p99 %s ms, conns %d (waits %d), sent %d/%d"
                      % (s["first_up_s"], s["to_capacity_s"], s["under_pct"], s["replica_seconds"],
                         s["scaling_actions"], s["failed"], s["requests"], s["p99_ms"], s["decision_to_ready_s"],
                         s["sched_lag_p99_ms"], s["conn_peak"], s["conn_waits"], s["sent_total"],
                         s["offered_total"]), file=sys.stderr, flush=True)
                time.sleep(2)
    env["loadavg_end"] = loadavg()
    with open(os.path.join(RAW_DIR, "autoscale-summary%s.json" % args.tag), "w") as f:
        json.dump({"env": env, "runs": summaries}, f, indent=1)
    if step_runs and not args.no_plot:
        order = {p: step_runs[p] for p in POLICIES if p in step_runs}
        svg_plot(order, SVG_PATH)
        print("plot: %s" % SVG_PATH, file=sys.stderr)
    print(table(summaries))
    print("\nload average: start %s, end %s" % (env["loadavg_start"], env["loadavg_end"]))


if __name__ == "__main__":
    main()

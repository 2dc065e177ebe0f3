#!/usr/bin/env python3
"""Measure the Black Friday pipeline on this machine: the figures in README.md.

    python3 examples/black-friday/bench.py [--shoal PATH] [throughput] [lag] [kill]

Each experiment runs `shoal up` on a copy of shoal.yaml (in a temporary folder, with the
changes it names), drives it with `shoal load`, reads Redis directly, and stops shoal (by
the pid it started) at the end. The stack's ports (8000, 8080, 6391) must be free.

- throughput: fixed 1, 2, 4 and 8 aggregators drain the same N sales (queued while at 0
  replicas): sales/s each, from the first sale counted to the last.
- lag: 200 users (closed model) for 60 s, with INGEST_MS=1000 (each sale takes 1 s to
  accept, so 200 users send about 190 sales/s: more than one aggregator takes, less than
  eight), aggregators fixed at 1 (autoscaling off) then autoscaled 1-8 (on): the largest
  lag in messages and seconds, replicas, time to drain after the load.
- kill: the autoscaled run again, SIGKILLing one aggregator (pid from `shoal status --json`)
  after 20 s and another after 40 s: every accepted sale counted once.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
GATEWAY = "127.0.0.1:8000"
ADMIN = "http://127.0.0.1:8080"
REDIS_URL = "redis://127.0.0.1:6391"
# The load: three products by URL weight, one body (shoal load sends one body).
BODY = '{"amount": 12.5}'
URLS = [
    f"http://{GATEWAY}/sales?product=tv@5",
    f"http://{GATEWAY}/sales?product=laptop@3",
    f"http://{GATEWAY}/sales?product=phone@2",
]


def stack_file(fixed_replicas=None, ingest_ms=None):
    """shoal.yaml with `workdir` pointing here, optionally without the aggregator's
    autoscale (a fixed count instead) and with INGEST_MS for the ingest API."""
    text = open(os.path.join(HERE, "shoal.yaml")).read()
    text = text.replace("workdir: .", f"workdir: {HERE}")
    if fixed_replicas is not None:
        text, n = re.subn(r"    autoscale:\n(?:      .*\n)+", f"    replicas: {fixed_replicas}\n", text)
        assert n == 1, "the aggregator's autoscale block"
    if ingest_ms is not None:
        old = 'env: { REDIS_URL: "redis://127.0.0.1:6391" }'
        assert text.count(old) == 1, "the ingest API's env"
        text = text.replace(old, f'env: {{ REDIS_URL: "redis://127.0.0.1:6391", INGEST_MS: "{ingest_ms}" }}')
    return text


class Stack:
    """`shoal up` on a stack file in a fresh folder; stopped (SIGTERM, then SIGKILL of its
    process group) on exit."""

    def __init__(self, shoal, text):
        self.shoal, self.text = shoal, text

    def __enter__(self):
        for port in (8000, 8080, 6391):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    sys.exit(f"127.0.0.1:{port} is taken: stop what listens there first")
        self.dir = tempfile.mkdtemp(prefix="black-friday-")
        path = os.path.join(self.dir, "shoal.yaml")
        open(path, "w").write(self.text)
        self.log = open(os.path.join(self.dir, "up.log"), "w")
        self.proc = subprocess.Popen(
            [self.shoal, "up", "--quiet", "-f", path], cwd=self.dir,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.db = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5)
        try:
            wait("the ingest API to be ready", 30, lambda: self.proc.poll() is None and ready("ingest") == 2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is not None:
            print(open(os.path.join(self.dir, "up.log")).read()[-2000:], file=sys.stderr)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, *args):
        return subprocess.run([self.shoal, *args], cwd=self.dir, capture_output=True, text=True, check=True).stdout

    def load(self, *args):
        """shoal load against the three product URLs; its JSON report."""
        out = self.run("load", "--json", "--no-progress", "-m", "POST", "-H", "content-type: application/json",
                       "--body", BODY, *args, *URLS)
        return json.loads(out)

    def scale(self, n):
        self.run("scale", "aggregator", str(n))

    def counters(self):
        p = self.db.pipeline(transaction=False)
        for key in ("accepted", "processed", "duplicates"):
            p.get(f"sales:{key}")
        return [int(v or 0) for v in p.execute()]

    def lag(self):
        """(messages not yet delivered to a consumer, pending, age in s of the oldest
        message not yet delivered)."""
        group = next((g for g in self.db.xinfo_groups("sales") if g["name"] == "aggregators"), None)
        if group is None:
            return 0, 0, 0.0
        nxt = self.db.xrange("sales", min="(" + group["last-delivered-id"], count=1)
        age = max(0.0, time.time() - int(nxt[0][0].split("-")[0]) / 1000) if nxt else 0.0
        return group["lag"] or 0, group["pending"], age


def admin(path):
    with urllib.request.urlopen(ADMIN + path, timeout=2) as r:
        return json.load(r)


def ready(service):
    try:
        return admin(f"/api/v1/services/{service}")["ready"]
    except OSError:
        return None


def replicas(service):
    """Replicas in any state (starting, ready, stopping)."""
    try:
        return len(admin(f"/api/v1/services/{service}")["replicas"])
    except OSError:
        return None


def wait(what, timeout, probe, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(every)
    sys.exit(f"timed out after {timeout}s waiting for {what}")


def throughput(shoal, n=3000, counts=(1, 2, 4, 8)):
    print(f"## throughput: {n} sales queued, then drained by a fixed number of aggregators (WORK_MS=20)")
    print("| aggregators | drained in (s) | sales/s | × one |")
    print("|---|---|---|---|")
    one = None
    with Stack(shoal, stack_file(fixed_replicas=0)) as s:
        for k in counts:
            s.scale(0)
            wait("no aggregator running", 30, lambda: replicas("aggregator") == 0)
            report = s.load("-n", str(n), "-c", "50")
            assert report["requests"]["ok"] == n, report["requests"]
            accepted, before, _ = s.counters()
            assert accepted == before + n, (accepted, before)
            s.scale(k)
            first, started = None, time.monotonic()
            while True:
                _, processed, _ = s.counters()
                now = time.monotonic()
                if first is None and processed > before:
                    first, first_count = now, processed
                if processed >= before + n:
                    break
                if now - started > 600:
                    sys.exit(f"not drained after 600 s: {s.counters()}, lag {s.lag()}, ready {ready('aggregator')}")
                time.sleep(0.02)
            # From the first sale counted to the last (replica start-up left out).
            rate = (processed - first_count) / (now - first)
            one = one or rate
            print(f"| {k} | {now - first:.1f} | {rate:.1f} | {rate / one:.2f} |", flush=True)


def run_under_load(s, seconds, kills=()):
    """200 users for `seconds`; sample every 0.5 s until the backlog is drained. SIGKILL an
    aggregator replica at each time in `kills`. Returns (load report, samples, killed pids,
    seconds from the end of the load to drained)."""
    result = {}
    loader = threading.Thread(target=lambda: result.update(s.load("-c", "200", "-d", f"{seconds}s")))
    start = time.monotonic()
    loader.start()
    samples, killed, kills, drained_at = [], [], list(kills), None
    while True:
        t = time.monotonic() - start
        lag, pending, age = s.lag()
        accepted, processed, duplicates = s.counters()
        replicas = ready("aggregator") or 0
        samples.append(dict(t=t, lag=lag, pending=pending, age=age, accepted=accepted,
                            processed=processed, replicas=replicas))
        if kills and t >= kills[0]:
            kills.pop(0)
            status = json.loads(s.run("status", "--json"))
            workers = [r for svc in status if svc["name"] == "aggregator"
                       for r in svc["replicas"] if r["state"] == "ready" and r["pid"]]
            victim = workers[-1]
            os.kill(victim["pid"], signal.SIGKILL)
            killed.append((round(t, 1), f"aggregator/{victim['index']}", victim["pid"]))
        if not loader.is_alive():
            if drained_at is None and lag == 0 and pending == 0 and processed + duplicates >= accepted:
                drained_at = time.monotonic() - start
                break
        if t > seconds + 900:
            sys.exit("not drained 15 minutes after the load")
        time.sleep(0.5)
    loader.join()
    return result, samples, killed, drained_at - seconds


def summary(report, samples, drain):
    load_end = max(x["t"] for x in samples if x["t"] <= report["elapsed_secs"] + 0.5)
    during = [x for x in samples if x["t"] <= load_end]
    replica_seconds = sum(x["replicas"] * 0.5 for x in samples)
    return dict(
        ok=report["requests"]["ok"],
        max_lag=max(x["lag"] for x in samples),
        max_age=max(x["age"] for x in samples),
        lag_at_end=during[-1]["lag"],
        max_replicas=max(x["replicas"] for x in samples),
        mean_replicas=sum(x["replicas"] for x in during) / len(during),
        drain=drain,
        replica_seconds=replica_seconds,
    )


def lag(shoal, seconds=60):
    print(f"## lag: 200 users for {seconds}s, INGEST_MS=1000, WORK_MS=20")
    print("| aggregators | sales accepted | sales/s | max lag (messages) | max lag (s) | lag when the load stops | replicas (max, mean) | drained after the load (s) | replica-seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, text in (("fixed 1 (autoscaling off)", stack_file(fixed_replicas=1, ingest_ms=1000)),
                       ("autoscaled 1-8 (on)", stack_file(ingest_ms=1000))):
        with Stack(shoal, text) as s:
            wait("an aggregator", 30, lambda: ready("aggregator") == 1)
            report, samples, _, drain = run_under_load(s, seconds)
            m = summary(report, samples, drain)
            rate = m["ok"] / report["elapsed_secs"]
            print(f"| {name} | {m['ok']} | {rate:.0f} | {m['max_lag']} | {m['max_age']:.1f} | {m['lag_at_end']} | "
                  f"{m['max_replicas']}, {m['mean_replicas']:.1f} | {m['drain']:.1f} | {m['replica_seconds']:.0f} |", flush=True)
            timeline = [f"{x['t']:.0f}s:{x['replicas']}r/{x['lag']}" for x in samples[::10]]
            print("  timeline (t: replicas/lag): " + " ".join(timeline), flush=True)


def kill(shoal, seconds=60):
    print(f"## kill: 200 users for {seconds}s, autoscaled, one aggregator SIGKILLed at 20 s and one at 40 s")
    with Stack(shoal, stack_file(ingest_ms=1000)) as s:
        wait("an aggregator", 30, lambda: ready("aggregator") == 1)
        report, samples, killed, drain = run_under_load(s, seconds, kills=(20, 40))
        accepted, processed, duplicates = s.counters()
        counts = {p: int(n) for p, n in s.db.hgetall("sales:count").items()}
        cents = {p: int(c) for p, c in s.db.hgetall("sales:cents").items()}
        by_url = {u["url"].split("=")[-1]: u["requests"] for u in report["urls"]}
        events = s.run("events")
        print(f"killed: {killed}")
        print(f"load: {report['requests']['ok']} answered 202 of {report['requests']['sent']} sent; "
              f"per product {by_url}")
        print(f"redis: accepted {accepted}, counted {processed} (per product {counts}), "
              f"sum of counts {sum(counts.values())}, redeliveries skipped {duplicates}; drained {drain:.1f}s after the load")
        print(f"amounts: {sum(cents.values()) / 100:.2f} counted, {report['requests']['ok'] * 12.5:.2f} expected")
        for log in sorted(glob.glob(os.path.join(s.dir, ".shoal/logs/aggregator.*.log"))):
            for line in open(log):
                if "took back" in line or "claimed" in line:
                    print("  log: " + line.strip())
        for line in events.splitlines():
            if "aggregator/" in line and any(w in line for w in ("exited", "restarted", "claimed")):
                print("  event: " + line.strip())
        ok = (sum(counts.values()) == processed == accepted == report["requests"]["ok"]
              and counts == by_url and sum(cents.values()) == report["requests"]["ok"] * 1250)
        print("RESULT: " + ("no sale lost, none counted twice" if ok else "MISMATCH"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoal", default=shutil.which("shoal") or os.path.join(HERE, "../../target/release/shoal"))
    parser.add_argument("experiments", nargs="*", default=["throughput", "lag", "kill"])
    args = parser.parse_args()
    # Stopped by a signal: leave through the `with` blocks, which stop shoal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    for name in args.experiments:
        {"throughput": throughput, "lag": lag, "kill": kill}[name](args.shoal)


if __name__ == "__main__":
    main()

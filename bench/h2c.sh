#!/usr/bin/env bash
# HTTP/2 with prior knowledge (h2c) on both sides: gRPC's transport without TLS.
#
# usage: h2c.sh [-d SECS] [-r ROUNDS] [-k KILL_SECS] [-q RATE] [-o OUT.jsonl] [CANDIDATE ...]
# defaults: -d 10 -r 3 -k 20 -q 250, candidates: nginx-h2c haproxy-h2c shoal-h2c
#
# Replicas: the harness's nginx backends speaking h2c only (BACKEND_PROTO=h2c, ports 9011-9013).
# Per round, per candidate (interleaved, rotated each round), proxy pinned to $PROXY_CPU and
# h2load (nghttp2-client) to $LOAD_CPU:
#   throughput  h2load -c64 -m10 for SECS: GETs, 640 streams in flight over 64 connections;
#               req/s and the proxy's CPU µs per request
#   kill        POSTs (a small body: not idempotent, as gRPC calls are) at a fixed RATE per
#               connection over 2 connections (up to 8 streams in flight on each) for
#               KILL_SECS; replica r2 is SIGKILLed at 5 s and restarted at 15 s (at
#               KILL_SECS/4 and 3/4 when shorter): every request that did not get a 2xx counts
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
export BACKEND_PROTO=h2c BACKEND_PORTS="9011 9012 9013"

DUR=10 ROUNDS=3 KILL_DUR=20 RATE=250 OUT=
while getopts d:r:k:q:o: opt; do
  case $opt in
    d) DUR=$OPTARG ;; r) ROUNDS=$OPTARG ;; k) KILL_DUR=$OPTARG ;; q) RATE=$OPTARG ;; o) OUT=$OPTARG ;; *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
CANDS=("$@"); ((${#CANDS[@]})) || CANDS=(nginx-h2c haproxy-h2c shoal-h2c)
((DUR <= 60 && ROUNDS <= 10 && KILL_DUR >= 4 && KILL_DUR <= 60 && RATE <= 5000)) || { echo "bounds exceeded" >&2; exit 2; }
command -v h2load >/dev/null || { echo "h2load not found: apt-get install -y nghttp2-client" >&2; exit 2; }
mkdir -p "$BENCH_DIR/results/raw"
OUT=${OUT:-$BENCH_DIR/results/raw/h2c-$(date +%Y%m%d-%H%M%S).jsonl}
raise_nofile
CLK_TCK=$(getconf CLK_TCK)
B="$BENCH_DIR/backends/backends.sh"
KILL_AT=$((KILL_DUR < 20 ? KILL_DUR / 4 : 5)) RESTART_AT=$((KILL_DUR < 20 ? KILL_DUR * 3 / 4 : 15))
mkdir -p "$RUN_ROOT"; BODY=$RUN_ROOT/h2c-body
printf 'a small request body, as a unary gRPC call carries\n' >"$BODY"

for c in "${CANDS[@]}"; do [[ -x $(candidate_script "$c") ]] || { echo "no candidate $c" >&2; exit 2; }; done
cleanup() { for c in "${CANDS[@]}"; do cand_stop "$c" 2>/dev/null || true; done; "$B" start-one 2 >/dev/null 2>&1 || true; "$B" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$B" start

# h2load_json ARGS... -> one JSON object with h2load's totals
h2load_json() {
  taskset -c "$LOAD_CPU" h2load "$@" 2>&1 | python3 -c '
import json, re, sys
out = sys.stdin.read()
def grab(pattern, names):
    m = re.search(pattern, out)
    return {n: float(v) for n, v in zip(names, m.groups())} if m else {}
r = grab(r"finished in ([\d.]+)s, ([\d.]+) req/s", ["secs", "rps"])
r.update(grab(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
              ["total", "started", "done", "succeeded", "failed", "errored", "timeout"]))
r.update(grab(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", ["s2xx", "s3xx", "s4xx", "s5xx"]))
print(json.dumps({k: int(v) if v == int(v) else v for k, v in r.items()}))'
}

log "h2c: dur=${DUR}s rounds=$ROUNDS kill=${KILL_DUR}s (r2 down at ${KILL_AT}s, back at ${RESTART_AT}s) cands=${CANDS[*]} -> $OUT"
for ((round = 1; round <= ROUNDS; round++)); do
  for c in $(round_order "$round" "${CANDS[@]}"); do
    "$B" start
    cand_start "$c"
    url=$(cand_url "$c")
    pids=$(cand_pids "$c" | paste -sd' ' -)
    [[ -n $pids ]] && pin_all "$PROXY_CPU" $pids
    sleep 1.5   # health checks see every replica up
    taskset -c "$LOAD_CPU" h2load -c64 -m10 -D2 "$url" >/dev/null 2>&1 || true
    t0=$(cpu_ticks $pids)
    tp=$(h2load_json -c64 -m10 -D"$DUR" "$url")
    t1=$(cpu_ticks $pids)
    ( sleep "$KILL_AT"; "$B" kill 2; sleep $((RESTART_AT - KILL_AT)); "$B" start-one 2 ) >/dev/null 2>&1 &
    scenario=$!
    # A fixed rate, as bench/failover.sh: RATE req/s per connection, offsets in ms.
    python3 -c 'import sys; n, gap, url = int(sys.argv[1]), 1000 / int(sys.argv[2]), sys.argv[3]
print("\n".join(f"{i * gap:.3f}\t{url}" for i in range(n)))' $((KILL_DUR * RATE)) "$RATE" "$url" >"$RUN_ROOT/h2c-timing"
    kl=$(h2load_json -c2 -m8 -n $((KILL_DUR * RATE)) --timing-script-file="$RUN_ROOT/h2c-timing" \
           -d "$BODY" -H 'content-type: application/octet-stream')
    wait "$scenario" || true
    cand_stop "$c"
    TP=$tp KL=$kl python3 - "$c" "$round" "$DUR" "$((t1 - t0))" "$CLK_TCK" >>"$OUT" <<'PY'
import json, os, sys
c, rnd, dur, ticks, tck = sys.argv[1:]
tp = json.loads(os.environ["TP"] or "{}"); kl = json.loads(os.environ["KL"] or "{}")
done = tp.get("succeeded", 0)
print(json.dumps({
    "test": "h2c", "candidate": c, "round": int(rnd), "duration_s": int(dur),
    "rps": round(tp.get("rps", 0)),
    "cpu_us_per_req": round(int(ticks) / int(tck) * 1e6 / done, 2) if done else None,
    "throughput_not_2xx": tp.get("done", 0) - tp.get("s2xx", 0),
    "kill_requests": kl.get("total", 0),
    "kill_failed": kl.get("total", 0) - kl.get("s2xx", 0),
    "kill_rps": round(kl.get("rps", 0)),
    "kill_5xx": kl.get("s5xx", 0), "kill_errored": kl.get("errored", 0) + kl.get("failed", 0),
}))
PY
    log "$c round $round: $(tail -1 "$OUT")"
  done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cands = list(dict.fromkeys(r["candidate"] for r in rows))
print("| candidate | req/s | CPU µs/req | kill: requests | kill: failed (each round) |")
print("|---|---|---|---|---|")
for c in cands:
    rs = [r for r in rows if r["candidate"] == c]
    med = lambda k: statistics.median([r[k] for r in rs if r[k] is not None] or [0])
    print(f"| {c} | {med('rps'):g} | {med('cpu_us_per_req'):g} | {med('kill_requests'):g} | "
          + ", ".join(str(r["kill_failed"]) for r in rs) + " |")
PY

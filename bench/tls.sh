#!/usr/bin/env bash
# TLS termination benchmark: the same ECDSA P-256 certificate on every candidate.
#
# usage: tls.sh [-d SECS] [-r ROUNDS] [-n HOLD_CONNS] [-o OUT.jsonl] [CANDIDATE ...]
# defaults: -d 10 -r 3 -n 1000, candidates: nginx-tls haproxy-tls shoal-tls
#
# Per round, per candidate (interleaved, rotated each round), proxy pinned to $PROXY_CPU and
# wrk to $LOAD_CPU:
#   handshakes  wrk -c32 with `Connection: close`: every request a new TLS connection and a
#               full handshake (wrk does not resume sessions): connections/s and proxy CPU
#               µs per connection
#   keep-alive  wrk -c64 over kept-alive HTTPS/1.1 connections: req/s and proxy CPU µs/req
#   memory      RSS with N TLS connections open (lib/tls_hold.py), beside the RSS before
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

DUR=10 ROUNDS=3 HOLD=1000 OUT=
while getopts d:r:n:o: opt; do
  case $opt in
    d) DUR=$OPTARG ;; r) ROUNDS=$OPTARG ;; n) HOLD=$OPTARG ;; o) OUT=$OPTARG ;; *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
CANDS=("$@"); ((${#CANDS[@]})) || CANDS=(nginx-tls haproxy-tls shoal-tls)
((DUR <= 60 && ROUNDS <= 10 && HOLD <= 5000)) || { echo "bounds exceeded" >&2; exit 2; }
mkdir -p "$BENCH_DIR/results/raw"
OUT=${OUT:-$BENCH_DIR/results/raw/tls-$(date +%Y%m%d-%H%M%S).jsonl}
raise_nofile
CLK_TCK=$(getconf CLK_TCK)

export TLS_DIR=$RUN_ROOT/tls
mkdir -p "$TLS_DIR"
if [[ ! -s $TLS_DIR/cert.pem ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>/dev/null
  cat "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" >"$TLS_DIR/combined.pem"
fi

for c in "${CANDS[@]}"; do [[ -x $(candidate_script "$c") ]] || { echo "no candidate $c" >&2; exit 2; }; done
cleanup() { for c in "${CANDS[@]}"; do cand_stop "$c" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$BENCH_DIR/backends/backends.sh" start

# wrk_run CONNS EXTRA... -> wrk's JSON line; the proxy's CPU ticks during it into $RUN_ROOT/ticks
wrk_run() {
  local conns=$1; shift
  local t0 t1 out
  t0=$(cpu_ticks $pids)
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DUR}s" --timeout 5s "$@" \
          -s "$BENCH_DIR/lib/wrk_json.lua" "$url" 2>&1) || true
  t1=$(cpu_ticks $pids)
  echo $((t1 - t0)) >"$RUN_ROOT/ticks"
  printf '%s\n' "$out" | awk '/^WRKJSON /{sub(/^WRKJSON /,""); print}' | tail -1
}

log "tls: dur=${DUR}s rounds=$ROUNDS hold=$HOLD cands=${CANDS[*]} -> $OUT"
for ((round = 1; round <= ROUNDS; round++)); do
  for c in $(round_order "$round" "${CANDS[@]}"); do
    cand_start "$c"
    url=$(cand_url "$c")
    curl -skf -m 2 -o /dev/null "$url" || { log "$c: no answer over TLS at $url"; cand_stop "$c"; continue; }
    sleep 1
    pids=$(cand_pids "$c" | paste -sd' ' -)
    [[ -n $pids ]] && pin_all "$PROXY_CPU" $pids
    taskset -c "$LOAD_CPU" wrk -t1 -c64 -d2s "$url" >/dev/null 2>&1 || true
    rss_idle=$(rss_now_kb $pids)
    ka=$(wrk_run 64); ka_ticks=$(cat "$RUN_ROOT/ticks")
    hs=$(wrk_run 32 -H "Connection: close"); hs_ticks=$(cat "$RUN_ROOT/ticks")
    coproc HOLDER { taskset -c "$LOAD_CPU" python3 "$BENCH_DIR/lib/tls_hold.py" "$LISTEN_HOST" "$LISTEN_PORT" "$HOLD"; }
    read -r -t 120 ready held hold_failed <&"${HOLDER[0]}" || true
    rss_held=$(rss_now_kb $pids)
    exec {HOLDER[1]}>&-
    wait "$HOLDER_PID" 2>/dev/null || true
    cand_stop "$c"
    KA=$ka HS=$hs python3 - "$c" "$round" "$DUR" "$ka_ticks" "$hs_ticks" "$CLK_TCK" \
        "$rss_idle" "$rss_held" "${held:-0}" "${hold_failed:-0}" >>"$OUT" <<'PY'
import json, os, sys
c, rnd, dur, ka_t, hs_t, tck, idle, held_rss, held, failed = sys.argv[1:]
ka = json.loads(os.environ["KA"] or "{}"); hs = json.loads(os.environ["HS"] or "{}")
def per(ticks, w):
    n = w.get("requests", 0)
    return round(int(ticks) / int(tck) * 1e6 / n, 2) if n else None
print(json.dumps({
    "test": "tls", "candidate": c, "round": int(rnd), "duration_s": int(dur),
    "keepalive_rps": round(ka.get("requests", 0) / float(dur)),
    "keepalive_cpu_us_per_req": per(ka_t, ka),
    "keepalive_errors": sum(v for k, v in ka.items() if k.startswith("err_")),
    "handshakes_per_s": round(hs.get("requests", 0) / float(dur)),
    "handshake_cpu_us_per_conn": per(hs_t, hs),
    "handshake_errors": sum(v for k, v in hs.items() if k.startswith("err_")),
    "rss_idle_kb": int(idle), "rss_held_kb": int(held_rss), "held_conns": int(held),
    "hold_failed": int(failed),
}))
PY
    log "$c round $round: $(tail -1 "$OUT")"
  done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cands = list(dict.fromkeys(r["candidate"] for r in rows))
keys = ["handshakes_per_s", "handshake_cpu_us_per_conn", "keepalive_rps",
        "keepalive_cpu_us_per_req", "rss_idle_kb", "rss_held_kb"]
print("| candidate | " + " | ".join(keys) + " |")
print("|---" * (len(keys) + 1) + "|")
for c in cands:
    vals = []
    for k in keys:
        xs = [r[k] for r in rows if r["candidate"] == c and r[k] is not None]
        vals.append(f"{statistics.median(xs):g}" if xs else "-")
    print(f"| {c} | " + " | ".join(vals) + " |")
PY

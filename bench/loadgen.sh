#!/usr/bin/env bash
# `shoal load` vs wrk vs oha, one generator thread each, against the same fast backend
# (one single-process nginx from backends/backends.sh): requests/s at saturation and CPU
# per request, in alternating rounds; then the peak RSS of long runs (10 million requests
# for shoal load, whose histograms keep memory flat; 1 million for oha, which keeps every
# sample).
#
# usage: bench/loadgen.sh [-r ROUNDS] [-d SECS] [-c CONNS] [-N REQUESTS] [-o out.jsonl]
#   env: SHOAL (release binary), BACKEND_CPU (0), GEN_CPU (1), PORT (19101)
# Loopback only; every run is bounded by time and count; processes stopped by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROUNDS=3 SECS=10 CONNS=50 BIG=10000000 OUT=
while getopts "r:d:c:N:o:" o; do
  case $o in
    r) ROUNDS=$OPTARG ;; d) SECS=$OPTARG ;; c) CONNS=$OPTARG ;;
    N) BIG=$OPTARG ;; o) OUT=$OPTARG ;; *) sed -n 2,12p "$0"; exit 2 ;;
  esac
done
SHOAL=${SHOAL:-${CARGO_TARGET_DIR:-$here/../target}/release/shoal}
OHA=${OHA:-$(command -v oha || echo ~/.cargo/bin/oha)}
GEN_CPU=${GEN_CPU:-1}
export BACKEND_PORTS=${PORT:-19101} LOAD_CPU=${BACKEND_CPU:-0}
export RUN_ROOT=${RUN_ROOT:-/tmp/loadgenbench}
URL="http://127.0.0.1:$BACKEND_PORTS/"
OUT=${OUT:-$RUN_ROOT/loadgen-$(date +%Y%m%d-%H%M%S).jsonl}
mkdir -p "$RUN_ROOT"
for t in "$SHOAL" wrk "$OHA" jq taskset /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 1; }
done
"$here/backends/backends.sh" start
trap '"$here/backends/backends.sh" stop' EXIT

# busy and total jiffies of CPU $1, from /proc/stat
jiffies() { awk -v c="cpu$1" '$1 == c { print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8 }' /proc/stat; }

# run TOOL KIND CMD...: time CMD pinned to GEN_CPU; prints one JSON row. `core_busy` is how
# busy the generator's core was (anything else running there shows as core_busy > the
# generator's own cpu_s/wall: this VM is shared, so read req/s with it).
run() {
  local tool=$1 kind=$2; shift 2
  local out="$RUN_ROOT/$tool.out" tm="$RUN_ROOT/$tool.time" rps b0 t0 b1 t1
  read -r b0 t0 < <(jiffies "$GEN_CPU")
  taskset -c "$GEN_CPU" /usr/bin/time -f '%e %U %S %M' -o "$tm" "$@" >"$out" 2>"$RUN_ROOT/$tool.err"
  read -r b1 t1 < <(jiffies "$GEN_CPU")
  case $tool in
    wrk) rps=$(awk '/Requests\/sec/ {print $2}' "$out") ;;
    oha) rps=$(jq '.summary.requestsPerSec' "$out") ;;
    shoal) rps=$(jq '.throughput.requests_per_sec' "$out") ;;
  esac
  read -r wall user sys rss <"$tm"
  jq -cn --arg tool "$tool" --arg kind "$kind" --argjson rps "$rps" --argjson wall "$wall" \
    --argjson user "$user" --argjson sys "$sys" --argjson rss_kb "$rss" \
    --argjson busy "$(((b1 - b0) * 100 / (t1 - t0 + 1)))" \
    '{tool:$tool, kind:$kind, rps:$rps, wall:$wall, cpu_s:($user+$sys), rss_kb:$rss_kb,
      core_busy:$busy}' | tee -a "$OUT"
}

for ((r = 1; r <= ROUNDS; r++)); do
  run wrk saturate wrk -t1 -c"$CONNS" -d"${SECS}s" "$URL"
  run oha saturate "$OHA" --worker-threads 1 -c "$CONNS" -z "${SECS}s" --no-tui --output-format json "$URL"
  run shoal saturate "$SHOAL" load -t 1 -c "$CONNS" -d "${SECS}s" --no-progress --json "$URL"
done
# Peak memory of long runs at saturation (bounded by count and by time).
run shoal rss-1m "$SHOAL" load -t 1 -c "$CONNS" -n 1000000 -d 300s --no-progress --json "$URL"
run oha rss-1m "$OHA" --worker-threads 1 -c "$CONNS" -n 1000000 --no-tui --output-format json "$URL"
run shoal rss-big "$SHOAL" load -t 1 -c "$CONNS" -n "$BIG" -d 600s --no-progress --json "$URL"

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
sat = [r for r in rows if r["kind"] == "saturate"]
med = {}
for t in ("wrk", "oha", "shoal"):
    rs = [r for r in sat if r["tool"] == t]
    if not rs:
        continue
    med[t] = dict(rps=statistics.median(r["rps"] for r in rs),
                  us=statistics.median(r["cpu_s"] / (r["rps"] * r["wall"]) * 1e6 for r in rs),
                  own=statistics.median(100 * r["cpu_s"] / r["wall"] for r in rs),
                  busy=statistics.median(r.get("core_busy", 0) for r in rs),
                  rss=statistics.median(r["rss_kb"] for r in rs) / 1024)
print("| tool | req/s (median) | vs wrk | CPU µs/request | vs wrk | own CPU % | core busy % | peak RSS |")
print("|---|---|---|---|---|---|---|---|")
for t, m in med.items():
    print(f"| {t} | {m['rps']:,.0f} | {m['rps']/med['wrk']['rps']:.2f} | {m['us']:.2f} | "
          f"{m['us']/med['wrk']['us']:.2f} | {m['own']:.0f} | {m['busy']:.0f} | {m['rss']:.1f} MiB |")
print()
for r in rows:
    if r["kind"] != "saturate":
        n = round(r["rps"] * r["wall"])
        print(f"- {r['tool']} {r['kind']}: ~{n:,} requests in {r['wall']:.0f} s, "
              f"peak RSS {r['rss_kb']/1024:.1f} MiB")
EOF
echo "raw rows: $OUT"

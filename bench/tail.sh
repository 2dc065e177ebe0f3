#!/usr/bin/env bash
# Where a fixed-rate tail comes from: one round of latency.sh's load against one candidate,
# with every request recorded (oha --db-url: scheduled start and end of each) and the
# proxy's CPU traced at the same time (perf: sched_switch / sched_wakeup and 4 kHz on-CPU
# samples with call stacks, all on CLOCK_MONOTONIC). lib/tail_timeline.py then lines the
# slow requests up with what ran on the proxy's core at that moment: the proxy itself (and
# in which code: request path, health checks, autoscaler, admin, metrics, timers, allocator),
# another process (scheduling delay), or nothing (the delay was not on this core).
#
# usage: tail.sh [-q RATE] [-c CONNS] [-d SECS] [-t SLOW_MS] CANDIDATE [OUT_DIR]
# defaults: -q 5000 -c 64 -d 10 -t 1; OUT_DIR results/raw/tail-CANDIDATE-TIME
# needs: oha, perf (root, or perf_event_paranoid <= 0 for the sched tracepoints)
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

RATE=5000 CONNS=64 DUR=10 SLOW=1
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
while getopts q:c:d:t: opt; do
  case $opt in
    q) RATE=$OPTARG ;; c) CONNS=$OPTARG ;; d) DUR=$OPTARG ;; t) SLOW=$OPTARG ;; *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
c=${1:?usage: tail.sh [-q RATE] [-c CONNS] [-d SECS] [-t SLOW_MS] CANDIDATE [OUT_DIR]}
out=${2:-$BENCH_DIR/results/raw/tail-$c-$(date +%Y%m%d-%H%M%S)}
((DUR <= 60 && RATE <= 100000)) || { echo "bounds exceeded" >&2; exit 2; }
[[ -x $OHA ]] || { echo "oha not found (cargo install oha --locked)" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf not found (apt-get install linux-perf)" >&2; exit 2; }
mkdir -p "$out"
raise_nofile
trap 'cand_stop "$c" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
"$BENCH_DIR/backends/backends.sh" start

oha_run() { # secs url [extra args]
  local secs=$1 url=$2; shift 2
  taskset -c "$LOAD_CPU" "$OHA" -z "${secs}s" -q "$RATE" -c "$CONNS" --latency-correction -w \
    --no-tui --worker-threads 1 -t 5s "$@" "$url"
}
monotonic() { python3 -c 'import time; print(time.clock_gettime(time.CLOCK_MONOTONIC))'; }

cand_start "$c"; url=$(cand_url "$c")
sleep 1
oha_run 2 "$url" >/dev/null 2>&1 || true
pids=$(cand_pids "$c" | paste -sd' ' -)
[[ -n $pids ]] && pin_all "$PROXY_CPU" $pids
echo "$pids" >"$out/pids"
log "tail: $c rate=$RATE conns=$CONNS dur=${DUR}s -> $out"
perf record -q -k mono -o "$out/perf.data" -e sched:sched_switch -e sched:sched_wakeup \
  -e cpu-clock -c 250000 -g -C "$PROXY_CPU" -- sleep $((DUR + 2)) >/dev/null 2>"$out/perf.err" &
perfpid=$!
sleep 0.5
monotonic >"$out/t0"
rm -f "$out/req.db"
oha_run "$DUR" "$url" --output-format json --db-url "$out/req.db" >"$out/oha.json" 2>/dev/null || true
wait "$perfpid" || true
cand_stop "$c"
python3 "$BENCH_DIR/lib/tail_timeline.py" --slow-ms "$SLOW" "$out"

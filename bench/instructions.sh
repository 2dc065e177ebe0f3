#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: repeatable on a
# shared, noisy machine where CPU time is not (kernel time is not counted).
#
# usage: instructions.sh [-n REQUESTS] [nginx] [shoal[=BINARY] ...]
# defaults: -n 10000, candidates: nginx shoal (target/release/shoal)
#
# Each candidate runs under `valgrind --tool=callgrind` in front of the harness's three
# backends, with the config throughput.sh renders (run it once first, or `run_all.sh -q`).
# It serves 2000 requests in one run and 2000+N in another (`shoal load -c 8`); the
# difference of the two totals over N leaves start-up and shutdown out. Loopback only.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
N=10000
while getopts n: opt; do case $opt in n) N=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
((N > 0 && N <= 1000000)) || { echo "-n: 1..1000000" >&2; exit 2; }
CANDS=("$@"); ((${#CANDS[@]})) || CANDS=(nginx shoal)
LOAD=${SHOAL_BIN:-$BENCH_DIR/../target/release/shoal}
"$BENCH_DIR/backends/backends.sh" start

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# total_ir KIND BINARY REQUESTS -> callgrind's instruction total for that many requests
total_ir() {
  local kind=$1 bin=$2 n=$3 port dir pid
  port=$(free_port); dir=$RUN_ROOT/instructions/$kind-$n; rm -rf "$dir"; mkdir -p "$dir"
  case $kind in
    nginx)
      sed "s#127.0.0.1:$LISTEN_PORT#127.0.0.1:$port#; s#^daemon off;#daemon off;\nmaster_process off;#" \
        "$RUN_ROOT/cand-nginx/nginx.conf" >"$dir/conf"
      valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" nginx -c "$dir/conf" >"$dir/log" 2>&1 & ;;
    *)
      sed "s#127.0.0.1:$LISTEN_PORT#127.0.0.1:$port#" "$RUN_ROOT/cand-shoal/shoal.yaml" >"$dir/conf"
      valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" up --quiet -f "$dir/conf" \
        --state-dir "$dir/state" >"$dir/log" 2>&1 & ;;
  esac
  pid=$!
  wait_port 127.0.0.1 "$port" 60 || { echo "$kind never listened on $port" >&2; kill "$pid"; return 1; }
  "$LOAD" load -c 8 -n "$n" -d 300s --no-progress --json "http://127.0.0.1:$port/" >"$dir/load.json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d['requests']['ok'] != int(sys.argv[2]))" \
    "$dir/load.json" "$n" || { echo "$kind: not every request got a 2xx ($dir/load.json)" >&2; kill "$pid"; return 1; }
  if [[ $kind == nginx ]]; then kill -QUIT "$pid"; else kill -TERM "$pid"; fi
  wait "$pid" || true
  awk '/^(summary|totals):/{print $2; exit}' "$dir/cg.out"
}

for c in "${CANDS[@]}"; do
  kind=${c%%=*}; bin=${c#*=}; [[ $bin == "$c" ]] && bin=$LOAD
  a=$(total_ir "$kind" "$bin" 2000); b=$(total_ir "$kind" "$bin" $((2000 + N)))
  echo "$c: $(( (b - a) / N )) instructions per request (totals $a for 2000, $b for $((2000 + N)))"
done

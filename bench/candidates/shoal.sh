#!/usr/bin/env bash
# Candidate: shoal's gateway, one worker thread (gateway.workers: 1), static servers,
# round robin, upstream keep-alive pool of 1024 per endpoint, connect timeout 1 s, active
# HTTP health checks on $HEALTH_PATH, and shoal's default failover settings (passive
# ejection, retries, per-try hedging with the automatic timeout).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
: "${CAND_RUNDIR:=$RUN_ROOT/cand-$(basename "$0" .sh)}"; mkdir -p "$CAND_RUNDIR"
# SHOAL_TMPL picks another stack template (the variants below use it).
# The binary under test: SHOAL_BIN, else the workspace's release build.
BIN=${SHOAL_BIN:-$BENCH_DIR/../target/release/shoal}
case ${1:-} in
  start)
    [[ -x $BIN ]] || { echo "no shoal binary at $BIN (cargo build --release, or set SHOAL_BIN)" >&2; exit 2; }
    render "${SHOAL_TMPL:-$BENCH_DIR/candidates/shoal.yaml.tmpl}" "$CAND_RUNDIR/shoal.yaml"
    raise_nofile
    "$BIN" check -f "$CAND_RUNDIR/shoal.yaml" >/dev/null
    setsid taskset -c "$PROXY_CPU" env RUST_LOG=warn,rustls=error "$BIN" up --quiet -f "$CAND_RUNDIR/shoal.yaml" \
      --state-dir "$CAND_RUNDIR/state" </dev/null >"$CAND_RUNDIR/stdout.log" 2>&1 &
    echo $! >"$CAND_RUNDIR/pid" ;;
  stop) stop_pidfile ;;
  version) "$BIN" --version | awk '{print $2}' ;;
  *) echo "usage: $0 start|stop|version" >&2; exit 2 ;;
esac

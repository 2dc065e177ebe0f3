#!/usr/bin/env bash
# Candidate: HAProxy behind TLS (candidates/haproxy-tls.cfg.tmpl; see bench/tls.sh).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
: "${CAND_RUNDIR:=$RUN_ROOT/cand-$(basename "$0" .sh)}"; mkdir -p "$CAND_RUNDIR"
case ${1:-} in
  start)
    render "$BENCH_DIR/candidates/haproxy-tls.cfg.tmpl" "$CAND_RUNDIR/haproxy.cfg"
    raise_nofile
    haproxy -c -q -f "$CAND_RUNDIR/haproxy.cfg"
    setsid taskset -c "$PROXY_CPU" haproxy -db -f "$CAND_RUNDIR/haproxy.cfg" \
      </dev/null >"$CAND_RUNDIR/stdout.log" 2>&1 &
    echo $! >"$CAND_RUNDIR/pid" ;;
  stop) stop_pidfile ;;
  url) echo "https://$LISTEN_HOST:$LISTEN_PORT/" ;;
  version) haproxy -v | head -1 | awk '{print $3}' ;;
  *) echo "usage: $0 start|stop|url|version" >&2; exit 2 ;;
esac

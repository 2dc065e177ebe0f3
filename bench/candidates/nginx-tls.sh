#!/usr/bin/env bash
# Candidate: nginx behind TLS (candidates/nginx-tls.conf.tmpl; see bench/tls.sh).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
: "${CAND_RUNDIR:=$RUN_ROOT/cand-$(basename "$0" .sh)}"; mkdir -p "$CAND_RUNDIR/tmp"
case ${1:-} in
  start)
    render "$BENCH_DIR/candidates/nginx-tls.conf.tmpl" "$CAND_RUNDIR/nginx.conf"
    raise_nofile
    setsid taskset -c "$PROXY_CPU" nginx -c "$CAND_RUNDIR/nginx.conf" -p "$CAND_RUNDIR" \
      </dev/null >"$CAND_RUNDIR/stdout.log" 2>&1 &
    echo $! >"$CAND_RUNDIR/pid" ;;
  stop) stop_pidfile ;;
  url) echo "https://$LISTEN_HOST:$LISTEN_PORT/" ;;
  version) nginx -v 2>&1 | sed 's/.*version: //' ;;
  *) echo "usage: $0 start|stop|url|version" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Candidate: HAProxy speaking h2c on both sides (candidates/haproxy-h2c.cfg.tmpl; see bench/h2c.sh).
export HAPROXY_TMPL="$(dirname "$0")/haproxy-h2c.cfg.tmpl" CAND_SCHEME=http
case ${1:-} in
  url) exec "$(dirname "$0")/haproxy.sh" url ;;
  *) exec "$(dirname "$0")/haproxy.sh" "$@" ;;
esac

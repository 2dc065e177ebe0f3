#!/usr/bin/env bash
# Candidate: HAProxy behind TLS (candidates/haproxy-tls.cfg.tmpl; see bench/tls.sh).
export HAPROXY_TMPL="$(dirname "$0")/haproxy-tls.cfg.tmpl" CAND_SCHEME=https
case ${1:-} in
  url) exec "$(dirname "$0")/haproxy.sh" url ;;
  *) exec "$(dirname "$0")/haproxy.sh" "$@" ;;
esac

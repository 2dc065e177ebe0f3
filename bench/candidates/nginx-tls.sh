#!/usr/bin/env bash
# Candidate: nginx behind TLS (candidates/nginx-tls.conf.tmpl; see bench/tls.sh).
export NGINX_TMPL="$(dirname "$0")/nginx-tls.conf.tmpl" CAND_SCHEME=https
case ${1:-} in
  url) exec "$(dirname "$0")/nginx.sh" url ;;
  *) exec "$(dirname "$0")/nginx.sh" "$@" ;;
esac

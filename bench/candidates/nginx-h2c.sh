#!/usr/bin/env bash
# Candidate: nginx speaking h2c on both sides (candidates/nginx-h2c.conf.tmpl; see bench/h2c.sh).
export NGINX_TMPL="$(dirname "$0")/nginx-h2c.conf.tmpl" CAND_SCHEME=http
case ${1:-} in
  url) exec "$(dirname "$0")/nginx.sh" url ;;
  *) exec "$(dirname "$0")/nginx.sh" "$@" ;;
esac

#!/usr/bin/env bash
# Candidate: shoal.sh with candidates/shoal-tls.yaml.tmpl (HTTPS; see bench/tls.sh).
export SHOAL_TMPL="$(dirname "$0")/shoal-tls.yaml.tmpl"
case ${1:-} in
  url) echo "https://${LISTEN_HOST:-127.0.0.1}:${LISTEN_PORT:-8000}/" ;;
  *) exec "$(dirname "$0")/shoal.sh" "$@" ;;
esac

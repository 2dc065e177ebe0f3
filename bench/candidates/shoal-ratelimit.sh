#!/usr/bin/env bash
# Candidate: shoal.sh with candidates/shoal-ratelimit.yaml.tmpl (a rate_limit middleware that
# admits everything: its cost per request).
export SHOAL_TMPL="$(dirname "$0")/shoal-ratelimit.yaml.tmpl"
exec "$(dirname "$0")/shoal.sh" "$@"

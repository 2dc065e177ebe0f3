#!/usr/bin/env bash
# Candidate: shoal.sh with candidates/shoal-h2c.yaml.tmpl (h2c both sides; see bench/h2c.sh).
export SHOAL_TMPL="$(dirname "$0")/shoal-h2c.yaml.tmpl"
exec "$(dirname "$0")/shoal.sh" "$@"

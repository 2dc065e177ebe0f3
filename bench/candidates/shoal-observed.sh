#!/usr/bin/env bash
# Candidate: shoal.sh with candidates/shoal-observed.yaml.tmpl (see that file).
export SHOAL_TMPL="$(dirname "$0")/shoal-observed.yaml.tmpl"
exec "$(dirname "$0")/shoal.sh" "$@"

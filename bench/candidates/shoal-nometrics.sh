#!/usr/bin/env bash
# Candidate: shoal.sh with candidates/shoal-nometrics.yaml.tmpl (see that file).
export SHOAL_TMPL="$(dirname "$0")/shoal-nometrics.yaml.tmpl"
exec "$(dirname "$0")/shoal.sh" "$@"

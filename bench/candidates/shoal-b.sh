#!/usr/bin/env bash
# Candidate: shoal.sh with another build, SHOAL_BIN_B — two builds A/B in one interleaved
# run (`SHOAL_BIN=old SHOAL_BIN_B=new bench/latency.sh -r 6 shoal shoal-b`).
[[ -n ${SHOAL_BIN_B:-} ]] || { echo "shoal-b: set SHOAL_BIN_B to the second build" >&2; exit 2; }
export SHOAL_BIN=$SHOAL_BIN_B
exec "$(dirname "$0")/shoal.sh" "$@"

#!/usr/bin/env bash
# Framing / request-smuggling probes: the same raw bytes to shoal, nginx and HAProxy.
# usage: bash bench/probes/run.sh [shoal] [nginx] [haproxy] [-- probes.py options]
# env:   SHOAL_BIN (default target/release/shoal, else target/debug/shoal)
#        PROBES_BUDGET whole-run limit in seconds (default 900)
# Writes bench/probes/results/probes.md and probes.json; see README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

proxies=() extra=()
while (($#)); do
  case $1 in
    shoal|nginx|haproxy) proxies+=("$1") ;;
    --) shift; extra=("$@"); break ;;
    *) extra+=("$1") ;;
  esac
  shift
done
((${#proxies[@]})) || proxies=(shoal nginx haproxy)

# nginx / HAProxy: install with apt only when missing (one `apt-get update` first).
missing=()
for p in "${proxies[@]}"; do
  [[ $p == shoal ]] && continue
  command -v "$p" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # the packages' own services are not wanted (and are denied by policy-rc.d in containers)
fi

if [[ " ${proxies[*]} " == *" shoal "* && -z ${SHOAL_BIN:-} ]]; then
  for b in "$root/target/release/shoal" "$root/target/debug/shoal"; do
    if [[ -x $b ]]; then export SHOAL_BIN=$b; break; fi
  done
  [[ -n ${SHOAL_BIN:-} ]] || echo "no shoal binary: cargo build -p shoal (or set SHOAL_BIN); shoal column will say so" >&2
fi
[[ -n ${SHOAL_BIN:-} ]] && echo "shoal binary: $SHOAL_BIN" >&2

budget=${PROBES_BUDGET:-900}
# probes.py stops starting probes at budget-60 s; `timeout` is the hard stop (SIGTERM lets
# probes.py stop its proxies by PID; SIGKILL 10 s later if it did not exit).
exec timeout -k 10 "$budget" python3 "$here/probes.py" --deadline "$((budget - 60))" "${proxies[@]}" "${extra[@]}"

#!/usr/bin/env bash
# The dashboard's browser test (dashboard.test.mjs): builds shoal, installs what is missing
# (Debian's chromium, node, playwright-core from npm — no browser download), and runs the
# test with node's test runner, bounded in time. The screenshot goes to target/dashboard.png.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
if [ ! -f node_modules/playwright-core/package.json ]; then
  timeout 300 npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error
fi

target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build -p shoal --quiet)

export SHOAL_BIN=${SHOAL_BIN:-$target/debug/shoal}
export CHROMIUM=${CHROMIUM:-$(command -v chromium)}
export SCREENSHOT=${SCREENSHOT:-$target/dashboard.png}
# Run in this process (not node --test's child), so that the timeout's SIGTERM reaches the
# test, which then stops the shoal it started.
timeout -k 10 180 node --test-reporter=spec dashboard.test.mjs

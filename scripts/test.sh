#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). From a clean checkout:
#   formatting, lints (warnings are errors), every test, the dashboard's browser test
#   (tests/browser/run.sh installs chromium and playwright-core if missing), and the fuzz
#   targets' build.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need beyond the Rust toolchain: python3 (tiny replica servers in the
# supervisor's tests), a C compiler (libfuzzer-sys, mimalloc) and tmux (`shoal top` runs in
# it in crates/shoal/tests/cli/top.rs). Install only if missing.
need=()
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || need+=(gcc)
command -v c++ >/dev/null || need+=(g++)
command -v tmux >/dev/null || need+=(tmux)
# Prometheus scrapes a real shoal in crates/shoal/tests/cli/prometheus.rs.
command -v prometheus >/dev/null || need+=(prometheus)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== dashboard in a browser (tests/browser: real shoal up, headless Debian chromium)"
bash tests/browser/run.sh
echo "== fuzz targets compile (cargo fuzz run needs nightly; see fuzz/Cargo.toml)"
(cd fuzz && cargo build --bins --quiet)
echo "all checks passed"

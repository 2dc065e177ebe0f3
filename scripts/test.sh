#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). From a clean checkout:
#   formatting, lints (warnings are errors), every test, the rendered Kubernetes manifests
#   against the official schemas (kubernetes-validate from PyPI, installed if missing), the
#   dashboard's browser test (tests/browser/run.sh installs chromium and playwright-core if
#   missing), and the fuzz targets' build.
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
echo "== Kubernetes manifests against the official schemas (kubernetes-validate --strict)"
# No Kubernetes API server can run on these machines, so the rendered golden files (checked
# against the render by `cargo test` above) are validated against Kubernetes' OpenAPI schemas,
# unknown fields rejected, for the oldest version the render supports (1.30: the preStop
# sleep action) and the newest the validator ships. Installed from PyPI only if missing.
if ! python3 -m kubernetes_validate --version >/dev/null 2>&1; then
  echo "installing: kubernetes-validate (PyPI)"
  python3 -m pip --version >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip
  }
  python3 -m pip install --quiet kubernetes-validate 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages kubernetes-validate
fi
k8s_golden=(crates/k8s/tests/golden/demo.yaml crates/k8s/tests/golden/full.yaml)
for version in 1.30.0 1.37.0; do
  python3 -m kubernetes_validate --strict --quiet -k "$version" "${k8s_golden[@]}"
  echo "${k8s_golden[*]}: valid for Kubernetes $version"
done
# The check can fail: a manifest with an unknown field must be rejected.
if python3 -m kubernetes_validate --strict --quiet -k 1.37.0 \
  crates/k8s/tests/invalid/unknown-field.yaml >/dev/null 2>&1; then
  echo "kubernetes-validate accepted crates/k8s/tests/invalid/unknown-field.yaml: the schema check is not checking" >&2
  exit 1
fi
echo "crates/k8s/tests/invalid/unknown-field.yaml: rejected, as it must be"
echo "== dashboard in a browser (tests/browser: real shoal up, headless Debian chromium)"
bash tests/browser/run.sh
echo "== fuzz targets compile (cargo fuzz run needs nightly; see fuzz/Cargo.toml)"
(cd fuzz && cargo build --bins --quiet)
echo "all checks passed"

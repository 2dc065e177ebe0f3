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
# Real brokers for crates/backlog's tests and the workers' end-to-end tests
# (crates/app/tests/workers.rs), which start their own on free loopback ports (not the system
# service, which they neither need nor touch): crates/test-support/src/brokers.rs.
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
# Real TLS clients against the gateway's HTTPS (crates/proxy/tests/tls.rs): curl (HTTP/2 over
# TLS, and --compressed for the compress middleware) and openssl s_client (ALPN, SNI, refused
# protocol versions).
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# A Kafka-compatible broker for the Kafka tests: tansu, from crates.io, with the
# feature its in-memory storage needs. An unoptimised build (`--debug`) takes about 4
# minutes on 2 cores instead of about 17, and serves a test's few hundred messages at once;
# it stays in ~/.cargo/bin afterwards.
if ! command -v tansu >/dev/null; then
  echo "installing: tansu (crates.io, debug build)"
  cargo install --locked --quiet --debug tansu --version 0.6.0 --features dynostore
fi
# Unused dependencies: cargo-machete (crates.io; reads the sources, needs no nightly, about a
# minute to build). cargo-udeps would need a nightly toolchain, which these machines lack.
if ! command -v cargo-machete >/dev/null; then
  echo "installing: cargo-machete (crates.io)"
  cargo install --locked --quiet cargo-machete --version 0.9.2
fi
# The Black Friday example's replicas (examples/black-friday, run end to end by
# crates/shoal/tests/cli/black_friday.rs) are Python with the redis client from PyPI.
if ! python3 -c 'import redis' 2>/dev/null; then
  echo "installing: redis (PyPI, for examples/black-friday)"
  python3 -m pip --version >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip
  }
  python3 -m pip install --quiet redis 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages redis
fi
# With this set, a broker missing from the machine fails its test instead of skipping it.
export SHOAL_REQUIRE_BROKERS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo machete (unused dependencies)"
cargo machete
echo "== cargo test"
cargo test --workspace
echo "== Kubernetes manifests against the official schemas (kubernetes-validate --strict)"
# No Kubernetes API server can run on these machines, so the rendered golden files (checked
# against the render by `cargo test` above) are validated against Kubernetes' OpenAPI schemas,
# unknown fields rejected, for the oldest version the render supports (1.30: the preStop
# sleep action) and the newest the validator ships. Installed from PyPI only if missing.
# scripts/k8s-validate.py sets aside the custom resources (Traefik's IngressRoute and
# Middleware, the Prometheus Operator's ServiceMonitor: no Kubernetes schema has them; `cargo
# test -p shoal-k8s --test crd` checks them against their CRDs) and fails on any other kind
# the schemas lack, which kubernetes-validate itself only warns about.
if ! python3 -m kubernetes_validate --version >/dev/null 2>&1; then
  echo "installing: kubernetes-validate (PyPI)"
  python3 -m pip --version >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip
  }
  python3 -m pip install --quiet kubernetes-validate 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages kubernetes-validate
fi
k8s_golden=()
for f in crates/k8s/tests/golden/*.yaml; do
  [[ $f == *.shoal.yaml ]] || k8s_golden+=("$f")
done
python3 scripts/k8s-validate.py -k 1.30.0 -k 1.37.0 "${k8s_golden[@]}"
# The check can fail: a manifest with an unknown field, and one of a kind no schema has, must
# be rejected.
for broken in unknown-field unknown-kind; do
  if python3 scripts/k8s-validate.py -k 1.37.0 \
    "crates/k8s/tests/invalid/$broken.yaml" >/dev/null 2>&1; then
    echo "scripts/k8s-validate.py accepted crates/k8s/tests/invalid/$broken.yaml: the schema check is not checking" >&2
    exit 1
  fi
  echo "crates/k8s/tests/invalid/$broken.yaml: rejected, as it must be"
done
echo "== dashboard in a browser (tests/browser: real shoal up, headless Debian chromium)"
bash tests/browser/run.sh
echo "== fuzz targets compile (cargo fuzz run needs nightly; see fuzz/Cargo.toml)"
(cd fuzz && cargo build --bins --quiet)
echo "all checks passed"

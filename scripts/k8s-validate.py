#!/usr/bin/env python3
"""Validate rendered Kubernetes manifests against the official schemas, strictly.

    python3 scripts/k8s-validate.py -k 1.30.0 -k 1.37.0 FILE...

Every object of a Kubernetes kind is checked with `kubernetes-validate --strict` (unknown
fields fail) for each version given. The custom resources `shoal k8s render` writes —
Traefik's IngressRoute and Middleware, the Prometheus Operator's ServiceMonitor — are not in
those schemas (kubernetes-validate would only warn and pass them), so they are set aside here,
by exact apiVersion and kind, and checked against their CRDs' fields by
`cargo test -p shoal-k8s --test crd`. Anything else kubernetes-validate has no schema for (a
misspelt kind, a wrong apiVersion, another custom resource) fails instead of being skipped.

Exit status 0 when every file is valid, 1 otherwise. Needs PyYAML, which kubernetes-validate
depends on.
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile

import yaml

# (apiVersion, kind) of the custom resources the render writes; crates/k8s/tests/crd.rs checks
# them. Keep in step with shoal_k8s::Kind::is_custom.
CUSTOM = {
    ("traefik.io/v1alpha1", "IngressRoute"),
    ("traefik.io/v1alpha1", "Middleware"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}

NO_SCHEMA = "Couldn't find schema"


def validate(path, versions):
    """Validate one file; print what happened; return whether it is valid."""
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    builtin = [d for d in docs if (d.get("apiVersion"), d.get("kind")) not in CUSTOM]
    custom = collections.Counter(
        d["kind"] for d in docs if (d.get("apiVersion"), d.get("kind")) in CUSTOM
    )
    ok = True
    if not builtin:
        print(f"{path}: no objects of Kubernetes' own kinds", file=sys.stderr)
        return False
    with tempfile.TemporaryDirectory() as tmp:
        only = os.path.join(tmp, os.path.basename(path))
        with open(only, "w", encoding="utf-8") as f:
            yaml.safe_dump_all(builtin, f, sort_keys=False)
        for version in versions:
            run = subprocess.run(
                [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                 "-k", version, only],
                capture_output=True, text=True, check=False,
            )
            out = (run.stdout + run.stderr).replace(only, path).strip()
            if run.returncode != 0 or NO_SCHEMA in out:
                ok = False
                print(f"{path}: INVALID for Kubernetes {version}", file=sys.stderr)
                if NO_SCHEMA in out:
                    print(f"{path}: an object of a kind Kubernetes {version} does not have "
                          "(and not one of the custom resources checked by tests/crd.rs)",
                          file=sys.stderr)
                print(out, file=sys.stderr)
            else:
                print(f"{path}: {len(builtin)} objects valid for Kubernetes {version}")
    if custom and ok:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(custom.items()))
        print(f"{path}: {kinds} left to cargo test -p shoal-k8s --test crd")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", required=True,
                        dest="versions", help="Kubernetes version (repeatable)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    results = [validate(p, args.versions) for p in args.files]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

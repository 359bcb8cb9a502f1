#!/usr/bin/env bash
# Installs test dependencies and runs every test: unit tests, and as root the integration tests
# that run real containers.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then scripts/install-deps.sh; fi
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=2
# As root: podman, containerd and Docker driving runvm (installs them; private storage only).
if [ "$(id -u)" = 0 ]; then
    RUNVM_BIN=$PWD/target/debug/runvm tests/clients/run.sh
else
    echo "SKIP: client tests (podman, containerd, Docker) need root"
fi

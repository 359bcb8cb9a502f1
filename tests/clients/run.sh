#!/usr/bin/env bash
# Builds runvm and its containerd shim, sets the clients up in a private directory, runs
# tests/tests/clients.rs, shim.rs and cri.rs (containerd's CRI plugin) against them and always
# tears down. Extra arguments go to the test binary (e.g. a test-name filter).
#
#   tests/clients/run.sh [TEST_FILTER...]
#
# Env: RUNVM_CLIENTS_DIR (default /var/tmp/runvm-clients-$$; keep it short, sockets live
# there), RUNVM_BIN (default target/debug/runvm, built here), KEEP=1 to skip the teardown.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
dir=${RUNVM_CLIENTS_DIR:-/var/tmp/runvm-clients-$$}
if [[ -z ${RUNVM_BIN:-} ]]; then
	CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build -p runvm
	RUNVM_BIN=$repo/target/debug/runvm
fi
# The shim setup.sh puts on containerd's PATH (RUNVM_SHIM overrides; tests/tests/shim.rs SKIPs
# without it).
if [[ -z ${RUNVM_SHIM:-} ]]; then
	CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build -p runvm-shim
fi
[[ ${KEEP:-0} == 1 ]] || trap 'tests/clients/teardown.sh "$dir"' EXIT
tests/clients/setup.sh "$dir" "$RUNVM_BIN"
RUNVM_CLIENTS_DIR=$dir RUNVM_BIN=$RUNVM_BIN cargo test -p runvm-tests --test clients --test shim --test cri -- \
	--test-threads=2 "$@"
# Task API calls ctr cannot make (Update), straight to the shim over ttrpc.
RUNVM_CLIENTS_DIR=$dir cargo test -p runvm-shim --test ttrpc_direct -- "$@"
echo "run.sh: runtime calls: $dir/logs/argv.log"

#!/usr/bin/env bash
# Sets up a fresh machine, builds runvm, builds a busybox bundle and runs it as a container.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (containers need namespaces and cgroups)" >&2; exit 1; }
scripts/install-deps.sh
runvm=$(scripts/build-release.sh)
scripts/make-bundle.sh build/demo-bundle "$runvm" -- \
    sh -c 'echo "hello from a runvm container: hostname $(hostname), pid $$, user $(id -u)"; cat /proc/self/cgroup | head -3; ls /'
exec "$runvm" --root build/demo-state run --bundle build/demo-bundle "demo-$$"

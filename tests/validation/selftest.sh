#!/usr/bin/env bash
# Self-test of build.sh and run.sh without the upstream suite: builds the fixture tree under
# selftest/fixture (same layout as runtime-tools: validation/<name>/<name>.go, validation/util,
# cmd/runtimetest) and runs it against a real runtime (default runc). Checks PASS/FAIL/TIMEOUT
# verdicts, the summary line, --min, and that the container the "leak" fixture leaves behind
# is gone afterwards.
# usage: selftest.sh [RUNTIME_BIN]
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
runtime=${1:-runc}

if [[ $(id -u) != 0 ]]; then echo "SKIP: needs root to run containers"; exit 0; fi
if ! command -v "$runtime" >/dev/null; then echo "SKIP: runtime '$runtime' not installed"; exit 0; fi

dir=$(mktemp -d /tmp/validation-selftest.XXXXXX)
trap 'rm -rf "$dir"' EXIT
export VALIDATION_DIR=$dir

fails=0 checks=0
check() { # check DESCRIPTION COMMAND...
	checks=$((checks + 1))
	if "${@:2}"; then echo "ok - $1"; else echo "not ok - $1"; fails=$((fails + 1)); fi
}

RUNTIME_TOOLS_SRC=$here/selftest/fixture "$here/build.sh" 2>"$dir/build.log"
check "build.sh builds the fixture" test $? -eq 0
check "build.sh lists 5 tests (util excluded)" test "$(wc -l <"$dir/tests.list")" -eq 5
check "runtimetest is static" sh -c "file '$dir/runtimetest' | grep -q 'statically linked'"

out=$("$here/run.sh" --timeout 5 "$runtime" 2>"$dir/run.err")
rc=$?
printf '%s\n' "$out" | sed 's/^/  | /'
check "run.sh exits 0 without --min" test $rc -eq 0
check "lifecycle passes" grep -qx 'PASS lifecycle' <<<"$out"
check "leak passes" grep -qx 'PASS leak' <<<"$out"
check "fail_always fails with its TAP line" grep -qx 'FAIL fail_always: not ok 2 - deliberate failure' <<<"$out"
check "hang times out" grep -q '^TIMEOUT hang' <<<"$out"
check "empty TAP with exit 0 passes" grep -qx 'PASS quiet_ok (no TAP output)' <<<"$out"
check "summary line" grep -qx 'validation: 3 passed, 2 failed' <<<"$out"
check "TAP saved per test" test -s "$dir/results/lifecycle.tap"
check "leaked container removed" sh -c "! find /sys/fs/cgroup -maxdepth 2 -name fixture-leak | grep -q ."
check "no leaked container process" sh -c "! ps -eo args | grep -qx '/bin/sleep 600'"

"$here/run.sh" --timeout 5 --min 2 "$runtime" lifecycle leak >/dev/null 2>&1
check "--min met exits 0" test $? -eq 0
"$here/run.sh" --timeout 5 --min 1 "$runtime" fail_always >/dev/null 2>&1
check "--min missed exits 1" test $? -eq 1

echo "selftest: $((checks - fails)) passed, $fails failed"
((fails == 0))

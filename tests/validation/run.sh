#!/usr/bin/env bash
# Runs the OCI runtime-tools validation programs built by build.sh against one runtime binary.
#
# usage: run.sh [--min N] [--timeout SECS] [--shared-root] RUNTIME_BIN [TEST...]
#   --min N         exit 1 when fewer than N test programs pass (default: report only, exit 0)
#   --timeout SECS  per-test wall limit (default 60)
#   --shared-root   call the runtime with its own default state root (e.g. /run/runc) instead
#                   of a private --root for this run; cleanup then only touches this run's ids
# Env: VALIDATION_DIR (default <repo>/build/validation).
#
# Each test runs in its own temp dir holding runtimetest + rootfs-amd64.tar.gz (what the suite
# reads from its working dir), with TMPDIR there too so its bundles are removed with it.
# A test passes when it exits 0 with no failing "not ok" line and, if it prints a plan, as
# many results as planned (empty output with exit 0 passes only for the *_fail programs).
# Output: one line per test, then "validation: N passed, M failed" (M includes timeouts).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${VALIDATION_DIR:-$repo/build/validation}
min=
timeout_s=60
shared_root=0

die() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }

while (($#)); do
	case $1 in
	--min) min=${2:?--min needs a number}; shift 2 ;;
	--timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
	--shared-root) shared_root=1; shift ;;
	-h | --help) sed -n '2,14p' "$0"; exit 0 ;;
	--) shift; break ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
(($#)) || die "usage: run.sh [--min N] [--timeout SECS] [--shared-root] RUNTIME_BIN [TEST...]"
[[ -z $min || $min =~ ^[0-9]+$ ]] || die "--min wants a number, got '$min'"
[[ $timeout_s =~ ^[0-9]+$ ]] || die "--timeout wants seconds, got '$timeout_s'"

runtime_bin=$1; shift
if [[ $runtime_bin != */* ]]; then
	runtime_bin=$(command -v "$runtime_bin") || die "runtime '$1' not found in PATH"
fi
[[ -x $runtime_bin ]] || die "runtime '$runtime_bin' is not an executable file"
runtime_bin=$(cd "$(dirname "$runtime_bin")" && pwd)/$(basename "$runtime_bin")

[[ -d $out/bin && -x $out/runtimetest && -s $out/rootfs-amd64.tar.gz ]] ||
	die "$out is not built: run tests/validation/build.sh first"
out=$(cd "$out" && pwd)

if (($#)); then
	tests=("$@")
else
	mapfile -t tests < <(ls "$out/bin")
fi
((${#tests[@]})) || die "no test programs in $out/bin"
for t in "${tests[@]}"; do
	[[ -x $out/bin/$t ]] || die "unknown test '$t' (no $out/bin/$t)"
done

results=$out/results
mkdir -p "$results"
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/runvm-validation.XXXXXX")
# shellcheck source=cleanup.sh
source "$here/cleanup.sh"

# The suite calls "$RUNTIME <subcommand> ..." with no global flags. A private state root keeps
# this run's containers apart from anything else using the same runtime on this host.
if ((shared_root)); then
	runtime_cmd=$runtime_bin
	runtime_root=
else
	runtime_root=$run_dir/state
	mkdir -p "$runtime_root"
	runtime_cmd=$run_dir/runtime
	printf '#!/bin/sh\nexec %q --root %q "$@"\n' "$runtime_bin" "$runtime_root" >"$runtime_cmd"
	chmod +x "$runtime_cmd"
fi

cgroup_snapshot "$run_dir/cgroups.before"
ids_at_start=$(runtime_ids "$runtime_cmd")

# tap_verdict TAPFILE -> "ok", "empty" or a failure reason. Fails on a non-TODO "not ok" line
# or a plan that does not match the number of test lines. "empty" (no TAP at all) is how the
# suite's *_fail programs report success: the runtime refused the bad config, nothing printed.
tap_verdict() {
	local tap=$1 plan count fail
	fail=$(grep -E '^not ok' "$tap" | grep -v -i -E '#[[:space:]]*todo' | head -n1)
	[[ -n $fail ]] && { echo "$fail"; return; }
	plan=$(grep -m1 -o -E '^1\.\.[0-9]+' "$tap" | cut -d. -f3)
	count=$(grep -c -E '^(not )?ok( |$)' "$tap")
	if [[ -z $plan ]]; then
		((count == 0)) && { echo empty; return; }
		echo "TAP has $count results but no plan line"
		return
	fi
	((count == plan)) || { echo "plan says $plan tests, saw $count"; return; }
	echo ok
}

passed=0 failed=0
for t in "${tests[@]}"; do
	work=$run_dir/$t
	mkdir -p "$work/tmp"
	cp "$out/runtimetest" "$work/runtimetest"
	ln -s "$out/rootfs-amd64.tar.gz" "$work/rootfs-amd64.tar.gz"
	ids_before=$(runtime_ids "$runtime_cmd")
	(cd "$work" && RUNTIME=$runtime_cmd TMPDIR=$work/tmp \
		timeout -k 5 "$timeout_s" "$out/bin/$t" >"$results/$t.tap" 2>"$results/$t.stderr")
	rc=$?
	if ((rc == 124 || rc == 137)); then
		line="TIMEOUT $t (after ${timeout_s}s)"
		failed=$((failed + 1))
	else
		verdict=$(tap_verdict "$results/$t.tap")
		# Only the *_fail programs pass silently; any other program with no TAP at all did not
		# get to check anything (e.g. its container died before reporting).
		[[ $verdict == empty && $t != *_fail ]] && verdict="no TAP output"
		if [[ ($verdict == ok || $verdict == empty) && $rc == 0 ]]; then
			line="PASS $t"
			[[ $verdict == empty ]] && line+=" (no TAP output)"
			grep -q -i -E '^ok [0-9]+ *# *skip' "$results/$t.tap" && line+=" (skipped: $(grep -m1 -i -o -E '# *skip.*' "$results/$t.tap"))"
			passed=$((passed + 1))
		else
			[[ $verdict == ok || $verdict == empty ]] && verdict="exit status $rc: $(grep -m1 -v '^[[:space:]]*$' "$results/$t.stderr" | cut -c1-160)"
			line="FAIL $t: $verdict"
			failed=$((failed + 1))
		fi
	fi
	echo "$line"
	cleanup_containers "$runtime_cmd" "$ids_before"
	cleanup_mounts_under "$work"
	rm -rf "$work"
done

cleanup_containers "$runtime_cmd" "$ids_at_start"
cleanup_cgroups "$run_dir/cgroups.before"
cleanup_mounts_under "$run_dir"
rm -rf "$run_dir"

echo "validation: $passed passed, $failed failed"
if [[ -n $min ]] && ((passed < min)); then
	echo "run.sh: $passed passed, fewer than --min $min" >&2
	exit 1
fi
exit 0

#!/usr/bin/env bash
# Coverage-guided fuzzing of runvm's parsers (cargo-fuzz + libFuzzer on the nightly toolchain).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#
# Builds every target in fuzz/, runs each for SECONDS_PER_TARGET seconds starting from the
# hand-written seeds in fuzz/corpus/<target>/ (read-only) plus fuzz/work-corpus/<target>/, where
# libFuzzer keeps the new inputs it finds (git-ignored, so a local corpus grows across runs).
# Prints one summary line per target and exits non-zero if any target crashed or could not run.
# A crashing input is saved under fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
#
# Environment: FUZZ_TOOLCHAIN (default nightly), FUZZ_SANITIZER (address|none, default
# address), FUZZ_TARGETS (space-separated subset), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz_dir=$root/fuzz
toolchain=${FUZZ_TOOLCHAIN:-nightly}
sanitizer=${FUZZ_SANITIZER:-address}
logs=$fuzz_dir/target/fuzz-logs
# Per-input time limit: a slow input is a finding too (a config that stalls `create`).
per_input_timeout=10

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz: the $toolchain toolchain is missing (libFuzzer needs nightly): rustup toolchain install $toolchain" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$root"
if [[ -n ${FUZZ_TARGETS:-} ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo +"$toolchain" fuzz list)
fi
echo "fuzz: building ${targets[*]} (sanitizer $sanitizer)"
build_start=$SECONDS
cargo +"$toolchain" fuzz build --sanitizer "$sanitizer"
echo "fuzz: build took $((SECONDS - build_start)) s"

mkdir -p "$logs"
summary=()
failed=0
for target in "${targets[@]}"; do
    work=$fuzz_dir/work-corpus/$target
    seeds=$fuzz_dir/corpus/$target
    artifacts=$fuzz_dir/artifacts/$target
    log=$logs/$target.log
    mkdir -p "$work" "$seeds" "$artifacts"
    extra=()
    if [[ -f $fuzz_dir/dict/$target.dict ]]; then
        extra+=("-dict=$fuzz_dir/dict/$target.dict")
    fi
    # FUZZ_ARGS is split on purpose: it holds several libFuzzer flags.
    # shellcheck disable=SC2206
    extra+=(${FUZZ_ARGS:-})
    before=$(find "$artifacts" -type f | wc -l)

    echo "fuzz: running $target for $seconds s (log: $log)"
    status=0
    cargo +"$toolchain" fuzz run --sanitizer "$sanitizer" "$target" "$work" "$seeds" -- \
        -max_total_time="$seconds" -timeout="$per_input_timeout" -print_final_stats=1 \
        "${extra[@]}" >"$log" 2>&1 || status=$?

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    coverage=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
    corpus=$(find "$work" -type f | wc -l)
    found=$(($(find "$artifacts" -type f | wc -l) - before))
    crashes=$((status == 0 ? 0 : (found > 0 ? found : 1)))
    line="$target: ${runs:-?} runs, ${crashes} crashes, coverage ${coverage:-?} edges, corpus $corpus"
    if ((status != 0)); then
        failed=1
        line+=" (exit $status)"
        echo "fuzz: $target FAILED; end of its log:" >&2
        tail -n 40 "$log" >&2
        grep -o 'Test unit written to .*' "$log" | sed 's/^Test unit written to /fuzz: crashing input: /' >&2 || true
    fi
    summary+=("$line")
done

echo "fuzz: summary ($seconds s per target)"
for line in "${summary[@]}"; do
    echo "fuzz:   $line"
done
exit "$failed"

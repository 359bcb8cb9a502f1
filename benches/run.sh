#!/usr/bin/env bash
# runvm's benchmark suite: runvm, runc and crun (youki when installed) on the same busybox
# bundle in the same run. Writes docs/perf.md. Run as root on an otherwise idle machine.
#   benches/run.sh [RUNS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
CONCURRENCY=${2:-100}
OUT=${OUT:-docs/perf.md}
[ "$(id -u)" = 0 ] || { echo "benches/run.sh: run as root" >&2; exit 1; }
RUNVM_WITH_PEERS=1 scripts/install-deps.sh
command -v /usr/bin/time >/dev/null || apt-get -o DPkg::Lock::Timeout=300 install -y -q time
runvm=$(scripts/build-release.sh)

work=$(mktemp -d /var/tmp/runvm-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
bundle=$work/bundle
scripts/make-bundle.sh "$bundle" "$runvm" -- true >/dev/null
# crun 1.8.1 refuses newer ociVersion values; every runtime gets the same config.
python3 - "$bundle/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["ociVersion"] = "1.0.2"
json.dump(c, open(sys.argv[1], "w"))
PY
# crun refuses this host's hybrid cgroups unless the unified controllers file looks empty.
touch "$work/empty"
cat > "$work/crun" <<WRAP
#!/bin/sh
exec unshare -m --propagation private sh -c 'mount --bind $work/empty /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; exec crun "\$@"' sh "\$@"
WRAP
chmod +x "$work/crun"

declare -A RT=(
  [runvm]="$runvm --root $work/root-runvm"
  [runc]="runc --root $work/root-runc"
  [crun]="$work/crun --root $work/root-crun"
)
NAMES=(runvm runc crun)
if command -v youki >/dev/null; then RT[youki]="youki --root $work/root-youki"; NAMES+=(youki); fi

for n in "${NAMES[@]}"; do
  rt=${RT[$n]}
  # Warm-up and a check that the runtime works here at all.
  $rt run --bundle "$bundle" "warm-$n" >/dev/null
  echo "== $n: run"
  hyperfine -N -w 3 -r "$RUNS" --export-json "$work/$n-run.json" "$rt run --bundle $bundle b-$n" >/dev/null
  echo "== $n: create / start / delete"
  hyperfine -N -w 2 -r "$RUNS" --export-json "$work/$n-create.json" \
    --prepare "$rt delete --force c-$n" --cleanup "$rt delete --force c-$n" \
    "$rt create --bundle $bundle c-$n" >/dev/null
  hyperfine -N -w 2 -r "$RUNS" --export-json "$work/$n-start.json" \
    --prepare "sh -c '$rt delete --force s-$n; $rt create --bundle $bundle s-$n'" \
    --cleanup "$rt delete --force s-$n" "$rt start s-$n" >/dev/null
  hyperfine -N -w 2 -r "$RUNS" --export-json "$work/$n-delete.json" \
    --prepare "sh -c '$rt delete --force d-$n; $rt create --bundle $bundle d-$n'" \
    "$rt delete --force d-$n" >/dev/null
  echo "== $n: exec latency"
  sleeper=$work/sleeper-bundle
  [ -d "$sleeper" ] || { cp -a "$bundle" "$sleeper" && python3 - "$sleeper/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["sleep", "100000"]
json.dump(c, open(sys.argv[1], "w"))
PY
  }
  $rt run --detach --bundle "$sleeper" "e-$n" >/dev/null
  hyperfine -N -w 3 -r "$RUNS" --export-json "$work/$n-exec.json" "$rt exec e-$n true" >/dev/null
  $rt delete --force "e-$n"
  echo "== $n: peak RSS (median of 5 samples per command)"
  for cmd in run create state delete; do
    : > "$work/$n-rss-$cmd"
    for i in 1 2 3 4 5; do
      case $cmd in
        run)    args="run --bundle $bundle r-$n" ;;
        create) args="create --bundle $bundle r-$n" ;;
        state)  args="state r-$n" ;;
        delete) args="delete --force r-$n" ;;
      esac
      # create/state/delete work on one container: recreate it for every create sample.
      [ "$cmd" = create ] && $rt delete --force "r-$n" >/dev/null 2>&1
      [ "$cmd" = state ] || [ "$cmd" = delete ] && ! $rt state "r-$n" >/dev/null 2>&1 && $rt create --bundle "$bundle" "r-$n" >/dev/null
      /usr/bin/time -f %M -a -o "$work/$n-rss-$cmd" $rt $args >/dev/null
    done
  done
  $rt delete --force "r-$n" >/dev/null 2>&1 || true
  echo "== $n: $CONCURRENCY concurrent runs"
  free_before=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  ( while [ ! -e "$work/$n-done" ]; do awk '/MemAvailable/ {print $2}' /proc/meminfo; sleep 0.01; done ) > "$work/$n-mem" &
  sampler=$!
  start=$(date +%s.%N)
  seq "$CONCURRENCY" | xargs -P "$CONCURRENCY" -I{} sh -c "$rt run --bundle $bundle p-$n-{} >/dev/null 2>&1 || echo fail" > "$work/$n-fails"
  end=$(date +%s.%N)
  touch "$work/$n-done"; wait "$sampler"
  left=$($rt list 2>/dev/null | tail -n +2 | grep -c . || true)
  python3 - "$work/$n-conc" "$start" "$end" "$free_before" "$work/$n-mem" "$work/$n-fails" "$left" <<'PY'
import json, sys
out, start, end, before, mem, fails, left = sys.argv[1:]
low = min([int(l) for l in open(mem) if l.strip()] or [int(before)])
json.dump({"seconds": float(end) - float(start), "peak_kib": int(before) - low,
           "failures": sum(1 for l in open(fails) if l.strip()), "leftovers": int(left)}, open(out, "w"))
PY
done

echo "== runvm's monitor: tiny guests on /dev/kvm"
if [ -e /dev/kvm ]; then
  cargo run -q --release -p runvm-sandbox-vm --example boot_time "$RUNS" > "$work/monitor.txt" 2>&1 || echo "boot_time failed" >> "$work/monitor.txt"
else
  echo "no /dev/kvm on this host" > "$work/monitor.txt"
fi

python3 benches/report.py "$work" "$OUT" "$RUNS" "$CONCURRENCY" "${NAMES[@]}"
echo "report written to $OUT"

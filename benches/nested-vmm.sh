#!/usr/bin/env bash
# runvm's monitor against QEMU's microvm, in the nested test host (tests/nested/: KVM inside
# an L1 Linux under QEMU TCG with SVM). Inside one L1 boot, every VMM boots the same L2
# kernel + initramfs RUNS times (after one warm-up each), with the same memory and vCPUs:
#   runvm         sandbox-vm's boot_linux example (release, static)
#   qemu          qemu-system-x86_64 -M microvm (Debian's full build), as the issue names it
#   qemu-microvm  qemu-system-x86_64-microvm (Debian's microvm-only build, fewer libraries)
# Measured by benches/vmm_stamp.rs in L1: time from the fork+exec of the VMM to the L2
# /init's first console line, and peak RSS minus the guest RAM the VMM has resident.
# Writes docs/perf-vmm.md (OUT to change) and prints its table.
#   benches/nested-vmm.sh [RUNS]
# Env: RUNVM_NESTED_CACHE (default <repo>/build/nested), RUNVM_BENCH_L2_MIB (256),
# RUNVM_BENCH_L2_VCPUS (1), RUNVM_BENCH_L1_CPUS (1), RUNVM_BENCH_L1_MIB (1024),
# RUNVM_BENCH_TIMEOUT (seconds for the whole L1 run, 1200).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${RUNVM_NESTED_CACHE:-$repo/build/nested}
runs=${1:-5}
out=${OUT:-$repo/docs/perf-vmm.md}
l2_mib=${RUNVM_BENCH_L2_MIB:-256}
l2_vcpus=${RUNVM_BENCH_L2_VCPUS:-1}
l1_cpus=${RUNVM_BENCH_L1_CPUS:-1}
l1_mib=${RUNVM_BENCH_L1_MIB:-1024}
timeout_s=${RUNVM_BENCH_TIMEOUT:-1200}
l2_cmdline="console=ttyS0 reboot=k pci=off i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd quiet"
started=$(date +%s.%N)
nested_tag=nested-vmm
# shellcheck source=tests/nested/lib.sh
. "$repo/tests/nested/lib.sh"

nested_cache_init
nested_host_tools
[ -x /usr/bin/qemu-system-x86_64-microvm ] || die "qemu-system-x86_64-microvm missing (package qemu-system-x86)"
command -v python3 >/dev/null || die "python3 is needed for the report"
nested_fetch_kernel
nested_build_boot_linux release

# The timing/memory reader: std only, so plain rustc builds it static.
stamp=$cache/vmm_stamp
rustc --edition 2021 -O -C strip=symbols -C target-feature=+crt-static \
    --target x86_64-unknown-linux-gnu "$here/vmm_stamp.rs" -o "$stamp"

# --- the L2: prints runvm-L2-init-start first, then pauses 1 s after runvm-L2-sample so the
# reader can sample the VMM's memory while the guest still exists.
nested_make_l2 runvm-L2-init-ok "$cache/vmm-l2.cpio" 'echo runvm-L2-sample
/bin/busybox sleep 1'

# --- the L1: busybox, KVM modules, the L2, the reader, boot_linux and both QEMU builds.
l1=$cache/vmm-l1-root
nested_l1_base "$l1" "$cache/vmm-l2.cpio"
mkdir -p "$l1/tmp"
cp "$stamp" "$l1/bin/vmm_stamp"
cp "$boot_linux" "$l1/bin/boot_linux"

# A dynamically linked program with the libraries ldd lists, at the same paths (Debian
# ships no static qemu-system build). $1: the L1 root, $2: the program. Sets `packed_kib`
# to the size of the program and its libraries.
pack_dynamic() {
    local root=$1 program=$2 file
    packed_kib=0
    for file in "$program" $(ldd "$program" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$file")"
        cp -L "$file" "$root$file"
        packed_kib=$((packed_kib + $(du -sk "$root$file" | cut -f1)))
    done
}
pack_dynamic "$l1" /usr/bin/qemu-system-x86_64
qemu_libs_kib=$packed_kib
pack_dynamic "$l1" /usr/bin/qemu-system-x86_64-microvm
# microvm's firmware is qboot (bios-microvm.bin, a link to qboot.rom); it loads the PVH
# kernel from fw_cfg, so no option ROM is needed (x-option-roms=off).
mkdir -p "$l1/usr/share/qemu"
cp -L /usr/share/qemu/bios-microvm.bin "$l1/usr/share/qemu/bios-microvm.bin"

cat >"$l1/bench.env" <<ENV
RUNS=$runs
MIB=$l2_mib
VCPUS=$l2_vcpus
CMDLINE="$l2_cmdline"
ENV
cat >"$l1/bench.sh" <<'BENCH'
#!/bin/busybox sh
# Runs inside L1: every VMM boots the L2 RUNS+1 times (run 0 is a warm-up); the order of the
# VMMs rotates from run to run so that drift in L1 hits them alike.
. /bench.env
B=/bin/busybox
K="-kernel /l2/vmlinux -initrd /l2/initrd.cpio"
QEMU_ARGS="-M microvm,x-option-roms=off -enable-kvm -cpu host -m $MIB -smp $VCPUS -nodefaults
    -no-user-config -nographic -serial stdio -no-reboot"
one() {
    label=$1 run=$2
    shift 2
    $B rm -f /tmp/console
    /bin/vmm_stamp --label "$label" --run "$run" --mark runvm-L2-init-start \
        --sample-at runvm-L2-sample --guest-mib "$MIB" --console /tmp/console -- "$@"
    seen=$($B grep -a -o 'runvm-L2-init-ok uptime=[0-9.]* cpus=[0-9]*' /tmp/console | $B head -n 1)
    reported=$($B grep -a -o 'guest RAM resident at the end: [0-9]*' /tmp/console | $B grep -o '[0-9]*$')
    running=$($B grep -a -o 'vCPUs running after [0-9.]*' /tmp/console | $B grep -o '[0-9.]*$')
    marked=$($B grep -a -o '"runvm-L2-init-start" seen after [0-9.]*' /tmp/console | $B grep -o '[0-9.]*$')
    echo "vmm-extra label=$label run=$run ${seen#runvm-L2-init-ok } reported_guest_kib=${reported:--1}" \
        "vcpus_running_ms=${running:--1} own_mark_ms=${marked:--1}"
    steps=$($B grep -a -o 'build steps done after: .*' /tmp/console | $B head -n 1)
    [ -z "$steps" ] || echo "vmm-steps label=$label run=$run ${steps#build steps done after: }"
    [ -n "$seen" ] || { echo "vmm-console-of $label run $run:"; $B cat /tmp/console; }
}
runvm() {
    one runvm "$1" /bin/boot_linux --kernel /l2/vmlinux --initrd /l2/initrd.cpio --mem-mib "$MIB" \
        --vcpus "$VCPUS" --timeout-secs 120 --mark runvm-L2-init-start --cmdline "$CMDLINE"
}
qemu() {
    # shellcheck disable=SC2086 # the option lists are meant to split
    one qemu "$1" /usr/bin/qemu-system-x86_64 $QEMU_ARGS $K -append "$CMDLINE"
}
qemu_microvm() {
    # shellcheck disable=SC2086
    one qemu-microvm "$1" /usr/bin/qemu-system-x86_64-microvm $QEMU_ARGS $K -append "$CMDLINE"
}
i=0
while [ "$i" -le "$RUNS" ]; do
    case $((i % 3)) in
        0) runvm $i; qemu $i; qemu_microvm $i ;;
        1) qemu $i; qemu_microvm $i; runvm $i ;;
        2) qemu_microvm $i; runvm $i; qemu $i ;;
    esac
    i=$((i + 1))
done
echo "runvm-L1-bench-done uptime=$($B cut -d' ' -f1 /proc/uptime)"
BENCH
chmod 755 "$l1/bench.sh"
{
    nested_l1_init_head
    cat <<'TAIL'
/bench.sh
$B poweroff -f
TAIL
} >"$l1/init"
chmod 755 "$l1/init"
mkcpio "$l1" "$cache/vmm-l1.cpio"
log "L1 initramfs built ($(du -h "$cache/vmm-l1.cpio" | cut -f1)); booting it: $runs runs + 1 warm-up per VMM"

console=$cache/vmm-console.log
nested_boot_l1 "$cache/vmm-l1.cpio" "$console" "$timeout_s" "$l1_mib" "$l1_cpus"
grep -aq runvm-L1-bench-done "$console" || {
    tr -d '\r' <"$console" | tail -n 80 >&2
    die "the benchmark did not finish in L1 (console: $console)"
}
tr -d '\r' <"$console" | grep -a -E '^(vmm-|runvm-L1)' >"$cache/vmm-results.txt"
python3 "$here/report_vmm.py" "$cache/vmm-results.txt" "$out" "$runs" "$l2_mib" "$l2_vcpus" \
    "$l1_cpus" "$l1_wall" "$qemu_libs_kib" "$l2_cmdline"
log "report written to $out"

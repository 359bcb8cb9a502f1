#!/usr/bin/env bash
# Nested test host for runvm's KVM monitor: boots an L1 Linux under QEMU TCG (-cpu max
# emulates AMD SVM), loads kvm-amd there, and has runvm's boot_linux example boot an L2
# Linux on that /dev/kvm. Exit 0 only if the L2 reached its /init and shut down cleanly.
#
# Env: RUNVM_NESTED_CACHE (default <repo>/build/nested: kernel, images, console log and the
# cargo target dir of the static build), RUNVM_NESTED_TIMEOUT (seconds for the QEMU run,
# default 300), RUNVM_NESTED_KEEP_LOG=1 to print the whole console even on success,
# RUNVM_NESTED_L2_CMDLINE to replace the L2 kernel command line (e.g. without `quiet`),
# RUNVM_NESTED_L2_VCPUS (default 2).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${RUNVM_NESTED_CACHE:-$repo/build/nested}
timeout_s=${RUNVM_NESTED_TIMEOUT:-300}
l2_marker=runvm-L2-init-ok
started=$(date +%s.%N)
# shellcheck source=tests/nested/lib.sh
. "$here/lib.sh"

nested_cache_init

# --- 1. host tools ---------------------------------------------------------------------
nested_host_tools

# --- 2. guest kernel (one Debian 6.12 cloud kernel for L1 and L2) -----------------------
nested_fetch_kernel
[ "${1:-}" = fetch-only ] && exit 0

# --- 3. the monitor, as a static binary the L1 initramfs can run --------------------------
nested_build_boot_linux dev

# --- 4. initramfs images ------------------------------------------------------------------
nested_make_l2 "$l2_marker" "$cache/l2.cpio"

l2_vcpus=${RUNVM_NESTED_L2_VCPUS:-2}
l2_cmdline=${RUNVM_NESTED_L2_CMDLINE:-console=ttyS0 reboot=k pci=off i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd quiet}
l1=$cache/l1-root
nested_l1_base "$l1" "$cache/l2.cpio"
cp "$boot_linux" "$l1/bin/boot_linux"
{
    nested_l1_init_head
    cat <<L1INIT
/bin/boot_linux --kernel /l2/vmlinux --initrd /l2/initrd.cpio --mem-mib 256 \\
    --vcpus $l2_vcpus --timeout-secs 120 --mark $l2_marker --cmdline "$l2_cmdline"
echo "runvm-L1-monitor-status=\$? uptime=\$(up)"
\$B poweroff -f
L1INIT
} >"$l1/init"
chmod 755 "$l1/init"
mkcpio "$l1" "$cache/l1.cpio"
log "initramfs images built ($(du -h "$cache/l1.cpio" | cut -f1) L1)"

# --- 5. boot L1 under QEMU TCG and check what the L2 did ------------------------------------
console=$cache/console.log
nested_boot_l1 "$cache/l1.cpio" "$console" "$timeout_s"

status_line=$(grep -a -o 'runvm-L1-monitor-status=[0-9]* uptime=[0-9.]*' "$console" | head -n 1 || true)
ok=true
grep -aq "^$l2_marker .* cpus=$l2_vcpus" "$console" \
    || { ok=false; log "the L2 never printed $l2_marker with cpus=$l2_vcpus"; }
grep -aq "^boot_linux: ended: PowerOff" "$console" \
    || { ok=false; log "the L2 did not end with an ACPI power-off"; }
[ "${status_line#runvm-L1-monitor-status=0 }" != "$status_line" ] \
    || { ok=false; log "the monitor did not exit 0: ${status_line:-no status line}"; }
[ "$qemu_status" = 124 ] && { ok=false; log "QEMU timed out after ${timeout_s}s"; }

if ! $ok || [ "${RUNVM_NESTED_KEEP_LOG:-0}" = 1 ]; then
    echo "----- L1 console ($console) -----" >&2
    tr -d '\r' <"$console" >&2
    echo "----- end of console -----" >&2
fi
$ok || die "the L2 guest did not boot and shut down through runvm's monitor"

# Timings for the report: L1 uptime when KVM was ready, the monitor's own numbers.
grep -a -E '^(runvm-L1-ready|runvm-L1-monitor-status|boot_linux:|runvm-L2)' "$console" | tr -d '\r' >&2
log "PASS: L2 Linux booted to /init and powered off through runvm's monitor"

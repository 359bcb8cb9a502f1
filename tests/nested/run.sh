#!/usr/bin/env bash
# Nested test host for runvm's KVM monitor: boots an L1 Linux under QEMU TCG (-cpu max
# emulates AMD SVM), loads kvm-amd there, and has runvm's boot_linux example (confined, as
# by default) boot an L2 Linux on that /dev/kvm twice:
#  1. no devices (pci=off): the L2 reaches /init with every vCPU and powers off;
#  2. with devices on PCI: virtio-rng (the guest reads /dev/hwrng), virtio-vsock (a round trip
#     between L1's vsock_roundtrip and the L2's guest_vsock_echo through the device's Unix
#     socket), virtio-blk (an ext4 image the L2 switches its root to, reads a token from and
#     writes to), then powers off.
# Exit 0 only if both L2 runs did all of that and the monitor exited 0 each time.
#
# Env: RUNVM_NESTED_CACHE (default <repo>/build/nested: kernel, images, console log and the
# cargo target dir of the static build), RUNVM_NESTED_TIMEOUT (seconds for the QEMU run,
# default 300), RUNVM_NESTED_KEEP_LOG=1 to print the whole console even on success,
# RUNVM_NESTED_L2_CMDLINE to replace the L2 kernel command line (e.g. without `quiet`),
# RUNVM_NESTED_L2_VCPUS (default 2), RUNVM_NESTED_MONITOR_FLAGS (extra boot_linux flags for
# the device run, e.g. --seccomp-report to name refused calls instead of dying on the first).
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

# The device run's L2: an initramfs that loads the virtio modules, reads the hwrng, serves one
# vsock echo connection, then switches its root to the virtio-blk disk, whose /init reports
# the disk's token and a write, and powers off.
l2dev=$cache/l2dev-root
rm -rf "$l2dev" && mkdir -p "$l2dev/bin" "$l2dev/lib" "$l2dev/proc" "$l2dev/sys" "$l2dev/dev" "$l2dev/newroot"
cp /bin/busybox "$l2dev/bin/busybox"
cp "$guest_vsock_echo" "$l2dev/bin/guest_vsock_echo"
l2dev_modules="virtio_blk virtio-rng vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport"
for m in $l2dev_modules; do cp "$kdir/$m.ko" "$l2dev/lib/"; done
cat >"$l2dev/init" <<L2DEV
#!/bin/busybox sh
B=/bin/busybox
\$B mount -t proc proc /proc
\$B mount -t sysfs sys /sys
\$B mount -t devtmpfs dev /dev
for m in $l2dev_modules; do \$B insmod /lib/\$m.ko || echo "runvm-L2dev-insmod-failed \$m"; done
echo "runvm-L2dev-hwrng bytes=\$(\$B dd if=/dev/hwrng bs=16 count=1 2>/dev/null | \$B wc -c)"
/bin/guest_vsock_echo 1024
echo "runvm-L2dev-vsock-echo-status=\$?"
\$B mount -t ext4 /dev/vda /newroot || echo "runvm-L2dev-mount-failed"
\$B umount /proc /sys
exec \$B switch_root /newroot /init
L2DEV
chmod 755 "$l2dev/init"
mkcpio "$l2dev" "$cache/l2dev.cpio"

disk=$cache/disk-root
token=runvm-disk-$$-$RANDOM
rm -rf "$disk" && mkdir -p "$disk/bin" "$disk/proc" "$disk/etc"
cp /bin/busybox "$disk/bin/busybox"
echo "$token" >"$disk/etc/runvm-token"
cat >"$disk/init" <<'DISKINIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
echo "runvm-L2dev-rootfs token=$($B cat /etc/runvm-token) root=$($B awk '$2 == "/" {d=$1} END {print d}' /proc/mounts)"
echo written >/written && $B sync && echo "runvm-L2dev-rootfs-write=$($B cat /written)"
$B poweroff -f
DISKINIT
chmod 755 "$disk/init"
rm -f "$cache/rootfs.ext4"
mkfs.ext4 -q -F -E root_owner=0:0 -d "$disk" "$cache/rootfs.ext4" 16M

l2_vcpus=${RUNVM_NESTED_L2_VCPUS:-2}
l2_cmdline=${RUNVM_NESTED_L2_CMDLINE:-console=ttyS0 reboot=k pci=off i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd quiet}
l1=$cache/l1-root
nested_l1_base "$l1" "$cache/l2.cpio"
cp "$boot_linux" "$l1/bin/boot_linux"
cp "$vsock_roundtrip" "$l1/bin/vsock_roundtrip"
cp "$cache/l2dev.cpio" "$l1/l2/devices.cpio"
cp "$cache/rootfs.ext4" "$l1/l2/rootfs.ext4"
mkdir -p "$l1/run"
l2dev_cmdline=${l2_cmdline/ pci=off/}
{
    nested_l1_init_head
    cat <<L1INIT
/bin/boot_linux --kernel /l2/vmlinux --initrd /l2/initrd.cpio --mem-mib 256 \\
    --vcpus $l2_vcpus --timeout-secs 120 --mark $l2_marker --cmdline "$l2_cmdline"
echo "runvm-L1-monitor-status=\$? uptime=\$(up)"
/bin/boot_linux --kernel /l2/vmlinux --initrd /l2/devices.cpio --mem-mib 256 \\
    --vcpus $l2_vcpus --timeout-secs 150 --rng --blk /l2/rootfs.ext4 \\
    --vsock-uds /run/l2.vsock ${RUNVM_NESTED_MONITOR_FLAGS:-} --cmdline "$l2dev_cmdline" &
monitor=\$!
# Its own log, shown once the monitor is done: lines written while the guest console runs
# would land inside the guest's lines.
/bin/vsock_roundtrip /run/l2.vsock 1024 3 --timeout-secs 120 >/run/vsock.log 2>&1
echo "runvm-L1-vsock-status=\$?" >>/run/vsock.log
wait \$monitor
echo "runvm-L1-devices-monitor-status=\$? uptime=\$(up)"
\$B cat /run/vsock.log
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
# The device run.
expect() { grep -aq -- "$1" "$console" || { ok=false; log "device run: $2"; }; }
expect '^runvm-L2dev-hwrng bytes=16' "the guest did not read 16 bytes from virtio-rng"
expect '^runvm-L1-vsock-status=0' "the vsock round trip failed"
expect '^vsock_roundtrip: OK 3 lines' "vsock_roundtrip did not get its 3 lines back"
expect '^runvm-L2dev-vsock-echo-status=0' "the guest's vsock echo did not end cleanly"
expect "^runvm-L2dev-rootfs token=$token root=/dev/vda" "the guest did not switch its root to the virtio-blk disk"
expect '^runvm-L2dev-rootfs-write=written' "the guest could not write to the virtio-blk disk"
expect '^runvm-L1-devices-monitor-status=0 ' "the monitor of the device run did not exit 0"
# With RUNVM_NESTED_MONITOR_FLAGS=--seccomp-report the filters name refused calls instead of
# killing the monitor: any such call fails the test just the same.
if grep -aq 'refused syscall' "$console"; then
    ok=false; log "device run: the monitor's seccomp filters refused a call it needs"
fi
if grep -aq 'runvm-L2dev-insmod-failed\|runvm-L2dev-mount-failed' "$console"; then
    ok=false; log "device run: a module or the disk could not be loaded"
fi

if ! $ok || [ "${RUNVM_NESTED_KEEP_LOG:-0}" = 1 ]; then
    echo "----- L1 console ($console) -----" >&2
    tr -d '\r' <"$console" >&2
    echo "----- end of console -----" >&2
fi
$ok || die "the L2 guest did not boot and shut down through runvm's monitor"

# Timings for the report: L1 uptime when KVM was ready, the monitor's own numbers.
grep -a -E '^(runvm-L1-ready|runvm-L1-|boot_linux:|runvm-L2|vsock_roundtrip:)' "$console" | tr -d '\r' >&2
log "PASS: L2 Linux booted to /init and powered off through runvm's monitor, and used virtio-rng, -vsock and -blk"

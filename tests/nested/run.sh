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

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[nested %6ss] %s\n' "$(since "$started")" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

mkdir -p "$cache"
# Keep the cache (kernels, images, logs) out of git wherever it lives: a .gitignore of `*`
# ignores the directory's whole content, itself included.
[ -f "$cache/.gitignore" ] || printf '*\n' >"$cache/.gitignore"

# --- 1. host tools ---------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
command -v zstd >/dev/null || need+=(zstd)
command -v xz >/dev/null || need+=(xz-utils)
command -v file >/dev/null || need+=(file)
case "$(file -bL /bin/busybox 2>/dev/null)" in
    *"statically linked"*) ;;
    *) need+=(busybox-static) ;;
esac
if [ ${#need[@]} -gt 0 ]; then
    echo "[nested] installing ${need[*]}" >&2
    apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${need[@]}" >&2
fi
log "host tools ready"

# --- 2. guest kernel (one Debian 6.12 cloud kernel for L1 and L2) -----------------------
kdir=$cache/kernel
if [ ! -s "$kdir/vmlinux" ]; then
    rm -rf "$kdir" && mkdir -p "$kdir"
    pkg=$(apt-cache search --names-only '^linux-image-6\.12\..*-cloud-amd64-unsigned$' \
        | awk '{print $1}' | sort -V | tail -n 1)
    [ -n "$pkg" ] || die "no linux-image-6.12.*-cloud-amd64-unsigned in apt (run apt-get update)"
    log "downloading $pkg"
    (cd "$kdir" && apt-get download "$pkg" >&2)
    dpkg-deb -x "$kdir"/*.deb "$kdir/root"
    vmlinuz=$(ls "$kdir"/root/boot/vmlinuz-*)
    # bzImage: setup_sects at 0x1f1 (0 means 4), payload offset/length at 0x248/0x24c,
    # relative to the protected-mode code at (setup_sects + 1) * 512.
    u8() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
    u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
    sects=$(u8 "$vmlinuz" $((0x1f1))); [ "$sects" = 0 ] && sects=4
    off=$(( (sects + 1) * 512 + $(u32 "$vmlinuz" $((0x248))) ))
    len=$(u32 "$vmlinuz" $((0x24c)))
    # The zstd payload ends with a 4-byte decompressed-size trailer zstd does not expect.
    dd if="$vmlinuz" iflag=skip_bytes,count_bytes skip="$off" count=$((len - 4)) bs=1M status=none \
        | zstd -q -d --long=31 -o "$kdir/vmlinux"
    case "$(file -b "$kdir/vmlinux")" in
        "ELF 64-bit"*) ;;
        *) die "extracted $kdir/vmlinux is not an ELF" ;;
    esac
    modules=$(ls -d "$kdir"/root/lib/modules/*)
    for m in kernel/virt/lib/irqbypass.ko kernel/arch/x86/kvm/kvm.ko kernel/arch/x86/kvm/kvm-amd.ko; do
        xz -d -c "$modules/$m.xz" >"$kdir/$(basename "$m")"
    done
    rm -rf "$kdir/root" "$kdir"/*.deb
    log "kernel extracted to $kdir"
fi
[ "${1:-}" = fetch-only ] && exit 0

# --- 3. the monitor, as a static binary the L1 initramfs can run --------------------------
log "building the static boot_linux example"
# A target dir of its own: a `cargo test` running this script holds the lock on the
# workspace's, and the static build (its own --target) shares no artifacts with it anyway.
target_dir=$cache/target
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_DEV_STRIP=debuginfo \
    cargo build -q -p runvm-sandbox-vm --example boot_linux --target x86_64-unknown-linux-gnu \
    --target-dir "$target_dir")
boot_linux=$target_dir/x86_64-unknown-linux-gnu/debug/examples/boot_linux
case "$(file -b "$boot_linux")" in
    *"static"*) ;;
    *) die "$boot_linux is not statically linked" ;;
esac
log "boot_linux built"

# --- 4. initramfs images ------------------------------------------------------------------
# newc cpio of directory $1 into file $2, everything owned by root.
mkcpio() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"; }

l2=$cache/l2-root
rm -rf "$l2" && mkdir -p "$l2/bin" "$l2/proc"
cp /bin/busybox "$l2/bin/busybox"
cat >"$l2/init" <<L2INIT
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "$l2_marker uptime=\$(/bin/busybox cut -d' ' -f1 /proc/uptime) cpus=\$(/bin/busybox grep -c ^processor /proc/cpuinfo)"
# ACPI S5 through the monitor's sleep control register.
/bin/busybox poweroff -f
L2INIT
chmod 755 "$l2/init"
mkcpio "$l2" "$cache/l2.cpio"

l2_vcpus=${RUNVM_NESTED_L2_VCPUS:-2}
l2_cmdline=${RUNVM_NESTED_L2_CMDLINE:-console=ttyS0 reboot=k pci=off i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd quiet}
l1=$cache/l1-root
rm -rf "$l1" && mkdir -p "$l1/bin" "$l1/lib" "$l1/l2" "$l1/proc" "$l1/sys" "$l1/dev"
cp /bin/busybox "$l1/bin/busybox"
cp "$kdir/irqbypass.ko" "$kdir/kvm.ko" "$kdir/kvm-amd.ko" "$l1/lib/"
cp "$boot_linux" "$l1/bin/boot_linux"
cp "$kdir/vmlinux" "$l1/l2/vmlinux"
cp "$cache/l2.cpio" "$l1/l2/initrd.cpio"
cat >"$l1/init" <<L1INIT
#!/bin/busybox sh
B=/bin/busybox
up() { \$B cut -d' ' -f1 /proc/uptime; }
\$B mount -t proc proc /proc
\$B mount -t sysfs sys /sys
\$B mount -t devtmpfs dev /dev
for m in irqbypass kvm kvm-amd; do
    \$B insmod /lib/\$m.ko || echo "runvm-L1-insmod-failed \$m"
done
echo "runvm-L1-ready uptime=\$(up)"
/bin/boot_linux --kernel /l2/vmlinux --initrd /l2/initrd.cpio --mem-mib 256 \\
    --vcpus $l2_vcpus --timeout-secs 120 --mark $l2_marker --cmdline "$l2_cmdline"
echo "runvm-L1-monitor-status=\$? uptime=\$(up)"
\$B poweroff -f
L1INIT
chmod 755 "$l1/init"
mkcpio "$l1" "$cache/l1.cpio"
log "initramfs images built ($(du -h "$cache/l1.cpio" | cut -f1) L1)"

# --- 5. boot L1 under QEMU TCG and check what the L2 did ------------------------------------
# Under TCG on a busy host the PIT-based TSC calibration of L1 can fail (then L1 hangs):
# QEMU's TCG TSC runs at the host's rate, so tell L1 that rate.
tsc_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
l1_cmdline="console=ttyS0 panic=-1 quiet${tsc_khz:+ tsc_early_khz=$tsc_khz}"
console=$cache/console.log
l1_started=$(date +%s.%N)
set +e
timeout "$timeout_s" qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on -accel tcg \
    -cpu max -m 1024 -nographic -no-reboot -kernel "$kdir/vmlinux" -initrd "$cache/l1.cpio" \
    -append "$l1_cmdline" </dev/null >"$console" 2>&1
qemu_status=$?
set -e
l1_wall=$(since "$l1_started")
log "QEMU exited with $qemu_status after ${l1_wall}s"

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

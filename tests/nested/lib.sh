# shellcheck shell=bash
# shellcheck disable=SC2154 # repo, cache and started come from the sourcing script
# Shared pieces of runvm's nested test host (KVM inside an L1 Linux under QEMU TCG), sourced
# by tests/nested/run.sh (the boot test) and benches/nested-vmm.sh (runvm vs QEMU microvm).
# The sourcing script sets `repo`, `cache` and `started` (date +%s.%N) first, and may set
# `nested_tag` (the log prefix, default "nested").

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[%s %6ss] %s\n' "${nested_tag:-nested}" "$(since "$started")" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# Creates the cache directory, kept out of git wherever it lives: a .gitignore of `*`
# ignores the directory's whole content, itself included.
nested_cache_init() {
    mkdir -p "$cache"
    [ -f "$cache/.gitignore" ] || printf '*\n' >"$cache/.gitignore"
}

# Installs what the host side needs.
nested_host_tools() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    command -v cpio >/dev/null || need+=(cpio)
    command -v zstd >/dev/null || need+=(zstd)
    command -v xz >/dev/null || need+=(xz-utils)
    command -v file >/dev/null || need+=(file)
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    case "$(file -bL /bin/busybox 2>/dev/null)" in
        *"statically linked"*) ;;
        *) need+=(busybox-static) ;;
    esac
    if [ ${#need[@]} -gt 0 ]; then
        echo "[${nested_tag:-nested}] installing ${need[*]}" >&2
        apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${need[@]}" >&2
    fi
    log "host tools ready"
}

# Modules taken from the kernel package: KVM for L1, the virtio drivers Debian builds as
# modules for the L2 device test (virtio-pci, -console and ext4 are built in).
NESTED_MODULES="kernel/virt/lib/irqbypass.ko kernel/arch/x86/kvm/kvm.ko kernel/arch/x86/kvm/kvm-amd.ko
kernel/drivers/block/virtio_blk.ko kernel/drivers/char/hw_random/virtio-rng.ko
kernel/net/vmw_vsock/vsock.ko kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko
kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko"

# One Debian 6.12 cloud kernel for L1 and L2: sets `kdir` holding vmlinux and the modules
# of NESTED_MODULES (by file name), downloading them on first use.
nested_fetch_kernel() {
    kdir=$cache/kernel
    local have=true m
    for m in vmlinux $NESTED_MODULES; do
        [ -s "$kdir/$(basename "$m")" ] || have=false
    done
    $have && return 0
    rm -rf "$kdir" && mkdir -p "$kdir"
    local pkg vmlinuz sects off len modules
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
    for m in $NESTED_MODULES; do
        xz -d -c "$modules/$m.xz" >"$kdir/$(basename "$m")"
    done
    rm -rf "$kdir/root" "$kdir"/*.deb
    log "kernel extracted to $kdir"
}

# Builds the boot_linux example as a static binary the L1 initramfs can run, with the two
# vsock test programs (guest_vsock_echo for the L2, vsock_roundtrip for L1); $1 is the cargo
# profile (dev or release). Sets `boot_linux`, `guest_vsock_echo` and `vsock_roundtrip`.
nested_build_boot_linux() {
    local profile=${1:-dev} dir
    log "building the static boot_linux example ($profile)"
    # A target dir of its own: a `cargo test` running this script holds the lock on the
    # workspace's, and the static build (its own --target) shares no artifacts with it anyway.
    local target_dir=$cache/target
    (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_DEV_STRIP=debuginfo \
        cargo build -q --profile "$profile" -p runvm-sandbox-vm --example boot_linux \
        --example guest_vsock_echo --example vsock_roundtrip \
        --target x86_64-unknown-linux-gnu --target-dir "$target_dir")
    dir=$profile; [ "$profile" = dev ] && dir=debug
    local examples=$target_dir/x86_64-unknown-linux-gnu/$dir/examples bin
    boot_linux=$examples/boot_linux
    guest_vsock_echo=$examples/guest_vsock_echo
    vsock_roundtrip=$examples/vsock_roundtrip
    for bin in "$boot_linux" "$guest_vsock_echo" "$vsock_roundtrip"; do
        case "$(file -b "$bin")" in
            *"static"*) ;;
            *) die "$bin is not statically linked" ;;
        esac
    done
    log "boot_linux built"
}

# newc cpio of directory $1 into file $2, everything owned by root.
mkcpio() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"; }

# The L2 initramfs: a busybox /init that prints `runvm-L2-init-start` first (an ash builtin,
# no fork: the earliest moment /init can be seen), then "$1 uptime=... cpus=...", runs the
# shell lines in $3 (may be empty), and powers off (ACPI S5 through the monitor's sleep
# control register). Written to $2.
nested_make_l2() {
    local marker=$1 out=$2 extra=${3:-} root=${2%.cpio}-root
    rm -rf "$root" && mkdir -p "$root/bin" "$root/proc"
    cp /bin/busybox "$root/bin/busybox"
    cat >"$root/init" <<L2INIT
#!/bin/busybox sh
echo runvm-L2-init-start
/bin/busybox mount -t proc proc /proc
echo "$marker uptime=\$(/bin/busybox cut -d' ' -f1 /proc/uptime) cpus=\$(/bin/busybox grep -c ^processor /proc/cpuinfo)"
$extra
/bin/busybox poweroff -f
L2INIT
    chmod 755 "$root/init"
    mkcpio "$root" "$out"
}

# A fresh L1 root in $1 with busybox, the KVM modules in /lib, the L2 kernel and initramfs
# ($2) in /l2, and empty mount points; the caller adds its /init and whatever it runs.
nested_l1_base() {
    local root=$1 l2_cpio=$2
    rm -rf "$root" && mkdir -p "$root/bin" "$root/lib" "$root/l2" "$root/proc" "$root/sys" "$root/dev"
    cp /bin/busybox "$root/bin/busybox"
    cp "$kdir/irqbypass.ko" "$kdir/kvm.ko" "$kdir/kvm-amd.ko" "$root/lib/"
    cp "$kdir/vmlinux" "$root/l2/vmlinux"
    cp "$l2_cpio" "$root/l2/initrd.cpio"
}

# The start of an L1 /init: mounts, loads KVM (kvm-amd on the SVM QEMU's TCG emulates) and
# prints runvm-L1-ready with L1's uptime. Defines `up` and `B` for the rest of the script.
nested_l1_init_head() {
    cat <<'HEAD'
#!/bin/busybox sh
B=/bin/busybox
up() { $B cut -d' ' -f1 /proc/uptime; }
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in irqbypass kvm kvm-amd; do
    $B insmod /lib/$m.ko || echo "runvm-L1-insmod-failed $m"
done
echo "runvm-L1-ready uptime=$(up)"
HEAD
}

# Boots L1 under QEMU TCG: $1 the L1 initramfs, $2 the console log, $3 the timeout in
# seconds, $4 L1's memory in MiB (default 1024), $5 L1's CPUs (default 1). Sets
# `qemu_status` (124: timed out) and `l1_wall` (seconds).
nested_boot_l1() {
    local cpio=$1 console=$2 timeout_s=$3 mem=${4:-1024} cpus=${5:-1}
    # Under TCG on a busy host the PIT-based TSC calibration of L1 can fail (then L1 hangs):
    # QEMU's TCG TSC runs at the host's rate, so tell L1 that rate.
    local tsc_khz l1_cmdline l1_started
    tsc_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
    l1_cmdline="console=ttyS0 panic=-1 quiet${tsc_khz:+ tsc_early_khz=$tsc_khz}"
    local smp=()
    [ "$cpus" = 1 ] || smp=(-smp "$cpus")
    l1_started=$(date +%s.%N)
    set +e
    timeout "$timeout_s" qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on -accel tcg \
        -cpu max -m "$mem" "${smp[@]}" -nographic -no-reboot -kernel "$kdir/vmlinux" \
        -initrd "$cpio" -append "$l1_cmdline" </dev/null >"$console" 2>&1
    qemu_status=$?
    set -e
    l1_wall=$(since "$l1_started")
    log "QEMU exited with $qemu_status after ${l1_wall}s"
}

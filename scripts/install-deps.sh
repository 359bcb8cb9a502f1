#!/usr/bin/env bash
# Installs what runvm's demo and tests need on a fresh Debian machine (run as root).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
PACKAGES=(busybox-static iproute2 cpio)
[ "${RUNVM_WITH_PEERS:-0}" = 1 ] && PACKAGES+=(runc crun hyperfine)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q "${missing[@]}"
fi

#!/usr/bin/env bash
# Builds an OCI bundle with a busybox root filesystem (from Debian's busybox-static).
# usage: make-bundle.sh DIR [RUNVM_BIN] [-- CMD ARGS...]
set -euo pipefail
dir=$1; shift
runvm=${1:-target/release/runvm}; [ $# -gt 0 ] && shift
[ "${1:-}" = -- ] && shift
busybox=$(command -v busybox || echo /bin/busybox)
rm -rf "$dir"
mkdir -p "$dir"/rootfs/{bin,dev,proc,sys,tmp,etc,root}
cp "$busybox" "$dir/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$dir/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$dir/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$dir/rootfs/etc/group"
"$runvm" spec --bundle "$dir"
if [ $# -gt 0 ]; then
    python3 - "$dir/config.json" "$@" <<'PY'
import json, sys
path, args = sys.argv[1], sys.argv[2:]
config = json.load(open(path))
config["process"]["args"] = args
json.dump(config, open(path, "w"), indent=2)
PY
fi

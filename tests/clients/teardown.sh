#!/usr/bin/env bash
# Undoes tests/clients/setup.sh DIR: removes the harness's containers, stops the daemons it
# started (by their pidfiles), unmounts what the clients left mounted under DIR, and removes
# what the clients leave on the host outside DIR, but only paths that did not exist before
# setup (DIR/run/host-absent) and that nothing else is using.
#
#   tests/clients/teardown.sh DIR [--purge]
#
# Keeps DIR/logs (argv.log and daemon logs) unless --purge is given. Safe to run twice.
set -uo pipefail

log() { printf 'teardown.sh: %s\n' "$*" >&2; }
[[ $# -ge 1 ]] || { log "usage: $0 DIR [--purge]"; exit 1; }
[[ -d $1 ]] || { log "$1: nothing to tear down"; exit 0; }
dir=$(cd "$1" && pwd)
purge=${2:-}
ns=runvm-clients

# stop_pidfile NAME PIDFILE SECONDS: TERM, wait, then KILL the daemon recorded in PIDFILE.
stop_pidfile() {
	local name=$1 pidfile=$2 wait=$3 pid i
	[[ -s $pidfile ]] || return 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null; then
		log "stopping $name (pid $pid)"
		kill -TERM "$pid"
		for ((i = 0; i < wait * 5; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -0 "$pid" 2>/dev/null && { log "$name ignored SIGTERM, killing"; kill -KILL "$pid"; }
	fi
	rm -f "$pidfile"
}

# --- containers first, while the daemons can still clean up after them ---
if [[ -x $dir/bin/podman ]]; then
	# Pods first: their infra containers cannot be removed on their own.
	"$dir/bin/podman" pod rm --all --force --time 0 >/dev/null 2>&1 ||
		log "podman pod rm --all failed (leftover pods are listed by $dir/bin/podman pod ps)"
	"$dir/bin/podman" rm --all --force --time 0 >/dev/null 2>&1 ||
		log "podman rm --all failed (leftover containers are listed by $dir/bin/podman ps -a)"
fi
if [[ -x $dir/bin/docker && -S $dir/docker/sock ]]; then
	ids=$("$dir/bin/docker" ps -aq 2>/dev/null)
	[[ -n $ids ]] && "$dir/bin/docker" rm -f $ids >/dev/null 2>&1
fi
stop_pidfile dockerd "$dir/run/dockerd.pid" 30
# CRI pods (and their containers) through the CRI API, then whatever the API could not remove.
if [[ -x $dir/bin/cri && -S $dir/cri/sock ]]; then
	for id in $("$dir/bin/cri" ListPodSandbox 2>/dev/null | grep -o '"id": "[0-9a-f]*"' | cut -d'"' -f4); do
		"$dir/bin/cri" StopPodSandbox "{\"pod_sandbox_id\": \"$id\"}" >/dev/null 2>&1
		"$dir/bin/cri" RemovePodSandbox "{\"pod_sandbox_id\": \"$id\"}" >/dev/null 2>&1 ||
			log "CRI pod $id could not be removed"
	done
fi
if [[ -x $dir/bin/ctr-cri && -S $dir/cri/sock ]]; then
	for id in $("$dir/bin/ctr-cri" tasks ls -q 2>/dev/null); do
		"$dir/bin/ctr-cri" tasks kill -s SIGKILL "$id" >/dev/null 2>&1
		sleep 0.2
		"$dir/bin/ctr-cri" tasks delete --force "$id" >/dev/null 2>&1
	done
	for id in $("$dir/bin/ctr-cri" containers ls -q 2>/dev/null); do
		"$dir/bin/ctr-cri" containers delete "$id" >/dev/null 2>&1
	done
fi
stop_pidfile "containerd (CRI)" "$dir/run/containerd-cri.pid" 30
if [[ -x $dir/bin/ctr && -S $dir/containerd/sock ]]; then
	for id in $("$dir/bin/ctr" tasks ls -q 2>/dev/null); do
		"$dir/bin/ctr" tasks kill -s SIGKILL "$id" >/dev/null 2>&1
		sleep 0.2
		"$dir/bin/ctr" tasks delete --force "$id" >/dev/null 2>&1
	done
	for id in $("$dir/bin/ctr" containers ls -q 2>/dev/null); do
		"$dir/bin/ctr" containers delete "$id" >/dev/null 2>&1
	done
fi
stop_pidfile containerd "$dir/run/containerd.pid" 30

# Shims outlive containerd when it dies with tasks running; ours name our socket in argv.
for proc in /proc/[0-9]*; do
	cmdline=$({ tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null) || continue
	if [[ $cmdline == *containerd-shim* && ($cmdline == *"-address $dir/containerd/sock "* ||
		$cmdline == *"-address $dir/cri/sock "*) ]]; then
		log "killing leftover shim ${proc#/proc/}"
		kill -KILL "${proc#/proc/}" 2>/dev/null
	fi
done

# --- mounts under DIR (podman's overlay bind mount, docker's data root, container rootfs) ---
mapfile -t mounts < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
for m in "${mounts[@]}"; do
	umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
done

# --- host paths outside DIR, only if setup saw them absent ---
created() { grep -qxF -- "$1" "$dir/run/host-absent" 2>/dev/null; }
# in_use PATH: some running process has PATH (a file or a socket) open.
in_use() {
	local fd
	for fd in /proc/[0-9]*/fd/*; do
		[[ $(readlink "$fd" 2>/dev/null) == "$1" ]] && return 0
	done
	return 1
}
if created /dev/shm/libpod_lock && ! in_use /dev/shm/libpod_lock; then
	rm -f /dev/shm/libpod_lock
fi
created /etc/docker/key.json && rm -f /etc/docker/key.json
created /var/lib/containers && rm -rf /var/lib/containers
# Shim sockets are always in /run/containerd/s; remove new ones that no process listens on.
if [[ -d /run/containerd/s ]]; then
	for sock in /run/containerd/s/*; do
		[[ -e $sock ]] || continue
		grep -qxF -- "$(basename "$sock")" "$dir/run/shim-sockets-before" 2>/dev/null && continue
		ss -xlH 2>/dev/null | grep -qF -- "$sock" || rm -f "$sock"
	done
fi
# runvm state roots of our namespaces (ctr's default) and directories that are now empty.
rmdir /run/containerd/runc/"$ns" /run/containerd/runvm/"$ns" 2>/dev/null
# runvm's shim keeps the CRI plugin's containers in its namespace's directory, k8s.io.
created /run/containerd/runvm/k8s.io && rmdir /run/containerd/runvm/k8s.io 2>/dev/null
for path in /run/containerd/fifo /run/containerd/s /run/containerd/runc /run/containerd/runvm /run/containerd \
	/run/docker/plugins /run/docker /run/runvm; do
	created "$path" && rmdir "$path" 2>/dev/null
done
# cgroups: podman's cgroupfs parent (conmon sits in libpod_parent/conmon), ctr's and dockerd's
# parents named after the harness. rmdir only removes empty ones.
for hierarchy in /sys/fs/cgroup/*/; do
	for parent in "$ns" "$ns-docker" "$ns-cri"; do
		[[ -d $hierarchy$parent ]] && find "$hierarchy$parent" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	if created /sys/fs/cgroup/memory/libpod_parent && [[ -d ${hierarchy}libpod_parent ]]; then
		find "${hierarchy}libpod_parent" -depth -type d -exec rmdir {} \; 2>/dev/null
	fi
done

# --- DIR itself: never rm through a mount that is still there (it may bind a host path) ---
leftover=$(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts)
if [[ -n $leftover ]]; then
	log "still mounted, not removing $dir: $leftover"
	exit 1
fi
if [[ $purge == --purge ]]; then
	rm -rf --one-file-system "$dir"
else
	find "$dir" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf --one-file-system {} +
	log "kept $dir/logs"
fi
log "done"

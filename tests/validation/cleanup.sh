# shellcheck shell=bash
# Leftover removal for run.sh (sourced, not run). Everything here removes only what this run
# created: containers whose ids were not there before, cgroups named like the suite's that
# appeared during the run, mounts under the run's own temp dir. Other software on the host
# may use the same runtime root and cgroup hierarchies, so nothing is removed by pattern alone.

# runtime_ids RUNTIME: container ids the runtime knows, one per line.
runtime_ids() {
	local rt=$1 ids
	if ids=$("$rt" list -q 2>/dev/null); then
		printf '%s\n' "$ids" | sed '/^[[:space:]]*$/d'
		return
	fi
	# Runtimes without "list -q": first column of the table, minus its header.
	"$rt" list 2>/dev/null | awk 'NR > 1 && $1 != "" { print $1 }'
}

# cleanup_containers RUNTIME BEFORE_IDS: force-delete containers not listed in BEFORE_IDS.
cleanup_containers() {
	local rt=$1 before=$2 id
	while read -r id; do
		[[ -z $id ]] && continue
		grep -qxF -- "$id" <<<"$before" && continue
		if ! "$rt" delete -f "$id" >/dev/null 2>&1 && ! "$rt" delete --force "$id" >/dev/null 2>&1; then
			# No forced delete: stop it, then delete.
			"$rt" kill "$id" KILL >/dev/null 2>&1
			sleep 0.2
			"$rt" delete "$id" >/dev/null 2>&1 || echo "run.sh: could not delete leftover container $id" >&2
		fi
	done < <(runtime_ids "$rt")
}

# suite_cgroups: the suite's fixed cgroup paths ("/cgrouptest", "testdir/cgrouptest/container")
# in every mounted hierarchy. Containers' own cgroups go away with "delete -f" above.
suite_cgroups() {
	find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d \( -name cgrouptest -o -name testdir \) \
		2>/dev/null | LC_ALL=C sort
}

# cgroup_snapshot FILE: remember which suite-like cgroups exist before the run.
cgroup_snapshot() { suite_cgroups >"$1"; }

# cleanup_cgroups SNAPSHOT: rmdir suite-like cgroups created since the snapshot, deepest
# first. rmdir only succeeds on a cgroup without tasks or children, so live ones stay.
cleanup_cgroups() {
	local snap=$1 dir
	while read -r dir; do
		[[ -d $dir ]] || continue
		# Inner cgroups of a new one (e.g. testdir/cgrouptest/container) go first.
		find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
		[[ -d $dir ]] && echo "run.sh: leftover cgroup $dir (still busy)" >&2
	done < <(LC_ALL=C comm -13 "$snap" <(suite_cgroups) | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
	return 0
}

# cleanup_mounts_under DIR: lazily unmount anything the run left mounted inside DIR.
cleanup_mounts_under() {
	local dir=$1 mnt
	while read -r mnt; do
		umount -l "$mnt" 2>/dev/null
	done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	return 0
}

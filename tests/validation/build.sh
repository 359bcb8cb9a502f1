#!/usr/bin/env bash
# Builds everything tests/validation/run.sh needs, offline:
#   $VALIDATION_DIR/bin/<test>            one program per validation/<test>/<test>.go
#   $VALIDATION_DIR/runtimetest           static in-container checker (cmd/runtimetest)
#   $VALIDATION_DIR/rootfs-amd64.tar.gz   busybox rootfs the suite unpacks into each bundle
#
# The Go source of the OCI runtime-tools validation suite is NOT in Debian's binary package
# (golang-github-opencontainers-runtime-tools-dev ships only the library packages), so it must
# be provided as an upstream checkout: RUNTIME_TOOLS_SRC=/path/to/runtime-tools (see README.md).
# Without it this script still installs the toolchain and builds the rootfs, then exits 2.
#
# Env: VALIDATION_DIR (default <repo>/build/validation), RUNTIME_TOOLS_SRC, NO_APT=1 to skip apt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${VALIDATION_DIR:-$repo/build/validation}
debian_src=/usr/share/gocode/src/github.com/opencontainers/runtime-tools
mkdir -p "$out"
out=$(cd "$out" && pwd)

log() { printf 'build.sh: %s\n' "$*" >&2; }

# --- packages (only ask apt for what is missing, so reruns never wait on the apt lock) ---
install_packages() {
	local want=(golang-go busybox-static golang-github-opencontainers-runtime-tools-dev
		golang-github-google-uuid-dev golang-github-mrunalp-fileutils-dev)
	local missing=() p
	for p in "${want[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y \
			--no-install-recommends "${missing[@]}" >&2
	fi
}
[[ ${NO_APT:-0} == 1 ]] || install_packages

# --- rootfs: busybox plus the directories runtimes and runtimetest expect to exist ---
build_rootfs() {
	local tarball=$out/rootfs-amd64.tar.gz stage
	if [[ -s $tarball && $tarball -nt /bin/busybox && $tarball -nt "${BASH_SOURCE[0]}" ]]; then
		return
	fi
	stage=$(mktemp -d "$out/rootfs.XXXXXX")
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,etc,proc,sys,tmp,run,root,home,mnt,var/tmp}
	chmod 1777 "$stage/tmp" "$stage/var/tmp"
	cp /bin/busybox "$stage/bin/busybox"
	local applet up
	# One symlink per applet so tests can run sh, sleep, cat, ... by their usual paths. Links
	# are relative: the suite runs hooks as <bundle>/bin/sh from the host, which must resolve
	# inside the bundle, not to whatever /bin/busybox the host has.
	while read -r applet; do
		[[ $applet == bin/busybox || -e $stage/$applet || -L $stage/$applet ]] && continue
		up=$(dirname "$applet")
		if [[ $up == . ]]; then up=.; else up=$(sed -E 's#[^/]+#..#g' <<<"$up"); fi
		ln -s "$up/bin/busybox" "$stage/$applet"
	done < <(/bin/busybox --list-full)
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$stage/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
	tar --numeric-owner --owner=0 --group=0 -C "$stage" -czf "$tarball.tmp" .
	mv "$tarball.tmp" "$tarball"
	rm -rf "$stage"
	log "rootfs: $tarball"
}
build_rootfs

# --- find the upstream suite source ---
src=${RUNTIME_TOOLS_SRC:-}
if [[ -z $src ]]; then
	for cand in "$out/src/runtime-tools" "$debian_src"; do
		if [[ -d $cand/validation && -d $cand/cmd/runtimetest ]]; then
			src=$cand
			break
		fi
	done
fi
if [[ -z $src || ! -d $src/validation || ! -d $src/cmd/runtimetest ]]; then
	log "no runtime-tools source with validation/ and cmd/runtimetest/ found."
	log "Debian ships only the library part ($debian_src); provide an upstream checkout:"
	log "  RUNTIME_TOOLS_SRC=/path/to/runtime-tools $0   (or put it at $out/src/runtime-tools)"
	exit 2
fi
src=$(cd "$src" && pwd)
log "suite source: $src"

# --- Go build, offline: never reach a module proxy ---
export GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOFLAGS=
export GOCACHE=$out/gocache
mkdir -p "$out/bin" "$GOCACHE"

mapfile -t tests < <(cd "$src/validation" && for d in */; do
	d=${d%/}
	[[ $d != util && -f $d/$d.go ]] && echo "$d"
done)
((${#tests[@]})) || { log "no validation/<name>/<name>.go programs under $src"; exit 1; }

if [[ -f $src/go.mod && -f $src/vendor/modules.txt ]]; then
	# Upstream checkout with its vendor/ tree: self-contained module build.
	log "module mode, -mod=vendor"
	build() { (cd "$src" && GO111MODULE=on go build -mod=vendor "$@"); }
	pkg_prefix=./
else
	# No vendor/: GOPATH mode, dependencies from Debian's /usr/share/gocode.
	log "GOPATH mode, dependencies from /usr/share/gocode"
	gopath=$out/gopath
	mkdir -p "$gopath/src/github.com/opencontainers"
	ln -sfn "$src" "$gopath/src/github.com/opencontainers/runtime-tools"
	build() { (cd "$gopath/src/github.com/opencontainers/runtime-tools" &&
		GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" go build "$@"); }
	pkg_prefix=./
fi

log "building runtimetest (static)"
CGO_ENABLED=0 build -trimpath -ldflags='-s -w' -o "$out/runtimetest" "${pkg_prefix}cmd/runtimetest"

log "building ${#tests[@]} validation programs"
pkgs=()
for t in "${tests[@]}"; do pkgs+=("${pkg_prefix}validation/$t"); done
# One go invocation builds the shared packages once; -o DIR names each binary after its package dir.
build -trimpath -o "$out/bin/" "${pkgs[@]}"

printf '%s\n' "${tests[@]}" >"$out/tests.list"
log "done: ${#tests[@]} tests in $out/bin, list in $out/tests.list"

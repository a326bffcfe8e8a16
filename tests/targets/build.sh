#!/usr/bin/env bash
# Build every Go test target with every installed Go toolchain, in four
# flavors, into OUTDIR/go1.NN/<name>-<flavor>. Offline and incremental.
#
#   bash tests/targets/build.sh OUTDIR
#
# flavors: plain    CGO_ENABLED=0, default flags (DWARF + symbols)
#          stripped CGO_ENABLED=0, -ldflags='-s -w' (no DWARF, no .symtab)
#          pie      CGO_ENABLED=0, -buildmode=pie
#          cgo      CGO_ENABLED=1 (targets carry a `//go:build cgo` file that
#                   imports "C", so the binary really links libc)
# A target's build.env may add flavors (heapleak: nogreentea, 1.26+, built
# with GOEXPERIMENT=nogreenteagc) or build only from some release (goleak).
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
gocache="$(dirname "$outdir")/gocache"
mkdir -p "$gocache"

export GOTOOLCHAIN=local GOPROXY=off GOFLAGS="-mod=mod -buildvcs=false"
export GOCACHE="$gocache" GOPATH="$gocache/gopath" GOENV=off GOTELEMETRY=off
export GOFLAGS

# One target in one flavor, built to a temporary name and renamed, so an
# interrupted build never leaves a half-written binary that looks fresh.
build_one() {
	local ver=$1 goroot=$2 gobin=$3 dir=$4 name=$5 flavor=$6 out=$7
	local cgo=0 args=() goexp=${GOEXPERIMENT:-}
	local minor=${ver#go1.} # what a target's build.env reads

	case $flavor in
	plain) ;;
	stripped) args=(-ldflags=-s\ -w) ;;
	pie) args=(-buildmode=pie) ;;
	cgo) cgo=1 ;;
	nogreentea) goexp=nogreenteagc ;; # 1.26+: the pre-Green-Tea GC
	esac
	printf '  %-8s %s\n' GO "targets/$ver/$name-$flavor"
	if (cd "$dir" && export GOEXPERIMENT=$goexp &&
	    { [ ! -f build.env ] || . ./build.env; } &&
	    GOROOT="$goroot" CGO_ENABLED=$cgo \
	    "$gobin" build "${args[@]}" -o "$out.tmp" .); then
		mv -f "$out.tmp" "$out"
	else
		rm -f "$out.tmp"
		echo "build.sh: $ver $name-$flavor failed" >&2
		return 1
	fi
}

flavors="plain stripped pie cgo"
versions=()
failed=0
# Two builds at a time on two cores: one go build links alone for seconds
# while the other compiles (BUILD_JOBS= to change).
jobs=${BUILD_JOBS:-$(nproc)}
running=0
todo=()

for gobin in /usr/lib/go-1.*/bin/go; do
	[ -x "$gobin" ] || continue
	ver=$(basename "$(dirname "$(dirname "$gobin")")")   # go-1.NN
	ver="go${ver#go-}"                                   # go1.NN
	goroot=$(dirname "$(dirname "$gobin")")
	# A toolchain that cannot even report its version is not installed.
	GOROOT="$goroot" "$gobin" version >/dev/null 2>&1 || continue
	mkdir -p "$outdir/$ver"
	versions+=("$ver")
	minor=${ver#go1.}
	for dir in "$here"/*/; do
		name=$(basename "$dir")
		[ "$name" = offsets-probe ] && continue
		[ -f "$dir/main.go" ] || continue
		# A target's build.env (sourced with $minor set, in a subshell) may
		# set min_minor, its own flavors and build environment.
		target_flavors=$flavors
		if [ -f "$dir/build.env" ]; then
			target_flavors=$(min_minor=0; flavors=$flavors; . "$dir/build.env";
				if [ "$minor" -ge "$min_minor" ]; then echo "$flavors"; fi)
			[ -n "$target_flavors" ] || continue
		fi
		for flavor in $target_flavors; do
			out="$outdir/$ver/$name-$flavor"
			# Up to date when the output is newer than every source file
			# of the target and than this script.
			if [ -x "$out" ] &&
			   [ -z "$(find "$dir" "$here/build.sh" -newer "$out" -type f -print -quit)" ]; then
				continue
			fi
			todo+=("$name|$flavor|$ver|$goroot|$gobin|$dir|$out")
		done
	done
done
# Ordered by target and flavor, then version: the builds that run side by
# side use different toolchains, so no two compile the same cold runtime.
while IFS='|' read -r name flavor ver goroot gobin dir out; do
	[ -n "$name" ] || continue
	build_one "$ver" "$goroot" "$gobin" "$dir" "$name" "$flavor" "$out" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n || failed=1
		running=$((running - 1))
	fi
done < <(printf '%s\n' "${todo[@]}" | sort -s -t'|' -k1,1 -k2,2)
while [ "$running" -gt 0 ]; do
	wait -n || failed=1
	running=$((running - 1))
done

printf '%s\n' "${versions[@]}" > "$outdir/versions.txt.tmp"
mv -f "$outdir/versions.txt.tmp" "$outdir/versions.txt"
exit $failed

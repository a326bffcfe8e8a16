#!/usr/bin/env bash
# Builds tests/targets/sqlite/src against Debian's
# golang-github-mattn-go-sqlite3-dev in GOPATH mode (the package is a GOPATH
# source tree under /usr/share/gocode, not a module), with every installed
# toolchain, into OUTDIR/sqlite/sqlite-go1.NN (OUTDIR: .output/targets). tests/targets/build.sh skips this
# directory (no main.go at its top). Incremental; offline.
#
#   bash tests/targets/sqlite/build.sh OUTDIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
if [ ! -d /usr/share/gocode/src/github.com/mattn/go-sqlite3 ]; then
	echo "sqlite/build.sh: golang-github-mattn-go-sqlite3-dev not installed" >&2
	exit 3
fi
export GOTOOLCHAIN=local GOPROXY=off GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS=
export GOCACHE="$(dirname "$outdir")/gocache" GOENV=off GOTELEMETRY=off CGO_ENABLED=1
failed=0
for gobin in /usr/lib/go-1.*/bin/go; do
	[ -x "$gobin" ] || continue
	goroot=$(dirname "$(dirname "$gobin")")
	ver=$(basename "$goroot"); ver="go${ver#go-}"
	GOROOT="$goroot" "$gobin" version >/dev/null 2>&1 || continue
	out="$outdir/sqlite/sqlite-$ver"
	mkdir -p "$outdir/sqlite"
	if [ -x "$out" ] && [ -z "$(find "$here" -newer "$out" -type f -print -quit)" ]; then
		continue
	fi
	printf '  %-8s %s\n' GO "targets/sqlite/sqlite-$ver"
	if (cd "$here/src" && GOROOT="$goroot" "$gobin" build -o "$out.tmp" main.go); then
		mv -f "$out.tmp" "$out"
	else
		rm -f "$out.tmp"; echo "sqlite/build.sh: $ver failed" >&2; failed=1
	fi
done
exit $failed

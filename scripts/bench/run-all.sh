#!/usr/bin/env bash
# `make bench`: every benchmark, each printing its side-by-side ratios.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
status=0
for b in probe-cost native-cost heap-overhead daemon-scale; do
	[ -x "$here/$b" ] || continue
	echo "=================== $b"
	"$here/$b" || status=1
	echo
done
exit $status

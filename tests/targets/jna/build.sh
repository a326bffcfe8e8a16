#!/usr/bin/env bash
# Builds the JNA test target into OUTDIR (default .output/targets/jna):
# JnaTarget.class against Debian's JNA (libjna-java, libjnidispatch from
# libjna-jni). Prints the classpath to run it with. Incremental.
#   bash tests/targets/jna/build.sh [OUTDIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../../.output/targets/jna}
jar=/usr/share/java/jna.jar
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ ! -e "$jar" ]; then
	echo "build.sh: $jar not found (install libjna-java)" >&2
	exit 1
fi
if [ ! -e "$out/JnaTarget.class" ] || [ "$here/JnaTarget.java" -nt "$out/JnaTarget.class" ]; then
	printf '  %-8s %s\n' JAVAC targets/jna/JnaTarget.class >&2
	javac -cp "$jar" -d "$out" "$here/JnaTarget.java"
fi
echo "$jar:$out"

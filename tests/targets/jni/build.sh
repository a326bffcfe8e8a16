#!/usr/bin/env bash
# Builds the JNI test target into OUTDIR (default .output/targets/jni):
# JniTarget.class, libjnitarget.so (frame pointers kept) and
# libjnitarget_nofp.so (-O2 -fomit-frame-pointer, as most JNI libraries are
# built: tail calls, no frame chain). Incremental.
#   bash tests/targets/jni/build.sh [OUTDIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../../.output/targets/jni}
mkdir -p "$out"
out=$(cd "$out" && pwd)

javac=$(command -v javac || true)
if [ -z "$javac" ]; then
	echo "build.sh: javac not found (install openjdk-17-jdk-headless)" >&2
	exit 1
fi
jdk=$(dirname "$(dirname "$(readlink -f "$javac")")")

newer() { [ ! -e "$1" ] || [ -n "$(find "$2" "$here/build.sh" -newer "$1" -print -quit)" ]; }

if newer "$out/JniTarget.class" "$here/JniTarget.java"; then
	printf '  %-8s %s\n' JAVAC targets/jni/JniTarget.class
	"$javac" -d "$out" "$here/JniTarget.java"
fi
if newer "$out/libjnitarget.so" "$here/jnitarget.c"; then
	printf '  %-8s %s\n' CC targets/jni/libjnitarget.so
	gcc -O2 -g -fno-omit-frame-pointer -shared -fPIC -Wall -Wextra -Wno-unused-parameter \
		-I"$jdk/include" -I"$jdk/include/linux" \
		-o "$out/libjnitarget.so" "$here/jnitarget.c" -lpthread
fi
if newer "$out/libjnitarget_nofp.so" "$here/jnitarget.c"; then
	printf '  %-8s %s\n' CC targets/jni/libjnitarget_nofp.so
	gcc -O2 -g -fomit-frame-pointer -shared -fPIC -Wall -Wextra -Wno-unused-parameter \
		-I"$jdk/include" -I"$jdk/include/linux" \
		-o "$out/libjnitarget_nofp.so" "$here/jnitarget.c" -lpthread
fi

#!/usr/bin/env bash
# Seeds that reach the parsers, generated (too large to commit) into
#   OUT/fuzz_gobin/           whole tiny Go binaries, one per installed
#                             toolchain (-s -w), one with .symtab, and one with
#                             its build info rewritten to the pre-1.18
#                             pointer format
#   OUT/fuzz_dwarf_offsets/   the same program's DWARF (compressed as Go
#                             writes it, and once uncompressed), the debug
#                             sections the offsets need only
#   OUT/fuzz_jvm_files/       an hsperfdata file of a real JVM, the
#                             .note.stapsdt of the installed libjvm
# Cached: a seed is rebuilt only when missing. Usage: seeds.sh OUT
set -euo pipefail
out=${1:?usage: seeds.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"/fuzz_gobin "$out"/fuzz_dwarf_offsets "$out"/fuzz_jvm_files "$out/src"
out=$(cd "$out" && pwd)
export GOCACHE=${GOCACHE:-$out/../gocache} GOFLAGS=-mod=mod GOTOOLCHAIN=local GOTELEMETRY=off
cat >"$out/src/main.go" <<'GO'
package main

import "runtime"

var sink []byte

func main() {
	sink = make([]byte, 64)
	println(runtime.NumGoroutine())
}
GO
printf 'module tiny\n\ngo 1.19\n' >"$out/src/go.mod"

keep_debug() { # IN OUT: only the sections go_offsets reads
	objcopy --only-keep-debug -R .debug_line -R .debug_frame -R .debug_loc \
		-R .debug_ranges -R .debug_gdb_scripts -R .zdebug_line -R .zdebug_frame \
		-R .zdebug_loc -R .zdebug_ranges "$1" "$2"
}

first=""
for goroot in /usr/lib/go-1.*; do
	[ -x "$goroot/bin/go" ] || continue
	v=${goroot#/usr/lib/go-}
	sw="$out/fuzz_gobin/tiny-go$v-sw"
	dw="$out/fuzz_dwarf_offsets/tiny-go$v"
	if [ ! -s "$sw" ] || [ ! -s "$dw" ]; then
		(cd "$out/src" && nice "$goroot/bin/go" build -trimpath -ldflags='-s -w' -o "$sw.tmp" . &&
			nice "$goroot/bin/go" build -trimpath -o "$out/src/full-$v" .) || continue
		mv "$sw.tmp" "$sw"
		keep_debug "$out/src/full-$v" "$dw"
	fi
	[ -n "$first" ] || first=$v
	last=$v
done
[ -n "$first" ] || { echo "seeds.sh: no Go toolchain under /usr/lib/go-1.*" >&2; exit 1; }

# one binary with its .symtab (globals by name), uncompressed DWARF
if [ ! -s "$out/fuzz_gobin/tiny-go$last-symtab" ]; then
	(cd "$out/src" && nice "/usr/lib/go-$last/bin/go" build -trimpath -ldflags='-w' \
		-o "$out/fuzz_gobin/tiny-go$last-symtab" . &&
		nice "/usr/lib/go-$last/bin/go" build -trimpath -ldflags='-compressdwarf=false' \
			-o "$out/src/plain-dwarf" .)
	keep_debug "$out/src/plain-dwarf" "$out/fuzz_dwarf_offsets/tiny-go$last-uncompressed"
fi

# pre-1.18 build info: the 32-byte header points at a string header in the
# section itself, which points at the version string (what go1.17 wrote)
if [ ! -s "$out/fuzz_gobin/tiny-go$first-pointer-buildinfo" ]; then
	python3 - "$out/fuzz_gobin/tiny-go$first-sw" "$out/fuzz_gobin/tiny-go$first-pointer-buildinfo" "$first" <<'PY'
import struct, sys
src, dst, ver = sys.argv[1], sys.argv[2], sys.argv[3]
b = bytearray(open(src, 'rb').read())
shoff, = struct.unpack_from('<Q', b, 0x28)
shentsize, shnum, shstrndx = struct.unpack_from('<HHH', b, 0x3a)
def sh(i):
    return struct.unpack_from('<IIQQQQIIQQ', b, shoff + i * shentsize)
stroff = sh(shstrndx)[4]
for i in range(shnum):
    name, typ, flags, addr, off, size = sh(i)[:6]
    end = b.index(b'\0', stroff + name)
    if b[stroff + name:end] == b'.go.buildinfo':
        break
else:
    sys.exit('no .go.buildinfo')
magic = b'\xff Go buildinf:'
assert b[off:off + 14] == magic
s = ('go' + ver).encode()
b[off + 14] = 8
b[off + 15] = 0                      # little-endian, pointer format
struct.pack_into('<QQ', b, off + 16, addr + 32, addr + 48)
struct.pack_into('<QQ', b, off + 32, addr + 64, len(s))
struct.pack_into('<QQ', b, off + 48, addr + 64, 0)
b[off + 64:off + 64 + len(s)] = s
open(dst, 'wb').write(b)
PY
fi

# a real JVM's hsperfdata file, saved at exit
if [ ! -s "$out/fuzz_jvm_files/hsperfdata" ] && command -v java >/dev/null; then
	nice java -XX:+UsePerfData -XX:+PerfDataSaveToFile \
		-XX:PerfDataSaveFile="$out/fuzz_jvm_files/hsperfdata" -version >/dev/null 2>&1 || true
fi
# the installed libjvm's USDT notes, in a small ELF
if [ ! -s "$out/fuzz_jvm_files/libjvm-stapsdt" ]; then
	for lib in /usr/lib/jvm/*/lib/server/libjvm.so; do
		[ -f "$lib" ] || continue
		objcopy --only-section=.note.stapsdt --only-section=.stapsdt.base \
			"$lib" "$out/fuzz_jvm_files/libjvm-stapsdt" && break
	done
fi
du -sh "$out"/fuzz_* | sed 's/^/   seeds /'

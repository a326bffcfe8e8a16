/* What a process is, decided once for every command: its kind (go, go+cgo,
 * jvm, native) and which libc it uses (glibc or musl). The daemon, `ps`,
 * `attach` and the Go binary analysis (its DT_NEEDED cgo decision) ask
 * here; the native tracer gets the libc to probe from classify_process_libc. */
#ifndef MEMDRIFT_CLASSIFY_H
#define MEMDRIFT_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "binary/gobin.h"
#include "discover/proc.h"

enum proc_kind { PROC_NATIVE, PROC_GO, PROC_GO_CGO, PROC_JVM };
enum libc_kind { LIBC_NONE, LIBC_GLIBC, LIBC_MUSL };

/* The daemon's watch classes (a go+cgo process is CLASS_GO with cgo set). */
enum proc_class { CLASS_UNKNOWN, CLASS_GO, CLASS_JVM, CLASS_OTHER };

const char *proc_kind_name(enum proc_kind k); /* "native", "go", "go+cgo", "jvm" */
const char *libc_kind_name(enum libc_kind k); /* "none", "glibc", "musl" */

/* A DT_NEEDED entry: glibc's "libc.so.6"; musl's "libc.so" (musl-gcc, as
 * Debian's musl-tools links) or "libc.musl-<arch>.so.1" (Alpine). */
enum libc_kind classify_libc_soname(const char *needed);
/* A mapped object's path as /proc/PID/maps shows it: .../libc.so.6 (glibc);
 * .../ld-musl-<arch>.so.1 or .../libc.musl-<arch>.so.1 (Alpine), or a
 * libc.so in a *-linux-musl directory (Debian's musl, which maps
 * /usr/lib/x86_64-linux-musl/libc.so through the /lib/ld-musl symlink). */
enum libc_kind classify_libc_path(const char *path);
/* The libc pid has mapped: its path as in maps (open it through
 * /proc/PID/root), the start of its offset-0 mapping and its kind.
 * 0, -ENOENT when none is mapped (a static binary), or another -errno. */
int classify_process_libc(pid_t pid, char *path, size_t pathlen, uint64_t *start,
			  enum libc_kind *kind);
bool classify_maps_jvm(pid_t pid);

/* The kind an executable's ELF alone tells: PROC_GO, PROC_GO_CGO (Go that
 * links a libc, or carries runtime/cgo's C half) or PROC_NATIVE (not Go, or
 * unreadable). ver may be NULL. */
enum proc_kind classify_exe(const char *open_path, struct go_version *ver);
/* The kind of a running process: its executable, then, for a native one,
 * whether it maps libjvm.so. */
enum proc_kind classify_process(pid_t pid, const struct proc_exe *exe, struct go_version *ver);

/* Executables already classified, by (dev, inode): bounded, the oldest
 * entry overwritten when full. */
#define CLASSIFY_CACHE_MAX 1024
struct classify_cache {
	struct classify_entry {
		dev_t dev;
		ino_t ino;
		enum proc_kind kind;
		struct go_version ver;
	} e[CLASSIFY_CACHE_MAX];
	size_t n, next;
};
/* classify_exe through the cache. */
enum proc_kind classify_exe_cached(struct classify_cache *c, const struct proc_exe *exe,
				   struct go_version *ver);

#endif

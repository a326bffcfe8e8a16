/* Go binary analysis: one immutable description per executable (the
 * caller caches it by (dev, inode): binary/gobin_cache.h). Reads the ELF only; never touches a process.
 * All addresses are link-time virtual addresses; callers add the load bias
 * of a PIE mapping themselves (see proc.h). */
#ifndef MEMDRIFT_GOBIN_H
#define MEMDRIFT_GOBIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "binary/go_offsets.h"

/* Oldest Go release whose runtime layout memdrift knows. */
#define GO_MIN_MAJOR 1
#define GO_MIN_MINOR 17

struct go_version {
	int major, minor, patch; /* go1.22.3 -> 1, 22, 3; "devel" -> 0,0,0 */
	char str[48];            /* as found in .go.buildinfo, e.g. "go1.22.3" */
};

struct gobin;

enum gobin_kind {
	GOBIN_NOT_GO = 0, /* a valid ELF without Go build info / pclntab */
	GOBIN_GO,
	GOBIN_GO_CGO,     /* Go that links libc through cgo */
};

/* Opens and analyses the ELF at path. Returns 0, or a negative errno with a
 * one-line reason in err:
 *   -ENOENT  file absent            -EACCES  permission denied
 *   -ENOEXEC not an ELF / truncated / corrupt
 *   -EPROTONOSUPPORT  not a Go binary, or Go older than GO_MIN
 *   -ENOTSUP Go version newer than any offset table and no DWARF
 * A non-Go ELF is an error here; use gobin_classify() to only ask. */
int gobin_open(const char *path, struct gobin **out, char *err, size_t errlen);
void gobin_free(struct gobin *bin);

/* Cheap classification (build info / pclntab presence, cgo), no tables built. */
int gobin_classify(const char *path, enum gobin_kind *kind, struct go_version *ver,
		   char *err, size_t errlen);

const struct go_version *gobin_version(const struct gobin *bin);
const char *gobin_path(const struct gobin *bin);
const char *gobin_build_id(const struct gobin *bin);     /* hex, "" when absent */
bool gobin_is_pie(const struct gobin *bin);               /* ET_DYN */
bool gobin_has_symtab(const struct gobin *bin);
bool gobin_has_dwarf(const struct gobin *bin);
enum gobin_kind gobin_kind(const struct gobin *bin);
/* Lowest PT_LOAD p_vaddr rounded down to its alignment (for load-bias math). */
uint64_t gobin_base_vaddr(const struct gobin *bin);

struct gobin_func {
	uint64_t entry; /* link-time address of the first instruction */
	uint64_t end;   /* one past the last byte */
	const char *name;
};

/* Function by exact name ("runtime.newproc"); from pclntab, which survives
 * stripping. 0 or -ENOENT. */
int gobin_func_by_name(const struct gobin *bin, const char *name, struct gobin_func *out);

/* Functions whose name starts with prefix, in name order: fills up to max
 * and returns how many there are (namesakes, e.g. ABI0 wrappers, included). */
size_t gobin_funcs_with_prefix(const struct gobin *bin, const char *prefix, struct gobin_func *out,
			       size_t max);

struct gobin_pcinfo {
	const char *func; /* innermost function at pc (inlined callee when inlined) */
	const char *file;
	int line;
	uint64_t entry;   /* entry of the physical (outermost) function */
};

/* pc -> function, file, line through the pclntab. For return addresses pass
 * pc-1 (the caller does that). 0 or -ENOENT. */
int gobin_pc_lookup(const struct gobin *bin, uint64_t pc, struct gobin_pcinfo *out);

/* Address of a runtime global ("runtime.allgs", "runtime.allglen",
 * "runtime.allgptr", "runtime.gcController", "runtime.memstats",
 * "runtime.ncgocall", "runtime.allm", "runtime.mbuckets",
 * "runtime.MemProfileRate"): from .symtab, or in stripped binaries from the
 * instruction patterns of runtime functions that reference them.
 * 0 or -ENOENT. */
int gobin_global(const struct gobin *bin, const char *name, uint64_t *addr);

/* Copies file bytes backing [vaddr, vaddr+len) of a PT_LOAD segment.
 * Returns bytes copied or a negative errno. */
ssize_t gobin_read_vaddr(const struct gobin *bin, uint64_t vaddr, void *buf, size_t len);

/* File offset of a link-time address (for uprobe attach). -ENOENT when no
 * PT_LOAD segment holds it. */
int gobin_vaddr_to_offset(const struct gobin *bin, uint64_t vaddr, uint64_t *offset);

/* Struct offsets and constants for this binary (DWARF, else version table). */
const struct go_offsets *gobin_offsets(const struct gobin *bin);
/* Where the offsets came from: "dwarf", "table", "code" or "none". */
const char *gobin_offsets_source(const struct gobin *bin);

/* Parsers exposed for unit tests and fuzzing (buffer in, no file needed). */
int gobin_parse_buildinfo(const uint8_t *data, size_t len, struct go_version *ver,
			  char *err, size_t errlen);
int go_parse_version(const char *s, struct go_version *ver);

#endif

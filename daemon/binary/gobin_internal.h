/* Private state of the Go binary analysis (gobin.c, gobin_pclntab.c,
 * gobin_globals.c). Everything that points into the file mapping has been
 * bounds-checked against it when it was recorded. */
#ifndef MEMDRIFT_GOBIN_INTERNAL_H
#define MEMDRIFT_GOBIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "binary/go_offsets.h"
#include "binary/gobin.h"

#define GOBIN_MAX_SEGMENTS 32
#define GOBIN_MAX_FUNCS (1u << 22)   /* far above any real binary */
#define GOBIN_BUILD_ID_LEN 256
#define GOBIN_MAX_GLOBALS 16

struct gobin_segment {
	uint64_t vaddr, memsz, offset, filesz;
	uint32_t flags; /* PF_R/PF_W/PF_X */
};

/* A byte range of the file: offset and size already checked to lie inside. */
struct gobin_range {
	uint64_t offset, size;
	uint64_t addr; /* link-time address, 0 when not loaded */
	bool present;
};

/* Go 1.16/1.17 (magic 0xfffffffa), 1.18/1.19 (0xfffffff0), 1.20+ (0xfffffff1). */
enum gobin_pcln_format { PCLN_116 = 116, PCLN_118 = 118, PCLN_120 = 120 };

struct gobin_pcln {
	enum gobin_pcln_format format;
	const uint8_t *base;   /* start of the pcHeader */
	size_t size;           /* bytes available from base */
	uint64_t vaddr;        /* link-time address of the pcHeader */
	uint8_t min_lc, ptr_size;
	uint64_t nfunc, nfiles;
	uint64_t text_start;
	/* sub-tables: [off, off+len) relative to base, each checked */
	uint64_t funcname_off, cu_off, filetab_off, pctab_off, pcln_off;
	uint64_t funcname_len, cu_len, filetab_len, pctab_len, pcln_len;
};

struct gobin_global_entry {
	const char *name;
	uint64_t addr;
};

struct gobin {
	char *path;
	const uint8_t *map;    /* whole file, read-only */
	size_t size;
	bool pie, has_symtab, has_dwarf, have_offsets;
	uint16_t machine;      /* e_machine: code patterns exist for EM_X86_64 only */
	enum gobin_kind kind;
	struct go_version ver;
	char build_id[GOBIN_BUILD_ID_LEN];
	uint64_t base_vaddr;

	struct gobin_segment segs[GOBIN_MAX_SEGMENTS];
	int nsegs;

	struct gobin_range symtab, strtab, text_section;
	struct gobin_range go_module_section; /* .go.module (1.26+): firstmoduledata */

	struct gobin_pcln pcln;
	struct gobin_func *funcs;  /* sorted by entry */
	uint32_t *func_off;        /* per func: offset of its _func in the pcln table */
	uint32_t *by_name;         /* indices into funcs, sorted by name */
	size_t nfuncs;
	uint64_t gofunc;           /* go:func.* base for funcdata offsets (1.18+), 0 unknown */
	uint64_t moduledata;       /* runtime.firstmoduledata, 0 unknown */

	struct gobin_global_entry globals[GOBIN_MAX_GLOBALS];
	int nglobals;

	struct go_offsets offsets;
};

/* Reads a Go uvarint from [*p, end); false when truncated or longer than 10 bytes. */
static inline bool gobin_uvarint(const uint8_t **p, const uint8_t *end, uint64_t *val)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*val = v;
			return true;
		}
	}
	return false;
}

static inline uint32_t gobin_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t gobin_le64(const uint8_t *p)
{
	return (uint64_t)gobin_le32(p) | (uint64_t)gobin_le32(p + 4) << 32;
}

/* gobin_open flags (tests only): keep the analysis even when no offsets exist. */
#define GOBIN_OPEN_ALLOW_NO_OFFSETS 1u
#define GOBIN_OPEN_SKIP_OFFSETS 2u /* fuzzing: do not run the DWARF reader at all */
int gobin_open_flags(const char *path, unsigned flags, struct gobin **out, char *err,
		     size_t errlen);

/* Bounds-checked view of file bytes at a link-time address: the pointer is
 * valid for *avail bytes (at least 1). NULL when no PT_LOAD has file bytes there. */
const uint8_t *gobin_vaddr_ptr(const struct gobin *bin, uint64_t vaddr, size_t *avail);
bool gobin_read_u64(const struct gobin *bin, uint64_t vaddr, uint64_t *val);

/* .symtab lookup by exact name: 0 or -ENOENT. */
int gobin_symtab_lookup(const struct gobin *bin, const char *name, uint64_t *addr);

/* Build info parser that resolves the pre-1.18 pointer format through bin
 * (NULL: -EAGAIN for that format). */
int gobin_buildinfo_parse(const struct gobin *bin, const uint8_t *data, size_t len,
			  struct go_version *ver, char *err, size_t errlen);

/* gobin_pclntab.c */
int gobin_pcln_find(struct gobin *bin, char *err, size_t errlen);
int gobin_pcln_build(struct gobin *bin, char *err, size_t errlen);
void gobin_pcln_free(struct gobin *bin);

/* gobin_globals.c: fills bin->globals from .symtab or instruction patterns. */
void gobin_globals_recover(struct gobin *bin);
/* Pattern recovery only (no .symtab), for tests comparing both. 0 or -ENOENT. */
int gobin_global_from_code(const struct gobin *bin, const char *name, uint64_t *addr);

/* gobin_layout.c: the runtime.g/m offsets, gcController.heapLive, the
 * status constants and the wait-reason names read from the instructions of
 * runtime functions (x86-64). Fields not found are GO_OFF_NONE; 0, or
 * -ENOTSUP/-ENOMEM. */
int gobin_layout_recover(const struct gobin *bin, struct go_offsets *out);
/* bin->offsets for a binary without usable DWARF: the table row with the
 * code's values over it (each disagreement logged), or for a version newer
 * than the table (or MEMDRIFT_TEST_NO_OFFSET_TABLE=1, tests only) the code's
 * alone, with one line naming each field not recovered and what it
 * disables. -ENOTSUP (err set) when the goroutine list cannot be read. */
int gobin_offsets_from_code(struct gobin *bin, char *err, size_t errlen);

#endif

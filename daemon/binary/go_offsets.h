/* Per-binary layout of the Go runtime structures memdrift reads, from the
 * binary's DWARF (libdw) or, when it was stripped, from a version-keyed
 * table that scripts/gen-go-offsets regenerates from real toolchains. */
#ifndef MEMDRIFT_GO_OFFSETS_H
#define MEMDRIFT_GO_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#define GO_OFF_NONE (-1) /* field absent in this version */
#define GO_MAX_WAIT_REASONS 64
#define GO_WAIT_REASON_LEN 40
/* Bytes read per runtime.g (snapshot.c): every g field the readers use must
 * end within them. */
#define GO_G_READ_MAX 1024
/* Inflated size accepted for one compressed debug section, and the most it
 * may claim per compressed byte (zlib reaches ~1000:1 on a bomb; Go's DWARF
 * compresses 3-5:1). */
#define GO_DWARF_MAX_SECTION (256u << 20)
#define GO_DWARF_MAX_RATIO 64

/* CODE: no table row, no DWARF: read from the runtime's instructions (gobin_layout.c) */
enum go_offsets_source { GO_OFFSETS_DWARF, GO_OFFSETS_TABLE, GO_OFFSETS_CODE };

struct go_offsets {
	enum go_offsets_source source;
	int go_major, go_minor;  /* the version the offsets describe */

	/* runtime.g */
	int g_size;
	int g_stack_lo, g_stack_hi; /* g.stack.lo / g.stack.hi */
	int g_m;
	int g_atomicstatus;      /* uint32 */
	int g_goid;              /* uint64 */
	int g_waitsince;         /* int64 nanotime */
	int g_waitreason;        /* uint8 */
	int g_parent_goid;       /* 1.21+, else GO_OFF_NONE */
	int g_gopc;
	int g_startpc;

	/* runtime.m */
	int m_alllink;
	int m_ncgocall;
	int m_procid;
	int m_curg;

	/* runtime.gcControllerState */
	int gc_heap_live;
	int gc_heap_marked;
	int gc_heap_goal;         /* plain field (<1.19), else GO_OFF_NONE */
	int gc_percent_heap_goal; /* 1.19+, else GO_OFF_NONE */
	int gc_memory_limit;      /* 1.19+ */
	int gc_total_alloc;       /* 1.19+ */
	int gc_total_free;        /* 1.19+ */

	/* runtime.mstats */
	int ms_numgc;             /* uint32 */
	int ms_last_gc_nanotime;

	/* runtime.bucket (heap profile) */
	int bucket_header_size;   /* sizeof(runtime.bucket), stk follows */
	int bucket_allnext;
	int bucket_nstk;
	int bucket_size;          /* object size field */
	int memrecord_size;       /* sizeof(runtime.memRecord) */
	int memrecord_cycle_size; /* sizeof(runtime.memRecordCycle): 32 = {allocs,
				   * frees, alloc_bytes, free_bytes}; 16 = {allocs,
				   * frees} (1.27+, bytes = count * bucket.size) */

	/* runtime.mheap, heapArena, mspan (walking span specials) */
	int mheap_arenas;         /* [L1]*[L2]*heapArena */
	int mheap_all_arenas;     /* []arenaIdx */
	int heaparena_spans;      /* [pagesPerArena]*mspan */
	int heaparena_page_specials; /* bitmap, a bit per page with specials */
	int mspan_start_addr;
	int mspan_npages;
	int mspan_specials;       /* *special, sorted by offset */
	int special_kind;         /* runtime.special.kind (byte) */
	int specialprofile_b;     /* runtime.specialprofile.b (*bucket) */
	/* (every int from g_size to specialprofile_b is an offset or size,
	 * GO_OFF_NONE when unknown; go_offsets.c walks that range) */

	/* runtime constants */
	int status_dead;          /* _Gdead (6) */
	int status_scan_bit;      /* _Gscan (0x1000) */
	int status_leaked;        /* _Gleaked (10, 1.26+), GO_OFF_NONE before */
	int kind_special_profile; /* _KindSpecialProfile (2, 3 from 1.23, 4 from 1.25) */

	/* wait reasons: index = runtime.waitReason value */
	int n_wait_reasons;
	char wait_reasons[GO_MAX_WAIT_REASONS][GO_WAIT_REASON_LEN];
};

/* Fills off from the version table for go1.<minor>. 0, or -ENOTSUP for a
 * version with no table entry (older than 1.17 or newer than the newest). */
int go_offsets_from_table(int major, int minor, struct go_offsets *off);

/* Fills off from the DWARF of the ELF at path (libdw). 0, -ENODATA when the
 * binary has no DWARF, or another negative errno. Fields DWARF lacks keep the
 * table value when a table entry exists. */
/* Every offset and size a consumer uses fits the buffer it reads into:
 * runtime.g fields within GO_G_READ_MAX, bucket and memRecord sizes within
 * heapprof's. 0, or -ERANGE with the field named in err. */
int go_offsets_check(const struct go_offsets *o, char *err, size_t errlen);
int go_offsets_from_dwarf(const char *path, int major, int minor, struct go_offsets *off,
			  char *err, size_t errlen);

/* The int fields of struct go_offsets by name (all but source, version and
 * wait reasons), for tools and tests that print or compare layouts. */
struct go_offsets_field {
	const char *name;
	size_t offset; /* offsetof(struct go_offsets, name) */
};
extern const struct go_offsets_field go_offsets_fields[];
extern const size_t go_offsets_nfields;
/* Value of go_offsets_fields[i] in off. */
int go_offsets_field(const struct go_offsets *off, size_t i);

/* Name of a goroutine status ("running", "runnable", "waiting", "syscall", ...). */
const char *go_status_name(const struct go_offsets *off, uint32_t status);
/* Wait reason string or "waiting" when unknown. */
const char *go_wait_reason_name(const struct go_offsets *off, uint8_t reason);

#endif

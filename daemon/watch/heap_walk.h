/* The Go heap's sampled objects, enumerated from outside: every live
 * heap-profile "special" (runtime.specialprofile, attached by
 * setprofilebucket to each object the runtime sampled, removed by the
 * sweeper when the object is freed) with its object address and bucket,
 * read with process_vm_readv. No probe, nothing written.
 *
 * The walk: runtime.mheap_.allArenas (every heap arena's index) ->
 * mheap_.arenas[0][index] (the *heapArena; linux/amd64 has no L1 level)
 * -> heapArena.pageSpecials (one bit per page: a span starting there has
 * specials) -> heapArena.spans[page] (the *mspan) -> mspan.specials (a
 * list sorted by offset) -> the profile records: object = startAddr +
 * offset. Reads are batched (proc_read_many), so a walk costs a handful
 * of syscalls per level whatever the heap size; the work grows with the
 * spans that carry specials (about one per live sample), not with the heap.
 *
 * The target keeps running: a list being swept while it is read can come
 * out short or, with a recycled record, odd. Each record is checked
 * (offset inside its span, bucket aligned) and callers that retire
 * objects wait for a second walk to agree (heap_trace.c). */
#ifndef MEMDRIFT_HEAP_WALK_H
#define MEMDRIFT_HEAP_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "binary/go_offsets.h"

/* Bounds on hostile or torn input, and on memdrift's memory per walk
 * (at most ~12 MiB of spans and ~16 MiB of results). At the default
 * MemProfileRate a span with specials stands for ~512 KiB of live heap:
 * 262144 of them is a 128 GiB heap. A walk that hits a bound says so
 * (truncated) and retires nothing. */
#define HW_MAX_ARENAS 65536          /* 64 MiB each: a 4 TiB heap */
#define HW_MAX_SPANS (1u << 18)      /* spans with specials per walk */
#define HW_MAX_SPECIALS (1u << 20)   /* special records per walk */
#define HW_MAX_LIST 65536            /* records in one span's list */

struct heap_walk_layout {
	uint64_t mheap;              /* runtime address of runtime.mheap_ */
	int arenas, all_arenas;      /* runtime.mheap fields */
	int spans, page_specials;    /* runtime.heapArena fields */
	int span_start, span_npages, span_specials; /* runtime.mspan fields */
	int span_lo, span_len;       /* the window of an mspan that holds all three */
	/* runtime.special{next; offset uint16|uintptr; kind byte} and
	 * specialprofile.b (heap_special_layout) */
	int sp_offset, sp_offset_size, sp_kind, sp_bucket;
	unsigned kind_profile;
};

/* One sampled object alive in the target (not yet swept). */
struct heap_special {
	uint64_t p;      /* object address */
	uint64_t bucket; /* its runtime *bucket */
};

struct heap_walk_stats {
	uint64_t arenas, spans, specials, profile;
	uint64_t read_errors;  /* ranges that could not be read */
	uint64_t rejected;     /* records or spans failing a sanity check */
	bool truncated;        /* a HW_MAX_* bound was reached */
};

/* The layout for a binary: its offsets (DWARF or table), where mheap_ is,
 * and the special record layout (heap_special_layout: kind offset, the
 * profile kind, specialprofile.b offset). -ENOTSUP when a field is unknown
 * (older source-derived table entries) or mheap_ was not found. */
int heap_walk_layout_init(struct heap_walk_layout *l, const struct go_offsets *off,
			  uint64_t mheap, int kind_off, unsigned kind_profile, int bucket_off);

/* Every live profile special of process pid, sorted by p (*out malloc'd,
 * NULL when none). 0, -ESRCH when the process is gone, -EFAULT when the
 * arena index itself cannot be read, -ENOMEM. */
int heap_walk_profile_specials(pid_t pid, const struct heap_walk_layout *l,
			       struct heap_special **out, size_t *n, struct heap_walk_stats *st);

/* The entry for object p in a sorted walk result, or NULL. */
const struct heap_special *heap_special_find(const struct heap_special *v, size_t n, uint64_t p);

/* Pure parts (unit-tested). Page numbers of the set bits of a
 * heapArena.pageSpecials bitmap of nbytes, into pages (at most max);
 * returns how many were set (may exceed max). */
size_t heap_walk_bitmap_pages(const uint8_t *bits, size_t nbytes, uint32_t *pages, size_t max);
/* Decodes one special record (rec: at least sp_bucket + 8 bytes). Returns
 * true for a profile special, with its span offset and bucket. */
bool heap_walk_parse_special(const struct heap_walk_layout *l, const uint8_t *rec, uint64_t *next,
			     uint64_t *offset, uint64_t *bucket);

#endif

/* One look at a live Go process's goroutines and heap, read from outside with
 * process_vm_readv; no probes, nothing written into the target. */
#ifndef MEMDRIFT_SNAPSHOT_H
#define MEMDRIFT_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "discover/target.h"

struct snap_goroutine {
	uint64_t g;          /* runtime address of the runtime.g */
	uint64_t goid;
	uint64_t gopc;       /* runtime address of the go statement (return PC) */
	uint64_t startpc;    /* runtime address of the goroutine's entry function */
	uint32_t status;     /* _Gscan bit cleared; a leaked one reads as waiting */
	bool leaked;         /* _Gleaked (1.26+): the runtime's leak detector proved
			      * it blocked forever; still waiting on waitreason */
	uint8_t waitreason;
	int64_t waitsince;   /* nanotime (CLOCK_MONOTONIC), 0 when unknown */
	uint64_t stack_bytes;
	bool system;         /* runtime-internal, not counted by NumGoroutine */
};

struct snap_heap {
	uint64_t live_bytes;       /* gcController.heapLive */
	uint64_t marked_bytes;     /* gcController.heapMarked: retained by the last GC */
	uint64_t goal_bytes;
	uint64_t gc_cycles;        /* memstats.numgc */
	uint64_t total_alloc_bytes;
	uint64_t total_free_bytes;
};

struct go_snapshot {
	pid_t pid;
	uint64_t taken_ns;         /* CLOCK_MONOTONIC at the start of the walk */
	struct snap_goroutine *gs; /* every non-dead g, system ones included */
	size_t ngs;
	size_t goroutines;         /* user goroutines (what NumGoroutine counts) */
	size_t leaked;             /* of them, marked leaked by the runtime */
	uint64_t max_goid;
	struct snap_heap heap;
	uint64_t cgo_calls;        /* runtime.ncgocall + every m's ncgocall */
	bool cgo_calls_known;
	size_t truncated;          /* goroutines not examined (walk over its bounds) */
};

/* Takes a snapshot. 0 or negative errno with a reason in err. */
int go_snapshot_take(const struct go_target *t, struct go_snapshot *snap, char *err, size_t errlen);
void go_snapshot_free(struct go_snapshot *snap);
/* Only the heap numbers (a few reads). 0, -ENOENT, -ESRCH. */
int go_snapshot_heap(const struct go_target *t, struct snap_heap *h);

/* Goroutines grouped by creation site (gopc) */
struct snap_site {
	uint64_t gopc;
	uint64_t startpc;
	const char *function; /* function containing the go statement */
	const char *file;
	int line;
	const char *start_function;
	size_t count;
	size_t leaked;              /* marked leaked by the runtime (also in state_count) */
	size_t state_count[64 + 8]; /* index: wait reason, or 64+status for non-waiting */
	int64_t oldest_waitsince;     /* smallest non-zero waitsince */
};

/* Where goroutines of (gopc, startpc) were created: the function, file and
 * line of the go statement (gopc is the return address after it), or
 * "runtime.main (main goroutine)" for the one the runtime's assembly
 * starts. Strings point into t's gobin; "?" when unknown. */
void go_site_describe(const struct go_target *t, uint64_t gopc, uint64_t startpc,
		      const char **function, const char **file, int *line,
		      const char **start_function);

/* Groups user goroutines by site, sorted by count descending. *sites is malloc'd. */
int go_snapshot_sites(const struct go_target *t, const struct go_snapshot *snap,
		      struct snap_site **sites, size_t *nsites);
/* State index of a goroutine: its wait reason when waiting, else 64+status. */
size_t go_snapshot_state_index(const struct snap_goroutine *g);
/* Label for state index i of a site ("chan receive", "running", ...). */
const char *go_snapshot_state_name(const struct go_target *t, size_t i);

/* Goroutines the runtime counts as its own (isSystemGoroutine): started in
 * package runtime, except runtime.main and runtime.corostart. The one rule,
 * for snapshots and attach's live counts. */
bool go_start_is_system(const struct go_target *t, uint64_t startpc);

#endif

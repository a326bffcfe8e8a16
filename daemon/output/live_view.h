/* attach's live view: goroutines by creation site with trends, births and
 * deaths from the trace, heap marked per GC and the top heap sites, as text
 * or one JSON object per interval (and a final one). */
#ifndef MEMDRIFT_LIVE_VIEW_H
#define MEMDRIFT_LIVE_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "discover/target.h"
#include "watch/snapshot.h"

struct event_loop;
struct goroutine_trace;
struct native_trace;
struct heap_trace;

#define ATTACH_MAX_SITES 4096 /* sites kept for trends (struct attach.prev) */

struct prev_site {
	uint64_t gopc;
	int64_t live;
};

/* One attach session: what cmd_attach sets up and the view reads. */
struct attach {
	pid_t pid;
	struct go_target t;
	bool json, trace;
	uint64_t interval_ns, duration_ns, start_ns, last_ns;
	struct goroutine_trace *gt;
	struct native_trace *nt;
	struct heap_trace *ht;
	bool heap_trace_tier; /* mallocgc probes: heap_alloc.pb.gz */
	const char *pprof_dir;
	/* heap, read each interval; marked is the leak signal, one value per GC */
	struct snap_heap heap, heap_at_attach;
	bool heap_known;
	uint64_t marked_history[8];
	size_t nmarked;
	struct event_loop *loop;
	struct prev_site *prev;
	size_t nprev;
	uint64_t prev_created, prev_exited, prev_max_goid;
	int64_t first_total;
	bool have_first, target_exited;
	unsigned long intervals;
	/* startpc -> system memo (runtime.* entry functions) */
	struct { uint64_t pc; bool system; } memo[256];
	size_t nmemo;
};

/* One interval's report (final: the last one, at exit). 0 or negative errno. */
int live_view_report(struct attach *a, bool final);

#endif

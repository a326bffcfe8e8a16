/* The daemon's Go sampling (watch tier, every detect.interval): one
 * snapshot of goroutines and heap per process, goroutines grouped by
 * creation site into series, and the top heap sites cached for a
 * post-mortem. The per-process state it owns is struct go_sample and
 * struct heap_cache, members of struct watched (state/watched.h). */
#ifndef MEMDRIFT_STATE_SAMPLE_H
#define MEMDRIFT_STATE_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "detect/alert.h"
#include "discover/target.h"
#include "state/series.h"
#include "watch/heapprof.h"
#include "watch/snapshot.h"

#define DAEMON_SNAPSHOT_FAILURES_MAX 5
#define DAEMON_TOP_SITES 10
/* Top heap sites are cached for a post-mortem (an OOM victim's memory is
 * often gone by the time the kill is reported): refreshed at most this
 * often, and only while heap marked grows. */
#define DAEMON_HEAP_CACHE_NS (10ull * 1000000000ull)

struct daemon;
struct watched;

/* One goroutine creation site of a Go process. */
struct site_track {
	uint64_t gopc;
	struct alert_site site;
	struct series *count;
	uint32_t live;            /* this tick */
	uint32_t blocked_long;    /* this tick */
	uint32_t leaked;          /* this tick: marked leaked by the runtime */
	uint64_t oldest_blocked_ns;
	bool seen;
};

/* A Go process (CLASS_GO): its analysis, goroutine sites and the latest
 * numbers, for metrics and post-mortems. */
struct go_sample {
	struct go_target target;
	bool cgo;                      /* Go that links C through cgo */
	struct site_track *sites;
	size_t nsites;
	uint32_t last_numgc;
	bool have_numgc;
	int failures;
	bool ready;                    /* first snapshot succeeded */
	size_t goroutines;
	size_t goroutines_leaked;      /* marked leaked by the runtime (1.26+) */
	uint64_t stack_bytes;
	struct snap_heap heap;
	uint64_t cgo_calls;
};

/* The top heap sites of the last profile read, for post-mortems. */
struct heap_cache {
	struct alert_site site[DAEMON_TOP_SITES];
	uint64_t bytes[DAEMON_TOP_SITES];
	size_t n;
	uint64_t at_ns, marked;
};

/* A heap site as an alert site (function, file, line). */
void heap_site_to_alert(const struct heap_site *hs, struct alert_site *out);
/* One snapshot of w (CLASS_GO) into its series. 0 or negative errno. */
int daemon_sample_go(struct daemon *d, struct watched *w, uint64_t now);
/* opened: g->target was opened (CLASS_GO). */
void go_sample_free(struct go_sample *g, bool opened);

#endif

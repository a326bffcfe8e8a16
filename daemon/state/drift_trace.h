/* Trace on drift (trace.on_drift): a drifting process gets trace-tier
 * probes for trace.duration under trace.cpu_budget, to name the stack
 * behind the drift. Today that is C memory (state/native_watch.h) for a
 * go+cgo process whose RSS grows outside the Go heap; a goroutine leak is
 * logged (its sites are named by the snapshot already; exact births and
 * deaths are `memdrift attach --trace goroutines`). The per-process state
 * it owns is struct drift_trace, a member of struct watched. */
#ifndef MEMDRIFT_STATE_DRIFT_TRACE_H
#define MEMDRIFT_STATE_DRIFT_TRACE_H

#include <stdint.h>

#include "detect/detect.h"
#include "state/native_watch.h"

struct daemon;
struct watched;

struct drift_trace {
	uint32_t requested;            /* bit per drift kind: trace asked for once */
	struct native_watch *native;   /* C allocations traced (trace tier), or NULL */
	uint64_t native_until_ns;
	uint64_t native_cost_ns, native_cost_at_ns; /* trace.cpu_budget: last sample */
};

/* A drift of kind (why: a few words for the log) asks for its trace, once
 * per process and kind. Counted in memdrift_daemon_events_total. */
void drift_trace_request(struct daemon *d, struct watched *w, enum drift_kind kind,
			 const char *why);
/* Samples the C memory trace while it runs; switches it off when its time is
 * up or its probes cost the target more than trace.cpu_budget. */
void drift_trace_sample(struct daemon *d, struct watched *w, uint64_t now);
void drift_trace_free(struct drift_trace *t);

#endif

/* The daemon's trace tier for C memory: while a process drifts outside the
 * Go heap, its libc allocator (and cgo calls) are traced for a bounded time
 * and outstanding bytes are kept as a series per allocation site, so the
 * native_leak detector can name the stack (the Go line that called
 * C.CString, or the C function). Bounded: max_sites sites per process. */
#ifndef MEMDRIFT_NATIVE_WATCH_H
#define MEMDRIFT_NATIVE_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "detect/alert.h"
#include "state/series.h"

struct go_target;
struct native_watch;

struct native_watch_site {
	uint64_t id;             /* stable per site while the watch runs */
	struct alert_site site;  /* Go caller when there is one, else the C function */
	struct series *bytes;    /* outstanding bytes, one point per sample */
	uint64_t bytes_now, count_now;
	uint64_t oldest_age_ns;
	bool seen;               /* in the last sample */
};

/* Attaches the native probes to pid (go may be NULL for a non-Go process;
 * cgo: also runtime.cgocall). 0 or negative errno with a reason in err. */
int native_watch_start(pid_t pid, const struct go_target *go, bool cgo, uint32_t series_points,
		       uint32_t max_sites, uint32_t max_allocs, struct native_watch **out,
		       char *err, size_t errlen);
/* Polls the kernel maps and appends one point per site (0 for sites whose
 * blocks are all freed). 0 or negative errno. */
int native_watch_sample(struct native_watch *nw, uint64_t now_ns);
size_t native_watch_nsites(const struct native_watch *nw);
struct native_watch_site *native_watch_site(struct native_watch *nw, size_t i);
uint64_t native_watch_outstanding(const struct native_watch *nw);
/* Blocks and sites that did not fit a bound (map full, site table full). */
uint64_t native_watch_lost(const struct native_watch *nw);
uint64_t native_watch_started_ns(const struct native_watch *nw);
/* CPU the probes have cost the target since attach, in ns: hits of each
 * probe (counted in BPF, as of the last sample) times a per-kind cost
 * measured by scripts/bench/probe-cost and native-cost (native_watch.c). */
uint64_t native_watch_cost_ns(const struct native_watch *nw);
void native_watch_free(struct native_watch *nw);

#endif

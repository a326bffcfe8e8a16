/* Exact goroutine births and deaths by creation site (trace tier): a uprobe
 * where the new g is in a register right after runtime.newproc1 returns (in
 * its callers newproc.func1 / newcoro.func1, on an emulated instruction;
 * else on each RET of newproc1, single-stepped) and on runtime.goexit1
 * (R14 = exiting g), per-(pid, site) counters in the kernel, reconciled with
 * a snapshot taken while the probes were already live so that live counts
 * are exact from the first second. One loaded BPF object serves every
 * traced process and Go version (config index in the BPF cookie). */
#ifndef MEMDRIFT_GOROUTINE_TRACE_H
#define MEMDRIFT_GOROUTINE_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "discover/target.h"
#include "probe/probe_place.h"
#include "watch/snapshot.h"

#define GT_MAX_TARGETS 64
#define GT_MAX_PROBES 16
/* Window events kept per target while the attach window is open. */
#define GT_MAX_WINDOW_EVENTS (1u << 20)

struct goroutine_trace;

enum gt_probe_kind {
	GT_PROBE_BIRTH,  /* after newproc1 returned, new g in a register */
	GT_PROBE_DEATH,  /* goexit1, exiting g in R14 */
};

struct gt_probe {
	enum gt_probe_kind kind;
	const char *function;   /* "runtime.newproc.func1" */
	enum probe_reg reg;     /* births: register holding the new g */
	uint64_t func_vaddr;    /* link-time entry */
	uint64_t file_offset;   /* where the uprobe goes */
	struct probe_place place; /* offset from the entry, instruction, emulated */
};

/* The probes goroutine tracing would place in t's executable (no BPF
 * needed; `ps --probes` shows them). 0 or negative errno with err. */
int goroutine_trace__plan(const struct go_target *t, struct gt_probe *probes, size_t max,
			  size_t *n, char *err, size_t errlen);

struct goroutine_trace_opts {
	size_t max_window_events; /* per target while the window is open; 0: GT_MAX_WINDOW_EVENTS */
};

/* Opens, checks (bpf_util_check) and loads the BPF object; opts may be
 * NULL. 0 or negative errno with err. */
int goroutine_trace__new(const struct goroutine_trace_opts *opts, struct goroutine_trace **out,
			 char *err, size_t errlen);
void goroutine_trace__free(struct goroutine_trace *gt);

/* Starts tracing t: probes attached with the attach window open, so every
 * birth and death also goes through the ring buffer until _reconcile. */
int goroutine_trace__attach(struct goroutine_trace *gt, const struct go_target *t, char *err,
			    size_t errlen);
/* Closes pid's window with snap (taken after _attach) as the baseline:
 * window births already in snap are not counted twice, window deaths of
 * goroutines snap missed are not lost. */
int goroutine_trace__reconcile(struct goroutine_trace *gt, pid_t pid,
			       const struct go_snapshot *snap);
/* Removes pid's probes and kernel state. */
void goroutine_trace__detach(struct goroutine_trace *gt, pid_t pid);

/* Per (gopc, startpc) of one process: live = base + created - exited. */
struct gt_site {
	uint64_t gopc, startpc; /* runtime addresses */
	int64_t base;           /* snapshot count + window corrections */
	uint64_t created, exited; /* since attach, from the kernel */
	int64_t live;
};
/* *sites malloc'd. 0 or negative errno. */
int goroutine_trace__read(struct goroutine_trace *gt, pid_t pid, struct gt_site **sites,
			  size_t *nsites);

struct gt_stats {
	uint64_t births, deaths;   /* probe hits (all processes) */
	uint64_t morestack_skips;
	uint64_t ringbuf_drops;    /* window events lost in the kernel */
	uint64_t window_overflow;  /* window events over max_window_events */
	uint64_t sites_full;       /* hits not counted: site map full */
	uint64_t read_errors;
	uint64_t lost_events;      /* sum of everything that breaks exactness */
	uint64_t corrections;      /* |window corrections| applied */
};
void goroutine_trace__stats(struct goroutine_trace *gt, struct gt_stats *st);

/* Ring-buffer fd for an event loop; _poll consumes what is ready. */
int goroutine_trace__ring_fd(struct goroutine_trace *gt);
int goroutine_trace__poll(struct goroutine_trace *gt);

#endif

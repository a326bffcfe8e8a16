/* The daemon's per-process state: one struct watched per Go or JVM process
 * watched, made of sub-structs owned by their stages (Go sampling and the
 * heap-site cache: state/sample.h; trace on drift: state/drift_trace.h; the
 * JVM: state/jvm_state.h), and the discovery that creates and forgets them
 * (state/watched.c: the procmon exec/exit/rss callbacks). */
#ifndef MEMDRIFT_STATE_WATCHED_H
#define MEMDRIFT_STATE_WATCHED_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "discover/classify.h"
#include "discover/proc.h"
#include "discover/procmon.h"
#include "state/drift_trace.h"
#include "state/jvm_state.h"
#include "state/sample.h"
#include "state/series.h"

struct daemon;

/* RSS as the kernel's rss_stat tracepoint (or /proc) reported it last. */
struct rss_state {
	struct procmon_rss last;
	bool known;
};

struct watched {
	struct watched *next;
	pid_t pid;
	enum proc_class cls;
	char comm[32];
	char exe[PATH_MAX];
	struct proc_container container; /* "" outside containers */
	uint64_t first_seen_ns;
	uint64_t start_ticks;          /* proc_start_time at discovery (PID reuse) */
	bool oom_reported;             /* one alert and post-mortem per victim */
	uint64_t snapshots;
	struct process_series series;
	struct rss_state rss;
	struct go_sample go;           /* CLASS_GO */
	struct heap_cache heap_top;    /* CLASS_GO: for post-mortems */
	struct drift_trace trace;      /* trace.on_drift */
	struct jvm_state *jvm;         /* CLASS_JVM */
};

struct watched *find_watched(struct daemon *d, pid_t pid);
/* Selectors and the process bound, common to Go and JVM processes. */
bool daemon_admit_process(struct daemon *d, pid_t pid, const struct proc_exe *exe);
struct watched *daemon_watched_new(struct daemon *d, pid_t pid, const struct proc_exe *exe,
				   enum proc_class cls);
void daemon_watched_link(struct daemon *d, struct watched *w);
void daemon_free_watched(struct watched *w);
/* The last RSS seen into w's series (one point per sample, when known). */
void watched_push_rss(struct watched *w, uint64_t now);
/* Forgets pid (exit, exec, or an exit the ring buffer lost). */
void daemon_forget_process(struct daemon *d, pid_t pid);
/* Decides whether pid is a Go or JVM process the config selects, and starts
 * watching it. initial: found by the /proc scan. */
void daemon_consider_process(struct daemon *d, pid_t pid, bool initial);
/* procmon's callbacks (exec, exit, rss, oom); .ctx is the daemon. */
extern const struct procmon_callbacks daemon_procmon_cbs;

#endif

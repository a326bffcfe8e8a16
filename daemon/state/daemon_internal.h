/* State shared by the daemon's files (daemon.c: discovery, sampling,
 * detectors, reload, main; daemon_http.c: /metrics and the pprof endpoints;
 * daemon_jvm.c: JVM discovery, JNI reference tracking and its detector).
 * Not an interface: only the daemon includes it. */
#ifndef MEMDRIFT_DAEMON_INTERNAL_H
#define MEMDRIFT_DAEMON_INTERNAL_H

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "detect/alert.h"
#include "probe/bpf_util.h"
#include "cli/commands.h"
#include "service/config.h"
#include "detect/detect.h"
#include "base/event_loop.h"
#include "watch/heapprof.h"
#include "watch/hsperf.h"
#include "output/http.h"
#include "binary/gobin_cache.h"
#include "trace/jni_trace.h"
#include "base/log.h"
#include "state/native_watch.h"
#include "discover/proc.h"
#include "discover/procmon.h"
#include "state/series.h"
#include "watch/snapshot.h"
#include "output/snapshot_out.h"
#include "base/strbuf.h"
#include "base/util.h"

#define DAEMON_MAX_SETS 64
#define DAEMON_CLASS_CACHE 1024
#define DAEMON_SNAPSHOT_FAILURES_MAX 5
#define DAEMON_TOP_SITES 10
#define DAEMON_METRICS_LIMIT (8u << 20)
/* A verdict needs the process watched for this fraction of detect.window:
 * a process that just started is warming up, and its growth over a short
 * history is not a trend. The trend rule wants growth in each third of the
 * points, so a warm-up shorter than 2/3 of 0.8 window never alarms; a leak
 * is reported at 0.8 window after the process starts at the earliest. */
#define DAEMON_MIN_WINDOW_COVERAGE 0.8
/* JVMs: `java` is a native binary that maps libjvm.so only once its launcher
 * has loaded it, so a new native process is re-checked a few times in its
 * first seconds (bounded list, bounded checks). */
#define DAEMON_JVM_PENDING 256
#define DAEMON_JVM_CHECKS 5
#define DAEMON_MAX_JVMS 32 /* each JVM costs one BPF object with its maps */
#define DAEMON_JNI_SITES 1024 /* symbolized JNI sites kept per JVM */
/* Top heap sites are cached for a post-mortem (an OOM victim's memory is
 * often gone by the time the kill is reported): refreshed at most this
 * often, and only while heap marked grows. */
#define DAEMON_HEAP_CACHE_NS (10ull * 1000000000ull)
/* Profiles are computed on the loop: after one that took T, the next waits
 * (DUTY - 1) * T, so profiles take at most 1/DUTY of the loop's time. */
#define DAEMON_PROFILE_DUTY 5
/* Alert lines waiting for a slow stdout reader; beyond it they are dropped. */
#define DAEMON_STDOUT_BUFFER (1u << 20)


enum proc_class { CLASS_UNKNOWN, CLASS_GO, CLASS_JVM, CLASS_OTHER };

struct class_entry {
	dev_t dev;
	ino_t ino;
	enum proc_class cls;
};

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

/* One JNI creation site of a JVM: the native function that called
 * New(Weak)GlobalRef (JNI implementation frames trimmed) and the refs it
 * holds since tracing began. All stacks through that function are one site:
 * their Java callers differ (interpreted, then JIT-compiled), the leak does not. */
struct jni_site_track {
	char key[320];                 /* "global|leak_site_create@libfoo.so" */
	char stack[768];               /* the first full stack seen, leaf first */
	uint64_t id; /* alert site id: hash of key */
	uint32_t kind;
	struct alert_site site; /* the native function that called New*GlobalRef */
	int64_t created, deleted;
	struct series *count;
};

struct jvm_state {
	struct jni_trace *trace;       /* NULL: libjvm without usable probes */
	struct symbolizer *sym;
	char hsperf_path[PATH_MAX + 64];
	bool hsperf_ok, hs_ok;
	struct hsperf_stats hs;
	bool have_baseline;
	int64_t pre_attach[JNI_KIND_MAX];
	int64_t refs[JNI_KIND_MAX];    /* outstanding, pre-attach included */
	uint64_t lost;                 /* refs/sites the kernel maps refused */
	int32_t *stack_site;           /* stack id -> site index + 1 */
	int32_t nostack_site[JNI_KIND_MAX];
	struct jni_site_track *sites;
	size_t nsites, sites_dropped;
	struct jni_site *raw;
	char probes[16];               /* "usdt", "symtab" or "none" */
};

struct jvm_candidate {
	pid_t pid;
	uint64_t first_ns;
	uint32_t checks;
};

struct watched {
	struct watched *next;
	pid_t pid;
	enum proc_class cls;
	bool cgo;                      /* Go that links C through cgo */
	char comm[32];
	char exe[PATH_MAX];
	struct proc_container container; /* "" outside containers */
	struct jvm_state *jvm;         /* CLASS_JVM */
	struct go_target target;       /* CLASS_GO */
	struct process_series series;
	struct site_track *sites;
	size_t nsites;
	uint32_t last_numgc;
	bool have_numgc;
	int failures;
	bool ready;                    /* first snapshot succeeded */
	struct procmon_rss rss;
	bool rss_known;
	bool oom_reported;             /* one alert and post-mortem per victim */
	uint64_t first_seen_ns;
	uint64_t start_ticks;          /* proc_start_time at discovery (PID reuse) */
	/* latest numbers, for metrics and post-mortems */
	size_t goroutines;
	size_t goroutines_leaked; /* marked leaked by the runtime (1.26+) */
	uint64_t stack_bytes;
	struct snap_heap heap;
	uint64_t cgo_calls;
	uint64_t snapshots;
	uint32_t trace_requested;      /* bit per drift kind: trace asked for once */
	struct native_watch *native;   /* C allocations traced (trace tier), or NULL */
	uint64_t native_until_ns;
	uint64_t native_cost_ns, native_cost_at_ns; /* trace.cpu_budget: last sample */
	/* cached top heap sites, for post-mortems */
	struct alert_site heap_top[DAEMON_TOP_SITES];
	uint64_t heap_top_bytes[DAEMON_TOP_SITES];
	size_t nheap_top;
	uint64_t heap_top_ns, heap_top_marked;
};

struct daemon_counters {
	uint64_t discovered, exited, skipped_limit, snapshot_errors, evaluations, oom_kills;
	uint64_t alert_write_errors, postmortems;
	uint64_t jvm_discovered, jvm_pending_full, jvm_limit, jni_trace_errors;
	uint64_t trace_requests, trace_errors, trace_over_budget;
	uint64_t exits_reconciled, rescans; /* exits/execs the ring buffer lost */
	uint64_t postmortem_errors, postmortems_pruned, stdout_dropped;
	uint64_t http[4][4];           /* enum http_endpoint x enum http_result */
	uint64_t profile_ns;           /* time spent computing profiles */
};

enum http_endpoint { HTTP_EP_METRICS, HTTP_EP_HEALTHZ, HTTP_EP_PROFILE, HTTP_EP_OTHER };
enum http_result { HTTP_RES_OK, HTTP_RES_REFUSED, HTTP_RES_THROTTLED, HTTP_RES_ERROR };

/* Alerts on stdout: a bounded buffer written without blocking. */
struct out_buffer {
	int fd;                        /* stdout, or a non-blocking reopen of its pipe */
	bool sock;                     /* stdout is a socket: send(MSG_DONTWAIT) */
	char *buf;
	size_t len;
	bool gone;                     /* EPIPE: the reader went away */
};

struct daemon {
	struct memdrift_config cfg;
	const char *config_path;
	const char *sets[DAEMON_MAX_SETS];
	size_t nsets;
	struct event_loop *loop;
	struct procmon *pm;
	struct http_server *http;      /* metrics.listen */
	struct http_server *http_unix; /* metrics.unix_socket */
	uint64_t profile_next_ns;      /* profiles refused (429) before this */
	struct out_buffer out;
	bool state_failing;            /* a post-mortem write failed; said once */
	bool watchdog;                 /* systemd WatchdogSec=: WATCHDOG=1 each tick */
	struct alert_table *alerts;
	FILE *alerts_file;
	struct watched *procs;
	size_t nprocs;
	uint64_t seen_ringbuf_drops;   /* procmon drops already answered by a rescan */
	struct gobin_cache *gobins; /* one analysis per executable, shared by its processes */
	struct class_entry classes[DAEMON_CLASS_CACHE];
	size_t nclasses, class_next;
	struct jvm_candidate pending[DAEMON_JVM_PENDING];
	size_t npending;
	size_t njvms;
	struct daemon_counters n;
	uint64_t started_ns, stop_at_ns;
	uint64_t last_eval_ns;
};

struct http_response;
struct http_request;
struct watched *find_watched(struct daemon *d, pid_t pid);

/* daemon.c, shared with daemon_jvm.c */
void daemon_emit_alert(const struct alert_record *rec, void *ctx); /* alert_table callback */
/* Selectors and the process bound, common to Go and JVM processes. */
bool daemon_admit_process(struct daemon *d, pid_t pid, const struct proc_exe *exe);
struct watched *daemon_watched_new(struct daemon *d, pid_t pid, const struct proc_exe *exe,
				   enum proc_class cls);
void daemon_watched_link(struct daemon *d, struct watched *w);
void daemon_free_watched(struct watched *w);

/* daemon_jvm.c */
void daemon_jvm_free(struct jvm_state *j);
/* pid maps libjvm.so: watch it (JNI refs when libjvm has probes, hsperf, RSS). */
void daemon_jvm_start(struct daemon *d, pid_t pid, const struct proc_exe *exe);
bool daemon_jvm_maps_libjvm(pid_t pid);
/* A new native process that may map libjvm soon: re-checked by pending_check. */
void daemon_jvm_pending_add(struct daemon *d, pid_t pid);
void daemon_jvm_pending_check(struct daemon *d, uint64_t now);
void daemon_jvm_sample(struct daemon *d, struct watched *w, uint64_t now);
void daemon_jvm_evaluate(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts);
void daemon_jvm_postmortem(struct watched *w, json_object *o);
/* HTTP handler (http.h) and its fd callback (event_loop.h). */
int daemon_http_handler(void *ctx, const struct http_request *req, struct http_response *resp);
int daemon_http_fd_ready(void *ctx, uint64_t arg);

/* A Prometheus label value: escaped, invalid UTF-8 replaced (daemon_http.c). */
void prom_escape(struct strbuf *sb, const char *s);

#endif

/* Alerts: one per key (pid, kind, site) while it fires; firing -> resolved
 * with hysteresis; a token-bucket rate limit on new alerts; a bounded table
 * with counters when a bound is hit; JSON-lines rendering (json-c); and the
 * correlation sentence that says which memory layer grew. */
#ifndef MEMDRIFT_ALERT_H
#define MEMDRIFT_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "detect/detect.h"

#define ALERT_MAX_ACTIVE_LIMIT 4096u
#define ALERT_FUNCTION_MAX 256
#define ALERT_FILE_MAX 256
#define ALERT_COMM_MAX 16
#define ALERT_SUMMARY_MAX 512

struct alert_site {
	char function[ALERT_FUNCTION_MAX];
	char file[ALERT_FILE_MAX];
	uint32_t line; /* 0: unknown */
};

enum alert_state { ALERT_FIRING, ALERT_RESOLVED };

/* One JSON line. */
struct alert_record {
	uint64_t ts_ns; /* CLOCK_REALTIME */
	pid_t pid;
	char comm[ALERT_COMM_MAX];
	enum drift_kind kind;
	enum drift_severity severity; /* warning or critical */
	enum alert_state state;
	bool has_site;
	struct alert_site site;
	char summary[ALERT_SUMMARY_MAX];
	struct detect_evidence evidence;
};

struct alert_params {
	uint32_t hysteresis;       /* consecutive clear evaluations before resolved (>= 1) */
	uint32_t rate_limit;       /* new alerts per rate_interval; 0 = unlimited */
	uint64_t rate_interval_ns;
	uint32_t max_active;       /* 1..ALERT_MAX_ACTIVE_LIMIT */
};

void alert_params_defaults(struct alert_params *p);

/* One detector evaluation for one key. */
struct alert_observation {
	pid_t pid;
	const char *comm;
	enum drift_kind kind;
	uint64_t site_id;              /* caller's stable id of the site; 0 = process-wide */
	const struct alert_site *site; /* shown in the record; NULL = "site": null */
	enum drift_severity severity;  /* DRIFT_CLEAR: the detector saw nothing */
	const char *summary;           /* NULL: keep the firing one (on resolve) */
	const struct detect_evidence *evidence; /* NULL: none / keep the firing one */
};

struct alert_counters {
	uint64_t fired;        /* firing records for new alerts */
	uint64_t escalated;    /* warning -> critical while firing (re-emitted) */
	uint64_t resolved;
	uint64_t rate_limited; /* new alerts refused by the rate limit */
	uint64_t dropped_full; /* new alerts refused because max_active were firing */
	uint32_t active;
};

typedef void (*alert_emit_fn)(const struct alert_record *rec, void *ctx);

struct alert_table;

/* NULL on bad params (-EINVAL) or no memory. */
struct alert_table *alert_table_new(const struct alert_params *p);
void alert_table_free(struct alert_table *t);
/* Reload: new hysteresis/rate/bound apply from now on; firing alerts stay
 * (a smaller max_active only refuses new ones). 0, -EINVAL or -ENOMEM. */
int alert_table_set_params(struct alert_table *t, const struct alert_params *p);

/* Feeds one evaluation. Emits (through emit, synchronously) at most one
 * record: a new alert (firing), an escalation to critical (firing again, same
 * alert), or the resolution after `hysteresis` clear evaluations in a row.
 * now_ns is monotonic (rate limit), ts_ns is wall time for the record.
 * Returns 1 when a record was emitted, 0 when not, -EINVAL on a bad key. */
int alert_table_update(struct alert_table *t, const struct alert_observation *obs,
		       uint64_t now_ns, uint64_t ts_ns, alert_emit_fn emit, void *ctx);

/* The process is gone: its firing alerts resolve at once ("process exited").
 * Returns how many were resolved. */
int alert_table_forget_pid(struct alert_table *t, pid_t pid, uint64_t ts_ns, alert_emit_fn emit,
			   void *ctx);

/* A one-shot event outside the lifecycle (oom_kill): always emitted as
 * firing, never rate-limited, never tracked or resolved. Counted as fired. */
void alert_table_oneshot(struct alert_table *t, const struct alert_observation *obs,
			 uint64_t ts_ns, alert_emit_fn emit, void *ctx);

const struct alert_counters *alert_table_counters(const struct alert_table *t);
/* Calls fn for each firing alert (its latest record), e.g. for /metrics. */
void alert_table_foreach(const struct alert_table *t, alert_emit_fn fn, void *ctx);

/* "2024-05-01T12:34:56.789Z" (UTC, milliseconds). 0 or -ENOSPC. */
int alert_format_time(uint64_t ts_ns, char *buf, size_t len);
/* One JSON object, one line, no trailing newline. Length, or -ENOSPC/-ENOMEM.
 * Keys: ts pid comm kind severity state site{function,file,line}|null
 * summary evidence{window_seconds slope_per_second mann_kendall_z p_value
 * start_value end_value points <kind-specific extras>}. */
int alert_record_json(const struct alert_record *rec, char *buf, size_t len);

/* Correlation: which layer made RSS grow. */
enum drift_layer {
	LAYER_GO_HEAP,
	LAYER_GOROUTINE_STACKS,
	LAYER_C_MEMORY,
	LAYER_JNI_REFS,   /* a count, not bytes: listed, never picked as the byte layer */
	LAYER_RSS_FILE,   /* file-backed RSS (mapped files, page cache charged to it) */
	LAYER_COUNT,
	LAYER_OTHER = LAYER_COUNT, /* anon RSS none of the known layers explains */
	LAYER_NONE = -1,
};

struct layer_delta {
	bool known;
	double delta;                  /* bytes (refs for LAYER_JNI_REFS) over the window */
	const struct alert_site *site; /* top site of the layer, or NULL */
};

struct correlation_input {
	uint64_t window_ns;
	bool rss_known;
	double rss_anon_delta; /* bytes */
	struct layer_delta layer[LAYER_COUNT];
};

/* Builds e.g. "RSS +310 MiB in 10m: Go heap +22 MiB, goroutine stacks +9 MiB,
 * C memory +270 MiB at main.(*Conv).toC (conv.go:88)" and sets *grew to the
 * byte layer with the largest growth (LAYER_OTHER when unexplained anon RSS
 * beats them all; LAYER_NONE when nothing grew by 1 MiB). Returns the
 * sentence length (truncated to len-1 when longer). */
int correlate_layers(const struct correlation_input *in, char *buf, size_t len,
		     enum drift_layer *grew);

/* A default one-sentence summary for a detector result, e.g.
 * "goroutines at main.worker (main.go:42) +120 in 10m (0.20/s), 100 blocked long". */
int alert_summary(enum drift_kind kind, const struct detect_evidence *ev,
		  const struct alert_site *site, char *buf, size_t len);

#endif

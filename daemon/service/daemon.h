/* The daemon's shared state: one struct daemon for the service loop
 * (service/daemon.c: tick, procmon fd, reload, signals), the per-process
 * state it holds (state/watched.h), the detectors (detect/evaluate.h), the
 * post-mortems (output/postmortem.h) and the HTTP endpoints
 * (http/routes.h). Not an interface: only the daemon includes it. */
#ifndef MEMDRIFT_SERVICE_DAEMON_H
#define MEMDRIFT_SERVICE_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/event_loop.h"
#include "binary/gobin_cache.h"
#include "detect/alert.h"
#include "discover/classify.h"
#include "discover/procmon.h"
#include "http/server.h"
#include "service/config.h"
#include "state/jvm_state.h"

#define DAEMON_MAX_SETS 64
#define DAEMON_METRICS_LIMIT (8u << 20)
/* A verdict needs the process watched for this fraction of detect.window:
 * a process that just started is warming up, and its growth over a short
 * history is not a trend. The trend rule wants growth in each third of the
 * points, so a warm-up shorter than 2/3 of 0.8 window never alarms; a leak
 * is reported at 0.8 window after the process starts at the earliest. */
#define DAEMON_MIN_WINDOW_COVERAGE 0.8
/* Profiles are computed on the loop: after one that took T, the next waits
 * (DUTY - 1) * T, so profiles take at most 1/DUTY of the loop's time. */
#define DAEMON_PROFILE_DUTY 5
/* Alert lines waiting for a slow stdout reader; beyond it they are dropped. */
#define DAEMON_STDOUT_BUFFER (1u << 20)

struct watched;

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
	struct classify_cache classes; /* executables classified (discover/classify.h) */
	struct jvm_candidate pending[DAEMON_JVM_PENDING];
	size_t npending;
	size_t njvms;
	struct daemon_counters n;
	uint64_t started_ns, stop_at_ns;
	uint64_t last_eval_ns;
};

/* alert_table callback: stdout, alerts.file. */
void daemon_emit_alert(const struct alert_record *rec, void *ctx);
/* Runs the daemon on cfg (valid) until a signal, or duration ns when not 0
 * (cli/cmd_daemon.c parsed the options into d). Frees d. Exit status. */
int daemon_run(struct daemon *d, const struct memdrift_config *cfg, uint64_t duration);

#endif

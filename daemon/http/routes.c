/* The daemon's HTTP side: Prometheus /metrics (bounded label cardinality),
 * /healthz, and pprof profiles of watched processes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "http/routes.h"
#include "output/snapshot_out.h"
#include "service/daemon.h"
#include "state/watched.h"

/* ---------------------------------------------------------------- metrics */

/* Label values come from targets (comm, pclntab names): any bytes. The
 * exposition must be UTF-8, so a byte that starts no valid sequence becomes
 * U+FFFD. */
void prom_escape(struct strbuf *sb, const char *s)
{
	while (*s) {
		size_t n = utf8_seq_len(s);

		if (*s == '\\' || *s == '"')
			strbuf_printf(sb, "\\%c", *s);
		else if (*s == '\n')
			strbuf_append(sb, "\\n", 2);
		else if (n)
			strbuf_append(sb, s, n);
		else
			strbuf_append(sb, "\xef\xbf\xbd", 3);
		s += n ? n : 1;
	}
}

static void prom_family(struct strbuf *sb, const char *name, const char *type, const char *help)
{
	strbuf_printf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* container_id and pod_uid only for a process in a container */
static void prom_container_labels(struct strbuf *sb, const struct watched *w)
{
	if (w && w->container.id[0])
		strbuf_printf(sb, ",container_id=\"%s\"", w->container.id);
	if (w && w->container.pod_uid[0])
		strbuf_printf(sb, ",pod_uid=\"%s\"", w->container.pod_uid);
}

static void prom_proc_labels(struct strbuf *sb, const struct watched *w)
{
	strbuf_printf(sb, "pid=\"%d\",comm=\"", w->pid);
	prom_escape(sb, w->comm);
	strbuf_append(sb, "\"", 1);
	prom_container_labels(sb, w);
}

struct prom_alert_ctx {
	struct daemon *d;
	struct strbuf *sb;
};

static void prom_alert(const struct alert_record *rec, void *ctx)
{
	struct prom_alert_ctx *a = ctx;
	struct strbuf *sb = a->sb;

	strbuf_printf(sb, "memdrift_alert_firing{pid=\"%d\",comm=\"", rec->pid);
	prom_escape(sb, rec->comm);
	strbuf_append(sb, "\"", 1);
	prom_container_labels(sb, find_watched(a->d, rec->pid));
	strbuf_printf(sb, ",kind=\"%s\",severity=\"%s\",function=\"", drift_kind_name(rec->kind),
		      drift_severity_name(rec->severity));
	prom_escape(sb, rec->has_site ? rec->site.function : "");
	strbuf_append(sb, "\"} 1\n", 5);
}

static void render_jvm_metrics(struct daemon *d, struct strbuf *sb)
{
	static const struct {
		const char *name, *help;
		size_t offset;
	} hs_gauges[] = {
		{ "memdrift_jvm_heap_used_bytes", "Java heap used (hsperfdata).",
		  offsetof(struct hsperf_stats, heap_used) },
		{ "memdrift_jvm_heap_capacity_bytes", "Java heap capacity (hsperfdata).",
		  offsetof(struct hsperf_stats, heap_capacity) },
		{ "memdrift_jvm_metaspace_used_bytes", "Metaspace used (hsperfdata).",
		  offsetof(struct hsperf_stats, metaspace_used) },
		{ "memdrift_jvm_gc_collections_total", "GC collections (hsperfdata).",
		  offsetof(struct hsperf_stats, gc_count) },
		{ "memdrift_jvm_threads", "Live Java threads (hsperfdata).",
		  offsetof(struct hsperf_stats, threads_live) },
	};
	uint32_t budget = d->cfg.label_cardinality;

	for (size_t g = 0; g < sizeof(hs_gauges) / sizeof(hs_gauges[0]); g++) {
		prom_family(sb, hs_gauges[g].name,
			    strstr(hs_gauges[g].name, "_total") ? "counter" : "gauge", hs_gauges[g].help);
		for (struct watched *w = d->procs; w; w = w->next) {
			int64_t v;

			if (w->cls != CLASS_JVM || !w->jvm->hs_ok)
				continue;
			v = *(const int64_t *)((const char *)&w->jvm->hs + hs_gauges[g].offset);
			if (v < 0)
				continue;
			strbuf_printf(sb, "%s{", hs_gauges[g].name);
			prom_proc_labels(sb, w);
			strbuf_printf(sb, "} %lld\n", (long long)v);
		}
	}
	prom_family(sb, "memdrift_jni_refs", "gauge",
		    "JNI references outstanding (pre-attach included), by type.");
	for (struct watched *w = d->procs; w; w = w->next) {
		if (w->cls != CLASS_JVM || !w->jvm->trace)
			continue;
		for (int k = 0; k < JNI_KIND_MAX; k++) {
			strbuf_printf(sb, "memdrift_jni_refs{");
			prom_proc_labels(sb, w);
			strbuf_printf(sb, ",type=\"%s\"} %lld\n", k == JNI_KIND_WEAK ? "weak" : "global",
				      (long long)w->jvm->refs[k]);
		}
	}
	prom_family(sb, "memdrift_jni_lost_total", "counter",
		    "JNI refs or sites the kernel maps refused (counts are low by this much).");
	for (struct watched *w = d->procs; w; w = w->next) {
		if (w->cls != CLASS_JVM || !w->jvm->trace)
			continue;
		strbuf_printf(sb, "memdrift_jni_lost_total{");
		prom_proc_labels(sb, w);
		strbuf_printf(sb, "} %lu\n", (unsigned long)w->jvm->lost);
	}
	/* per-site refs: only sites holding refs, bounded by label_cardinality */
	prom_family(sb, "memdrift_jni_site_refs", "gauge",
		    "JNI references outstanding per creating native function (tracked since attach).");
	for (struct watched *w = d->procs; w && budget; w = w->next) {
		if (w->cls != CLASS_JVM)
			continue;
		for (size_t i = 0; i < w->jvm->nsites && budget; i++) {
			const struct jni_site_track *t = &w->jvm->sites[i];

			if (t->created == t->deleted)
				continue;
			strbuf_printf(sb, "memdrift_jni_site_refs{");
			prom_proc_labels(sb, w);
			strbuf_append(sb, ",function=\"", 11);
			prom_escape(sb, t->site.function);
			strbuf_append(sb, "\",object=\"", 10);
			prom_escape(sb, path_base(t->site.file));
			strbuf_printf(sb, "\",type=\"%s\"} %lld\n", t->kind == JNI_KIND_WEAK ? "weak" : "global",
				      (long long)(t->created - t->deleted));
			budget--;
		}
	}
}

/* One sample of a per-goroutine-site family: the process's labels and the
 * site's function, line and file. */
static void prom_site_sample(struct strbuf *sb, const char *name, const struct watched *w,
			     const struct site_track *t, unsigned value)
{
	strbuf_printf(sb, "%s{", name);
	prom_proc_labels(sb, w);
	strbuf_append(sb, ",function=\"", 11);
	prom_escape(sb, t->site.function);
	strbuf_printf(sb, "\",line=\"%u\",file=\"", t->site.line);
	prom_escape(sb, path_base(t->site.file));
	strbuf_printf(sb, "\"} %u\n", value);
}

static void render_http_metrics(struct daemon *d, struct strbuf *sb)
{
	static const char *const eps[] = { "metrics", "healthz", "profile", "other" };
	static const char *const results[] = { "ok", "refused", "throttled", "error" };

	prom_family(sb, "memdrift_http_requests_total", "counter",
		    "HTTP requests by endpoint and outcome (refused: not authorized; throttled: 429).");
	for (int e = 0; e < 4; e++)
		for (int r = 0; r < 4; r++)
			strbuf_printf(sb, "memdrift_http_requests_total{endpoint=\"%s\",result=\"%s\"} %lu\n",
				      eps[e], results[r], (unsigned long)d->n.http[e][r]);
	prom_family(sb, "memdrift_http_profile_seconds_total", "counter",
		    "Event-loop time spent computing profiles for HTTP clients.");
	strbuf_printf(sb, "memdrift_http_profile_seconds_total %.6f\n", (double)d->n.profile_ns / 1e9);
}

/* The trace tier's C memory, per traced process. */
static void render_native_metrics(struct daemon *d, struct strbuf *sb)
{
	static const struct {
		const char *name, *type, *help;
		uint64_t (*value)(const struct native_watch *nw);
	} native[] = {
		{ "memdrift_native_outstanding_bytes", "gauge",
		  "C memory allocated and not freed since tracing started (trace tier).",
		  native_watch_outstanding },
		{ "memdrift_native_lost_total", "counter",
		  "C allocations or sites not tracked because a bound was hit.", native_watch_lost },
	};
	for (size_t m = 0; m < sizeof(native) / sizeof(native[0]); m++) {
		prom_family(sb, native[m].name, native[m].type, native[m].help);
		for (struct watched *w = d->procs; w; w = w->next) {
			if (!w->trace.native)
				continue;
			strbuf_printf(sb, "%s{", native[m].name);
			prom_proc_labels(sb, w);
			strbuf_printf(sb, "} %lu\n", (unsigned long)native[m].value(w->trace.native));
		}
	}
}

static void render_metrics(struct daemon *d, struct strbuf *sb)
{
	static const struct {
		const char *name, *help;
		size_t offset;
		bool u64;
	} gauges[] = {
		{ "memdrift_go_goroutines", "User goroutines (what runtime.NumGoroutine counts).",
		  offsetof(struct watched, go.goroutines), false },
		{ "memdrift_go_goroutines_leaked",
		  "Goroutines the Go runtime's own leak detector marked leaked (1.26+; set "
		  "when something requests its goroutineleak profile).",
		  offsetof(struct watched, go.goroutines_leaked), false },
		{ "memdrift_go_goroutine_stack_bytes", "Bytes of goroutine stacks.",
		  offsetof(struct watched, go.stack_bytes), true },
		{ "memdrift_go_heap_live_bytes", "Go heap live bytes (gcController.heapLive).",
		  offsetof(struct watched, go.heap.live_bytes), true },
		{ "memdrift_go_heap_marked_bytes", "Go heap retained by the last GC (heapMarked).",
		  offsetof(struct watched, go.heap.marked_bytes), true },
		{ "memdrift_go_heap_goal_bytes", "Go heap goal of the next GC.",
		  offsetof(struct watched, go.heap.goal_bytes), true },
		{ "memdrift_go_gc_cycles_total", "Completed GC cycles.",
		  offsetof(struct watched, go.heap.gc_cycles), true },
		{ "memdrift_go_cgo_calls_total", "cgo calls (runtime.NumCgoCall).",
		  offsetof(struct watched, go.cgo_calls), true },
	};
	const struct alert_counters *ac = alert_table_counters(d->alerts);
	struct procmon_stats ps = { 0 };
	struct prom_alert_ctx actx = { d, sb };
	uint32_t budget = d->cfg.label_cardinality;

	prom_family(sb, "memdrift_watched_processes", "gauge", "Go and JVM processes being watched.");
	strbuf_printf(sb, "memdrift_watched_processes %zu\n", d->nprocs);
	prom_family(sb, "memdrift_watched_jvms", "gauge", "JVM processes being watched.");
	strbuf_printf(sb, "memdrift_watched_jvms %zu\n", d->njvms);
	for (size_t g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
		prom_family(sb, gauges[g].name, strstr(gauges[g].name, "_total") ? "counter" : "gauge",
			    gauges[g].help);
		for (struct watched *w = d->procs; w; w = w->next) {
			const char *base = (const char *)w + gauges[g].offset;
			uint64_t v = gauges[g].u64 ? *(const uint64_t *)base :
						     (uint64_t)*(const size_t *)base;

			if (!w->go.ready)
				continue;
			strbuf_printf(sb, "%s{", gauges[g].name);
			prom_proc_labels(sb, w);
			strbuf_printf(sb, "} %lu\n", (unsigned long)v);
		}
	}
	prom_family(sb, "memdrift_rss_bytes", "gauge", "Resident memory by type (kernel rss_stat).");
	for (struct watched *w = d->procs; w; w = w->next) {
		if (!w->rss.known)
			continue;
		strbuf_printf(sb, "memdrift_rss_bytes{");
		prom_proc_labels(sb, w);
		strbuf_printf(sb, ",type=\"anon\"} %lu\n", (unsigned long)w->rss.last.anon);
		strbuf_printf(sb, "memdrift_rss_bytes{");
		prom_proc_labels(sb, w);
		strbuf_printf(sb, ",type=\"file\"} %lu\n", (unsigned long)w->rss.last.file);
	}
	/* per-site series are bounded by limits.label_cardinality, largest first per process */
	prom_family(sb, "memdrift_goroutine_site_goroutines", "gauge",
		    "Goroutines alive per creation site (top sites, bounded).");
	for (struct watched *w = d->procs; w && budget; w = w->next) {
		for (size_t k = 0; k < DAEMON_TOP_SITES && budget; k++) {
			const struct site_track *best = NULL;

			/* k-th largest by selection: sites are few per process */
			for (size_t i = 0; i < w->go.nsites; i++) {
				const struct site_track *t = &w->go.sites[i];
				size_t larger = 0;

				if (!t->live)
					continue;
				for (size_t j = 0; j < w->go.nsites; j++)
					if (w->go.sites[j].live > t->live ||
					    (w->go.sites[j].live == t->live && j < i))
						larger++;
				if (larger == k) {
					best = t;
					break;
				}
			}
			if (!best)
				break;
			prom_site_sample(sb, "memdrift_goroutine_site_goroutines", w, best, best->live);
			budget--;
		}
	}
	prom_family(sb, "memdrift_goroutine_site_leaked", "gauge",
		    "Goroutines per creation site marked leaked by the Go runtime (sites with any).");
	for (struct watched *w = d->procs; w && budget; w = w->next) {
		for (size_t i = 0; i < w->go.nsites && budget; i++) {
			const struct site_track *t = &w->go.sites[i];

			if (!t->leaked)
				continue;
			prom_site_sample(sb, "memdrift_goroutine_site_leaked", w, t, t->leaked);
			budget--;
		}
	}
	render_jvm_metrics(d, sb);
	prom_family(sb, "memdrift_alert_firing", "gauge", "Alerts firing now (1 per alert).");
	alert_table_foreach(d->alerts, prom_alert, &actx);
	prom_family(sb, "memdrift_alerts_total", "counter", "Alert lifecycle events.");
	strbuf_printf(sb, "memdrift_alerts_total{event=\"fired\"} %lu\n", (unsigned long)ac->fired);
	strbuf_printf(sb, "memdrift_alerts_total{event=\"escalated\"} %lu\n", (unsigned long)ac->escalated);
	strbuf_printf(sb, "memdrift_alerts_total{event=\"resolved\"} %lu\n", (unsigned long)ac->resolved);
	strbuf_printf(sb, "memdrift_alerts_total{event=\"rate_limited\"} %lu\n",
		      (unsigned long)ac->rate_limited);
	strbuf_printf(sb, "memdrift_alerts_total{event=\"dropped_full\"} %lu\n",
		      (unsigned long)ac->dropped_full);
	if (d->pm)
		procmon__stats(d->pm, &ps);
	prom_family(sb, "memdrift_lost_events_total", "counter",
		    "Kernel records lost or refused (ring buffer full, map full): never silent.");
	strbuf_printf(sb, "memdrift_lost_events_total{reason=\"ringbuf_full\"} %lu\n",
		      (unsigned long)ps.ringbuf_drops);
	strbuf_printf(sb, "memdrift_lost_events_total{reason=\"mm_map_full\"} %lu\n",
		      (unsigned long)(ps.mms_full + ps.tgid_mm_full));
	strbuf_printf(sb, "memdrift_lost_events_total{reason=\"watch_map_full\"} %lu\n",
		      (unsigned long)ps.watched_full);
	prom_family(sb, "memdrift_kernel_events_total", "counter", "Kernel events seen.");
	strbuf_printf(sb, "memdrift_kernel_events_total{event=\"exec\"} %lu\n", (unsigned long)ps.exec);
	strbuf_printf(sb, "memdrift_kernel_events_total{event=\"exit\"} %lu\n", (unsigned long)ps.exit);
	strbuf_printf(sb, "memdrift_kernel_events_total{event=\"oom_kill\"} %lu\n", (unsigned long)ps.oom);
	strbuf_printf(sb, "memdrift_kernel_events_total{event=\"rss_stat\"} %lu\n",
		      (unsigned long)ps.rss_events);
	strbuf_printf(sb, "memdrift_kernel_events_total{event=\"rss_record\"} %lu\n",
		      (unsigned long)ps.rss_records);
	prom_family(sb, "memdrift_daemon_events_total", "counter", "Daemon bookkeeping.");
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"discovered\"} %lu\n",
		      (unsigned long)d->n.discovered);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"exited\"} %lu\n",
		      (unsigned long)d->n.exited);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"exit_reconciled\"} %lu\n",
		      (unsigned long)d->n.exits_reconciled);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"rescan_after_drops\"} %lu\n",
		      (unsigned long)d->n.rescans);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"skipped_max_processes\"} %lu\n",
		      (unsigned long)d->n.skipped_limit);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"snapshot_error\"} %lu\n",
		      (unsigned long)d->n.snapshot_errors);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"evaluation\"} %lu\n",
		      (unsigned long)d->n.evaluations);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"postmortem\"} %lu\n",
		      (unsigned long)d->n.postmortems);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"alert_write_error\"} %lu\n",
		      (unsigned long)d->n.alert_write_errors);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"jvm_discovered\"} %lu\n",
		      (unsigned long)d->n.jvm_discovered);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"jvm_pending_full\"} %lu\n",
		      (unsigned long)d->n.jvm_pending_full);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"skipped_max_jvms\"} %lu\n",
		      (unsigned long)d->n.jvm_limit);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"jni_trace_error\"} %lu\n",
		      (unsigned long)d->n.jni_trace_errors);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"trace_request\"} %lu\n",
		      (unsigned long)d->n.trace_requests);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"trace_error\"} %lu\n",
		      (unsigned long)d->n.trace_errors);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"trace_over_budget\"} %lu\n",
		      (unsigned long)d->n.trace_over_budget);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"postmortem_error\"} %lu\n",
		      (unsigned long)d->n.postmortem_errors);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"postmortem_pruned\"} %lu\n",
		      (unsigned long)d->n.postmortems_pruned);
	strbuf_printf(sb, "memdrift_daemon_events_total{event=\"alert_stdout_dropped\"} %lu\n",
		      (unsigned long)d->n.stdout_dropped);
	render_http_metrics(d, sb);
	prom_family(sb, "memdrift_binaries_analysed", "gauge",
		    "Go executables analysed, each shared by all its processes.");
	strbuf_printf(sb, "memdrift_binaries_analysed %zu\n", gobin_cache_entries(d->gobins));
	render_native_metrics(d, sb);
}

static int serve_profile(struct daemon *d, const char *kind, const char *pid_arg,
			 struct http_response *resp)
{
	struct watched *w;
	struct go_snapshot snap;
	struct heap_profile hp = { 0 };
	struct pprof_builder *b = NULL;
	char err[512];
	pid_t pid;
	int ret;

	resp->content_type = "text/plain";
	if (!pid_arg || parse_pid(pid_arg, &pid) < 0) {
		resp->status = 400;
		resp->body = strdup("pid=PID is required\n");
		return 0;
	}
	w = find_watched(d, pid);
	if (!w || w->cls != CLASS_GO) {
		resp->status = 404;
		resp->body = strdup(w ? "not a Go process (JVM profiles: memdrift attach PID --pprof DIR)\n" :
				    "not a watched process\n");
		return 0;
	}
	if (!strcmp(kind, "heap")) {
		ret = heap_profile_read(&w->go.target, &hp, err, sizeof(err));
		if (ret == 0)
			ret = heap_profile_build_pprof(&w->go.target, &hp, &b, err, sizeof(err));
		heap_profile_free(&hp);
	} else {
		/* goroutine profile: the same builder as the CLI's file, in memory */
		ret = go_snapshot_take(&w->go.target, &snap, err, sizeof(err));
		if (ret == 0) {
			ret = snapshot_goroutine_pprof(&w->go.target, &snap, &b, err, sizeof(err));
			go_snapshot_free(&snap);
		}
	}
	if (ret < 0) {
		resp->status = ret == -ENODATA ? 404 : 500;
		resp->body = strdup(err);
		return 0;
	}
	{
		uint8_t *out;
		size_t len;

		ret = pprof_encode_gzip(b, &out, &len);
		pprof_builder_free(b);
		if (ret < 0) {
			resp->status = 500;
			resp->body = strdup("pprof encoding failed\n");
			return 0;
		}
		resp->body = (char *)out;
		resp->len = len;
		resp->content_type = "application/octet-stream";
	}
	return 0;
}

/* ------------------------------------------------------------ who may read */

/* Reads "Uid:" or "Gid:" of /proc/PID/status: real, effective, saved, fs. */
static int status_ids(pid_t pid, const char *key, unsigned long ids[4])
{
	char path[64], line[256];
	size_t kl = strlen(key);
	FILE *f;
	int found = -ENOENT;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) &&
		    sscanf(line + kl, "%lu %lu %lu %lu", &ids[0], &ids[1], &ids[2], &ids[3]) == 4) {
			found = 0;
			break;
		}
	fclose(f);
	return found;
}

/* A peer may have pid's profiles when it could read pid's memory itself:
 * root, or a user whose uid and gid are every uid and gid of the target
 * while the target is dumpable (the kernel's ptrace access rule for a user
 * without CAP_SYS_PTRACE; /proc/PID is owned by root when it is not). */
static bool peer_may_read(const struct http_client *c, pid_t pid)
{
	unsigned long uids[4], gids[4];
	char path[64];
	struct stat st;

	if (!c->peer_known)
		return false;
	if (c->uid == 0)
		return true;
	snprintf(path, sizeof(path), "/proc/%d", pid);
	if (stat(path, &st) < 0 || st.st_uid != c->uid || status_ids(pid, "Uid:", uids) < 0 ||
	    status_ids(pid, "Gid:", gids) < 0)
		return false;
	for (int i = 0; i < 4; i++)
		if (uids[i] != c->uid || gids[i] != c->gid)
			return false;
	return true;
}

static void refuse(struct http_response *resp, int status, const char *why)
{
	resp->status = status;
	resp->content_type = "text/plain";
	resp->body = strdup(why);
}

/* Profiles: over the Unix socket by the peer's credentials; over TCP only
 * with the bearer token (a token holder is an operator). Bounded in loop
 * time: at most 1/DAEMON_PROFILE_DUTY of it. */
static int serve_profile_checked(struct daemon *d, const char *kind, const struct http_request *req,
				 struct http_response *resp, enum http_result *res)
{
	const struct http_client *c = &req->client;
	uint64_t t0 = now_monotonic_ns(), dt;
	pid_t pid;
	int ret;

	if (!req->pid_arg || parse_pid(req->pid_arg, &pid) < 0) {
		refuse(resp, 400, "pid=PID is required\n");
		*res = HTTP_RES_ERROR;
		return 0;
	}
	if (c->unix_socket ? !peer_may_read(c, pid) : !c->token_ok) {
		*res = HTTP_RES_REFUSED;
		if (c->unix_socket)
			refuse(resp, 403, "profiles of this process go to root and its own user only\n");
		else if (c->token_required)
			refuse(resp, 401, "profiles need 'Authorization: Bearer TOKEN' (metrics.token_file)\n");
		else
			refuse(resp, 403, "no profiles over TCP without metrics.token_file; "
					  "use metrics.unix_socket\n");
		return 0;
	}
	if (t0 < d->profile_next_ns) {
		uint64_t wait = d->profile_next_ns - t0;

		*res = HTTP_RES_THROTTLED;
		refuse(resp, 429, "profiles are rate-limited; retry later\n");
		resp->retry_after = (unsigned)(wait / 1000000000ull) + 1;
		return 0;
	}
	ret = serve_profile(d, kind, req->pid_arg, resp);
	dt = now_monotonic_ns() - t0;
	d->n.profile_ns += dt;
	d->profile_next_ns = t0 + dt + (DAEMON_PROFILE_DUTY - 1) * dt;
	*res = resp->status < 400 ? HTTP_RES_OK : HTTP_RES_ERROR;
	return ret;
}

int daemon_http_handler(void *ctx, const struct http_request *req, struct http_response *resp)
{
	struct daemon *d = ctx;
	const struct http_client *c = &req->client;
	enum http_endpoint ep = HTTP_EP_OTHER;
	enum http_result res = HTTP_RES_OK;
	int ret = 0;

	if (!strcmp(req->path, "/healthz")) {
		/* liveness probes carry no token: "ok" tells nothing */
		ep = HTTP_EP_HEALTHZ;
		resp->body = strdup("ok\n");
	} else if (!strcmp(req->path, "/metrics")) {
		ep = HTTP_EP_METRICS;
		if (c->token_required && !c->token_ok) {
			res = HTTP_RES_REFUSED;
			refuse(resp, 401, "/metrics needs 'Authorization: Bearer TOKEN' (metrics.token_file)\n");
		} else {
			struct strbuf sb;

			strbuf_init(&sb, DAEMON_METRICS_LIMIT);
			render_metrics(d, &sb);
			if (sb.truncated)
				strbuf_printf(&sb, "# truncated at %u bytes\n", DAEMON_METRICS_LIMIT);
			resp->content_type = "text/plain; version=0.0.4";
			resp->body = strbuf_steal(&sb, &resp->len);
		}
	} else if (!strcmp(req->path, "/debug/pprof/heap")) {
		ep = HTTP_EP_PROFILE;
		ret = serve_profile_checked(d, "heap", req, resp, &res);
	} else if (!strcmp(req->path, "/debug/pprof/goroutine")) {
		ep = HTTP_EP_PROFILE;
		ret = serve_profile_checked(d, "goroutine", req, resp, &res);
	} else {
		res = HTTP_RES_ERROR;
		refuse(resp, 404, "endpoints: /metrics /healthz /debug/pprof/heap?pid=N "
				  "/debug/pprof/goroutine?pid=N\n");
	}
	d->n.http[ep][res]++;
	return ret;
}

int daemon_http_fd_ready(void *ctx, uint64_t arg)
{
	struct daemon *d = ctx;

	(void)arg;
	/* one callback for both listeners: each runs only what is ready */
	if (d->http)
		http_server_run(d->http);
	if (d->http_unix)
		http_server_run(d->http_unix);
	return 0;
}

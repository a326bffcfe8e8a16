/* The daemon's JVM side (state/jvm_state.h): discovering JVMs (a `java`
 * maps libjvm.so only after its launcher loads it, so new native processes
 * are re-checked for a few seconds), JNI global/weak reference tracking
 * per site (symbols/jni_site.h), hsperfdata numbers and the JVM part of a
 * post-mortem. Its jni_ref_leak detector is in detect/evaluate.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "service/daemon.h"
#include "state/watched.h"
#include "symbols/jni_site.h"

void daemon_jvm_free(struct jvm_state *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->nsites; i++)
		series_free(j->sites[i].count);
	free(j->sites);
	free(j->stack_site);
	free(j->raw);
	symbolizer_free(j->sym);
	jni_trace__free(j->trace);
	free(j);
}

/* References outstanding when tracing began: the JVM's own count read after
 * the probes went live, minus what the probes saw in the meantime. */
static void jvm_take_baseline(struct jvm_state *j)
{
	uint64_t st[JNI_STAT_MAX], g, wk;

	jni_trace__stats(j->trace, st);
	if (jni_trace__jvm_counts(j->trace, &g, &wk) < 0)
		return;
	j->pre_attach[JNI_KIND_GLOBAL] = (int64_t)g - (int64_t)st[JNI_STAT_CREATED] +
					 (int64_t)st[JNI_STAT_DELETED] +
					 (int64_t)st[JNI_STAT_DELETED_UNKNOWN];
	j->pre_attach[JNI_KIND_WEAK] = (int64_t)wk - (int64_t)st[JNI_STAT_CREATED + 1] +
				       (int64_t)st[JNI_STAT_DELETED + 1] +
				       (int64_t)st[JNI_STAT_DELETED_UNKNOWN + 1];
	j->have_baseline = true;
}

/* pid maps libjvm.so: watch it with JNI ref tracking and hsperf numbers.
 * A JVM whose libjvm offers no probes is still watched (RSS, hsperf). */
void daemon_jvm_start(struct daemon *d, pid_t pid, const struct proc_exe *exe)
{
	struct watched *w;
	struct jvm_state *j;
	char err[768];
	int ret;

	if (!d->cfg.select_jvm || !daemon_admit_process(d, pid, exe))
		return;
	if (d->njvms >= DAEMON_MAX_JVMS) {
		d->n.jvm_limit++;
		log_warn("not watching JVM PID %d (%s): %d JVMs watched already", pid, exe->comm,
			 DAEMON_MAX_JVMS);
		return;
	}
	w = daemon_watched_new(d, pid, exe, CLASS_JVM);
	j = calloc(1, sizeof(*j));
	if (!w || !j) {
		free(j);
		if (w)
			daemon_free_watched(w);
		return;
	}
	w->jvm = j;
	snprintf(j->probes, sizeof(j->probes), "none");
	j->sites = calloc(DAEMON_JNI_SITES, sizeof(*j->sites));
	j->stack_site = calloc(JNI_MAX_STACKS, sizeof(*j->stack_site));
	j->raw = calloc(JNI_MAX_SITES, sizeof(*j->raw));
	if (!j->sites || !j->stack_site || !j->raw) {
		daemon_free_watched(w);
		return;
	}
	ret = jni_trace__new(&(struct jni_trace_opts){ .pid = pid }, &j->trace, err, sizeof(err));
	if (ret == 0 && (ret = symbolizer_new(pid, NULL, &j->sym)) < 0)
		snprintf(err, sizeof(err), "PID %d: read maps: %s", pid, strerror(-ret));
	if (ret == 0)
		ret = jni_trace__attach(j->trace, err, sizeof(err));
	if (ret < 0) {
		if (!proc_exists(pid)) {
			daemon_free_watched(w);
			return;
		}
		d->n.jni_trace_errors++;
		log_warn("JVM PID %d (%s): no JNI ref tracking: %s", pid, exe->comm, err);
		jni_trace__free(j->trace);
		j->trace = NULL;
	} else {
		snprintf(j->probes, sizeof(j->probes), "%s",
			 jni_trace__info(j->trace)->mode == JNI_PROBES_USDT ? "usdt" : "symtab");
		jvm_take_baseline(j);
	}
	j->hsperf_ok = hsperf_find(pid, j->hsperf_path, sizeof(j->hsperf_path)) == 0;
	daemon_watched_link(d, w);
	d->njvms++;
	d->n.jvm_discovered++;
	log_info("watching PID %d (%s) JVM, JNI probes %s%s", pid, w->comm, j->probes,
		 j->hsperf_ok ? ", hsperfdata" : "");
}

static void pending_remove(struct daemon *d, size_t i)
{
	d->pending[i] = d->pending[--d->npending];
}

void daemon_jvm_pending_add(struct daemon *d, pid_t pid)
{
	for (size_t i = 0; i < d->npending; i++)
		if (d->pending[i].pid == pid) {
			d->pending[i] = (struct jvm_candidate){ pid, now_monotonic_ns(), 1 };
			return;
		}
	if (d->npending >= DAEMON_JVM_PENDING) {
		d->n.jvm_pending_full++;
		return;
	}
	d->pending[d->npending++] = (struct jvm_candidate){ pid, now_monotonic_ns(), 1 };
}

/* Re-checks new native processes for libjvm at +0.25, +0.75, +1.75, +3.75 s
 * after their exec (the first check happened at exec). */
void daemon_jvm_pending_check(struct daemon *d, uint64_t now)
{
	static const uint64_t due_ms[DAEMON_JVM_CHECKS] = { 0, 250, 750, 1750, 3750 };

	for (size_t i = 0; i < d->npending;) {
		struct jvm_candidate *c = &d->pending[i];
		struct proc_exe exe;
		pid_t pid = c->pid;

		if (now < c->first_ns + due_ms[c->checks] * 1000000ull) {
			i++;
			continue;
		}
		c->checks++;
		if (find_watched(d, pid) || proc_exe_info(pid, &exe) < 0) {
			pending_remove(d, i);
			continue;
		}
		if (classify_maps_jvm(pid)) {
			pending_remove(d, i);
			daemon_jvm_start(d, pid, &exe);
			continue;
		}
		if (c->checks >= DAEMON_JVM_CHECKS)
			pending_remove(d, i);
		else
			i++;
	}
}

/* A JVM's JNI sites and hsperf numbers. */
void daemon_jvm_postmortem(struct watched *w, json_object *o)
{
	const struct jvm_state *j = w->jvm;
	json_object *arr = json_object_new_array();

	json_object_object_add(o, "jni_probes", json_object_new_string(j->probes));
	json_object_object_add(o, "jni_global_refs", json_object_new_int64(j->refs[JNI_KIND_GLOBAL]));
	json_object_object_add(o, "jni_weak_refs", json_object_new_int64(j->refs[JNI_KIND_WEAK]));
	for (size_t i = 0; i < j->nsites; i++) {
		const struct jni_site_track *t = &j->sites[i];
		json_object *js;

		if (t->created == t->deleted)
			continue;
		js = json_object_new_object();
		json_object_object_add(js, "function", json_object_new_string(t->site.function));
		json_object_object_add(js, "object", json_object_new_string(t->site.file));
		json_object_object_add(js, "kind", json_object_new_string(t->kind == JNI_KIND_WEAK ? "weak" : "global"));
		json_object_object_add(js, "live", json_object_new_int64(t->created - t->deleted));
		json_object_object_add(js, "stack", json_object_new_string(t->stack));
		json_object_array_add(arr, js);
	}
	json_object_object_add(o, "jni_sites", arr);
	if (j->hs_ok) {
		json_object_object_add(o, "java_heap_used_bytes", json_object_new_int64(j->hs.heap_used));
		json_object_object_add(o, "java_heap_capacity_bytes",
				       json_object_new_int64(j->hs.heap_capacity));
	}
}

/* Symbolizes one stack into a JNI site (found or created), keyed by its
 * first frame beyond the JNI implementation (symbols/jni_site.h). -1 when
 * the table is full. */
static int jni_site_for_stack(struct daemon *d, struct jvm_state *j, int32_t stackid,
			      uint32_t kind)
{
	struct native_frame nf[JNI_STACK_DEPTH];
	struct jni_site_track *t;
	size_t first, klen;
	size_t n = jni_trace__symbolized_stack(j->trace, j->sym, stackid, nf, JNI_STACK_DEPTH, &first);
	char key[sizeof(t->key)], stack[sizeof(t->stack)] = "";

	jni_site_key(kind, nf, n, first, key, sizeof(key));
	klen = 0;
	for (size_t i = first; i < n && klen < sizeof(stack); i++)
		klen += (size_t)snprintf(stack + klen, sizeof(stack) - klen, "%s%s@%s", i > first ? ";" : "",
					 nf[i].function, path_base(nf[i].object));
	for (size_t i = 0; i < j->nsites; i++)
		if (j->sites[i].kind == kind && !strcmp(j->sites[i].key, key))
			return (int)i;
	if (j->nsites >= DAEMON_JNI_SITES || j->nsites >= d->cfg.max_sites)
		return -1;
	t = &j->sites[j->nsites];
	memset(t, 0, sizeof(*t));
	t->count = series_new(d->cfg.series_points);
	if (!t->count)
		return -1;
	snprintf(t->key, sizeof(t->key), "%s", key);
	snprintf(t->stack, sizeof(t->stack), "%s", stack);
	t->id = jni_site_id(key);
	t->kind = kind;
	if (n) {
		snprintf(t->site.function, sizeof(t->site.function), "%s", nf[first].function);
		snprintf(t->site.file, sizeof(t->site.file), "%s", nf[first].object);
	} else {
		snprintf(t->site.function, sizeof(t->site.function), "[no stack]");
	}
	return (int)j->nsites++;
}

struct new_site_ctx {
	struct daemon *d;
	struct jvm_state *j;
};

static int new_site(void *ctx, int32_t stackid, uint32_t kind)
{
	struct new_site_ctx *c = ctx;

	return jni_site_for_stack(c->d, c->j, stackid, kind);
}

void daemon_jvm_sample(struct daemon *d, struct watched *w, uint64_t now)
{
	struct jvm_state *j = w->jvm;
	bool refreshed = false;
	int64_t tracked[JNI_KIND_MAX] = { 0 };
	uint64_t st[JNI_STAT_MAX];
	size_t n = 0;

	w->snapshots++;
	watched_push_rss(w, now);
	if (j->hsperf_ok) {
		char err[256];

		j->hs_ok = hsperf_read(j->hsperf_path, &j->hs, err, sizeof(err)) == 0;
	} else if (now - w->first_seen_ns < 30000000000ull) {
		/* the JVM creates its hsperfdata file early in its start-up */
		j->hsperf_ok = hsperf_find(w->pid, j->hsperf_path, sizeof(j->hsperf_path)) == 0;
	}
	if (!j->trace)
		return;
	jni_trace__stats(j->trace, st);
	j->lost = st[JNI_STAT_REFS_FULL] + st[JNI_STAT_SITES_FULL];
	if (jni_trace__read_sites(j->trace, j->raw, JNI_MAX_SITES, &n) < 0)
		return;
	for (size_t i = 0; i < j->nsites; i++)
		j->sites[i].created = j->sites[i].deleted = 0;
	for (size_t i = 0; i < n; i++) {
		const struct jni_site *r = &j->raw[i];
		struct new_site_ctx ctx = { d, j };
		int idx = jni_site_of(r, j->stack_site, j->nostack_site, j->sym, &refreshed, new_site,
				      &ctx);

		if (idx < 0) {
			j->sites_dropped++;
			continue;
		}
		j->sites[idx].created += (int64_t)r->created;
		j->sites[idx].deleted += (int64_t)r->deleted;
		tracked[r->kind & 1] += (int64_t)r->created - (int64_t)r->deleted;
	}
	for (int k = 0; k < JNI_KIND_MAX; k++) {
		int64_t pre = j->have_baseline ? j->pre_attach[k] -
							 (int64_t)st[JNI_STAT_DELETED_UNKNOWN + k]
					       : 0;

		j->refs[k] = tracked[k] + (pre > 0 ? pre : 0);
	}
	series_push(w->series.metric[SERIES_JNI_REFS], now,
		    (double)(j->refs[JNI_KIND_GLOBAL] + j->refs[JNI_KIND_WEAK]));
	for (size_t i = 0; i < j->nsites; i++)
		series_push(j->sites[i].count, now,
			    (double)(j->sites[i].created - j->sites[i].deleted));
}

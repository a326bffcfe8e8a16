/* `memdrift attach PID` on a JVM: JNI global and weak-global references
 * outstanding by the native stack that created them, with trend, beside the
 * JVM's own counters (hsperfdata) and its own ref counts.
 *
 * References that existed before attach: the JVM's own counts are read from
 * its memory (JNIHandles' OopStorage allocation counts, located through
 * libjvm's .symtab) at attach, with process_vm_readv — zero intrusion, unlike
 * `jcmd PID Thread.print`, which would start the JVM's attach listener thread
 * and run a safepoint operation. They are shown as "pre-attach", decreased by
 * every delete of a handle memdrift never saw created. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/event_loop.h"
#include "base/log.h"
#include "base/util.h"
#include "cli/commands.h"
#include "discover/proc.h"
#include "output/pprof.h"
#include "probe/bpf_util.h"
#include "symbols/jni_site.h"
#include "trace/jni_trace.h"
#include "watch/hsperf.h"

#define MAX_FRAMES JNI_STACK_DEPTH
#define MAX_AGG_SITES 4096   /* distinct symbolized sites kept */
#define SITES_SHOWN_TEXT 10
#define SITES_SHOWN_JSON 1000

struct frame_text {
	char function[256];
	char object[PATH_MAX];
	uint64_t offset;
	char unwind[8]; /* "regs", "cfi", "fp", "java" */
	char java[16];  /* Java frame kind, "" native */
};

/* Sites merged by symbols/jni_site.h's key (the first frame past the JNI
 * implementation, as the daemon does): stack ids of one native call site
 * differ when its Java caller gets compiled. frames: the first stack seen. */
struct agg_site {
	char key[JNI_SITE_KEY_MAX];
	__u32 kind;
	struct frame_text *frames;
	size_t nframes;
	int64_t created, deleted;      /* this interval's totals since attach */
	int64_t live_prev, live_first; /* for the trend */
	bool seen_before;
};

struct jvm_view {
	pid_t pid;
	const struct attach_options *opts;
	struct jni_trace *trace;
	struct symbolizer *sym;
	struct event_loop *loop;
	char hsperf_path[PATH_MAX + 64];
	bool hsperf_ok;
	uint64_t start_ns, deadline_ns;
	/* pre-attach accounting: refs that existed when tracing began */
	bool have_baseline;
	int64_t pre_attach[JNI_KIND_MAX];
	/* stack id -> agg site index (+1; 0 = not yet symbolized) */
	int32_t *stack_site;
	int32_t nostack_site[JNI_KIND_MAX];
	struct agg_site *sites;
	size_t nsites;
	size_t sites_dropped;
	struct jni_site *raw;
	uint64_t ticks;
};

static const char *kind_name(__u32 kind)
{
	return kind == JNI_KIND_WEAK ? "weak" : "global";
}

/* Symbolizes one stack into an agg site (found or created): -1 when the
 * table is full. */
static int site_for_stack(struct jvm_view *v, __s32 stackid, __u32 kind)
{
	struct native_frame nf[MAX_FRAMES];
	size_t first;
	size_t n = jni_trace__symbolized_stack(v->trace, v->sym, stackid, nf, MAX_FRAMES, &first);
	char key[JNI_SITE_KEY_MAX];
	struct agg_site *s;

	jni_site_key(kind, nf, n, first, key, sizeof(key));
	for (size_t i = 0; i < v->nsites; i++)
		if (v->sites[i].kind == kind && !strcmp(v->sites[i].key, key))
			return (int)i;
	if (v->nsites == MAX_AGG_SITES)
		return -1;
	s = &v->sites[v->nsites];
	memset(s, 0, sizeof(*s));
	snprintf(s->key, sizeof(s->key), "%s", key);
	s->kind = kind;
	s->frames = calloc(n - first + 1, sizeof(*s->frames));
	if (!s->frames)
		return -1;
	for (size_t i = first; i < n; i++) {
		struct frame_text *ft = &s->frames[s->nframes++];

		snprintf(ft->function, sizeof(ft->function), "%s", nf[i].function);
		snprintf(ft->object, sizeof(ft->object), "%s", nf[i].object);
		ft->offset = nf[i].offset;
		snprintf(ft->unwind, sizeof(ft->unwind), "%s", nf[i].unwind ? nf[i].unwind : "");
		snprintf(ft->java, sizeof(ft->java), "%s", nf[i].java ? nf[i].java : "");
	}
	if (!n) {
		snprintf(s->frames[0].function, sizeof(s->frames[0].function), "[no stack]");
		s->nframes = 1;
	}
	return (int)v->nsites++;
}

static int new_site(void *ctx, int32_t stackid, uint32_t kind)
{
	return site_for_stack(ctx, stackid, kind);
}

static int64_t stat_total(const uint64_t *st, int base)
{
	return (int64_t)(st[base + JNI_KIND_GLOBAL] + st[base + JNI_KIND_WEAK]);
}

struct totals {
	int64_t tracked[JNI_KIND_MAX];
	int64_t pre_attach[JNI_KIND_MAX]; /* -1: unknown */
	int64_t jvm[JNI_KIND_MAX];        /* -1: unreadable */
	uint64_t stats[JNI_STAT_MAX];
	struct hsperf_stats hs;
	bool hs_ok;
};

static int collect(struct jvm_view *v, struct totals *t)
{
	size_t n = 0;
	bool refreshed = false;
	uint64_t g, w;

	memset(t, 0, sizeof(*t));
	jni_trace__stats(v->trace, t->stats);
	jni_trace__read_sites(v->trace, v->raw, JNI_MAX_SITES, &n);
	for (size_t i = 0; i < v->nsites; i++)
		v->sites[i].created = v->sites[i].deleted = 0;
	for (size_t i = 0; i < n; i++) {
		const struct jni_site *r = &v->raw[i];
		int idx = jni_site_of(r, v->stack_site, v->nostack_site, v->sym, &refreshed,
				      new_site, v);

		if (idx < 0) {
			v->sites_dropped++;
			continue;
		}
		v->sites[idx].created += (int64_t)r->created;
		v->sites[idx].deleted += (int64_t)r->deleted;
		t->tracked[r->kind & 1] += (int64_t)r->created - (int64_t)r->deleted;
	}
	for (int k = 0; k < JNI_KIND_MAX; k++) {
		t->pre_attach[k] = v->have_baseline
					   ? v->pre_attach[k] -
						     (int64_t)t->stats[JNI_STAT_DELETED_UNKNOWN + k]
					   : -1;
		t->jvm[k] = -1;
	}
	if (!jni_trace__jvm_counts(v->trace, &g, &w)) {
		t->jvm[JNI_KIND_GLOBAL] = (int64_t)g;
		t->jvm[JNI_KIND_WEAK] = (int64_t)w;
	}
	if (v->hsperf_ok) {
		char err[256];

		t->hs_ok = !hsperf_read(v->hsperf_path, &t->hs, err, sizeof(err));
		if (!t->hs_ok)
			log_debug("hsperfdata: %s", err);
	}
	return 0;
}

static int site_cmp_live(const void *a, const void *b)
{
	const struct agg_site *x = *(const struct agg_site *const *)a;
	const struct agg_site *y = *(const struct agg_site *const *)b;
	int64_t lx = x->created - x->deleted, ly = y->created - y->deleted;

	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x->created > y->created ? -1 : x->created < y->created;
}

static size_t sorted_sites(struct jvm_view *v, struct agg_site **out)
{
	size_t n = 0;

	for (size_t i = 0; i < v->nsites; i++)
		out[n++] = &v->sites[i];
	qsort(out, n, sizeof(*out), site_cmp_live);
	return n;
}

static int64_t total_of(const struct totals *t, int k)
{
	return t->tracked[k] + (t->pre_attach[k] > 0 ? t->pre_attach[k] : 0);
}

static uint64_t lost_events(const struct totals *t)
{
	return t->stats[JNI_STAT_REFS_FULL] + t->stats[JNI_STAT_SITES_FULL];
}

static void json_add_i64(struct json_object *o, const char *k, int64_t v, bool valid)
{
	json_object_object_add(o, k, valid ? json_object_new_int64(v) : NULL);
}

static void print_json(struct jvm_view *v, const struct totals *t, bool final)
{
	struct json_object *o = json_object_new_object(), *arr = json_object_new_array(), *hs;
	struct agg_site **order = calloc(v->nsites + 1, sizeof(*order));
	size_t n = order ? sorted_sites(v, order) : 0, shown = 0;

	json_object_object_add(o, "ts", json_object_new_double((double)now_realtime_ns() / 1e9));
	json_object_object_add(o, "pid", json_object_new_int(v->pid));
	json_object_object_add(o, "runtime", json_object_new_string("jvm"));
	if (final)
		json_object_object_add(o, "final", json_object_new_boolean(1));
	json_object_object_add(o, "probes",
			       json_object_new_string(jni_trace__info(v->trace)->mode == JNI_PROBES_USDT
							      ? "usdt"
							      : "symtab"));
	for (int k = 0; k < JNI_KIND_MAX; k++) {
		char key[48];
		const char *kn = kind_name((__u32)k);

		snprintf(key, sizeof(key), "%s_refs", kn);
		json_add_i64(o, key, total_of(t, k), true);
		snprintf(key, sizeof(key), "tracked_%s_refs", kn);
		json_add_i64(o, key, t->tracked[k], true);
		snprintf(key, sizeof(key), "pre_attach_%s_refs", kn);
		json_add_i64(o, key, t->pre_attach[k], t->pre_attach[k] >= 0);
		snprintf(key, sizeof(key), "jvm_%s_refs", kn);
		json_add_i64(o, key, t->jvm[k], t->jvm[k] >= 0);
		snprintf(key, sizeof(key), "%s_created", kn);
		json_add_i64(o, key, (int64_t)t->stats[JNI_STAT_CREATED + k], true);
		snprintf(key, sizeof(key), "%s_deleted", kn);
		json_add_i64(o, key,
			     (int64_t)(t->stats[JNI_STAT_DELETED + k] +
				       t->stats[JNI_STAT_DELETED_UNKNOWN + k]),
			     true);
	}
	json_object_object_add(o, "lost_events", json_object_new_int64((int64_t)lost_events(t)));
	json_object_object_add(o, "stack_errors",
			       json_object_new_int64((int64_t)t->stats[JNI_STAT_STACK_ERRORS]));
	/* new-stack events the ring buffer could not take: those stacks are
	 * named from the frame-pointer walk, late */
	json_object_object_add(o, "stack_events_lost",
			       json_object_new_int64((int64_t)t->stats[JNI_STAT_EVENTS_LOST]));
	json_object_object_add(o, "sites_dropped", json_object_new_int64((int64_t)v->sites_dropped));
	hs = json_object_new_object();
	if (t->hs_ok) {
		json_add_i64(hs, "heap_used", t->hs.heap_used, t->hs.heap_used >= 0);
		json_add_i64(hs, "heap_capacity", t->hs.heap_capacity, t->hs.heap_capacity >= 0);
		json_add_i64(hs, "metaspace_used", t->hs.metaspace_used, t->hs.metaspace_used >= 0);
		json_add_i64(hs, "gc_count", t->hs.gc_count, t->hs.gc_count >= 0);
		json_add_i64(hs, "gc_young", t->hs.gc_young, t->hs.gc_young >= 0);
		json_add_i64(hs, "gc_full", t->hs.gc_full, t->hs.gc_full >= 0);
		json_add_i64(hs, "gc_time_ns", t->hs.gc_time_ns, t->hs.gc_time_ns >= 0);
		json_add_i64(hs, "threads_live", t->hs.threads_live, t->hs.threads_live >= 0);
		json_object_object_add(hs, "gc_policy", json_object_new_string(t->hs.gc_policy));
	}
	json_object_object_add(o, "hsperf", t->hs_ok ? hs : NULL);
	if (!t->hs_ok)
		json_object_put(hs);
	for (size_t i = 0; i < n && shown < SITES_SHOWN_JSON; i++) {
		struct agg_site *s = order[i];
		int64_t live = s->created - s->deleted;
		struct json_object *so, *fr;

		if (!live && !s->created)
			continue;
		so = json_object_new_object();
		fr = json_object_new_array();
		json_object_object_add(so, "kind", json_object_new_string(kind_name(s->kind)));
		json_object_object_add(so, "live", json_object_new_int64(live));
		json_object_object_add(so, "created", json_object_new_int64(s->created));
		json_object_object_add(so, "deleted", json_object_new_int64(s->deleted));
		json_object_object_add(so, "delta", json_object_new_int64(live - s->live_prev));
		json_object_object_add(so, "function", json_object_new_string(s->frames[0].function));
		json_object_object_add(so, "object", json_object_new_string(s->frames[0].object));
		for (size_t f = 0; f < s->nframes; f++) {
			struct json_object *fo = json_object_new_object();

			json_object_object_add(fo, "function",
					       json_object_new_string(s->frames[f].function));
			json_object_object_add(fo, "object", json_object_new_string(s->frames[f].object));
			json_object_object_add(fo, "offset", json_object_new_int64((int64_t)s->frames[f].offset));
			if (*s->frames[f].unwind)
				json_object_object_add(fo, "unwind",
						       json_object_new_string(s->frames[f].unwind));
			if (*s->frames[f].java)
				json_object_object_add(fo, "java", json_object_new_string(s->frames[f].java));
			json_object_array_add(fr, fo);
		}
		json_object_object_add(so, "frames", fr);
		json_object_array_add(arr, so);
		shown++;
	}
	json_object_object_add(o, "sites", arr);
	json_object_object_add(o, "sites_omitted", json_object_new_int64((int64_t)(n - shown)));
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
	free(order);
}

static void print_site_text(const struct agg_site *s, bool full)
{
	int64_t live = s->created - s->deleted;

	printf("  %8" PRId64 " %+7" PRId64 " %9" PRId64 " %9" PRId64 "  %-6s ", live,
	       live - s->live_prev, s->created, s->deleted, kind_name(s->kind));
	for (size_t f = 0; f < s->nframes && (full || f < 3); f++)
		printf("%s%s%s%s%s", f ? " <- " : "", s->frames[f].function,
		       *s->frames[f].object ? " (" : "",
		       *s->frames[f].object ? path_base(s->frames[f].object) : "",
		       *s->frames[f].object ? ")" : "");
	if (!full && s->nframes > 3)
		printf(" <- ...");
	putchar('\n');
}

static void print_text(struct jvm_view *v, const struct totals *t, bool final)
{
	struct agg_site **order = calloc(v->nsites + 1, sizeof(*order));
	size_t n = order ? sorted_sites(v, order) : 0;
	char ts[32], b1[32], b2[32];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
	printf("%s%s pid %d  JNI", final ? "=== final report " : "", ts, (int)v->pid);
	for (int k = 0; k < JNI_KIND_MAX; k++) {
		printf("  %s refs %" PRId64 " (new %" PRId64, kind_name((__u32)k), total_of(t, k),
		       t->tracked[k]);
		if (t->pre_attach[k] >= 0)
			printf(" + pre-attach %" PRId64, t->pre_attach[k]);
		if (t->jvm[k] >= 0)
			printf("; JVM says %" PRId64, t->jvm[k]);
		putchar(')');
	}
	printf("  lost %" PRIu64 "\n", lost_events(t));
	if (t->hs_ok)
		printf("  heap %s / %s  GC %" PRId64 " (young %" PRId64 ", full %" PRId64
		       ")  threads %" PRId64 "  [%s]\n",
		       fmt_bytes(b1, sizeof(b1), (uint64_t)(t->hs.heap_used > 0 ? t->hs.heap_used : 0)),
		       fmt_bytes(b2, sizeof(b2),
				 (uint64_t)(t->hs.heap_capacity > 0 ? t->hs.heap_capacity : 0)),
		       t->hs.gc_count, t->hs.gc_young, t->hs.gc_full, t->hs.threads_live,
		       t->hs.gc_policy);
	if (n)
		printf("  %8s %7s %9s %9s  %-6s %s\n", "live", "trend", "created", "deleted", "kind",
		       "site (native and Java frames, leaf first)");
	for (size_t i = 0; i < n && (final || i < SITES_SHOWN_TEXT); i++)
		if (order[i]->created)
			print_site_text(order[i], final);
	if (!final && n > SITES_SHOWN_TEXT)
		printf("  ... %zu more sites\n", n - SITES_SHOWN_TEXT);
	fflush(stdout);
	free(order);
}

static void end_interval(struct jvm_view *v)
{
	for (size_t i = 0; i < v->nsites; i++) {
		v->sites[i].live_prev = v->sites[i].created - v->sites[i].deleted;
		if (!v->sites[i].seen_before) {
			v->sites[i].live_first = v->sites[i].live_prev;
			v->sites[i].seen_before = true;
		}
	}
}

static int report(struct jvm_view *v, bool final)
{
	struct totals t;

	collect(v, &t);
	if (v->opts->json)
		print_json(v, &t, final);
	else
		print_text(v, &t, final);
	end_interval(v);
	return 0;
}

/* ---- pprof ---- */

/* Location address of a named frame: a hash of what it shows (a Java
 * method is one location wherever its code is now; unwound native frames
 * are not all in the BPF walk, so there is no pc to key by). */
static uint64_t frame_addr(const struct native_frame *f)
{
	char buf[64];
	uint64_t h;

	snprintf(buf, sizeof(buf), "+%" PRIx64 "@", f->java ? 0 : f->offset);
	h = hash_fnv1a_str(HASH_FNV1A_INIT, f->function);
	h = hash_fnv1a_str(h, buf);
	h = hash_fnv1a_str(h, f->object);
	return h | 1;
}

static int write_pprof(struct jvm_view *v)
{
	struct pprof_value_type types[] = { { "live_refs", "count" }, { "created_refs", "count" } };
	struct pprof_builder *b;
	char path[PATH_MAX];
	size_t n = 0;
	int ret;

	ret = pprof_builder_new(types, 2, &b);
	if (ret)
		return log_errno(ret, "pprof: %s", strerror(-ret));
	pprof_set_default_sample_type(b, "live_refs");
	/* The JNI implementation above the native caller */
	pprof_set_drop_frames(b, "(checked_)?jni_.*|JNIHandles.*");
	pprof_set_time(b, (int64_t)now_realtime_ns(), (int64_t)(now_monotonic_ns() - v->start_ns));
	pprof_add_comment(b, "memdrift: JNI global/weak-global references by creating native stack");
	jni_trace__read_sites(v->trace, v->raw, JNI_MAX_SITES, &n);
	symbolizer_refresh(v->sym);
	for (size_t i = 0; i < n; i++) {
		struct native_frame nf[MAX_FRAMES];
		uint64_t locs[MAX_FRAMES];
		size_t first, nloc = 0;
		size_t nfr = jni_trace__symbolized_stack(v->trace, v->sym, v->raw[i].stackid, nf, MAX_FRAMES,
						  &first);
		int64_t vals[2] = { (int64_t)v->raw[i].created - (int64_t)v->raw[i].deleted,
				    (int64_t)v->raw[i].created };
		struct pprof_label label = { .key = "kind", .str = kind_name(v->raw[i].kind) };

		ret = 0;
		for (size_t f = 0; f < nfr && !ret; f++) {
			struct pprof_frame pf = { .function = nf[f].function, .file = nf[f].object };

			ret = pprof_add_location(b, frame_addr(&nf[f]), &pf, 1, &locs[nloc]);
			nloc++;
		}
		if (!ret && !nloc) {
			struct pprof_frame pf = { .function = "[no stack]", .file = "" };

			ret = pprof_add_location(b, 0, &pf, 1, &locs[nloc++]);
		}
		if (!ret)
			ret = pprof_add_sample(b, locs, nloc, vals, &label, 1);
		if (ret < 0)
			log_warn("pprof: sample dropped: %s", strerror(-ret));
	}
	snprintf(path, sizeof(path), "%s/jni.pb.gz", v->opts->pprof_dir);
	ret = pprof_write_file(b, path);
	pprof_builder_free(b);
	if (ret)
		return log_errno(ret, "write %s: %s", path, strerror(-ret));
	log_info("wrote %s", path);
	return 0;
}

/* ---- loop ---- */

static int on_timer(void *ctx, uint64_t expirations)
{
	struct jvm_view *v = ctx;

	(void)expirations;
	v->ticks++;
	if (!proc_exists(v->pid)) {
		log_warn("pid %d exited", (int)v->pid);
		return 1;
	}
	report(v, false);
	if (v->deadline_ns && now_monotonic_ns() >= v->deadline_ns)
		return 1;
	return 0;
}

static int on_signal(void *ctx, uint64_t signo)
{
	(void)ctx;
	(void)signo;
	return 1;
}

/* References outstanding when tracing began: the JVM's count read after the
 * probes went live, minus what the probes saw in the meantime. */
static void take_baseline(struct jvm_view *v)
{
	uint64_t st[JNI_STAT_MAX], g, w;
	int ret;

	jni_trace__stats(v->trace, st);
	ret = jni_trace__jvm_counts(v->trace, &g, &w);
	if (ret) {
		log_warn("pid %d: the JVM's own JNI ref counts are not readable (%s): refs created "
			 "before attach are not accounted for",
			 (int)v->pid, strerror(-ret));
		return;
	}
	v->pre_attach[JNI_KIND_GLOBAL] =
		(int64_t)g - (int64_t)st[JNI_STAT_CREATED] + (int64_t)st[JNI_STAT_DELETED] +
		(int64_t)st[JNI_STAT_DELETED_UNKNOWN];
	v->pre_attach[JNI_KIND_WEAK] =
		(int64_t)w - (int64_t)st[JNI_STAT_CREATED + 1] + (int64_t)st[JNI_STAT_DELETED + 1] +
		(int64_t)st[JNI_STAT_DELETED_UNKNOWN + 1];
	v->have_baseline = true;
	(void)stat_total;
}

static void view_free(struct jvm_view *v)
{
	for (size_t i = 0; i < v->nsites; i++)
		free(v->sites[i].frames);
	free(v->sites);
	free(v->stack_site);
	free(v->raw);
	symbolizer_free(v->sym);
	jni_trace__free(v->trace);
	event_loop_free(v->loop);
}

int attach_jvm(pid_t pid, const struct attach_options *opts)
{
	struct jvm_view v = { .pid = pid, .opts = opts };
	const struct jni_trace_info *info;
	char err[768];
	uint64_t interval = opts->interval_ns ? opts->interval_ns : 2000000000ull;
	int ret, status = 1;

	bpf_util_init();
	if (bpf_util_check(err, sizeof(err)))
		return cli_fail(1, "%s", err);
	v.sites = calloc(MAX_AGG_SITES, sizeof(*v.sites));
	v.stack_site = calloc(JNI_MAX_STACKS, sizeof(*v.stack_site));
	v.raw = calloc(JNI_MAX_SITES, sizeof(*v.raw));
	if (!v.sites || !v.stack_site || !v.raw) {
		log_errno(-ENOMEM, "out of memory");
		goto out;
	}
	ret = jni_trace__new(&(struct jni_trace_opts){ .pid = pid }, &v.trace, err, sizeof(err));
	if (ret) {
		log_errno(ret, "%s", err);
		goto out;
	}
	info = jni_trace__info(v.trace);
	ret = symbolizer_new(pid, NULL, &v.sym);
	if (ret) {
		log_errno(ret, "pid %d: read maps: %s", (int)pid, strerror(-ret));
		goto out;
	}
	ret = jni_trace__attach(v.trace, err, sizeof(err));
	if (ret) {
		log_errno(ret, "%s", err);
		goto out;
	}
	take_baseline(&v);
	v.hsperf_ok = !hsperf_find(pid, v.hsperf_path, sizeof(v.hsperf_path));
	if (!v.hsperf_ok)
		log_info("pid %d: no hsperfdata file (-XX:-UsePerfData?): heap/GC numbers not shown",
			 (int)pid);
	log_info("pid %d: JVM %s, probes %s%s", (int)pid, info->libjvm, info->probes,
		 info->checked_wrappers ? " (checked_jni_* wrappers call these: counted once)" : "");
	if (!opts->json)
		printf("memdrift: attached to JVM pid %d (%s, %s probes); Ctrl-C to stop\n", (int)pid,
		       info->libjvm, info->mode == JNI_PROBES_USDT ? "USDT hotspot_jni" : ".symtab jni_*");

	v.start_ns = now_monotonic_ns();
	v.deadline_ns = opts->duration_ns ? v.start_ns + opts->duration_ns : 0;
	if (event_loop_new(&v.loop) || event_loop_set_timer(v.loop, interval, on_timer, &v) ||
	    event_loop_catch_signals(v.loop, on_signal, &v))
		goto out;
	ret = event_loop_run(v.loop);
	if (ret < 0)
		goto out;
	report(&v, true);
	status = 0;
	if (opts->pprof_dir && write_pprof(&v))
		status = 1;
out:
	view_free(&v);
	return status;
}

#include "output/live_view.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "output/json_out.h"
#include "trace/goroutine_trace.h"
#include "trace/heap_trace.h"
#include "trace/native_trace.h"
#include "watch/heapprof.h"

#define ATTACH_TEXT_ROWS 10    /* top sites on the terminal */
#define ATTACH_JSON_SITES 100  /* sites per JSON line */

struct view_site {
	uint64_t gopc, startpc;
	const char *function, *file;
	int line;
	int64_t live;
	uint64_t created, exited;
	bool counts_known;
	int trend; /* -1, 0, +1 against the previous interval */
};

static bool startpc_is_system(struct attach *a, uint64_t startpc)
{
	bool sys;

	for (size_t i = 0; i < a->nmemo; i++)
		if (a->memo[i].pc == startpc)
			return a->memo[i].system;
	sys = go_start_is_system(&a->t, startpc);
	if (a->nmemo < sizeof(a->memo) / sizeof(a->memo[0]))
		a->memo[a->nmemo++] = (typeof(a->memo[0])){startpc, sys};
	return sys;
}

static void site_location(const struct attach *a, struct view_site *v)
{
	const char *start;

	go_site_describe(&a->t, v->gopc, v->startpc, &v->function, &v->file, &v->line, &start);
}

static int cmp_view(const void *x, const void *y)
{
	const struct view_site *a = x, *b = y;

	if (a->live != b->live)
		return a->live < b->live ? 1 : -1;
	if (a->created != b->created)
		return a->created < b->created ? 1 : -1;
	return a->gopc < b->gopc ? -1 : a->gopc > b->gopc;
}

/* Per-site view from the kernel counters (trace) or a fresh snapshot (watch). */
static int collect(struct attach *a, struct view_site **out, size_t *nout, int64_t *total,
		   uint64_t *created, uint64_t *exited, uint64_t *max_goid)
{
	struct view_site *v = NULL;
	size_t n = 0;
	int ret;

	*total = 0;
	*created = *exited = 0;
	if (a->trace) {
		struct gt_site *s;
		size_t ns;

		ret = goroutine_trace__read(a->gt, a->pid, &s, &ns);
		if (ret)
			return ret;
		v = calloc(ns + 1, sizeof(*v));
		if (!v) {
			free(s);
			return -ENOMEM;
		}
		for (size_t i = 0; i < ns; i++) {
			size_t j;

			if (startpc_is_system(a, s[i].startpc))
				continue;
			for (j = 0; j < n && v[j].gopc != s[i].gopc; j++)
				;
			if (j == n) {
				v[n++] = (struct view_site){.gopc = s[i].gopc, .startpc = s[i].startpc,
							    .counts_known = true};
			}
			v[j].live += s[i].live;
			v[j].created += s[i].created;
			v[j].exited += s[i].exited;
			*total += s[i].live;
			*created += s[i].created;
			*exited += s[i].exited;
		}
		free(s);
	} else {
		struct go_snapshot snap;
		struct snap_site *ss;
		size_t ns;
		char err[256];

		ret = go_snapshot_take(&a->t, &snap, err, sizeof(err));
		if (ret)
			return ret == -ESRCH ? ret : log_errno(ret, "%s", err);
		ret = go_snapshot_sites(&a->t, &snap, &ss, &ns);
		if (ret) {
			go_snapshot_free(&snap);
			return ret;
		}
		v = calloc(ns + 1, sizeof(*v));
		if (!v) {
			free(ss);
			go_snapshot_free(&snap);
			return -ENOMEM;
		}
		for (size_t i = 0; i < ns; i++)
			v[n++] = (struct view_site){.gopc = ss[i].gopc, .startpc = ss[i].startpc,
						    .live = (int64_t)ss[i].count};
		*total = (int64_t)snap.goroutines;
		*max_goid = snap.max_goid;
		free(ss);
		go_snapshot_free(&snap);
	}
	for (size_t i = 0; i < n; i++)
		site_location(a, &v[i]);
	qsort(v, n, sizeof(*v), cmp_view);
	*out = v;
	*nout = n;
	return 0;
}

static void apply_trends(struct attach *a, struct view_site *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int64_t before = 0;
		bool seen = false;

		for (size_t j = 0; j < a->nprev; j++) {
			if (a->prev[j].gopc == v[i].gopc) {
				before = a->prev[j].live;
				seen = true;
				break;
			}
		}
		if (!seen && a->intervals == 0)
			before = v[i].live;
		v[i].trend = v[i].live > before ? 1 : v[i].live < before ? -1 : 0;
	}
	a->nprev = 0;
	for (size_t i = 0; i < n && i < ATTACH_MAX_SITES; i++)
		a->prev[a->nprev++] = (struct prev_site){v[i].gopc, v[i].live};
}

static const char *trend_arrow(int t)
{
	return t > 0 ? "↑" : t < 0 ? "↓" : "→";
}

static json_object *sites_json(const struct view_site *v, size_t n)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; i < n && i < ATTACH_JSON_SITES; i++) {
		json_object *o = json_object_new_object();

		json_site_add(o, v[i].function, v[i].file, v[i].line);
		json_object_object_add(o, "gopc", json_object_new_int64((int64_t)v[i].gopc));
		json_object_object_add(o, "live", json_object_new_int64(v[i].live));
		json_object_object_add(o, "created", v[i].counts_known ?
			json_object_new_int64((int64_t)v[i].created) : NULL);
		json_object_object_add(o, "exited", v[i].counts_known ?
			json_object_new_int64((int64_t)v[i].exited) : NULL);
		json_object_object_add(o, "trend", json_object_new_int(v[i].trend));
		json_object_array_add(arr, o);
	}
	return arr;
}

static void print_text(struct attach *a, const struct view_site *v, size_t n, int64_t total,
		       double births, double deaths, const struct gt_stats *st, bool final)
{
	char dur[32];

	if (final)
		printf("\n=== final report: PID %d (%s), %s observed ===\n", a->pid, a->t.exe.comm,
		       fmt_duration(dur, sizeof(dur), now_monotonic_ns() - a->start_ns));
	else
		printf("\n[%s] PID %d %s %s\n", fmt_duration(dur, sizeof(dur), now_monotonic_ns() - a->start_ns),
		       a->pid, a->t.exe.comm, gobin_version(a->t.bin)->str);
	printf("goroutines %lld", (long long)total);
	if (final && a->have_first)
		printf(" (%+lld since attach)", (long long)(total - a->first_total));
	if (a->trace)
		printf("  births %.1f/s  deaths %.1f/s  lost %llu", births, deaths,
		       (unsigned long long)st->lost_events);
	else
		printf("  new goroutines ~%.1f/s (goid growth)", births);
	printf("\n%7s %8s %8s    %s\n", "LIVE", "CREATED", "EXITED", "CREATED AT");
	for (size_t i = 0; i < n && i < ATTACH_TEXT_ROWS; i++) {
		char where[160], c[16] = "-", e[16] = "-";

		if (v[i].file[0])
			snprintf(where, sizeof(where), "%s (%s:%d)", v[i].function,
				 path_base(v[i].file), v[i].line);
		else
			snprintf(where, sizeof(where), "%s", v[i].function);
		if (strlen(where) > 50)
			memcpy(where + 47, "...", 4);
		if (v[i].counts_known) {
			snprintf(c, sizeof(c), "%llu", (unsigned long long)v[i].created);
			snprintf(e, sizeof(e), "%llu", (unsigned long long)v[i].exited);
		}
		printf("%7lld %8s %8s %s  %s\n", (long long)v[i].live, c, e, trend_arrow(v[i].trend),
		       where);
	}
	if (n > ATTACH_TEXT_ROWS)
		printf("%7s (%zu more sites)\n", "...", n - ATTACH_TEXT_ROWS);
	fflush(stdout);
}

#define ATTACH_HEAP_ROWS 3

/* Heap numbers each interval; heap marked is recorded once per GC cycle. */
static void update_heap(struct attach *a)
{
	struct snap_heap h;

	if (go_snapshot_heap(&a->t, &h) < 0)
		return;
	if (!a->heap_known || h.gc_cycles != a->heap.gc_cycles) {
		if (a->nmarked == sizeof(a->marked_history) / sizeof(a->marked_history[0])) {
			memmove(a->marked_history, a->marked_history + 1,
				sizeof(a->marked_history) - sizeof(a->marked_history[0]));
			a->nmarked--;
		}
		a->marked_history[a->nmarked++] = h.marked_bytes;
	}
	a->heap = h;
	a->heap_known = true;
}

static json_object *heap_json(const struct attach *a)
{
	json_object *h = json_object_new_object(), *hist = json_object_new_array();

	json_object_object_add(h, "live_bytes", json_object_new_int64((int64_t)a->heap.live_bytes));
	json_object_object_add(h, "marked_bytes", json_object_new_int64((int64_t)a->heap.marked_bytes));
	json_object_object_add(h, "goal_bytes", json_object_new_int64((int64_t)a->heap.goal_bytes));
	json_object_object_add(h, "gc_cycles", json_object_new_int64((int64_t)a->heap.gc_cycles));
	json_object_object_add(h, "gc_cycles_since_attach",
			       json_object_new_int64((int64_t)(a->heap.gc_cycles -
							      a->heap_at_attach.gc_cycles)));
	json_object_object_add(h, "total_alloc_bytes",
			       json_object_new_int64((int64_t)a->heap.total_alloc_bytes));
	for (size_t i = 0; i < a->nmarked; i++)
		json_object_array_add(hist, json_object_new_int64((int64_t)a->marked_history[i]));
	json_object_object_add(h, "marked_per_gc", hist);
	return h;
}

/* Top in-use heap sites from the runtime's own profile: into o as
 * "heap_sites" (JSON) or printed when o is NULL and rows is set. */
static void add_heap_sites(struct attach *a, json_object *o, size_t *rows)
{
	struct heap_profile hp = {0};
	struct heap_site *hs = NULL;
	size_t n = 0;
	char err[512], b1[32], b2[32];

	if (a->target_exited)
		return;
	if (heap_profile_top_sites(&a->t, &hp, o ? 20 : (rows ? *rows : 0), &hs, &n, err,
				   sizeof(err)) < 0) {
		if (o)
			json_object_object_add(o, "heap_sites_error", json_object_new_string(err));
		else if (rows)
			printf("in-use heap by site: %s\n", err);
		return;
	}
	if (o) {
		json_object_object_add(o, "heap_sites", heap_sites_to_json(hs, n, n));
	} else if (rows) {
		for (size_t i = 0; i < n; i++)
			printf("  heap %10s in use %10s allocated  %s (%s:%d)\n",
			       fmt_bytes(b1, sizeof(b1), (uint64_t)hs[i].inuse_bytes),
			       fmt_bytes(b2, sizeof(b2), (uint64_t)hs[i].alloc_bytes), hs[i].function,
			       path_base(hs[i].file), hs[i].line);
	}
	free(hs);
	heap_profile_free(&hp);
}

static void print_heap(struct attach *a)
{
	char b1[32], b2[32], b3[32];
	size_t rows = ATTACH_HEAP_ROWS;

	if (!a->heap_known)
		return;
	printf("heap marked %s after GC #%lu, live %s, goal %s",
	       fmt_bytes(b1, sizeof(b1), a->heap.marked_bytes), (unsigned long)a->heap.gc_cycles,
	       fmt_bytes(b2, sizeof(b2), a->heap.live_bytes),
	       fmt_bytes(b3, sizeof(b3), a->heap.goal_bytes));
	if (a->nmarked > 1) {
		double first = (double)a->marked_history[0];
		double last = (double)a->marked_history[a->nmarked - 1];

		printf("  (marked %+.1f MiB over the last %zu GCs)", (last - first) / 1048576.0,
		       a->nmarked - 1);
	}
	printf("\n");
	add_heap_sites(a, NULL, &rows);
}

/* One refresh: collect, compute rates and trends, print. */
int live_view_report(struct attach *a, bool final)
{
	struct gt_stats st = {0};
	struct view_site *v = NULL;
	size_t n = 0;
	int64_t total;
	uint64_t created, exited, max_goid = 0, now = now_monotonic_ns();
	double dt = (now - a->last_ns) / 1e9, births = 0, deaths = 0;
	int ret;

	ret = collect(a, &v, &n, &total, &created, &exited, &max_goid);
	if (ret)
		return ret;
	update_heap(a);
	if (a->nt)
		native_trace__poll(a->nt);
	if (a->ht)
		heap_trace__poll(a->ht);
	if (a->trace) {
		goroutine_trace__stats(a->gt, &st);
		if (final) {
			dt = (now - a->start_ns) / 1e9;
			births = dt > 0 ? created / dt : 0;
			deaths = dt > 0 ? exited / dt : 0;
		} else if (dt > 0) {
			births = (created - a->prev_created) / dt;
			deaths = (exited - a->prev_exited) / dt;
		}
	} else if (dt > 0 && a->prev_max_goid && max_goid >= a->prev_max_goid) {
		births = (max_goid - a->prev_max_goid) / dt;
	}
	apply_trends(a, v, n);
	if (!a->have_first) {
		a->first_total = total;
		a->have_first = true;
	}
	if (a->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "ts", json_object_new_double(now_realtime_ns() / 1e9));
		json_object_object_add(o, "pid", json_object_new_int(a->pid));
		json_object_object_add(o, "mode", json_object_new_string(a->trace ? "trace" : "watch"));
		if (final)
			json_object_object_add(o, "final", json_object_new_boolean(1));
		json_object_object_add(o, "goroutines", json_object_new_int64(total));
		json_object_object_add(o, "births_per_s", json_object_new_double(births));
		json_object_object_add(o, "deaths_per_s", a->trace ? json_object_new_double(deaths) : NULL);
		json_object_object_add(o, "sites", sites_json(v, n));
		json_object_object_add(o, "lost_events", json_object_new_int64((int64_t)st.lost_events));
		if (a->heap_known)
			json_object_object_add(o, "heap", heap_json(a));
		add_heap_sites(a, o, NULL);
		if (a->nt)
			native_trace__json(a->nt, o, ATTACH_JSON_SITES);
		if (a->ht)
			heap_trace__json(a->ht, o, 20);
		if (a->trace) {
			json_object *p = json_object_new_object();

			json_object_object_add(p, "births", json_object_new_int64((int64_t)st.births));
			json_object_object_add(p, "deaths", json_object_new_int64((int64_t)st.deaths));
			json_object_object_add(p, "morestack_skips",
					       json_object_new_int64((int64_t)st.morestack_skips));
			json_object_object_add(p, "ringbuf_drops", json_object_new_int64((int64_t)st.ringbuf_drops));
			json_object_object_add(p, "sites_full", json_object_new_int64((int64_t)st.sites_full));
			json_object_object_add(p, "read_errors", json_object_new_int64((int64_t)st.read_errors));
			json_object_object_add(p, "window_corrections",
					       json_object_new_int64((int64_t)st.corrections));
			json_object_object_add(o, "probes", p);
		}
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
		json_object_put(o);
	} else {
		print_text(a, v, n, total, births, deaths, &st, final);
		print_heap(a);
		if (a->ht)
			heap_trace__print(a->ht, stdout, final ? 10 : 5);
		if (a->nt)
			native_trace__print(a->nt, stdout, final ? 10 : 5);
		fflush(stdout);
	}
	a->prev_created = created;
	a->prev_exited = exited;
	if (max_goid)
		a->prev_max_goid = max_goid;
	a->last_ns = now;
	a->intervals++;
	free(v);
	return 0;
}

/* Gone, or a zombie nobody has reaped yet: either way it runs no more. */

/* `memdrift attach PID` (live view of goroutines by creation site, exact
 * births and deaths with --trace) and `memdrift ps --probes PID`. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <getopt.h>
#include <json-c/json.h>
#include <libelf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "base/event_loop.h"
#include "trace/goroutine_trace.h"
#include "trace/heap_trace.h"
#include "watch/heapprof.h"
#include "trace/native_trace.h"
#include "output/snapshot_out.h"
#include "base/log.h"
#include "probe/probe_place.h"
#include "discover/classify.h"
#include "discover/proc.h"
#include "watch/snapshot.h"
#include "discover/target.h"
#include "base/util.h"
#include "output/json_out.h"

#define ATTACH_MAX_SITES 4096  /* sites kept for trends */
#define ATTACH_TEXT_ROWS 10    /* top sites on the terminal */
#define ATTACH_JSON_SITES 100  /* sites per JSON line */

static const char attach_usage[] =
	"usage: memdrift attach PID [--interval 2s] [--duration 30s] [--json] [--trace [SETS]]\n"
	"                           [--pprof DIR]\n\n"
	"Watches one Go process live: goroutines by creation site (the go statement),\n"
	"births and deaths per second, heap marked/live per GC and the top in-use\n"
	"heap sites, and a final report at --duration end or Ctrl-C.\n"
	"Without --trace it refreshes a zero-probe snapshot each interval. Probe sets:\n"
	"  goroutines  exact births and deaths by site (after newproc1 returns, goexit1)\n"
	"  native      C memory outstanding by stack (the process's libc allocator)\n"
	"  cgo         cgo calls by C function, and the Go caller of C allocations\n"
	"  heap        every runtime.mallocgc: allocation rate, size histogram,\n"
	"              stacks sampled by bytes; implies heap-profile\n"
	"  heap-profile  the runtime's sampled heap-profile hook (mProf_Malloc, one\n"
	"              hit per sample) and a walk of the heap's profile records for\n"
	"              frees: in-use by stack with sample ages\n"
	"--trace alone turns on every set. A JVM PID shows JNI global and weak\n"
	"references by native stack instead (probes: hotspot_jni USDT or jni_*).\n\n"
	"  --interval D   refresh period (default 2s)\n"
	"  --duration D   stop after D (default: until Ctrl-C)\n"
	"  --json         one JSON object per interval, then a final one\n"
	"  --trace SETS   comma-separated: goroutines,native,cgo,heap,heap-profile\n"
	"                 (all when omitted)\n"
	"  --pprof DIR    at the end write DIR/goroutine.pb.gz, DIR/heap.pb.gz and,\n"
	"                 with native tracing, DIR/native.pb.gz (jni.pb.gz for a JVM)\n";

struct view_site {
	uint64_t gopc, startpc;
	const char *function, *file;
	int line;
	int64_t live;
	uint64_t created, exited;
	bool counts_known;
	int trend; /* -1, 0, +1 against the previous interval */
};

struct prev_site {
	uint64_t gopc;
	int64_t live;
};

struct attach {
	pid_t pid;
	struct go_target t;
	bool json, trace;
	uint64_t interval_ns, duration_ns, start_ns, last_ns;
	struct goroutine_trace *gt;
	struct native_trace *nt;
	struct heap_trace *ht;
	bool heap_trace_tier; /* mallocgc probes: heap_alloc.pb.gz */
	const char *pprof_dir;
	/* heap, read each interval; marked is the leak signal, one value per GC */
	struct snap_heap heap, heap_at_attach;
	bool heap_known;
	uint64_t marked_history[8];
	size_t nmarked;
	struct event_loop *loop;
	struct prev_site *prev;
	size_t nprev;
	uint64_t prev_created, prev_exited, prev_max_goid;
	int64_t first_total;
	bool have_first, target_exited;
	unsigned long intervals;
	/* startpc -> system memo (runtime.* entry functions) */
	struct { uint64_t pc; bool system; } memo[256];
	size_t nmemo;
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
			return ret == -ESRCH ? ret : log_err(ret, "%s", err);
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
static int report(struct attach *a, bool final)
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
static bool target_gone(pid_t pid)
{
	char path[64], buf[512], *p;

	if (!proc_exists(pid))
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (proc_read_file(path, buf, sizeof(buf)) <= 0)
		return true;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static int on_timer(void *ctx, uint64_t expirations)
{
	struct attach *a = ctx;
	int ret;

	if (target_gone(a->pid)) {
		a->target_exited = true;
		return 1;
	}
	if (a->trace)
		goroutine_trace__poll(a->gt);
	ret = report(a, false);
	if (ret == -ESRCH || (ret && target_gone(a->pid))) {
		a->target_exited = true;
		return 1;
	}
	if (ret)
		return ret;
	if (a->duration_ns && now_monotonic_ns() - a->start_ns >= a->duration_ns)
		return 1;
	return 0;
}

static int on_signal(void *ctx, uint64_t signo)
{
	return 1;
}

static int on_ring(void *ctx, uint64_t arg)
{
	struct attach *a = ctx;

	return goroutine_trace__poll(a->gt);
}

struct trace_sets {
	bool goroutines, native, cgo, heap, heap_profile;
	bool all; /* --trace alone: sets that do not apply are skipped, not errors */
};

static int parse_trace_sets(const char *s, struct trace_sets *sets)
{
	char buf[128], *save = NULL, *tok;

	if (!s || !*s || !strcmp(s, "all")) {
		sets->goroutines = sets->native = sets->cgo = sets->all = true;
		sets->heap = sets->heap_profile = true;
		return 0;
	}
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "goroutines"))
			sets->goroutines = true;
		else if (!strcmp(tok, "native"))
			sets->native = true;
		else if (!strcmp(tok, "cgo"))
			sets->cgo = true;
		else if (!strcmp(tok, "heap"))
			sets->heap = sets->heap_profile = true;
		else if (!strcmp(tok, "heap-profile"))
			sets->heap_profile = true;
		else
			return -EINVAL;
	}
	return 0;
}

/* Tests widen the attach window (MEMDRIFT_TEST_WINDOW_MS before and after
 * the snapshot) so that busy targets put many events into it. */
static void hold_window(struct goroutine_trace *gt)
{
	const char *ms = getenv("MEMDRIFT_TEST_WINDOW_MS");
	long v = ms ? strtol(ms, NULL, 10) : 0;

	/* drain as we wait: the ring buffer holds ~40k window events */
	for (long i = 0; i < v && i < 10000; i += 10) {
		nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
		goroutine_trace__poll(gt);
	}
	goroutine_trace__poll(gt);
}

/* Attach with the window protocol: probes first, then the snapshot, then
 * the reconciliation (goroutine_trace.h). */
static int start_trace(struct attach *a)
{
	struct go_snapshot snap;
	char err[512];
	int ret;

	ret = goroutine_trace__new(NULL, &a->gt, err, sizeof(err));
	if (ret)
		return log_err(ret, "%s", err);
	ret = goroutine_trace__attach(a->gt, &a->t, err, sizeof(err));
	if (ret) {
		if (!proc_exists(a->pid))
			return log_err(-ESRCH, "process %d exited", a->pid);
		return log_err(ret, "%s", err);
	}
	hold_window(a->gt);
	ret = go_snapshot_take(&a->t, &snap, err, sizeof(err));
	if (ret) {
		if (ret == -ESRCH || !proc_exists(a->pid))
			return log_err(-ESRCH, "process %d exited", a->pid);
		return log_err(ret, "%s", err);
	}
	hold_window(a->gt);
	ret = goroutine_trace__reconcile(a->gt, a->pid, &snap);
	go_snapshot_free(&snap);
	if (ret)
		return log_err(ret, "process %d: reconciling the attach snapshot: %s", a->pid,
			       strerror(-ret));
	return 0;
}

/* Heap probe tiers. MemProfileRate 0 leaves the profile tier with nothing
 * to see: said once, and attach goes on with what else was asked. */
static int start_heap(struct attach *a, const struct trace_sets *sets)
{
	struct heap_trace_opts o = { .profile = sets->heap_profile, .trace = sets->heap };
	char err[512];
	int ret;

	a->heap_trace_tier = sets->heap;
	ret = heap_trace__new(&o, &a->ht, err, sizeof(err));
	if (ret)
		return log_err(ret, "heap tracing: %s", err);
	ret = heap_trace__attach(a->ht, &a->t, err, sizeof(err));
	if (ret == -ENODATA) {
		log_warn("%s", err);
		return 0;
	}
	if (ret) {
		heap_trace__free(a->ht);
		a->ht = NULL;
		if (!proc_exists(a->pid))
			return log_err(-ESRCH, "process %d exited", a->pid);
		return log_err(ret, "%s", err);
	}
	return 0;
}

static int start_native(struct attach *a, const struct trace_sets *sets)
{
	struct native_trace_opts o = { .trace_native = sets->native, .trace_cgo = sets->cgo };
	char err[512];
	int ret;

	ret = native_trace__new(&o, &a->nt);
	if (ret)
		return log_err(ret, "native tracing: %s", strerror(-ret));
	ret = native_trace__attach(a->nt, a->pid, &a->t, err, sizeof(err));
	if (ret) {
		native_trace__free(a->nt);
		a->nt = NULL;
		if (!proc_exists(a->pid))
			return log_err(-ESRCH, "process %d exited", a->pid);
		return log_err(ret, "%s", err);
	}
	return 0;
}

/* --pprof DIR at the end: what each enabled source can give. */
static void write_profiles(struct attach *a)
{
	char path[4096], err[512];
	struct go_snapshot snap;
	struct heap_profile hp = {0};
	bool heap = false;

	if (!a->target_exited) {
		heap = heap_profile_read(&a->t, &hp, err, sizeof(err)) == 0;
		if (!heap)
			log_warn("no heap.pb.gz: %s", err);
		if (go_snapshot_take(&a->t, &snap, err, sizeof(err)) == 0) {
			if (snapshot_write_pprof(&a->t, &snap, heap ? &hp : NULL, a->pprof_dir, err,
						 sizeof(err)) < 0)
				log_warn("%s", err);
			go_snapshot_free(&snap);
		} else {
			log_warn("no goroutine.pb.gz: %s", err);
		}
		heap_profile_free(&hp);
	}
	if (a->ht && a->heap_trace_tier) {
		snprintf(path, sizeof(path), "%s/heap_alloc.pb.gz", a->pprof_dir);
		if (heap_trace__write_alloc_pprof(a->ht, path) < 0)
			log_warn("could not write %s", path);
	}
	if (a->nt) {
		snprintf(path, sizeof(path), "%s/native.pb.gz", a->pprof_dir);
		if (native_trace__write_pprof(a->nt, path) < 0)
			log_warn("could not write %s", path);
	}
}

int cmd_attach(int argc, char **argv)
{
	static const struct option opts[] = {
		{"interval", required_argument, NULL, 'i'},
		{"duration", required_argument, NULL, 'd'},
		{"json", no_argument, NULL, 'j'},
		{"trace", optional_argument, NULL, 't'},
		{"pprof", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct attach a = {.interval_ns = 2000000000ull};
	char err[512];
	struct trace_sets sets = {0};
	int c, ret, status = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "i:d:jt::p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (parse_duration_ns(optarg, &a.interval_ns) || a.interval_ns < 100000000ull)
				return log_err(2, "attach: bad --interval '%s' (at least 100ms)", optarg);
			break;
		case 'd':
			if (parse_duration_ns(optarg, &a.duration_ns))
				return log_err(2, "attach: bad --duration '%s'", optarg);
			break;
		case 'j':
			a.json = true;
			break;
		case 't': {
			const char *sets_arg = optarg;

			/* `--trace goroutines` as well as `--trace=goroutines` */
			if (!sets_arg && optind < argc && argv[optind][0] != '-' &&
			    parse_pid(argv[optind], &(pid_t){0}) < 0)
				sets_arg = argv[optind++];
			if (parse_trace_sets(sets_arg, &sets))
				return log_err(2, "attach: unknown --trace set '%s' (known: goroutines, native, cgo, heap, heap-profile)",
					       sets_arg);
			break;
		}
		case 'p':
			a.pprof_dir = optarg;
			break;
		case 'h':
			fputs(attach_usage, stdout);
			return 0;
		default:
			return log_err(2, "attach: unknown option or missing value '%s' (see 'memdrift attach --help')",
				       argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return log_err(2, "attach: expected one PID (see 'memdrift attach --help')");
	if (parse_pid(argv[optind], &a.pid) < 0)
		return log_err(2, "attach: '%s' is not a PID", argv[optind]);
	if (a.pprof_dir && (ret = make_dirs(a.pprof_dir, 0700)) < 0)
		return log_err(2, "attach: --pprof %s: %s", a.pprof_dir, strerror(-ret));
	/* a JVM: JNI references instead of goroutines */
	if (proc_exists(a.pid) &&
	    classify_maps_jvm(a.pid)) {
		struct attach_options o = { .interval_ns = a.interval_ns, .duration_ns = a.duration_ns,
					    .json = a.json, .pprof_dir = a.pprof_dir };

		if (sets.goroutines || sets.native || sets.cgo)
			log_warn("PID %d is a JVM: --trace sets apply to Go processes; tracing JNI references",
				 a.pid);
		return attach_jvm(a.pid, &o);
	}
	a.trace = sets.goroutines;
	a.prev = calloc(ATTACH_MAX_SITES, sizeof(*a.prev));
	if (!a.prev)
		return log_err(1, "out of memory");

	ret = go_target_open(a.pid, &a.t, err, sizeof(err));
	if (ret) {
		free(a.prev);
		return log_err(1, "%s", err);
	}
	a.start_ns = a.last_ns = now_monotonic_ns();
	if (go_snapshot_heap(&a.t, &a.heap_at_attach) == 0)
		a.heap = a.heap_at_attach, a.heap_known = true;
	if (a.trace && start_trace(&a))
		goto out;
	if (sets.all && gobin_kind(a.t.bin) != GOBIN_GO_CGO) {
		char path[PATH_MAX];
		uint64_t start;
		enum libc_kind libc;

		/* a static Go binary has no libc allocator and makes no cgo calls */
		if (classify_process_libc(a.pid, path, sizeof(path), &start, &libc) < 0)
			sets.native = sets.cgo = false;
		else
			sets.cgo = false;
	}
	if ((sets.native || sets.cgo) && start_native(&a, &sets))
		goto out;
	if (sets.heap_profile && start_heap(&a, &sets))
		goto out;
	if ((ret = event_loop_new(&a.loop)) ||
	    (ret = event_loop_catch_signals(a.loop, on_signal, &a)) ||
	    (ret = event_loop_set_timer(a.loop, a.interval_ns, on_timer, &a)) ||
	    (a.trace && (ret = event_loop_add_fd(a.loop, goroutine_trace__ring_fd(a.gt), on_ring, &a))))
		goto out;
	if (!a.json && a.nt)
		printf("tracing C memory in PID %d's libc%s\n", a.pid,
		       sets.cgo ? " and cgo calls" : "");
	if (!a.json)
		printf("attached to PID %d (%s, %s)%s; Ctrl-C for the final report\n", a.pid,
		       a.t.exe.comm, gobin_version(a.t.bin)->str,
		       a.trace ? ", tracing goroutine births and deaths" : "");
	ret = event_loop_run(a.loop);
	if (ret)
		goto out;
	if (a.target_exited)
		log_msg(LOG_LEVEL_ERROR, "process %d exited", a.pid);
	/* Kernel counters outlive the process; a snapshot does not. */
	if (!a.target_exited || a.trace || a.nt || a.ht)
		report(&a, true);
	if (a.pprof_dir)
		write_profiles(&a);
	status = 0;
out:
	heap_trace__free(a.ht);
	native_trace__free(a.nt);
	goroutine_trace__free(a.gt);
	event_loop_free(a.loop);
	go_target_close(&a.t);
	free(a.prev);
	return status;
}

/* `memdrift snapshot PID [--json]` */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "output/snapshot_out.h"
#include "watch/heapprof.h"
#include "output/pprof.h"
#include "base/log.h"
#include "watch/snapshot.h"
#include "base/util.h"

static const char snapshot_usage[] =
	"usage: memdrift snapshot PID [--json]\n\n"
	"One look at a live Go process, read from outside with process_vm_readv:\n"
	"goroutines grouped by the go statement that created them and by state,\n"
	"the longest time blocked, the heap (live, marked by the last GC, goal),\n"
	"GC cycles, total allocated and cgo calls. No probe is attached and\n"
	"nothing is written into the process.\n\n"
	"  --json        print one JSON object\n"
	"  --heap        add the in-use heap by allocation site, read from the\n"
	"                runtime's own sampled heap profile (runtime.mbuckets)\n"
	"  --pprof DIR   write DIR/heap.pb.gz and DIR/goroutine.pb.gz (pprof format)\n";

static const char *offsets_source_name(const struct go_target *t)
{
	return gobin_offsets_source(t->bin);
}

static json_object *site_states_json(const struct go_target *t, const struct snap_site *s)
{
	json_object *states = json_object_new_object();

	for (size_t i = 0; i < sizeof(s->state_count) / sizeof(s->state_count[0]); i++) {
		const char *name;
		json_object *prev;

		if (!s->state_count[i])
			continue;
		name = go_snapshot_state_name(t, i);
		/* two indices can share a label ("waiting"); add them up */
		if (json_object_object_get_ex(states, name, &prev))
			json_object_object_add(states, name,
					       json_object_new_int64(json_object_get_int64(prev) +
								     (int64_t)s->state_count[i]));
		else
			json_object_object_add(states, name,
					       json_object_new_int64((int64_t)s->state_count[i]));
	}
	return states;
}

json_object *snapshot_to_json(const struct go_target *t, const struct go_snapshot *snap,
			      const struct snap_site *sites, size_t nsites)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array(), *h;
	uint64_t now = now_monotonic_ns();

	json_object_object_add(o, "pid", json_object_new_int(t->pid));
	json_object_object_add(o, "comm", json_object_new_string(t->exe.comm));
	json_object_object_add(o, "exe", json_object_new_string(t->exe.exe));
	json_object_object_add(o, "go_version", json_object_new_string(gobin_version(t->bin)->str));
	json_object_object_add(o, "goroutines", json_object_new_int64((int64_t)snap->goroutines));
	json_object_object_add(o, "goroutines_total", json_object_new_int64((int64_t)snap->ngs));
	json_object_object_add(o, "goroutines_leaked", json_object_new_int64((int64_t)snap->leaked));
	for (size_t i = 0; i < nsites; i++) {
		const struct snap_site *s = &sites[i];
		json_object *js = json_object_new_object();

		json_object_object_add(js, "function", json_object_new_string(s->function));
		json_object_object_add(js, "file", json_object_new_string(s->file));
		json_object_object_add(js, "line", json_object_new_int(s->line));
		json_object_object_add(js, "start_function", json_object_new_string(s->start_function));
		json_object_object_add(js, "count", json_object_new_int64((int64_t)s->count));
		json_object_object_add(js, "states", site_states_json(t, s));
		json_object_object_add(js, "leaked", json_object_new_int64((int64_t)s->leaked));
		json_object_object_add(js, "max_blocked_seconds",
				       json_object_new_double(s->oldest_waitsince > 0 &&
							      (uint64_t)s->oldest_waitsince < now ?
							      (now - s->oldest_waitsince) / 1e9 : 0));
		json_object_array_add(arr, js);
	}
	json_object_object_add(o, "sites", arr);
	h = json_object_new_object();
	json_object_object_add(h, "live_bytes", json_object_new_int64((int64_t)snap->heap.live_bytes));
	json_object_object_add(h, "marked_bytes", json_object_new_int64((int64_t)snap->heap.marked_bytes));
	json_object_object_add(h, "goal_bytes", json_object_new_int64((int64_t)snap->heap.goal_bytes));
	json_object_object_add(h, "gc_cycles", json_object_new_int64((int64_t)snap->heap.gc_cycles));
	json_object_object_add(h, "total_alloc_bytes",
			       json_object_new_int64((int64_t)snap->heap.total_alloc_bytes));
	json_object_object_add(h, "total_free_bytes",
			       json_object_new_int64((int64_t)snap->heap.total_free_bytes));
	json_object_object_add(o, "heap", h);
	json_object_object_add(o, "cgo_calls", snap->cgo_calls_known ?
				   json_object_new_int64((int64_t)snap->cgo_calls) : NULL);
	json_object_object_add(o, "offsets_source", json_object_new_string(offsets_source_name(t)));
	return o;
}

static void print_text(const struct go_target *t, const struct go_snapshot *snap,
		       const struct snap_site *sites, size_t nsites)
{
	char b1[32], b2[32], b3[32], b4[32];
	uint64_t now = now_monotonic_ns();

	printf("PID %d (%s) %s, offsets from %s\n", t->pid, t->exe.comm,
	       gobin_version(t->bin)->str, offsets_source_name(t));
	printf("goroutines: %zu (+%zu runtime)", snap->goroutines, snap->ngs - snap->goroutines);
	if (snap->leaked)
		printf(", %zu marked leaked by the runtime's goroutine leak detector", snap->leaked);
	printf("\n");
	printf("heap: live %s, marked at last GC %s, goal %s; %lu GC cycles; %s allocated in total\n",
	       fmt_bytes(b1, sizeof(b1), snap->heap.live_bytes),
	       fmt_bytes(b2, sizeof(b2), snap->heap.marked_bytes),
	       fmt_bytes(b3, sizeof(b3), snap->heap.goal_bytes), (unsigned long)snap->heap.gc_cycles,
	       fmt_bytes(b4, sizeof(b4), snap->heap.total_alloc_bytes));
	if (snap->cgo_calls_known)
		printf("cgo calls: %lu\n", (unsigned long)snap->cgo_calls);
	printf("\n%7s  %-44s %s\n", "COUNT", "CREATED AT", "STATES");
	for (size_t i = 0; i < nsites; i++) {
		const struct snap_site *s = &sites[i];
		char where[256], states[512] = "";
		size_t used = 0;

		if (s->file[0])
			snprintf(where, sizeof(where), "%s (%s:%d)", s->function, path_base(s->file),
				 s->line);
		else
			snprintf(where, sizeof(where), "%s", s->function);
		for (size_t k = 0; k < sizeof(s->state_count) / sizeof(s->state_count[0]); k++) {
			if (!s->state_count[k] || used >= sizeof(states) - 1)
				continue;
			used += snprintf(states + used, sizeof(states) - used, "%s%zu %s",
					 used ? ", " : "", s->state_count[k],
					 go_snapshot_state_name(t, k));
		}
		if (s->leaked && used < sizeof(states) - 1)
			used += snprintf(states + used, sizeof(states) - used, " [%zu leaked]",
					 s->leaked);
		if (s->oldest_waitsince > 0 && (uint64_t)s->oldest_waitsince < now &&
		    used < sizeof(states) - 1)
			snprintf(states + used, sizeof(states) - used, " (blocked up to %s)",
				 fmt_duration(b1, sizeof(b1), now - s->oldest_waitsince));
		printf("%7zu  %-44s %s\n", s->count, where, states);
	}
}

static void print_heap_sites(const struct heap_site *s, size_t n, int64_t rate)
{
	char b1[32], b2[32];

	printf("\nin-use heap by allocation site (sampled every %ld bytes, scaled):\n", (long)rate);
	printf("%12s %10s  %s\n", "IN USE", "ALLOCATED", "SITE");
	for (size_t i = 0; i < n && i < 15; i++)
		printf("%12s %10s  %s (%s:%d)\n", fmt_bytes(b1, sizeof(b1), (uint64_t)s[i].inuse_bytes),
		       fmt_bytes(b2, sizeof(b2), (uint64_t)s[i].alloc_bytes), s[i].function,
		       path_base(s[i].file), s[i].line);
}

/* Goroutines by creation site as a pprof profile: each sample's stack is the
 * goroutine's entry function called from its go statement. */
static int goroutine_symbolize(void *ctx, uint64_t addr, size_t index, struct pprof_frame *frames,
			       size_t max, size_t *n)
{
	const struct go_target *t = ctx;
	struct gobin_pcinfo pi;

	*n = 0;
	if (max == 0 || gobin_pc_lookup(t->bin, addr - t->bias - (index ? 1 : 0), &pi) < 0)
		return 0;
	frames[0] = (struct pprof_frame){ .function = pi.func, .file = pi.file, .line = pi.line };
	*n = 1;
	return 0;
}

int snapshot_goroutine_pprof(const struct go_target *t, const struct go_snapshot *snap,
			     struct pprof_builder **out, char *err, size_t errlen)
{
	static const struct pprof_value_type types[] = { { "goroutine", "count" } };
	struct pprof_builder *b;
	int ret;

	*out = NULL;
	ret = pprof_builder_new(types, 1, &b);
	if (ret < 0)
		return set_err(err, errlen, ret, "pprof: %s", strerror(-ret));
	pprof_set_period(b, "goroutine", "count", 1);
	pprof_set_time(b, (int64_t)now_realtime_ns(), 0);
	for (size_t i = 0; i < snap->ngs; i++) {
		const struct snap_goroutine *g = &snap->gs[i];
		uint64_t stack[2] = { g->startpc, g->gopc };
		int64_t one = 1;

		if (g->system)
			continue;
		pprof_add_sample_addrs(b, stack, g->gopc ? 2 : 1, &one, NULL, 0, goroutine_symbolize,
				       (void *)t);
	}
	*out = b;
	return 0;
}

int snapshot_write_pprof(const struct go_target *t, const struct go_snapshot *snap,
			 const struct heap_profile *hp, const char *dir, char *err, size_t errlen)
{
	struct pprof_builder *b;
	char path[4096];
	int ret;

	if (hp) {
		snprintf(path, sizeof(path), "%s/heap.pb.gz", dir);
		ret = heap_profile_write_pprof(t, hp, path, err, errlen);
		if (ret < 0)
			return ret;
	}
	ret = snapshot_goroutine_pprof(t, snap, &b, err, errlen);
	if (ret < 0)
		return ret;
	snprintf(path, sizeof(path), "%s/goroutine.pb.gz", dir);
	ret = pprof_write_file(b, path);
	pprof_builder_free(b);
	if (ret < 0)
		return set_err(err, errlen, ret, "writing %s: %s", path, strerror(-ret));
	return 0;
}

int cmd_snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "heap", no_argument, NULL, 'H' },
		{ "pprof", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct go_target t;
	struct go_snapshot snap;
	struct snap_site *sites = NULL;
	size_t nsites = 0;
	char err[512];
	bool json = false, heap = false;
	const char *pprof_dir = NULL;
	struct heap_profile hp = { 0 };
	struct heap_site *hsites = NULL;
	size_t nhsites = 0;
	bool have_heap = false;
	char heap_err[512] = "";
	pid_t pid;
	int c, ret;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "jHp:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'H':
			heap = true;
			break;
		case 'p':
			pprof_dir = optarg;
			break;
		case 'h':
			fputs(snapshot_usage, stdout);
			return 0;
		default:
			return log_err(2, "snapshot: unknown option '%s' (see 'memdrift snapshot --help')",
				       argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return log_err(2, "snapshot: expected one PID (see 'memdrift snapshot --help')");
	if (parse_pid(argv[optind], &pid) < 0)
		return log_err(2, "snapshot: '%s' is not a PID", argv[optind]);
	if (pprof_dir && (ret = make_dirs(pprof_dir, 0700)) < 0)
		return log_err(2, "snapshot: --pprof %s: %s", pprof_dir, strerror(-ret));

	ret = go_target_open(pid, &t, err, sizeof(err));
	if (ret < 0)
		return log_err(1, "%s", err);
	ret = go_snapshot_take(&t, &snap, err, sizeof(err));
	if (ret < 0) {
		go_target_close(&t);
		return log_err(1, "%s", err);
	}
	ret = go_snapshot_sites(&t, &snap, &sites, &nsites);
	if (ret < 0) {
		go_snapshot_free(&snap);
		go_target_close(&t);
		return log_err(1, "grouping goroutines: %s", strerror(-ret));
	}
	if (heap || pprof_dir) {
		if (heap_profile_top_sites(&t, &hp, 50, &hsites, &nhsites, heap_err,
					   sizeof(heap_err)) == 0)
			have_heap = true;
		else if (!proc_exists(pid))
			log_warn("process %d exited while reading its heap profile", pid);
	}
	if (pprof_dir) {
		ret = snapshot_write_pprof(&t, &snap, have_heap ? &hp : NULL, pprof_dir, err,
					   sizeof(err));
		if (ret < 0)
			log_warn("%s", err);
	}
	if (json) {
		json_object *o = snapshot_to_json(&t, &snap, sites, nsites);

		if (heap) {
			json_object_object_add(o, "heap_profile", have_heap ?
					       heap_sites_to_json(hsites, nhsites, nhsites) : NULL);
			json_object_object_add(o, "heap_profile_rate",
					       have_heap ? json_object_new_int64(hp.rate) : NULL);
			if (!have_heap)
				json_object_object_add(o, "heap_profile_error",
						       json_object_new_string(heap_err));
		}
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	} else {
		print_text(&t, &snap, sites, nsites);
		if (heap && have_heap)
			print_heap_sites(hsites, nhsites, hp.rate);
		else if (heap)
			printf("\nheap profile: %s\n", heap_err);
	}
	if (pprof_dir && !have_heap && !heap)
		log_warn("no heap.pb.gz: %s", heap_err);
	free(hsites);
	heap_profile_free(&hp);
	free(sites);
	go_snapshot_free(&snap);
	go_target_close(&t);
	return 0;
}

/* A snapshot rendered: the `snapshot --json` schema and pprof profiles
 * (built in memory; written as files by `snapshot --pprof`, attach and
 * post-mortems, served by /debug/pprof/goroutine). */
#include "output/snapshot_out.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "binary/gobin.h"
#include "output/json_out.h"
#include "output/pprof.h"
#include "watch/heapprof.h"
#include "watch/snapshot.h"

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

		json_site_add(js, s->function, s->file, s->line);
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
	json_object_object_add(o, "offsets_source", json_object_new_string(gobin_offsets_source(t->bin)));
	return o;
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

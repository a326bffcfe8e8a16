/* `memdrift snapshot PID [--json]` */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "log.h"
#include "snapshot.h"
#include "util.h"

static const char snapshot_usage[] =
	"usage: memdrift snapshot PID [--json]\n\n"
	"One look at a live Go process, read from outside with process_vm_readv:\n"
	"goroutines grouped by the go statement that created them and by state,\n"
	"the longest time blocked, the heap (live, marked by the last GC, goal),\n"
	"GC cycles, total allocated and cgo calls. No probe is attached and\n"
	"nothing is written into the process.\n\n"
	"  --json   print one JSON object\n";

static const char *offsets_source_name(const struct go_target *t)
{
	return gobin_offsets(t->bin)->source == GO_OFFSETS_DWARF ? "dwarf" : "table";
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
	for (size_t i = 0; i < nsites; i++) {
		const struct snap_site *s = &sites[i];
		json_object *js = json_object_new_object();

		json_object_object_add(js, "function", json_object_new_string(s->function));
		json_object_object_add(js, "file", json_object_new_string(s->file));
		json_object_object_add(js, "line", json_object_new_int(s->line));
		json_object_object_add(js, "start_function", json_object_new_string(s->start_function));
		json_object_object_add(js, "count", json_object_new_int64((int64_t)s->count));
		json_object_object_add(js, "states", site_states_json(t, s));
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
	printf("goroutines: %zu (+%zu runtime)\n", snap->goroutines, snap->ngs - snap->goroutines);
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

		snprintf(where, sizeof(where), "%s (%s:%d)", s->function, path_base(s->file), s->line);
		for (size_t k = 0; k < sizeof(s->state_count) / sizeof(s->state_count[0]); k++) {
			if (!s->state_count[k] || used >= sizeof(states) - 1)
				continue;
			used += snprintf(states + used, sizeof(states) - used, "%s%zu %s",
					 used ? ", " : "", s->state_count[k],
					 go_snapshot_state_name(t, k));
		}
		if (s->oldest_waitsince > 0 && (uint64_t)s->oldest_waitsince < now &&
		    used < sizeof(states) - 1)
			snprintf(states + used, sizeof(states) - used, " (blocked up to %s)",
				 fmt_duration(b1, sizeof(b1), now - s->oldest_waitsince));
		printf("%7zu  %-44s %s\n", s->count, where, states);
	}
}

int cmd_snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct go_target t;
	struct go_snapshot snap;
	struct snap_site *sites = NULL;
	size_t nsites = 0;
	char err[512];
	bool json = false;
	pid_t pid;
	int c, ret;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
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
	if (json) {
		json_object *o = snapshot_to_json(&t, &snap, sites, nsites);

		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	} else {
		print_text(&t, &snap, sites, nsites);
	}
	free(sites);
	go_snapshot_free(&snap);
	go_target_close(&t);
	return 0;
}

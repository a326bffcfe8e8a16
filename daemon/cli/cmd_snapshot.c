/* `memdrift snapshot PID [--json] [--heap] [--pprof DIR]`: options and text;
 * the JSON and pprof renderings are output/snapshot_out.c. */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "cli/commands.h"
#include "output/pprof.h"
#include "output/snapshot_out.h"
#include "watch/heapprof.h"
#include "watch/snapshot.h"

const struct command_usage snapshot_usage = {
	.args = "PID [--json] [--heap] [--pprof DIR]",
	.text =
		"One look at a live Go process, read from outside with process_vm_readv:\n"
		"goroutines grouped by the go statement that created them and by state,\n"
		"the longest time blocked, the heap (live, marked by the last GC, goal),\n"
		"GC cycles, total allocated and cgo calls. No probe is attached and\n"
		"nothing is written into the process.\n"
		"\n"
		"  --json        print one JSON object\n"
		"  --heap        add the in-use heap by allocation site, read from the\n"
		"                runtime's own sampled heap profile (runtime.mbuckets)\n"
		"  --pprof DIR   write DIR/heap.pb.gz and DIR/goroutine.pb.gz (pprof format)\n",
};

static void print_text(const struct go_target *t, const struct go_snapshot *snap,
		       const struct snap_site *sites, size_t nsites)
{
	char b1[32], b2[32], b3[32], b4[32];
	uint64_t now = now_monotonic_ns();

	printf("PID %d (%s) %s, offsets from %s\n", t->pid, t->exe.comm,
	       gobin_version(t->bin)->str, gobin_offsets_source(t->bin));
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
			command_print_usage(stdout, "snapshot", &snapshot_usage);
			return 0;
		default:
			return cli_fail(2, "snapshot: unknown option '%s' (see 'memdrift snapshot --help')",
				       argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return cli_fail(2, "snapshot: expected one PID (see 'memdrift snapshot --help')");
	if (parse_pid(argv[optind], &pid) < 0)
		return cli_fail(2, "snapshot: '%s' is not a PID", argv[optind]);
	if (pprof_dir && (ret = make_dirs(pprof_dir, 0700)) < 0)
		return cli_fail(2, "snapshot: --pprof %s: %s", pprof_dir, strerror(-ret));

	ret = go_target_open(pid, &t, err, sizeof(err));
	if (ret < 0)
		return cli_fail(1, "%s", err);
	ret = go_snapshot_take(&t, &snap, err, sizeof(err));
	if (ret < 0) {
		go_target_close(&t);
		return cli_fail(1, "%s", err);
	}
	ret = go_snapshot_sites(&t, &snap, &sites, &nsites);
	if (ret < 0) {
		go_snapshot_free(&snap);
		go_target_close(&t);
		return cli_fail(1, "grouping goroutines: %s", strerror(-ret));
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

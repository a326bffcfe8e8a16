/* heap_dump: drives daemon/heap_trace for tests and benchmarks until
 * `memdrift attach` exposes it. Attaches to PID, prints {"ready":true,...}
 * once the probes are in, then one JSON line per interval ({"ts","pid",
 * "heap_trace":{...}} as in the live view; with -w also "heap_profile": the
 * watch tier's bucket read taken right after the probe poll), a final one
 * at SIGINT/SIGTERM or after -d seconds, and DIR/heap_alloc.pb.gz with -p.
 *
 *   heap_dump PID [-i MS] [-d SEC] [-n N] [-s SAMPLE_BYTES] [-w] [-p DIR]
 *             [-v] [--trace] [--no-profile] [--free-probe] [--mprof-free] [--text]
 * -v: debug log (e.g. probe stacks that differ from the runtime's).
 * --free-probe: sampled objects' frees from the freeSpecial probe, not
 * the heap walk (heap_trace_opts.free_probe). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "base/log.h"
#include "discover/target.h"
#include "tool.h"
#include "trace/heap_trace.h"
#include "watch/heapprof.h"

static void emit(struct heap_trace *t, const struct go_target *go, bool text, bool watch,
		 size_t nsites, bool final)
{
	struct json_object *o;
	double ts;

	if (heap_trace__poll(t))
		return;
	ts = tool_now_s();
	if (text) {
		printf("pid %d%s\n", (int)go->pid, final ? " (final)" : "");
		heap_trace__print(t, stdout, nsites);
		fflush(stdout);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "ts", json_object_new_double(ts));
	json_object_object_add(o, "pid", json_object_new_int(go->pid));
	if (final)
		json_object_object_add(o, "final", json_object_new_boolean(1));
	heap_trace__json(t, o, nsites);
	if (watch) {
		struct heap_profile hp;
		struct heap_site *sites;
		size_t n;
		char err[256];

		if (heap_profile_read(go, &hp, err, sizeof(err)) == 0 &&
		    heap_profile_sites(go, &hp, &sites, &n) == 0) {
			json_object_object_add(o, "heap_profile", heap_sites_to_json(sites, n, nsites));
			json_object_object_add(o, "heap_profile_pending",
					       json_object_new_boolean(hp.pending_flush));
			free(sites);
		}
		heap_profile_free(&hp);
	}
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "trace", no_argument, NULL, 'T' },
		{ "no-profile", no_argument, NULL, 'P' },
		{ "text", no_argument, NULL, 'X' },
		{ "free-probe", no_argument, NULL, 'F' },
		{ "mprof-free", no_argument, NULL, 'M' },
		{ 0 },
	};
	struct heap_trace_opts opts = { .profile = true };
	struct go_target go = { 0 };
	struct heap_trace *t = NULL;
	const struct heap_probe *probes;
	const char *pprof_dir = NULL, *msg;
	double interval = 1.0, duration = 0, start;
	bool text = false, watch = false;
	size_t nsites = 20, np;
	struct json_object *ready, *arr;
	char err[512];
	int c, ret = 1;
	pid_t pid;

	while ((c = getopt_long(argc, argv, "i:d:n:s:wp:v", lopts, NULL)) != -1) {
		switch (c) {
		case 'i': interval = atof(optarg) / 1000.0; break;
		case 'd': duration = atof(optarg); break;
		case 'n': nsites = strtoul(optarg, NULL, 10); break;
		case 's': opts.sample_bytes = strtoull(optarg, NULL, 10); break;
		case 'w': watch = true; break;
		case 'v': log_threshold = LOG_LEVEL_DEBUG; break;
		case 'p': pprof_dir = optarg; break;
		case 'T': opts.trace = true; break;
		case 'P': opts.profile = false; break;
		case 'X': text = true; break;
		case 'F': opts.free_probe = true; break;
		case 'M': opts.mprof_free = true; break;
		default:
			fprintf(stderr, "usage: heap_dump PID [-i MS] [-d SEC] [-n N] [-s BYTES] [-w] "
				"[-p DIR] [--trace] [--no-profile] [--free-probe] [--mprof-free] [--text]\n");
			return 2;
		}
	}
	if (optind >= argc || (pid = atoi(argv[optind])) <= 0) {
		fprintf(stderr, "heap_dump: PID required\n");
		return 2;
	}
	if (go_target_open(pid, &go, err, sizeof(err))) {
		fprintf(stderr, "heap_dump: %s\n", err);
		return 1;
	}
	if (heap_trace__new(&opts, &t, err, sizeof(err))) {
		fprintf(stderr, "heap_dump: %s\n", err);
		goto out;
	}
	if (heap_trace__attach(t, &go, err, sizeof(err))) {
		fprintf(stderr, "heap_dump: %s\n", err);
		goto out;
	}
	tool_catch_stop();

	ready = json_object_new_object();
	json_object_object_add(ready, "ready", json_object_new_boolean(1));
	json_object_object_add(ready, "ts", json_object_new_double(tool_now_s()));
	json_object_object_add(ready, "pid", json_object_new_int(pid));
	json_object_object_add(ready, "go_version",
			       json_object_new_string(gobin_version(go.bin)->str));
	json_object_object_add(ready, "profile_state",
			       json_object_new_int(heap_trace__profile_state(t, &msg)));
	json_object_object_add(ready, "message", json_object_new_string(msg));
	json_object_object_add(ready, "mem_profile_rate",
			       json_object_new_int64(heap_trace__mem_profile_rate(t)));
	arr = json_object_new_array();
	probes = heap_trace__probes(t, &np);
	for (size_t i = 0; i < np; i++) {
		struct json_object *p = json_object_new_object();

		json_object_object_add(p, "name", json_object_new_string(probes[i].function));
		json_object_object_add(p, "offset", json_object_new_int64((int64_t)probes[i].place.offset));
		json_object_object_add(p, "insn", json_object_new_string(probes[i].place.insn));
		json_object_object_add(p, "emulated", json_object_new_boolean(probes[i].place.emulated));
		json_object_object_add(p, "stack_check",
				       json_object_new_int(probes[i].place.stack_check));
		json_object_array_add(arr, p);
	}
	json_object_object_add(ready, "probes", arr);
	puts(json_object_to_json_string_ext(ready, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(ready);

	start = tool_now_s();
	while (!tool_stop && (duration <= 0 || tool_now_s() - start < duration)) {
		struct timespec ts = { (time_t)interval, (long)((interval - (time_t)interval) * 1e9) };

		nanosleep(&ts, NULL);
		if (tool_stop)
			break;
		emit(t, &go, text, watch, nsites, false);
	}
	emit(t, &go, text, watch, nsites, true);
	if (pprof_dir && opts.trace) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/heap_alloc.pb.gz", pprof_dir);
		if (heap_trace__write_alloc_pprof(t, path))
			fprintf(stderr, "heap_dump: writing %s failed\n", path);
	}
	ret = 0;
out:
	heap_trace__free(t);
	go_target_close(&go);
	return ret;
}

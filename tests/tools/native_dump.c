/* native_dump: drives daemon/native_trace for tests and benchmarks until
 * `memdrift attach --trace cgo,native` exposes it. Attaches to PID, prints
 * {"ready":true,...} once the probes are in, then one JSON line per
 * interval ({"ts","pid","native":{...}} as in the live view), a final one
 * at SIGINT/SIGTERM or after -d seconds, and writes DIR/native.pb.gz with -p.
 *
 *   native_dump PID [-i MS] [-d SEC] [-m MAX_ALLOCS] [-e] [-p DIR] [-n N]
 *               [--no-cgo] [--no-native] [--text] [--fp-stacks]
 * -e: every probe at the function entry (libbpf-tools memleak placement).
 * --fp-stacks: the kernel's frame-pointer C stacks (no CFI unwinding). */
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
#include "trace/native_trace.h"

static void emit(struct native_trace *t, pid_t pid, bool text, size_t nsites, bool final)
{
	struct json_object *o;

	if (native_trace__poll(t))
		return;
	if (text) {
		printf("pid %d%s\n", (int)pid, final ? " (final)" : "");
		native_trace__print(t, stdout, nsites);
		fflush(stdout);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "ts", json_object_new_double(tool_now_s()));
	json_object_object_add(o, "pid", json_object_new_int(pid));
	if (final)
		json_object_object_add(o, "final", json_object_new_boolean(1));
	native_trace__json(t, o, nsites);
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "no-cgo", no_argument, NULL, 'C' },
		{ "no-native", no_argument, NULL, 'N' },
		{ "text", no_argument, NULL, 'T' },
		{ "fp-stacks", no_argument, NULL, 'F' },
		{ 0 },
	};
	struct native_trace_opts opts = { .trace_native = true, .trace_cgo = true };
	struct go_target go = { 0 };
	struct native_trace *t = NULL;
	const char *pprof_dir = NULL;
	double interval = 1.0, duration = 0;
	bool text = false, have_go = false;
	size_t nsites = 20;
	char err[512];
	int c, ret = 1;
	pid_t pid;

	while ((c = getopt_long(argc, argv, "i:d:m:ep:n:", lopts, NULL)) != -1) {
		switch (c) {
		case 'i': interval = atof(optarg) / 1000.0; break;
		case 'd': duration = atof(optarg); break;
		case 'm': opts.max_allocs = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'e': opts.entry_probes = true; break;
		case 'p': pprof_dir = optarg; break;
		case 'n': nsites = strtoul(optarg, NULL, 0); break;
		case 'C': opts.trace_cgo = false; break;
		case 'N': opts.trace_native = false; break;
		case 'T': text = true; break;
		case 'F': opts.fp_stacks = true; break;
		default:
			fprintf(stderr, "usage: native_dump PID [-i MS] [-d SEC] [-m MAX] [-e] [-p DIR] "
					"[-n SITES] [--no-cgo] [--no-native] [--text] [--fp-stacks]\n");
			return 2;
		}
	}
	if (optind != argc - 1)
		return 2;
	pid = (pid_t)atoi(argv[optind]);
	if (!go_target_open(pid, &go, err, sizeof(err)))
		have_go = true;
	opts.pid = pid;
	opts.go = have_go ? &go : NULL;
	if (native_trace__new(&opts, &t, err, sizeof(err)))
		return cli_fail(1, "%s", err);
	if (native_trace__attach(t, err, sizeof(err))) {
		log_errno(0, "%s", err);
		goto out;
	}
	tool_catch_stop();
	{
		size_t np;
		const struct native_probe_info *p = native_trace__probes(t, &np);
		struct json_object *o = json_object_new_object(), *a = json_object_new_array();

		for (size_t i = 0; i < np; i++) {
			struct json_object *po = json_object_new_object();

			json_object_object_add(po, "name", json_object_new_string(p[i].name));
			json_object_object_add(po, "offset", json_object_new_int64((int64_t)p[i].offset));
			json_object_object_add(po, "insn", json_object_new_string(p[i].insn));
			json_object_object_add(po, "emulated", json_object_new_boolean(p[i].emulated));
			json_object_array_add(a, po);
		}
		json_object_object_add(o, "ready", json_object_new_boolean(1));
		json_object_object_add(o, "go", json_object_new_boolean(have_go));
		json_object_object_add(o, "probes", a);
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
						      JSON_C_TO_STRING_NOSLASHESCAPE));
		fflush(stdout);
		json_object_put(o);
	}
	{
		double start = tool_now_s();

		while (!tool_stop && (!duration || tool_now_s() - start < duration)) {
			struct timespec ts = { (time_t)interval,
					       (long)((interval - (double)(time_t)interval) * 1e9) };

			nanosleep(&ts, NULL);
			if (!tool_stop)
				emit(t, pid, text, nsites, false);
		}
	}
	emit(t, pid, text, nsites, true);
	ret = 0;
	if (pprof_dir) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/native.pb.gz", pprof_dir);
		if ((c = native_trace__write_pprof(t, path))) {
			log_errno(0, "write %s: %s", path, strerror(-c));
			ret = 1;
		}
	}
out:
	native_trace__free(t);
	if (have_go)
		go_target_close(&go);
	return ret;
}

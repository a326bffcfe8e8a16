/* `memdrift attach PID`: options, the probe sets and the event loop; the
 * live view it prints each interval is output/live_view.c. */
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

#include "base/event_loop.h"
#include "base/log.h"
#include "base/util.h"
#include "cli/commands.h"
#include "discover/classify.h"
#include "discover/proc.h"
#include "discover/target.h"
#include "output/json_out.h"
#include "output/live_view.h"
#include "output/snapshot_out.h"
#include "probe/probe_place.h"
#include "trace/goroutine_trace.h"
#include "trace/heap_trace.h"
#include "trace/native_trace.h"
#include "watch/heapprof.h"
#include "watch/snapshot.h"


const struct command_usage attach_usage = {
	.args = "PID [--trace [SETS]] [--interval D] [--duration D] [--json] [--pprof DIR]",
	.text =
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
		"references by native stack instead (probes: hotspot_jni USDT or jni_*).\n"
		"\n"
		"  --interval D   refresh period (default 2s)\n"
		"  --duration D   stop after D (default: until Ctrl-C)\n"
		"  --json         one JSON object per interval, then a final one\n"
		"  --trace SETS   comma-separated: goroutines,native,cgo,heap,heap-profile\n"
		"                 (all when omitted)\n"
		"  --pprof DIR    at the end write DIR/goroutine.pb.gz, DIR/heap.pb.gz and,\n"
		"                 with native tracing, DIR/native.pb.gz (jni.pb.gz for a JVM)\n",
};

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
	ret = live_view_report(a, false);
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
		return log_errno(ret, "%s", err);
	ret = goroutine_trace__attach(a->gt, &a->t, err, sizeof(err));
	if (ret) {
		if (!proc_exists(a->pid))
			return log_errno(-ESRCH, "process %d exited", a->pid);
		return log_errno(ret, "%s", err);
	}
	hold_window(a->gt);
	ret = go_snapshot_take(&a->t, &snap, err, sizeof(err));
	if (ret) {
		if (ret == -ESRCH || !proc_exists(a->pid))
			return log_errno(-ESRCH, "process %d exited", a->pid);
		return log_errno(ret, "%s", err);
	}
	hold_window(a->gt);
	ret = goroutine_trace__reconcile(a->gt, a->pid, &snap);
	go_snapshot_free(&snap);
	if (ret)
		return log_errno(ret, "process %d: reconciling the attach snapshot: %s", a->pid,
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
		return log_errno(ret, "heap tracing: %s", err);
	ret = heap_trace__attach(a->ht, &a->t, err, sizeof(err));
	if (ret == -ENODATA) {
		log_warn("%s", err);
		return 0;
	}
	if (ret) {
		heap_trace__free(a->ht);
		a->ht = NULL;
		if (!proc_exists(a->pid))
			return log_errno(-ESRCH, "process %d exited", a->pid);
		return log_errno(ret, "%s", err);
	}
	return 0;
}

static int start_native(struct attach *a, const struct trace_sets *sets)
{
	struct native_trace_opts o = { .pid = a->pid, .go = &a->t, .trace_native = sets->native,
				       .trace_cgo = sets->cgo };
	char err[512];
	int ret;

	ret = native_trace__new(&o, &a->nt, err, sizeof(err));
	if (ret)
		return log_errno(ret, "native tracing: %s", err);
	ret = native_trace__attach(a->nt, err, sizeof(err));
	if (ret) {
		native_trace__free(a->nt);
		a->nt = NULL;
		if (!proc_exists(a->pid))
			return log_errno(-ESRCH, "process %d exited", a->pid);
		return log_errno(ret, "%s", err);
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
				return cli_fail(2, "attach: bad --interval '%s' (at least 100ms)", optarg);
			break;
		case 'd':
			if (parse_duration_ns(optarg, &a.duration_ns))
				return cli_fail(2, "attach: bad --duration '%s'", optarg);
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
				return cli_fail(2, "attach: unknown --trace set '%s' (known: goroutines, native, cgo, heap, heap-profile)",
					       sets_arg);
			break;
		}
		case 'p':
			a.pprof_dir = optarg;
			break;
		case 'h':
			command_print_usage(stdout, "attach", &attach_usage);
			return 0;
		default:
			return cli_fail(2, "attach: unknown option or missing value '%s' (see 'memdrift attach --help')",
				       argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return cli_fail(2, "attach: expected one PID (see 'memdrift attach --help')");
	if (parse_pid(argv[optind], &a.pid) < 0)
		return cli_fail(2, "attach: '%s' is not a PID", argv[optind]);
	if (a.pprof_dir && (ret = make_dirs(a.pprof_dir, 0700)) < 0)
		return cli_fail(2, "attach: --pprof %s: %s", a.pprof_dir, strerror(-ret));
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
		return cli_fail(1, "out of memory");

	ret = go_target_open(a.pid, &a.t, err, sizeof(err));
	if (ret) {
		free(a.prev);
		return cli_fail(1, "%s", err);
	}
	a.start_ns = a.last_ns = now_monotonic_ns();
	if (go_snapshot_heap(&a.t, &a.heap_at_attach) == 0)
		a.heap = a.heap_at_attach, a.heap_known = true;
	if (a.trace && start_trace(&a))
		goto out;
	if (sets.all)
		native_trace_applies(a.pid, &a.t, &sets.native, &sets.cgo);
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
		live_view_report(&a, true);
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

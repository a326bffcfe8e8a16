/* C memory tracing: probe choice, BPF lifecycle, aggregation, views. See
 * native_trace.h. */
#include "trace/native_trace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <capstone/capstone.h>
#include <json-c/json.h>

#include "base/log.h"
#include "base/util.h"
#include "binary/gobin.h"
#include "discover/classify.h"
#include "discover/proc.h"
#include "discover/target.h"
#include "native_trace.skel.h"
#include "output/pprof.h"
#include "probe/bpf_util.h"
#include "probe/probe_place.h"
#include "symbols/native_unwind.h"
#include "trace/native_trace_internal.h"

#define BATCH 4096


/* ------------------------------------------------------------ names --- */

static const char *const kind_names[NATIVE_KIND_MAX] = {
	[NATIVE_KIND_MALLOC] = "malloc",
	[NATIVE_KIND_CALLOC] = "calloc",
	[NATIVE_KIND_REALLOC] = "realloc",
	[NATIVE_KIND_POSIX_MEMALIGN] = "posix_memalign",
	[NATIVE_KIND_MEMALIGN] = "memalign",
	[NATIVE_KIND_VALLOC] = "valloc",
	[NATIVE_KIND_PVALLOC] = "pvalloc",
	[NATIVE_KIND_MMAP] = "mmap",
};

const char *native_kind_name(uint32_t kind)
{
	return kind < NATIVE_KIND_MAX ? kind_names[kind] : "?";
}

static const char *const stat_names[NATIVE_STAT_MAX] = {
	[NATIVE_STAT_ALLOCS] = "allocs",
	[NATIVE_STAT_FREES] = "frees",
	[NATIVE_STAT_FREE_UNKNOWN] = "free_unknown",
	[NATIVE_STAT_FREE_NULL] = "free_null",
	[NATIVE_STAT_FAILED] = "failed_allocs",
	[NATIVE_STAT_ALLOCS_FULL] = "allocs_map_full",
	[NATIVE_STAT_PENDING_FULL] = "pending_map_full",
	[NATIVE_STAT_PENDING_MISSING] = "return_without_entry",
	[NATIVE_STAT_STACK_ERRORS] = "stack_errors",
	[NATIVE_STAT_GO_STACK_ERRORS] = "go_stack_errors",
	[NATIVE_STAT_THREADS_FULL] = "cgo_threads_full",
	[NATIVE_STAT_CGO_FNS_FULL] = "cgo_fns_full",
	[NATIVE_STAT_CGO_CALLS] = "cgo_calls",
	[NATIVE_STAT_MMAP_FILE] = "mmap_not_anonymous",
	[NATIVE_STAT_MMAP_NESTED] = "mmap_in_allocator",
	[NATIVE_STAT_MUNMAP_PARTIAL] = "munmap_partial",
	[NATIVE_STAT_MUNMAP_UNKNOWN] = "munmap_unknown",
	[NATIVE_STAT_REPLACED] = "replaced",
	[NATIVE_STAT_STACKS_NEW] = "stacks_new",
	[NATIVE_STAT_STACK_EVENTS_LOST] = "stack_events_lost",
	[NATIVE_STAT_STACKS_FULL] = "stacks_full",
};

const char *native_stat_name(uint32_t stat)
{
	return stat < NATIVE_STAT_MAX ? stat_names[stat] : NULL;
}

/* ------------------------------------------------------- aggregation --- */

static uint64_t key_hash(const struct native_site_key *k)
{
	uint64_t h = (uint64_t)(uint32_t)k->stackid * 0x9e3779b97f4a7c15ull;

	h ^= (uint64_t)(uint32_t)k->go_stackid + 0x632be59bd9b4e019ull + (h << 6) + (h >> 2);
	h ^= k->caller * 0xbf58476d1ce4e5b9ull;
	h ^= k->go_caller * 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

static int site_cmp(const void *a, const void *b)
{
	const struct native_site *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return x->oldest_birth_ns < y->oldest_birth_ns ? -1 : x->oldest_birth_ns > y->oldest_birth_ns;
}

int native_sites_aggregate(const struct native_alloc *allocs, size_t n, struct native_site *sites,
			   size_t max, size_t *nsites, uint64_t *dropped)
{
	size_t cap = 16, used = 0;
	uint32_t *slots;

	*nsites = 0;
	*dropped = 0;
	while (cap < 2 * max)
		cap *= 2;
	slots = malloc(cap * sizeof(*slots)); /* index + 1, 0 = empty */
	if (!slots)
		return -ENOMEM;
	memset(slots, 0, cap * sizeof(*slots));
	for (size_t i = 0; i < n; i++) {
		const struct native_alloc *a = &allocs[i];
		struct native_site_key k = { a->stackid, a->go_stackid, a->caller, a->go_caller };
		size_t h = (size_t)key_hash(&k) & (cap - 1);
		struct native_site *s = NULL;

		for (;; h = (h + 1) & (cap - 1)) {
			if (!slots[h]) {
				if (used == max)
					break;
				s = &sites[used];
				*s = (struct native_site){ .key = k, .oldest_birth_ns = a->birth_ns };
				slots[h] = (uint32_t)++used;
				break;
			}
			s = &sites[slots[h] - 1];
			if (!memcmp(&s->key, &k, sizeof(k)))
				break;
			s = NULL;
		}
		if (!s) {
			(*dropped)++;
			continue;
		}
		s->count++;
		s->bytes += a->size;
		if (a->birth_ns < s->oldest_birth_ns)
			s->oldest_birth_ns = a->birth_ns;
		if (a->kind < 32)
			s->kinds |= 1u << a->kind;
	}
	free(slots);
	qsort(sites, used, sizeof(*sites), site_cmp);
	*nsites = used;
	return 0;
}

/* ------------------------------------------------------------ probes --- */

/* Uprobes on libc's functions and runtime.cgocall; return probes on libc
 * only (never on Go code). */
static int attach_one(struct native_trace *t, struct bpf_program *prog, const char *path,
		      uint64_t file_offset, uint64_t cookie, bool retprobe)
{
	return retprobe ? probe_links_uretprobe_c(&t->links, prog, t->pid, path, file_offset, cookie)
			: probe_links_uprobe(&t->links, prog, t->pid, path, file_offset, cookie);
}

/* Attaches the planned probes (native_trace__plan). Returns first: an entry
 * seen without its return only costs a stale hand-off; the reverse is
 * counted as a missing entry. */
static int attach_planned(struct native_trace *t, char *err, size_t errlen)
{
	for (size_t i = 0; i < t->nprobes; i++) {
		const struct native_probe_info *pi = &t->probes[i];
		const char *path = pi->in_libc ? t->libc_open : t->go->exe.open_path;
		const char *obj = pi->in_libc ? t->libc : t->go->exe.exe;
		struct bpf_program *prog;
		int ret;

		switch (pi->probe) {
		case NATIVE_PROBE_FREE: prog = t->skel->progs.native_free; break;
		case NATIVE_PROBE_MUNMAP: prog = t->skel->progs.native_munmap; break;
		case NATIVE_PROBE_CGOCALL: prog = t->skel->progs.native_cgocall; break;
		case NATIVE_PROBE_CGOCALL_DONE: prog = t->skel->progs.native_cgocall_done; break;
		default: prog = t->skel->progs.native_alloc_entry; break;
		}
		if (pi->retprobe) {
			/* The uretprobe shares the entry probe's breakpoint (one
			 * trap per call): RSP there is the entry's, so the kernel
			 * finds the return address. */
			ret = attach_one(t, t->skel->progs.native_alloc_return, path, pi->file_offset,
					 pi->cookie, true);
			if (ret && pi->offset) {
				log_warn("native: uretprobe at %s+%" PRIu64 ": %s; using +0", pi->name,
					 pi->offset, strerror(-ret));
				ret = attach_one(t, t->skel->progs.native_alloc_return, path,
						 pi->file_offset - pi->offset, pi->cookie, true);
			}
			if (ret)
				return set_err(err, errlen, ret, "attach uretprobe %s in %s: %s", pi->name,
					       obj, strerror(-ret));
		}
		ret = attach_one(t, prog, path, pi->file_offset, pi->cookie, false);
		if (ret)
			return set_err(err, errlen, ret, "attach uprobe %s+%" PRIu64 " in %s: %s",
				       pi->name, pi->offset, obj, strerror(-ret));
	}
	return 0;
}

/* ---------------------------------------------------------- lifecycle --- */

int native_trace__new(const struct native_trace_opts *opts, struct native_trace **out, char *err,
		      size_t errlen)
{
	struct native_trace *t = calloc(1, sizeof(*t));
	bool cgo = opts->trace_cgo && opts->go;
	uint64_t lo, hi;
	int ret;

	*out = NULL;
	if (!t)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	t->opts = *opts;
	t->pid = opts->pid;
	t->go = opts->go;
	if (!t->opts.max_allocs)
		t->opts.max_allocs = NATIVE_DEFAULT_MAX_ALLOCS;
	if (t->opts.max_allocs < NATIVE_MIN_MAX_ALLOCS)
		t->opts.max_allocs = NATIVE_MIN_MAX_ALLOCS;
	if (t->opts.max_allocs > NATIVE_MAX_MAX_ALLOCS)
		t->opts.max_allocs = NATIVE_MAX_MAX_ALLOCS;
	if (!t->opts.max_sites || t->opts.max_sites > NATIVE_MAX_SITES)
		t->opts.max_sites = NATIVE_MAX_SITES;
	if (getenv("MEMDRIFT_NATIVE_STACKS") && !strcmp(getenv("MEMDRIFT_NATIVE_STACKS"), "fp"))
		t->opts.fp_stacks = true;
	t->stats.max_allocs = t->opts.max_allocs;
	t->sites = calloc(t->opts.max_sites, sizeof(*t->sites));
	t->vals = calloc(t->opts.max_allocs, sizeof(*t->vals));
	t->fns = calloc(NATIVE_MAX_CGO_FNS, sizeof(*t->fns));
	if (!t->sites || !t->vals || !t->fns) {
		native_trace__free(t);
		return set_err(err, errlen, -ENOMEM, "out of memory");
	}
	if (!t->opts.trace_native && !cgo) {
		native_trace__free(t);
		return set_err(err, errlen, -EINVAL, "nothing to trace (cgo needs a Go target)");
	}
	ret = BPF_UTIL_OPEN(t->skel, native_trace, err, errlen);
	if (ret) {
		native_trace__free(t);
		return ret;
	}
	t->skel->rodata->targ_tgid = (__u32)t->pid;
	t->skel->rodata->targ_go = cgo;
	t->skel->rodata->native_fp_only = t->opts.fp_stacks;
	native_unwind_go_text(t->go, &lo, &hi);
	t->skel->rodata->targ_go_text_lo = lo;
	t->skel->rodata->targ_go_text_hi = hi;
	ret = bpf_map__set_max_entries(t->skel->maps.native_allocs, t->opts.max_allocs);
	if (ret)
		set_err(err, errlen, ret, "size native_allocs: %s", strerror(-ret));
	else
		ret = bpf_util_load(t->skel->skeleton, err, errlen);
	if (ret) {
		native_trace__free(t);
		return ret;
	}
	*out = t;
	return 0;
}

int native_trace__attach(struct native_trace *t, char *err, size_t errlen)
{
	bool cgo = t->opts.trace_cgo && t->go;
	pid_t pid = t->pid;
	int ret;

	if (t->sym)
		return set_err(err, errlen, -EALREADY, "native trace already attached");
	ret = symbolizer_new(pid, t->go, &t->sym);
	if (ret)
		return set_err(err, errlen, ret, "PID %d: read maps: %s", (int)pid, strerror(-ret));
	if (!t->opts.fp_stacks &&
	    (ret = native_unwind_new(pid, t->go, bpf_map__fd(t->skel->maps.native_events),
				     bpf_map__fd(t->skel->maps.native_walks),
				     (struct native_exec_ranges *)&t->skel->bss->native_exec, &t->uw)))
		return set_err(err, errlen, ret, "PID %d: C stack unwinder: %s", (int)pid,
			       strerror(-ret));
	ret = native_trace__plan(pid, t->go, t->opts.trace_native, cgo, t->opts.entry_probes,
				 t->probes, NATIVE_MAX_PROBES, &t->nprobes, t->libc, sizeof(t->libc),
				 err, errlen);
	if (ret)
		return ret;
	snprintf(t->libc_open, sizeof(t->libc_open), "/proc/%d/root%s", (int)pid, t->libc);
	if ((ret = attach_planned(t, err, errlen)))
		return ret;
	t->prev_poll_ns = t->poll_ns = now_monotonic_ns();
	return 0;
}

void native_trace__free(struct native_trace *t)
{
	if (!t)
		return;
	probe_links_destroy(&t->links);
	native_trace_bpf__destroy(t->skel);
	native_unwind_free(t->uw);
	symbolizer_free(t->sym);
	free(t->sites);
	free(t->vals);
	free(t->fns);
	free(t);
}

/* -------------------------------------------------------------- reads --- */

static uint64_t kernel_missed(const struct native_trace *t)
{
	struct bpf_program *progs[] = {
		t->skel->progs.native_alloc_entry, t->skel->progs.native_alloc_return,
		t->skel->progs.native_free, t->skel->progs.native_munmap,
		t->skel->progs.native_cgocall, t->skel->progs.native_cgocall_done,
	};
	uint64_t sum = 0;

	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(progs[i]), &info, &len))
			sum += info.recursion_misses;
	}
	return sum;
}

static int read_allocs(struct native_trace *t, size_t *n)
{
	int fd = bpf_map__fd(t->skel->maps.native_allocs);
	struct native_alloc_key keys[BATCH];
	__u64 in = 0, outb = 0;
	bool first = true;

	*n = 0;
	for (;;) {
		__u32 count = BATCH;
		int ret;

		if (*n + BATCH > t->opts.max_allocs)
			count = (__u32)(t->opts.max_allocs - *n);
		if (!count)
			break;
		ret = bpf_map_lookup_batch(fd, first ? NULL : &in, &outb, keys, t->vals + *n, &count,
					   NULL);
		if (ret && errno != ENOENT)
			return -errno;
		*n += count;
		if (ret)
			break; /* ENOENT: the whole map was read */
		in = outb;
		first = false;
	}
	return 0;
}

static int fn_cmp(const void *a, const void *b)
{
	const struct native_cgo_fn *x = a, *y = b;

	return x->calls > y->calls ? -1 : x->calls < y->calls;
}

static void read_cgo_fns(struct native_trace *t, double dt)
{
	int fd = bpf_map__fd(t->skel->maps.native_cgo_fns);
	__u64 key, next, *prev = NULL, calls;
	struct native_cgo_fn old[64];
	size_t nold = t->nfns < 64 ? t->nfns : 64;

	memcpy(old, t->fns, nold * sizeof(*old)); /* the top ones, for rates */
	t->nfns = 0;
	while (t->nfns < NATIVE_MAX_CGO_FNS && !bpf_map_get_next_key(fd, prev, &next)) {
		struct native_cgo_fn *f;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &calls))
			continue;
		f = &t->fns[t->nfns++];
		*f = (struct native_cgo_fn){ .fn = key, .calls = calls, .per_s = 0 };
		for (size_t i = 0; i < nold; i++)
			if (old[i].fn == key && dt > 0)
				f->per_s = (double)(calls - old[i].calls) / dt;
	}
	qsort(t->fns, t->nfns, sizeof(*t->fns), fn_cmp);
}

/* The Go runtime of a cgo binary maps its heap through libc (x_cgo_mmap):
 * that memory is Go heap, already in the heap views, not C memory. */
static size_t drop_go_runtime_mmaps(struct native_trace *t, size_t n)
{
	struct { uint64_t caller; bool runtime; } memo[16] = { 0 };
	size_t kept = 0;

	t->stats.go_runtime_mmap_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		const struct native_alloc *a = &t->vals[i];
		bool runtime = false;

		if (a->kind == NATIVE_KIND_MMAP && a->caller && t->go) {
			size_t slot = (a->caller >> 4) % 16;

			if (memo[slot].caller != a->caller) {
				struct sym_frame f;

				symbolizer_lookup(t->sym, a->caller, true, &f);
				memo[slot].caller = a->caller;
				memo[slot].runtime = f.function && !strcmp(f.function, "x_cgo_mmap");
			}
			runtime = memo[slot].runtime;
		}
		if (runtime) {
			t->stats.go_runtime_mmap_bytes += a->size;
			continue;
		}
		t->vals[kept++] = *a;
	}
	return kept;
}

int native_trace__poll(struct native_trace *t)
{
	size_t n = 0;
	uint64_t now = now_monotonic_ns();
	double dt;
	int ret;

	if (!t->skel)
		return -EINVAL;
	t->prev_poll_ns = t->poll_ns;
	t->poll_ns = now;
	dt = (double)(now - t->prev_poll_ns) / 1e9;
	for (int i = 0; i < NATIVE_STAT_MAX; i++)
		t->stats.counters[i] = __atomic_load_n(&t->skel->bss->native_stats[i], __ATOMIC_RELAXED);
	t->stats.kernel_missed = kernel_missed(t);
	{
		struct bpf_prog_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(t->skel->progs.native_alloc_entry), &info,
					    &len)) {
			t->stats.entry_runs = info.run_cnt;
			t->stats.entry_run_ns = info.run_time_ns;
		}
	}
	if (t->uw)
		native_unwind_poll(t->uw);
	ret = read_allocs(t, &n);
	if (ret)
		return log_errno(ret, "read outstanding C allocations: %s", strerror(-ret));
	n = drop_go_runtime_mmaps(t, n);
	ret = native_sites_aggregate(t->vals, n, t->sites, t->opts.max_sites, &t->nsites,
				     &t->stats.sites_dropped);
	if (ret)
		return ret;
	t->stats.outstanding_allocs = n;
	t->stats.outstanding_bytes = 0;
	for (size_t i = 0; i < n; i++)
		t->stats.outstanding_bytes += t->vals[i].size;
	read_cgo_fns(t, dt);
	symbolizer_refresh(t->sym); /* libraries dlopen'ed since */
	return 0;
}

const struct native_site *native_trace__sites(const struct native_trace *t, size_t *n)
{
	*n = t->nsites;
	return t->sites;
}

void native_trace__stats(const struct native_trace *t, struct native_stats *out)
{
	*out = t->stats;
}

const struct native_probe_info *native_trace__probes(const struct native_trace *t, size_t *n)
{
	*n = t->nprobes;
	return t->probes;
}

const struct native_cgo_fn *native_trace__cgo_fns(const struct native_trace *t, size_t *n)
{
	*n = t->nfns;
	return t->fns;
}

static size_t read_stack(struct native_trace *t, int32_t id, uint64_t *ips)
{
	uint64_t buf[NATIVE_STACK_DEPTH];
	__u32 key = (__u32)id;
	size_t n = 0;

	if (id < 0 || bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.native_stacks), &key, buf))
		return 0;
	while (n < NATIVE_STACK_DEPTH && buf[n])
		ips[n] = buf[n], n++;
	return n;
}


/* Leaf first: the C stack — unwound from its stack copy (native_unwind.h:
 * the allocator, its caller and the CFI frames up to the cgo boundary), or
 * with fp_stacks the probed pc, the caller from [rsp] and the kernel's
 * frame-pointer walk — then the Go side of the cgo call. */
size_t native_site_addrs(struct native_trace *t, const struct native_site *s, uint64_t *out,
			 size_t max, struct site_unwind *uw)
{
	uint64_t ips[NATIVE_STACK_DEPTH];
	struct native_cstack cs;
	size_t n = 0, k;

#define PUSH(a, h)                                                        \
	do {                                                              \
		if (n < max && (a) && (!n || out[n - 1] != (a))) {        \
			if (uw)                                           \
				uw->how[n] = (h);                         \
			out[n++] = (a);                                   \
		}                                                         \
	} while (0)
	if (uw)
		uw->stop = NULL;
	if (t->uw && !native_unwind_stack(t->uw, s->key.stackid, &cs)) {
		for (size_t i = 0; i < cs.n; i++)
			PUSH(cs.pc[i], cs.how[i]);
		if (uw)
			uw->stop = cs.stop;
	} else {
		k = t->uw ? 0 : read_stack(t, s->key.stackid, ips);
		if (k)
			PUSH(ips[0], "regs");
		PUSH(s->key.caller, "sp");
		for (size_t i = 1; i < k; i++)
			PUSH(ips[i], "fp");
		if (uw && t->uw)
			uw->stop = "no stack id";
	}
	if (uw)
		uw->nc = n;
	k = read_stack(t, s->key.go_stackid, ips);
	/* The probed instruction in runtime.cgocall is an exact IP, not a
	 * return address: +1 so the return-address lookup (addr - 1) that
	 * every non-leaf frame gets lands on it. */
	if (k)
		PUSH(ips[0] + 1, "regs");
	PUSH(s->key.go_caller, "sp");
	for (size_t i = 1; i < k; i++)
		PUSH(ips[i], "fp");
#undef PUSH
	return n;
}

size_t native_site_frames_unwind(struct native_trace *t, const struct native_site *s,
				 struct sym_frame *frames, size_t max, struct site_unwind *uw)
{
	uint64_t addrs[NATIVE_MAX_FRAMES];
	size_t k = native_site_addrs(t, s, addrs, NATIVE_MAX_FRAMES, uw), n = 0;

	for (size_t i = 0; i < k && n < max; i++)
		symbolizer_lookup(t->sym, addrs[i], i > 0, &frames[n++]);
	return n;
}

int native_trace__site_frames(struct native_trace *t, const struct native_site *s,
			      struct sym_frame *frames, size_t max, size_t *n)
{
	*n = native_site_frames_unwind(t, s, frames, max, NULL);
	return 0;
}

static bool glue_frame(const char *fn)
{
	return !strncmp(fn, "runtime.", 8) || !strncmp(fn, "_cgo_", 5) || strstr(fn, "._Cfunc_") ||
	       strstr(fn, "._cgo_") || !strncmp(fn, "runtime/cgo", 11);
}

const struct sym_frame *native_go_caller(const struct sym_frame *frames, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (frames[i].go && !glue_frame(frames[i].function))
			return &frames[i];
	return NULL;
}

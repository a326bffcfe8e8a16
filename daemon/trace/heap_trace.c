/* Go heap probes, lifecycle and accessors: see heap_trace.h and
 * bpf/heap_trace.bpf.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "base/log.h"
#include "base/util.h"
#include "discover/proc.h"
#include "heap_trace.skel.h"
#include "probe/bpf_util.h"
#include "trace/heap_trace_internal.h"

/* ------------------------------------------------------------ lifecycle */

int heap_trace__new(const struct heap_trace_opts *opts, struct heap_trace **out, char *err,
		    size_t errlen)
{
	struct heap_trace *t = calloc(1, sizeof(*t));
	int ret;

	if (!t)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	t->opts = *opts;
	if (!t->opts.sample_bytes)
		t->opts.sample_bytes = HT_DEFAULT_SAMPLE_BYTES;
	t->state = opts->profile ? HEAP_PROFILE_UNAVAILABLE : HEAP_PROFILE_NOT_REQUESTED;
	t->buf = malloc(HT_BUCKET_READ);
	if (!t->buf) {
		heap_trace__free(t);
		return set_err(err, errlen, -ENOMEM, "out of memory");
	}
	ret = BPF_UTIL_OPEN(t->skel, heap_trace, err, errlen);
	if (!ret)
		ret = bpf_util_load(t->skel->skeleton, err, errlen);
	if (ret) {
		heap_trace__free(t);
		return ret;
	}
	*out = t;
	return 0;
}

static struct bpf_program *probe_program(struct heap_trace *t, enum heap_probe_kind k)
{
	switch (k) {
	case HEAP_PROBE_MPROF_MALLOC: return t->skel->progs.ht_mprof_malloc;
	case HEAP_PROBE_SETPROFILEBUCKET: return t->skel->progs.ht_setbucket;
	case HEAP_PROBE_MPROF_FREE: return t->skel->progs.ht_mprof_free;
	case HEAP_PROBE_FREE_SPECIAL: return t->skel->progs.ht_free_special;
	case HEAP_PROBE_MALLOCGC: return t->skel->progs.ht_mallocgc;
	case HEAP_PROBE_MPROF_MALLOC_BUCKET: return t->skel->progs.ht_mprof_malloc_bucket;
	default: return NULL;
	}
}

int64_t ht_read_rate(struct heap_trace *t)
{
	int64_t rate = -1;

	if (!t->rate_addr || proc_read(t->go->pid, t->rate_addr, &rate, sizeof(rate)) < 0)
		return -1;
	return rate;
}

int heap_trace__attach(struct heap_trace *t, const struct go_target *go, char *err, size_t errlen)
{
	const struct go_version *v = gobin_version(go->bin);
	struct ht_tgid_config cfg = { .special_kind_off = -1, .special_bucket_off = -1,
				      .stack_every = HT_DEFAULT_STACK_EVERY,
				      .sample_bytes = t->opts.sample_bytes };
	bool profile = t->opts.profile;
	__u32 tgid = go->pid;
	unsigned kind_profile = 0;
	int ret, kind_off, bucket_off;

	if (t->active)
		return set_err(err, errlen, -EALREADY, "heap probes already attached");
	t->go = go;
	t->rate_addr = go_target_global(go, "runtime.MemProfileRate");
	if (profile) {
		t->rate = ht_read_rate(t);
		t->have_layout = heap_layout_from_offsets(gobin_offsets(go->bin), &t->layout) == 0;
		if (t->rate == 0) {
			t->state = HEAP_PROFILE_RATE_ZERO;
			snprintf(t->msg, sizeof(t->msg),
				 "heap profiling is off in the target: MemProfileRate=0 (the linker "
				 "disables it when nothing references runtime.MemProfile); use "
				 "--trace heap for every allocation");
			profile = false;
		} else if (t->rate < 0 || !t->have_layout) {
			snprintf(t->msg, sizeof(t->msg), "%.160s: %s", path_base(go->exe.exe),
				 t->rate < 0 ? "runtime.MemProfileRate not found" :
					       "runtime.bucket layout unknown");
			profile = false;
		}
		if (!profile && !t->opts.trace)
			return set_err(err, errlen, t->state == HEAP_PROFILE_RATE_ZERO ? -ENODATA : -ENOENT,
				       "%s", t->msg);
	}
	/* Frees from the heap walk where its layout is known (one probe hit
	 * per sample), else from the freeSpecial probe. */
	t->walk = profile && !t->opts.free_probe && !t->opts.mprof_free &&
		  heap_trace_walk_layout(go, &t->wl) == 0;
	if (profile && !t->walk && !t->opts.free_probe && !t->opts.mprof_free)
		log_debug("%s: heap walk layout unknown: sampled objects' frees from the "
			  "freeSpecial probe", path_base(go->exe.exe));
	ret = heap_trace__plan(go, profile, t->opts.trace, !t->walk, t->opts.mprof_free, t->probes,
			       HEAP_PROBES_MAX, &t->nprobes, err, errlen);
	if (ret)
		return ret;
	t->active = true;
	/* sampled objects are tracked only where something retires them (the
	 * walk or freeSpecial); mProf_Free tells the bucket, not the object */
	if (v && !t->opts.mprof_free &&
	    !heap_special_layout(gobin_offsets(go->bin), &kind_off, &kind_profile, &bucket_off)) {
		cfg.special_kind_off = kind_off;
		cfg.special_kind_profile = kind_profile;
		cfg.special_bucket_off = bucket_off;
	}
	if (t->opts.stack_every_set)
		cfg.stack_every = t->opts.stack_every;
	if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.ht_tgids), &tgid, &cfg, BPF_ANY))
		return set_err(err, errlen, -errno, "heap config map: %s", strerror(errno));
	if (profile) {
		/* writable: the heap walk retires dead samples in place */
		void *m = mmap(NULL, HT_OBJ_SETS * sizeof(struct ht_obj_set),
			       PROT_READ | (t->walk ? PROT_WRITE : 0), MAP_SHARED,
			       bpf_map__fd(t->skel->maps.ht_objects), 0);

		if (m == MAP_FAILED)
			return set_err(err, errlen, -errno, "heap object table: mmap: %s",
				       strerror(errno));
		t->objs = m;
		if (t->walk) {
			t->miss = calloc(HT_MAX_OBJECTS, sizeof(*t->miss));
			t->miss_ts = calloc(HT_MAX_OBJECTS, sizeof(*t->miss_ts));
			if (!t->miss || !t->miss_ts)
				return set_err(err, errlen, -ENOMEM, "heap walk: out of memory");
		}
	}
	if (t->opts.trace) {
		int ncpu = libbpf_num_possible_cpus();
		struct ht_rate *zero;

		if (ncpu <= 0)
			return set_err(err, errlen, -EINVAL, "cannot count CPUs");
		zero = calloc(ncpu, sizeof(*zero));
		if (!zero)
			return -ENOMEM;
		for (int i = 0; i < ncpu; i++)
			zero[i].left = (int64_t)t->opts.sample_bytes;
		ret = bpf_map_update_elem(bpf_map__fd(t->skel->maps.ht_rates), &tgid, zero, BPF_ANY);
		free(zero);
		if (ret)
			return set_err(err, errlen, -errno, "heap rate map: %s", strerror(errno));
	}
	for (size_t i = 0; i < t->nprobes; i++) {
		struct heap_probe *p = &t->probes[i];
		__u64 cookie = 0;

		cookie |= probe_stack_check_cookie(&p->place);
		if (p->kind == HEAP_PROBE_MPROF_MALLOC && v && (v->major > 1 || v->minor >= 23))
			cookie |= HT_COOKIE_MPROF_MP;
		if (p->kind == HEAP_PROBE_MALLOCGC)
			cookie |= HT_COOKIE_MIN_SIZE(p->min_size);
		/* mProf_Free(b[, size]): the size from the bucket, which 1.27
		 * no longer passes (it equals the argument before) */
		if (p->kind == HEAP_PROBE_MPROF_FREE) {
			const struct go_offsets *o = gobin_offsets(go->bin);

			if (o->bucket_size < 0 || o->bucket_size % 8 || o->bucket_size / 8 > 15)
				return set_err(err, errlen, -ENOTSUP, "runtime.bucket.size unknown");
			cookie |= HT_COOKIE_BUCKET_SIZE_SLOT((unsigned)o->bucket_size / 8);
		}
		if (p->kind == HEAP_PROBE_MPROF_MALLOC_BUCKET) {
			cookie |= HT_COOKIE_SLOTS((unsigned)p->p_slot, (unsigned)p->size_slot);
			if (cfg.special_kind_off >= 0)
				cookie |= HT_COOKIE_TRACK_OBJECTS;
			cookie |= (__u64)tgid << 32;
		}
		if (p->kind == HEAP_PROBE_FREE_SPECIAL) {
			/* planned only where heap_special_layout knows the layout */
			cookie |= HT_COOKIE_SPECIAL((unsigned)cfg.special_kind_off,
						    cfg.special_kind_profile,
						    (unsigned)cfg.special_bucket_off);
			cookie |= (__u64)tgid << 32;
		}
		ret = probe_links_uprobe(&t->links, probe_program(t, p->kind), go->pid,
					 go->exe.open_path, p->file_offset, cookie);
		if (ret)
			return set_err(err, errlen, ret, "uprobe %s+%llu in process %d: %s", p->function,
				       (unsigned long long)p->place.offset, go->pid, strerror(-ret));
		p->attached = true;
		log_debug("heap probe %s+%llu (%s, %s)", p->function,
			  (unsigned long long)p->place.offset, p->place.insn,
			  p->place.emulated ? "emulated" : "single-stepped");
	}
	t->attach_ns = now_monotonic_ns();
	t->last_poll_ns = t->attach_ns;
	if (profile) {
		/* After the probes: a sample in between is counted twice (at most
		 * a few, for the milliseconds the walk takes), never lost. */
		ret = ht_read_baseline(t);
		if (ret < 0)
			return set_err(err, errlen, ret, "PID %d: reading the heap profile buckets: %s",
				       go->pid, strerror(-ret));
		t->state = HEAP_PROFILE_ON;
	}
	return 0;
}

void heap_trace__free(struct heap_trace *t)
{
	if (!t)
		return;
	probe_links_destroy(&t->links);
	if (t->objs)
		munmap((void *)t->objs, HT_OBJ_SETS * sizeof(struct ht_obj_set));
	heap_trace_bpf__destroy(t->skel);
	for (size_t i = 0; i < t->nbuckets; i++)
		free(t->buckets[i].stk);
	free(t->buckets);
	free(t->sites);
	free(t->alloc_sites);
	free(t->miss);
	free(t->miss_ts);
	free(t->buf);
	free(t);
}

/* ------------------------------------------------------------ accessors */

enum heap_profile_state heap_trace__profile_state(const struct heap_trace *t, const char **msg)
{
	if (msg)
		*msg = t->msg;
	return t->state;
}

int64_t heap_trace__mem_profile_rate(const struct heap_trace *t)
{
	return t->rate;
}

const struct heap_trace_site *heap_trace__sites(const struct heap_trace *t, size_t *n)
{
	*n = t->nsites;
	return t->sites;
}

const struct heap_alloc_site *heap_trace__alloc_sites(const struct heap_trace *t, size_t *n)
{
	*n = t->nalloc_sites;
	return t->alloc_sites;
}

const struct heap_rates *heap_trace__rates(const struct heap_trace *t)
{
	return t->opts.trace && t->rates_valid ? &t->rates : NULL;
}

const struct heap_probe *heap_trace__probes(const struct heap_trace *t, size_t *n)
{
	*n = t->nprobes;
	return t->probes;
}

void heap_trace__stats(const struct heap_trace *t, struct heap_trace_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!t->active)
		return;
	for (__u32 i = 0; i < HT_STAT_MAX; i++)
		bpf_util_percpu_sum(bpf_map__fd(t->skel->maps.ht_stats), i, &out->counters[i]);
	/* mallocgc keeps no shared counter (a global atomic on every call would
	 * bounce a cache line between CPUs): its hits are the per-CPU totals. */
	if (t->rates_valid)
		out->counters[HT_STAT_MALLOCGC_HITS] = t->rates.allocs + t->rates.hist[0];
	/* sampled objects seen dying: by the freeSpecial probe or the walk */
	out->counters[HT_STAT_OBJECT_FREES] += t->walk_retired;
	out->walk = t->walk;
	out->walks = t->walks;
	out->walk_failures = t->walk_failures;
	out->walk_last = t->wst;
	out->walk_ns_last = t->walk_ns_last;
	out->walk_ns_max = t->walk_ns_max;
	out->stacks_checked = t->stacks_checked;
	out->stacks_matched = t->stacks_matched;
	out->buckets = t->nbuckets;
	for (size_t i = 0; i < t->nprobes; i++) {
		struct bpf_prog_info info = { 0 };
		__u32 len = sizeof(info);

		if (!bpf_obj_get_info_by_fd(bpf_program__fd(probe_program((struct heap_trace *)t,
									  t->probes[i].kind)),
					    &info, &len))
			out->kernel_missed += info.recursion_misses;
	}
}


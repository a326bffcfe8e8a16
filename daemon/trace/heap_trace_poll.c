/* Go heap probes, the runtime buckets and polling: the kernel maps, the
 * target's buckets and the heap walk into per-site views. See heap_trace.h. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "base/log.h"
#include "base/util.h"
#include "discover/proc.h"
#include "heap_trace.skel.h"
#include "probe/bpf_util.h"
#include "trace/heap_trace_internal.h"

/* ------------------------------------------------------------ buckets */

static struct bucket_info *bucket_find(struct heap_trace *t, uint64_t addr)
{
	size_t lo = 0, hi = t->nbuckets;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (t->buckets[mid].addr == addr)
			return &t->buckets[mid];
		if (t->buckets[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct bucket_info *bucket_add(struct heap_trace *t, uint64_t addr)
{
	struct bucket_info *b = bucket_find(t, addr);
	size_t pos;

	if (b)
		return b;
	if (t->nbuckets >= HEAP_MAX_BUCKETS)
		return NULL;
	if (t->nbuckets == t->capbuckets) {
		size_t cap = t->capbuckets ? t->capbuckets * 2 : 256;
		struct bucket_info *v = realloc(t->buckets, cap * sizeof(*v));

		if (!v)
			return NULL;
		t->buckets = v;
		t->capbuckets = cap;
	}
	for (pos = t->nbuckets; pos > 0 && t->buckets[pos - 1].addr > addr; pos--)
		;
	memmove(&t->buckets[pos + 1], &t->buckets[pos], (t->nbuckets - pos) * sizeof(*b));
	t->nbuckets++;
	b = &t->buckets[pos];
	memset(b, 0, sizeof(*b));
	b->addr = addr;
	b->k.stackid = -1;
	return b;
}

/* Reads one runtime bucket (header, stack, memRecord) from the target. */
static int read_bucket(struct heap_trace *t, uint64_t addr, struct heap_bucket_raw *raw)
{
	pid_t pid = t->go->pid;
	size_t need = 0;
	int ret;

	ret = proc_read(pid, addr, t->buf, 1024);
	if (ret < 0) {
		ret = proc_read(pid, addr, t->buf, (size_t)t->layout.header_size);
		if (ret < 0)
			return ret;
		ret = heap_parse_bucket(&t->layout, t->buf, (size_t)t->layout.header_size, raw, &need);
	} else {
		ret = heap_parse_bucket(&t->layout, t->buf, 1024, raw, &need);
	}
	if (ret != -ENODATA)
		return ret;
	if (need > HT_BUCKET_READ)
		return -E2BIG;
	ret = proc_read(pid, addr, t->buf, need);
	if (ret < 0)
		return ret;
	return heap_parse_bucket(&t->layout, t->buf, need, raw, NULL);
}

static void bucket_take_stack(struct bucket_info *b, const struct heap_bucket_raw *raw)
{
	b->stack_read = true;
	b->object_size = raw->object_size;
	b->stk = malloc(raw->nstk * sizeof(uint64_t));
	if (!b->stk)
		return;
	memcpy(b->stk, raw->stk, raw->nstk * sizeof(uint64_t));
	b->nstk = (uint32_t)raw->nstk;
}

/* The counts of every memProfile bucket right after the probes went in:
 * all cycles folded (published or not), as the probes count everything. */
int ht_read_baseline(struct heap_trace *t)
{
	uint64_t mbuckets = go_target_global(t->go, "runtime.mbuckets"), addr;
	size_t walked = 0;
	int ret;

	if (!mbuckets)
		return -ENOENT;
	ret = proc_read(t->go->pid, mbuckets, &addr, sizeof(addr));
	if (ret < 0)
		return ret;
	while (addr && walked++ < HEAP_MAX_BUCKETS && !(addr & 7)) {
		struct heap_bucket_raw raw;
		struct bucket_info *b;
		struct heap_cycle c;

		if (read_bucket(t, addr, &raw) < 0)
			break;
		if (raw.typ == HEAP_MEM_PROFILE && raw.nstk) {
			b = bucket_add(t, addr);
			if (!b)
				return -ENOMEM;
			c = heap_bucket_counts(&raw, -1, true);
			b->base_allocs = c.allocs;
			b->base_frees = c.frees;
			b->base_alloc_bytes = c.alloc_bytes;
			b->base_free_bytes = c.free_bytes;
			if (!b->stack_read)
				bucket_take_stack(b, &raw);
		}
		addr = raw.allnext;
	}
	return 0;
}

/* ------------------------------------------------------------ polling */

int ht_lookup_pc(const struct go_target *go, uint64_t pc, bool is_return,
		 struct gobin_pcinfo *info)
{
	if (pc <= go->bias + (is_return ? 1 : 0))
		return -ENOENT;
	return gobin_pc_lookup(go->bin, pc - go->bias - (is_return ? 1 : 0), info);
}

/* The first frame outside the runtime (when all are runtime, the leaf below
 * the allocator's own frames). */
static void site_of(const struct go_target *go, const uint64_t *stk, size_t n, bool first_is_ip,
		    const char **fn, const char **file, int *line)
{
	struct gobin_pcinfo info;
	bool have = false;

	*fn = "??";
	*file = "?";
	*line = 0;
	for (size_t i = 0; i < n; i++) {
		if (ht_lookup_pc(go, stk[i], !(first_is_ip && i == 0), &info) < 0 || !info.func)
			continue;
		if (!have || !heap_is_runtime_func(info.func) ||
		    (heap_is_alloc_frame(*fn) && !heap_is_alloc_frame(info.func))) {
			*fn = info.func;
			*file = info.file ? info.file : "?";
			*line = info.line;
			have = true;
		}
		if (!heap_is_runtime_func(info.func))
			return;
	}
}

/* A stack as the physical functions it passes through, for comparing the
 * probe's frame walk with the runtime's bucket stack: the runtime expands
 * inlined calls into extra logical PCs (an inlined callee at the physical
 * return address, its callers at their call sites + 1, 1.21+) and leaves
 * wrapper frames out (tracebackPCs elides FuncIDWrapper: method values
 * "-fm", <autogenerated> pointer and interface wrappers), while the
 * kernel's frame walk has one return address per physical frame, wrappers
 * included. Each PC becomes the entry of its physical function (the PC
 * itself when not in the pclntab), wrappers are dropped, and runs of one
 * function fold into one. first_is_ip: pcs[0] is a probed IP, not a
 * return address. Returns the length of out (at most n). */
static size_t physical_frames(const struct go_target *go, const uint64_t *pcs, size_t n,
			      bool first_is_ip, uint64_t *out)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		struct gobin_pcinfo info;
		uint64_t e = pcs[i];

		if (ht_lookup_pc(go, pcs[i], !(first_is_ip && i == 0), &info) == 0 && info.func) {
			if (heap_is_wrapper_frame(info.func, info.file))
				continue;
			e = info.entry;
		}
		if (!k || out[k - 1] != e)
			out[k++] = e;
	}
	return k;
}

size_t ht_read_stack(int fd, int64_t id, uint64_t *ips)
{
	__u32 key = (__u32)id;
	size_t n = 0;

	if (id < 0)
		return 0;
	memset(ips, 0, HT_STACK_DEPTH * sizeof(*ips));
	if (bpf_map_lookup_elem(fd, &key, ips))
		return 0;
	while (n < HT_STACK_DEPTH && ips[n])
		n++;
	return n;
}

static int site_key_cmp(const char *fa, const char *fia, int la, const char *fb, const char *fib,
			int lb)
{
	int c = strcmp(fa, fb);

	if (c)
		return c;
	c = strcmp(fia, fib);
	if (c)
		return c;
	return (la > lb) - (la < lb);
}

static int site_cmp(const void *a, const void *b)
{
	const struct heap_trace_site *x = a, *y = b;

	return site_key_cmp(x->function, x->file, x->line, y->function, y->file, y->line);
}

static int site_cmp_inuse(const void *a, const void *b)
{
	const struct heap_trace_site *x = a, *y = b;

	if (x->inuse_bytes != y->inuse_bytes)
		return x->inuse_bytes < y->inuse_bytes ? 1 : -1;
	if (x->alloc_bytes != y->alloc_bytes)
		return x->alloc_bytes < y->alloc_bytes ? 1 : -1;
	return site_cmp(a, b);
}

/* Which tracked samples are alive: the heap walk's live specials (sorted)
 * against ht_objects. A sample the walk lacks HT_WALK_MISSES times in a row
 * (and that was taken before the walk began) was swept: retired in place.
 * live_tracked / oldest_ns count the ones the walk confirmed. */
static void walk_sweep_table(struct heap_trace *t, const struct heap_special *live, size_t n,
			     uint64_t walk_start)
{
	for (size_t i = 0; i < HT_OBJ_SETS; i++) {
		for (size_t w = 0; w < HT_OBJ_WAYS; w++) {
			volatile struct ht_obj *o = &t->objs[i].way[w];
			size_t slot = i * HT_OBJ_WAYS + w;
			uint64_t p = o->p, ts = o->ts, bucket = o->bucket;
			const struct heap_special *f;
			struct bucket_info *b;

			if (!p || !ts) {
				t->miss[slot] = 0;
				continue;
			}
			if (t->miss_ts[slot] != ts) {
				t->miss_ts[slot] = ts;
				t->miss[slot] = 0;
			}
			f = heap_special_find(live, n, p);
			if (f && f->bucket == bucket) {
				t->miss[slot] = 0;
				b = bucket_find(t, bucket);
				if (b) {
					b->live_tracked++;
					if (!b->oldest_ns || ts < b->oldest_ns)
						b->oldest_ns = ts;
				}
				continue;
			}
			/* too new to be in this walk, or a walk cut short */
			if (ts >= walk_start || t->wst.truncated)
				continue;
			if (++t->miss[slot] < HT_WALK_MISSES)
				continue;
			t->miss[slot] = 0;
			/* ts first: a probe overwriting the slot for a new sample
			 * at the same address (heap.bpf.c obj_insert) clears it */
			if (__sync_val_compare_and_swap(&o->ts, ts, 0) == ts &&
			    __sync_val_compare_and_swap(&o->p, p, 0) == p)
				t->walk_retired++;
		}
	}
}

static void walk_heap(struct heap_trace *t)
{
	struct heap_special *live = NULL;
	uint64_t t0 = now_monotonic_ns(), dt;
	size_t n = 0;
	int ret;

	ret = heap_walk_profile_specials(t->go->pid, &t->wl, &live, &n, &t->wst);
	dt = now_monotonic_ns() - t0;
	t->walk_ns_last = dt;
	if (dt > t->walk_ns_max)
		t->walk_ns_max = dt;
	if (ret) {
		/* the last good walk's counts stay */
		t->walk_failures++;
		log_debug("heap walk of %d: %s", t->go->pid, strerror(-ret));
		return;
	}
	t->walks++;
	for (size_t i = 0; i < t->nbuckets; i++)
		t->buckets[i].walk_live = 0;
	for (size_t i = 0; i < n; i++) {
		struct bucket_info *b = bucket_add(t, live[i].bucket);

		if (b)
			b->walk_live++;
	}
	walk_sweep_table(t, live, n, t0);
	free(live);
}

static void poll_profile(struct heap_trace *t)
{
	int bfd = bpf_map__fd(t->skel->maps.ht_buckets);
	int sfd = bpf_map__fd(t->skel->maps.ht_prof_stacks);
	struct ht_bucket_key bk, *bprev = NULL;
	uint64_t mine[HT_STACK_DEPTH];
	struct heap_trace_site *v;
	size_t out = 0, guard = 0;
	int64_t rate = ht_read_rate(t);

	if (rate >= 0)
		t->rate = rate;
	for (size_t i = 0; i < t->nbuckets; i++) {
		t->buckets[i].live_tracked = 0;
		t->buckets[i].oldest_ns = 0;
	}
	while (guard++ < HT_MAX_PROF_BUCKETS && !bpf_map_get_next_key(bfd, bprev, &bk)) {
		struct ht_bucket_counts c;
		struct bucket_info *b;

		bprev = &bk;
		if (bk.tgid != (__u32)t->go->pid || bpf_map_lookup_elem(bfd, &bk, &c))
			continue;
		b = bucket_add(t, bk.bucket);
		if (b)
			b->k = c;
	}
	if (t->walk)
		walk_heap(t);
	/* The BPF side writes the table meanwhile: each slot is copied once
	 * and used only when complete (ts set; see heap_events.h). */
	for (size_t i = 0; !t->walk && t->objs && i < HT_OBJ_SETS; i++) {
		for (size_t w = 0; w < HT_OBJ_WAYS; w++) {
			const volatile struct ht_obj *src = &t->objs[i].way[w];
			struct bucket_info *b;
			uint64_t p = src->p, ts = src->ts, bucket = src->bucket;

			if (!p || !ts)
				continue;
			b = bucket_find(t, bucket);
			if (!b)
				continue;
			b->live_tracked++;
			if (!b->oldest_ns || ts < b->oldest_ns)
				b->oldest_ns = ts;
		}
	}

	v = calloc(t->nbuckets ? t->nbuckets : 1, sizeof(*v));
	if (!v)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct bucket_info *b = &t->buckets[i];
		struct heap_trace_site *s = &v[out];
		int64_t cnt, bytes;

		if (!b->stack_read) {
			struct heap_bucket_raw raw;

			if (read_bucket(t, b->addr, &raw) == 0 && raw.typ == HEAP_MEM_PROFILE)
				bucket_take_stack(b, &raw);
			b->stack_read = true;
		}
		if (!b->stack_checked && b->k.stackid >= 0 && b->nstk) {
			size_t n = ht_read_stack(sfd, b->k.stackid, mine);
			uint64_t *phys = n ? malloc((n + b->nstk) * sizeof(*phys)) : NULL;

			if (phys) {
				size_t nm = physical_frames(t->go, mine, n, true, phys);
				size_t nb = physical_frames(t->go, b->stk, b->nstk, false, phys + nm);

				b->stack_checked = true;
				t->stacks_checked++;
				if (heap_stack_matches(phys, nm, phys + nm, nb)) {
					t->stacks_matched++;
				} else if (log_threshold >= LOG_LEVEL_DEBUG) {
					log_debug("bucket %#llx: probe stack differs from the runtime's",
						  (unsigned long long)b->addr);
					for (size_t j = 0; j < n || j < b->nstk; j++)
						log_debug("  %2zu %#14llx %#14llx", j,
							  (unsigned long long)(j < n ? mine[j] : 0),
							  (unsigned long long)(j < b->nstk ? b->stk[j] : 0));
				}
				free(phys);
			}
		}
		site_of(t->go, b->stk, b->nstk, false, &s->function, &s->file, &s->line);
		if (t->walk) {
			/* what is alive now, whenever it was sampled */
			cnt = (int64_t)b->walk_live;
			bytes = cnt * (int64_t)b->object_size;
		} else {
			heap_bucket_inuse(b->base_allocs, b->base_frees, b->base_alloc_bytes,
					  b->base_free_bytes, &b->k, &cnt, &bytes);
		}
		s->live_samples = (uint64_t)cnt;
		s->freed_samples = b->k.frees;
		s->freed_bytes = b->k.free_bytes;
		heap_scale_sample(cnt, bytes, t->rate, &s->inuse_objects, &s->inuse_bytes);
		heap_scale_sample((int64_t)(b->base_allocs + b->k.allocs),
				  (int64_t)(b->base_alloc_bytes + b->k.alloc_bytes), t->rate,
				  &s->alloc_objects, &s->alloc_bytes);
		s->live_tracked = b->live_tracked;
		s->oldest_sample_ns = b->oldest_ns;
		s->buckets = 1;
		out++;
	}
	/* group by site */
	qsort(v, out, sizeof(*v), site_cmp);
	{
		size_t w = 0;

		for (size_t i = 0; i < out; i++) {
			if (w && site_cmp(&v[w - 1], &v[i]) == 0) {
				struct heap_trace_site *d = &v[w - 1];

				d->inuse_bytes += v[i].inuse_bytes;
				d->inuse_objects += v[i].inuse_objects;
				d->alloc_bytes += v[i].alloc_bytes;
				d->alloc_objects += v[i].alloc_objects;
				d->live_samples += v[i].live_samples;
				d->freed_samples += v[i].freed_samples;
				d->freed_bytes += v[i].freed_bytes;
				d->live_tracked += v[i].live_tracked;
				if (v[i].oldest_sample_ns &&
				    (!d->oldest_sample_ns || v[i].oldest_sample_ns < d->oldest_sample_ns))
					d->oldest_sample_ns = v[i].oldest_sample_ns;
				d->buckets++;
				continue;
			}
			v[w++] = v[i];
		}
		out = w;
	}
	qsort(v, out, sizeof(*v), site_cmp_inuse);
	free(t->sites);
	t->sites = v;
	t->nsites = out;
}

static int alloc_site_cmp(const void *a, const void *b)
{
	const struct heap_alloc_site *x = a, *y = b;

	return site_key_cmp(x->function, x->file, x->line, y->function, y->file, y->line);
}

static int alloc_site_cmp_samples(const void *a, const void *b)
{
	const struct heap_alloc_site *x = a, *y = b;

	if (x->samples != y->samples)
		return x->samples < y->samples ? 1 : -1;
	return alloc_site_cmp(a, b);
}

static void poll_trace(struct heap_trace *t, uint64_t now)
{
	int ncpu = libbpf_num_possible_cpus();
	int rfd = bpf_map__fd(t->skel->maps.ht_rates);
	int sfd = bpf_map__fd(t->skel->maps.ht_trace_sites);
	int stfd = bpf_map__fd(t->skel->maps.ht_trace_stacks);
	struct ht_trace_key k, *prev = NULL;
	struct heap_alloc_site *v = NULL;
	uint64_t ips[HT_STACK_DEPTH];
	size_t n = 0, cap = 0, guard = 0;
	__u32 tgid = t->go->pid;
	struct ht_rate *per;

	if (ncpu <= 0)
		return;
	per = calloc(ncpu, sizeof(*per));
	if (!per)
		return;
	if (bpf_map_lookup_elem(rfd, &tgid, per) == 0) {
		struct heap_rates r = { 0 };
		double dt = (double)(now - t->last_poll_ns) / 1e9;

		for (int c = 0; c < ncpu; c++) {
			r.allocs += per[c].allocs;
			r.bytes += per[c].bytes;
			for (int i = 0; i < HT_HIST_BUCKETS; i++)
				r.hist[i] += per[c].hist[i];
		}
		if (dt > 0) {
			r.allocs_per_s = (double)(r.allocs - t->rates.allocs) / dt;
			r.bytes_per_s = (double)(r.bytes - t->rates.bytes) / dt;
		}
		t->rates = r;
		t->rates_valid = true;
	}
	free(per);

	while (guard++ < HT_MAX_TRACE_SITES && !bpf_map_get_next_key(sfd, prev, &k)) {
		struct ht_trace_counts c;
		struct heap_alloc_site *s;
		size_t ns;

		prev = &k;
		if (k.tgid != tgid || bpf_map_lookup_elem(sfd, &k, &c))
			continue;
		ns = ht_read_stack(stfd, k.stackid, ips);
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct heap_alloc_site *nv = realloc(v, nc * sizeof(*nv));

			if (!nv)
				break;
			v = nv;
			cap = nc;
		}
		s = &v[n++];
		memset(s, 0, sizeof(*s));
		site_of(t->go, ips, ns, true, &s->function, &s->file, &s->line);
		s->samples = c.samples;
		s->est_bytes = c.samples * t->opts.sample_bytes;
	}
	if (n) {
		size_t w = 0;

		qsort(v, n, sizeof(*v), alloc_site_cmp);
		for (size_t i = 0; i < n; i++) {
			if (w && alloc_site_cmp(&v[w - 1], &v[i]) == 0) {
				v[w - 1].samples += v[i].samples;
				v[w - 1].est_bytes += v[i].est_bytes;
				continue;
			}
			v[w++] = v[i];
		}
		n = w;
		qsort(v, n, sizeof(*v), alloc_site_cmp_samples);
	}
	free(t->alloc_sites);
	t->alloc_sites = v;
	t->nalloc_sites = n;
}

int heap_trace__poll(struct heap_trace *t)
{
	uint64_t now = now_monotonic_ns();

	if (!t->active)
		return -ENOTCONN;
	if (t->state == HEAP_PROFILE_ON)
		poll_profile(t);
	if (t->opts.trace)
		poll_trace(t, now);
	t->last_poll_ns = now;
	return 0;
}


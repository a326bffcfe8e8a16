/* Go heap profile read in place: walk runtime.mbuckets (linked by
 * bucket.allnext) with process_vm_readv, fold the memRecord cycles as
 * runtime.MemProfile does, scale as runtime/pprof does. Read-only. */
#include "watch/heapprof.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "base/log.h"
#include "base/util.h"
#include "discover/proc.h"
#include "output/json_out.h"

/* Bytes read per bucket in one go: header, a typical stack, the memRecord.
 * Deeper stacks take a second read. */
#define HEAP_FIRST_READ 1024

static uint64_t le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v)); /* x86-64 and arm64 targets are little-endian */
	return v;
}

/* The C cast of an out-of-range double is undefined (a target's forged
 * counts get there); Go on amd64 yields CVTTSD2SI's 0x8000000000000000. */
static int64_t scaled_to_int64(double v)
{
	if (!(v > -9223372036854775808.0 && v < 9223372036854775808.0))
		return INT64_MIN;
	return (int64_t)v;
}

void heap_scale_sample(int64_t count, int64_t size, int64_t rate, int64_t *out_count,
		       int64_t *out_size)
{
	double avg, scale;

	if (count == 0 || size == 0) {
		*out_count = 0;
		*out_size = 0;
		return;
	}
	if (rate <= 1) {
		/* rate 1: every allocation was recorded; below 1: unknown, no scaling */
		*out_count = count;
		*out_size = size;
		return;
	}
	avg = (double)size / (double)count;
	scale = 1 / (1 - exp(-avg / (double)rate));
	/* int64(float64(x) * scale) in Go truncates toward zero, as the C cast does */
	*out_count = scaled_to_int64((double)count * scale);
	*out_size = scaled_to_int64((double)size * scale);
}

int heap_layout_from_offsets(const struct go_offsets *off, struct heap_bucket_layout *l)
{
	/* memRecord is {active; future[3]} of memRecordCycle: four words per
	 * cycle, or two (allocs, frees) from 1.27, whose bytes are counts
	 * times bucket.size. Binaries older than the cycle's own DWARF type
	 * have only the record's size: four words then. */
	int cycle = off ? off->memrecord_cycle_size : -1;

	if (off && cycle <= 0 && off->memrecord_size >= 4 * 32)
		cycle = 32;
	if (!off || off->bucket_header_size <= 0 || off->bucket_allnext < 0 || off->bucket_nstk < 0 ||
	    off->bucket_size < 0 || (cycle != 16 && cycle != 32) || off->memrecord_size < 4 * cycle)
		return -EINVAL;
	l->cycle_size = cycle;
	l->header_size = off->bucket_header_size;
	l->allnext = off->bucket_allnext;
	l->typ = off->bucket_allnext + 8;
	l->size = off->bucket_size;
	l->nstk = off->bucket_nstk;
	l->memrecord_size = off->memrecord_size;
	if (l->header_size > HEAP_MAX_HEADER || l->memrecord_size > HEAP_MAX_MEMRECORD)
		return -E2BIG;
	if (l->allnext + 8 > l->header_size || l->typ + 8 > l->header_size ||
	    l->size + 8 > l->header_size || l->nstk + 8 > l->header_size)
		return -EINVAL;
	return 0;
}

static struct heap_cycle cycle_at(const struct heap_bucket_layout *l, const uint8_t *p,
				  uint64_t object_size)
{
	if (l->cycle_size == 16)
		return (struct heap_cycle){ le64(p), le64(p + 8), le64(p) * object_size,
					    le64(p + 8) * object_size };
	return (struct heap_cycle){ le64(p), le64(p + 8), le64(p + 16), le64(p + 24) };
}

int heap_parse_bucket(const struct heap_bucket_layout *l, const uint8_t *buf, size_t len,
		      struct heap_bucket_raw *out, size_t *need)
{
	size_t total;
	const uint8_t *mr;

	if (need)
		*need = (size_t)l->header_size;
	if (len < (size_t)l->header_size)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->allnext = le64(buf + l->allnext);
	out->typ = (int64_t)le64(buf + l->typ);
	out->object_size = le64(buf + l->size);
	out->nstk = le64(buf + l->nstk);
	if (out->nstk > HEAP_MAX_NSTK)
		return -E2BIG;
	total = (size_t)l->header_size + out->nstk * 8 + (size_t)l->memrecord_size;
	if (need)
		*need = total;
	if (len < total)
		return -ENODATA;
	out->stk = buf + l->header_size;
	mr = out->stk + out->nstk * 8;
	out->active = cycle_at(l, mr, out->object_size);
	for (int i = 0; i < 3; i++)
		out->future[i] = cycle_at(l, mr + l->cycle_size * (i + 1), out->object_size);
	return 0;
}

static void cycle_add(struct heap_cycle *a, const struct heap_cycle *b)
{
	a->allocs += b->allocs;
	a->frees += b->frees;
	a->alloc_bytes += b->alloc_bytes;
	a->free_bytes += b->free_bytes;
}

struct heap_cycle heap_bucket_counts(const struct heap_bucket_raw *b, int pending_index,
				     bool fold_all)
{
	struct heap_cycle c = b->active;

	if (fold_all) {
		for (int i = 0; i < 3; i++)
			cycle_add(&c, &b->future[i]);
	} else if (pending_index >= 0 && pending_index < 3) {
		cycle_add(&c, &b->future[pending_index]);
	}
	return c;
}

void heap_profile_free(struct heap_profile *p)
{
	free(p->records);
	free(p->pcs);
	memset(p, 0, sizeof(*p));
}

/* Reads one bucket at addr into buf (HEAP_FIRST_READ + HEAP_MAX_NSTK*8 bytes). */
static int read_bucket(pid_t pid, const struct heap_bucket_layout *l, uint64_t addr, uint8_t *buf,
		       struct heap_bucket_raw *raw)
{
	size_t need = 0;
	int ret;

	/* buckets live in persistentalloc chunks; a fixed-size read can run off
	 * the end of the last one, so fall back to the header alone */
	ret = proc_read(pid, addr, buf, HEAP_FIRST_READ);
	if (ret == -ESRCH)
		return ret;
	if (ret < 0) {
		ret = proc_read(pid, addr, buf, (size_t)l->header_size);
		if (ret < 0)
			return ret;
		ret = heap_parse_bucket(l, buf, (size_t)l->header_size, raw, &need);
	} else {
		ret = heap_parse_bucket(l, buf, HEAP_FIRST_READ, raw, &need);
	}
	if (ret != -ENODATA)
		return ret;
	if (need > HEAP_BUCKET_READ)
		return -E2BIG;
	ret = proc_read(pid, addr, buf, need);
	if (ret < 0)
		return ret;
	return heap_parse_bucket(l, buf, need, raw, NULL);
}

struct walked {
	uint64_t *stk;
	uint32_t nstk;
	uint64_t object_size;
	struct heap_cycle active, future[3];
};

int heap_profile_read(const struct go_target *t, struct heap_profile *p, char *err, size_t errlen)
{
	struct heap_bucket_layout l;
	uint64_t mbuckets, rate_addr, cycle_addr, addr;
	int64_t rate;
	uint8_t *buf = NULL;
	struct walked *w = NULL;
	struct addr_set seen = { 0 };
	size_t nw = 0, cw = 0, npcs = 0;
	int pending = -1, ret;
	bool fold_all = true;

	memset(p, 0, sizeof(*p));
	p->pid = t->pid;
	p->taken_ns = now_monotonic_ns();
	mbuckets = go_target_global(t, "runtime.mbuckets");
	rate_addr = go_target_global(t, "runtime.MemProfileRate");
	if (!mbuckets || !rate_addr)
		return set_err(err, errlen, -ENOENT, "PID %d: runtime.%s not found in the binary",
			       t->pid, !mbuckets ? "mbuckets" : "MemProfileRate");
	ret = heap_layout_from_offsets(gobin_offsets(t->bin), &l);
	if (ret == -E2BIG)
		return set_err(err, errlen, ret,
			       "PID %d: runtime.bucket/memRecord sizes from DWARF (%d, %d bytes) are "
			       "over %d: layout refused", t->pid, gobin_offsets(t->bin)->bucket_header_size,
			       gobin_offsets(t->bin)->memrecord_size, HEAP_MAX_HEADER);
	if (ret < 0)
		return set_err(err, errlen, -ENOENT, "PID %d: runtime.bucket layout unknown", t->pid);
	ret = proc_read(t->pid, rate_addr, &rate, sizeof(rate));
	if (ret < 0)
		return set_err(err, errlen, ret, "PID %d: read runtime.MemProfileRate: %s", t->pid,
			       strerror(-ret));
	p->rate = rate;
	if (rate == 0)
		return set_err(err, errlen, -ENODATA,
			       "heap profiling is off in the target: MemProfileRate=0 (the linker "
			       "disables it when nothing references runtime.MemProfile)");
	ret = proc_read(t->pid, mbuckets, &addr, sizeof(addr));
	if (ret < 0)
		return set_err(err, errlen, ret, "PID %d: read runtime.mbuckets: %s", t->pid,
			       strerror(-ret));

	/* mProfCycleHolder (1.19+): cycle << 1 | flushed. MemProfile folds
	 * future[cycle%3] into active before reading (it only holds data between
	 * mark termination's NextCycle and Flush); do the same on our copy. */
	cycle_addr = go_target_global(t, "runtime.mProfCycle");
	if (cycle_addr && gobin_version(t->bin) &&
	    (gobin_version(t->bin)->minor >= 19 || gobin_version(t->bin)->major > 1)) {
		uint32_t v;

		if (proc_read(t->pid, cycle_addr, &v, sizeof(v)) == 0) {
			pending = (int)((v >> 1) % 3);
			p->pending_flush = !(v & 1);
		}
	}

	buf = malloc(HEAP_BUCKET_READ);
	if (!buf || addr_set_init(&seen, HEAP_MAX_BUCKETS)) {
		free(buf);
		return set_err(err, errlen, -ENOMEM, "out of memory");
	}
	while (addr) {
		struct heap_bucket_raw raw;

		if (p->buckets >= HEAP_MAX_BUCKETS || npcs >= HEAP_MAX_PCS) {
			p->truncated = true;
			break;
		}
		if (addr_set_add(&seen, addr) == 1) {
			p->cycle = true; /* a real list never comes back */
			break;
		}
		p->buckets++;
		if (addr & 7) {
			p->skipped++; /* a torn pointer: stop rather than wander */
			break;
		}
		ret = read_bucket(t->pid, &l, addr, buf, &raw);
		if (ret == -ESRCH) {
			set_err(err, errlen, ret, "process %d exited", t->pid);
			goto fail;
		}
		if (ret < 0) {
			p->skipped++;
			break; /* without the header there is no allnext to follow */
		}
		addr = raw.allnext;
		if (raw.typ != HEAP_MEM_PROFILE || raw.nstk == 0) {
			p->skipped++;
			continue;
		}
		if (nw == cw) {
			size_t ncw = cw ? cw * 2 : 256;
			struct walked *nwv = realloc(w, ncw * sizeof(*w));

			if (!nwv) {
				ret = set_err(err, errlen, -ENOMEM, "out of memory");
				goto fail;
			}
			w = nwv;
			cw = ncw;
		}
		w[nw].nstk = (uint32_t)raw.nstk;
		w[nw].stk = malloc(raw.nstk * 8);
		if (!w[nw].stk) {
			ret = set_err(err, errlen, -ENOMEM, "out of memory");
			goto fail;
		}
		memcpy(w[nw].stk, raw.stk, raw.nstk * 8);
		w[nw].object_size = raw.object_size;
		w[nw].active = raw.active;
		memcpy(w[nw].future, raw.future, sizeof(raw.future));
		npcs += raw.nstk;
		nw++;
	}

	/* MemProfile: when nothing was published yet (no GC since start), all
	 * cycles are folded in so profiles work with GC off. */
	for (size_t i = 0; i < nw && fold_all; i++) {
		struct heap_bucket_raw r = { .active = w[i].active };
		struct heap_cycle c;

		memcpy(r.future, w[i].future, sizeof(r.future));
		c = heap_bucket_counts(&r, pending, false);
		if (c.allocs || c.frees)
			fold_all = false;
	}
	p->no_gc_yet = fold_all && nw > 0;

	p->records = calloc(nw ? nw : 1, sizeof(*p->records));
	p->pcs = calloc(npcs ? npcs : 1, sizeof(*p->pcs));
	if (!p->records || !p->pcs) {
		ret = set_err(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	npcs = 0;
	for (size_t i = 0; i < nw; i++) {
		struct heap_record *r = &p->records[i];
		struct heap_bucket_raw raw = { .active = w[i].active };

		memcpy(raw.future, w[i].future, sizeof(raw.future));
		r->raw = heap_bucket_counts(&raw, pending, p->no_gc_yet);
		r->stack = p->pcs + npcs;
		r->nstk = w[i].nstk;
		memcpy(r->stack, w[i].stk, w[i].nstk * 8);
		npcs += w[i].nstk;
		r->object_size = w[i].object_size;
		heap_scale_sample((int64_t)r->raw.allocs, (int64_t)r->raw.alloc_bytes, rate,
				  &r->alloc_objects, &r->alloc_bytes);
		heap_scale_sample((int64_t)(r->raw.allocs - r->raw.frees),
				  (int64_t)(r->raw.alloc_bytes - r->raw.free_bytes), rate,
				  &r->inuse_objects, &r->inuse_bytes);
		free(w[i].stk);
	}
	p->nrecords = nw;
	if (p->truncated || p->cycle)
		log_warn("PID %d: heap profile walk stopped after %zu buckets (%s)", (int)t->pid,
			 p->buckets, p->cycle ? "the bucket list loops" : "over its bounds");
	free(w);
	free(buf);
	addr_set_free(&seen);
	return 0;
fail:
	for (size_t i = 0; i < nw; i++)
		free(w[i].stk);
	free(w);
	free(buf);
	addr_set_free(&seen);
	heap_profile_free(p);
	return ret;
}

bool heap_is_runtime_func(const char *name)
{
	return name && (strncmp(name, "runtime.", 8) == 0 ||
			strncmp(name, "internal/runtime/", 17) == 0);
}

bool heap_is_alloc_frame(const char *name)
{
	static const char *const prefixes[] = {
		"runtime.mallocgc", "runtime.newobject", "runtime.newarray", "runtime.makeslice",
		"runtime.growslice", "runtime.profilealloc",
	};

	for (size_t i = 0; name && i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

/* pc -> function/file/line: every heap stack entry is a return address, so
 * look up pc-1 (the call instruction), as runtime.CallersFrames does. */
static int lookup_return_pc(const struct go_target *t, uint64_t pc, struct gobin_pcinfo *info)
{
	if (pc <= t->bias)
		return -ENOENT;
	return gobin_pc_lookup(t->bin, pc - t->bias - 1, info);
}

static int site_cmp_key(const void *a, const void *b)
{
	const struct heap_site *x = a, *y = b;
	int c = strcmp(x->function, y->function);

	if (c)
		return c;
	c = strcmp(x->file, y->file);
	if (c)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

static int site_cmp_inuse(const void *a, const void *b)
{
	const struct heap_site *x = a, *y = b;

	if (x->inuse_bytes != y->inuse_bytes)
		return x->inuse_bytes < y->inuse_bytes ? 1 : -1;
	if (x->alloc_bytes != y->alloc_bytes)
		return x->alloc_bytes < y->alloc_bytes ? 1 : -1;
	return site_cmp_key(a, b);
}

int heap_profile_sites(const struct go_target *t, const struct heap_profile *p,
		       struct heap_site **sites, size_t *n)
{
	struct heap_site *v;
	size_t out = 0;

	*sites = NULL;
	*n = 0;
	if (!p->nrecords)
		return 0;
	v = calloc(p->nrecords, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < p->nrecords; i++) {
		const struct heap_record *r = &p->records[i];
		struct gobin_pcinfo info, first = { 0 };
		struct heap_site *s = &v[i];
		bool have_first = false;

		for (uint32_t k = 0; k < r->nstk; k++) {
			if (lookup_return_pc(t, r->stack[k], &info) < 0 || !info.func)
				continue;
			/* the leaf to show for an all-runtime stack: not the
			 * allocator's own frames, which 1.26+ keeps at the top */
			if (!have_first || (heap_is_alloc_frame(first.func) &&
					    !heap_is_alloc_frame(info.func))) {
				first = info;
				have_first = true;
				s->pc = r->stack[k];
			}
			if (!heap_is_runtime_func(info.func)) {
				first = info;
				s->pc = r->stack[k];
				break;
			}
		}
		/* an all-runtime stack keeps its leaf frame below the allocator's */
		s->function = have_first ? first.func : "??";
		s->file = have_first && first.file ? first.file : "?";
		s->line = have_first ? first.line : 0;
		s->inuse_bytes = r->inuse_bytes;
		s->inuse_objects = r->inuse_objects;
		s->alloc_bytes = r->alloc_bytes;
		s->alloc_objects = r->alloc_objects;
	}
	qsort(v, p->nrecords, sizeof(*v), site_cmp_key);
	for (size_t i = 0; i < p->nrecords; i++) {
		if (out && site_cmp_key(&v[out - 1], &v[i]) == 0) {
			v[out - 1].inuse_bytes += v[i].inuse_bytes;
			v[out - 1].inuse_objects += v[i].inuse_objects;
			v[out - 1].alloc_bytes += v[i].alloc_bytes;
			v[out - 1].alloc_objects += v[i].alloc_objects;
			continue;
		}
		v[out++] = v[i];
	}
	qsort(v, out, sizeof(*v), site_cmp_inuse);
	*sites = v;
	*n = out;
	return 0;
}

json_object *heap_sites_to_json(const struct heap_site *sites, size_t n, size_t max)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; i < n && i < max; i++) {
		const struct heap_site *s = &sites[i];
		json_object *o = json_object_new_object();

		json_site_add(o, s->function, s->file, s->line);
		json_object_object_add(o, "inuse_bytes", json_object_new_int64(s->inuse_bytes));
		json_object_object_add(o, "inuse_objects", json_object_new_int64(s->inuse_objects));
		json_object_object_add(o, "alloc_bytes", json_object_new_int64(s->alloc_bytes));
		json_object_object_add(o, "alloc_objects", json_object_new_int64(s->alloc_objects));
		json_object_array_add(arr, o);
	}
	return arr;
}

static int symbolize_heap(void *ctx, uint64_t address, size_t index, struct pprof_frame *frames,
			  size_t max, size_t *n)
{
	const struct go_target *t = ctx;
	struct gobin_pcinfo info;

	*n = 0;
	if (max == 0 || lookup_return_pc(t, address, &info) < 0 || !info.func)
		return 0;
	frames[0] = (struct pprof_frame){ .function = info.func, .file = info.file,
					  .line = info.line };
	*n = 1;
	return 0;
}

int heap_profile_build_pprof(const struct go_target *t, const struct heap_profile *p,
			     struct pprof_builder **out, char *err, size_t errlen)
{
	static const struct pprof_value_type types[] = {
		{ "alloc_objects", "count" },
		{ "alloc_space", "bytes" },
		{ "inuse_objects", "count" },
		{ "inuse_space", "bytes" },
	};
	struct pprof_builder *b;
	char comment[128];
	char *maps;
	uint64_t start, end, off;
	int maps_err = 0;
	int ret;

	*out = NULL;
	ret = pprof_builder_new(types, 4, &b);
	if (ret < 0)
		return set_err(err, errlen, ret, "pprof builder: %s", strerror(-ret));
	if ((ret = pprof_set_period(b, "space", "bytes", p->rate)) < 0 ||
	    (ret = pprof_set_default_sample_type(b, "inuse_space")) < 0 ||
	    /* viewers hide the allocator above the user's allocation site; the
	     * frames stay in the file */
	    (ret = pprof_set_drop_frames(b, "runtime\\..*|internal/runtime/.*")) < 0)
		goto fail;
	pprof_set_time(b, (int64_t)now_realtime_ns(), 0);
	snprintf(comment, sizeof(comment), "memdrift: runtime heap profile buckets of PID %d", t->pid);
	if ((ret = pprof_add_comment(b, comment)) < 0)
		goto fail;

	maps = proc_maps_read(t->pid, &maps_err);
	if (maps && proc_maps_find_text(maps, t->exe.dev, t->exe.ino, &start, &end, &off) == 0)
		ret = pprof_add_mapping(b, start, end, off, t->exe.exe, gobin_build_id(t->bin), true,
					NULL);
	else
		log_debug("PID %d: executable text mapping not found; profile without mapping",
			  t->pid);
	free(maps);
	if (ret < 0)
		goto fail;

	for (size_t i = 0; i < p->nrecords; i++) {
		const struct heap_record *r = &p->records[i];
		int64_t values[4] = { r->alloc_objects, r->alloc_bytes, r->inuse_objects,
				      r->inuse_bytes };
		struct pprof_label label = { .key = "bytes" };
		size_t nlabels = 0;

		/* runtime/pprof labels each sample with its average object size */
		if (r->raw.allocs) {
			label.num = (int64_t)(r->raw.alloc_bytes / r->raw.allocs);
			nlabels = label.num ? 1 : 0;
		}
		ret = pprof_add_sample_addrs(b, r->stack, r->nstk, values, &label, nlabels,
					     symbolize_heap, (void *)t);
		if (ret < 0)
			goto fail;
	}
	*out = b;
	return 0;
fail:
	pprof_builder_free(b);
	return set_err(err, errlen, ret, "heap pprof: %s", strerror(-ret));
}

int heap_profile_write_pprof(const struct go_target *t, const struct heap_profile *p,
			     const char *path, char *err, size_t errlen)
{
	struct pprof_builder *b;
	int ret;

	ret = heap_profile_build_pprof(t, p, &b, err, errlen);
	if (ret < 0)
		return ret;
	ret = pprof_write_file(b, path);
	pprof_builder_free(b);
	if (ret < 0)
		return set_err(err, errlen, ret, "write %s: %s", path, strerror(-ret));
	return 0;
}

int heap_profile_top_sites(const struct go_target *t, struct heap_profile *hp, size_t max,
			   struct heap_site **sites, size_t *n, char *err, size_t errlen)
{
	int ret;

	*sites = NULL;
	*n = 0;
	ret = heap_profile_read(t, hp, err, errlen);
	if (ret < 0)
		return ret;
	ret = heap_profile_sites(t, hp, sites, n);
	if (ret < 0) {
		snprintf(err, errlen, "PID %d: heap sites: %s", t->pid, strerror(-ret));
		heap_profile_free(hp);
		return ret;
	}
	if (max && *n > max)
		*n = max;
	return 0;
}

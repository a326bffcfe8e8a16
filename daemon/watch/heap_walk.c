/* Live heap-profile specials of a Go process: see heap_walk.h. */
#include "watch/heap_walk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "discover/proc.h"

/* linux/amd64 (runtime/malloc.go): 64 MiB arenas of 8 KiB pages, a
 * 48-bit address space split into 2^22 arenas with no L1 level, arena
 * index = (p - 0xffff800000000000) / 64 MiB. */
#define GO_PAGE_SIZE 8192u
#define GO_PAGES_PER_ARENA 8192u
#define GO_ARENA_BYTES (64ull << 20)
#define GO_ARENA_L2_ENTRIES (1ull << 22)
#define GO_ARENA_BASE_OFFSET 0xffff800000000000ull
#define PAGE_SPECIALS_BYTES (GO_PAGES_PER_ARENA / 8)
#define SPECIAL_READ_MAX 32
#define HW_SPAN_WINDOW 512 /* bytes of an mspan read at once (startAddr..specials) */

int heap_walk_layout_init(struct heap_walk_layout *l, const struct go_offsets *off,
			  uint64_t mheap, int kind_off, unsigned kind_profile, int bucket_off)
{
	memset(l, 0, sizeof(*l));
	if (!mheap || off->mheap_arenas < 0 || off->mheap_all_arenas < 0 ||
	    off->heaparena_spans < 0 || off->heaparena_page_specials < 0 ||
	    off->mspan_start_addr < 0 || off->mspan_npages < 0 || off->mspan_specials < 0)
		return -ENOTSUP;
	/* special.offset sits right after next and is a uint16 while kind
	 * follows it at byte 10, a uintptr when kind is at 16 (Go 1.24). */
	if (kind_off == 10)
		l->sp_offset_size = 2;
	else if (kind_off == 16)
		l->sp_offset_size = 8;
	else
		return -ENOTSUP;
	if (bucket_off < kind_off + 1 || bucket_off + 8 > SPECIAL_READ_MAX)
		return -ENOTSUP;
	/* the three span fields are read as one window */
	{
		int a = off->mspan_start_addr, b = off->mspan_npages, c = off->mspan_specials;
		int lo = a < b ? (a < c ? a : c) : (b < c ? b : c);
		int hi = a > b ? (a > c ? a : c) : (b > c ? b : c);

		if (hi + 8 - lo > HW_SPAN_WINDOW)
			return -ENOTSUP;
		l->span_lo = lo;
		l->span_len = hi + 8 - lo;
	}
	l->mheap = mheap;
	l->arenas = off->mheap_arenas;
	l->all_arenas = off->mheap_all_arenas;
	l->spans = off->heaparena_spans;
	l->page_specials = off->heaparena_page_specials;
	l->span_start = off->mspan_start_addr;
	l->span_npages = off->mspan_npages;
	l->span_specials = off->mspan_specials;
	l->sp_offset = 8;
	l->sp_kind = kind_off;
	l->sp_bucket = bucket_off;
	l->kind_profile = kind_profile;
	return 0;
}

size_t heap_walk_bitmap_pages(const uint8_t *bits, size_t nbytes, uint32_t *pages, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < nbytes; i++) {
		uint8_t b = bits[i];

		while (b) {
			unsigned bit = (unsigned)__builtin_ctz(b);

			if (n < max)
				pages[n] = (uint32_t)(i * 8 + bit);
			n++;
			b &= (uint8_t)(b - 1);
		}
	}
	return n;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

bool heap_walk_parse_special(const struct heap_walk_layout *l, const uint8_t *rec, uint64_t *next,
			     uint64_t *offset, uint64_t *bucket)
{
	*next = le64(rec);
	if (l->sp_offset_size == 2) {
		uint16_t o;

		memcpy(&o, rec + l->sp_offset, sizeof(o));
		*offset = o;
	} else {
		*offset = le64(rec + l->sp_offset);
	}
	if (rec[l->sp_kind] != l->kind_profile)
		return false;
	*bucket = le64(rec + l->sp_bucket);
	return true;
}

const struct heap_special *heap_special_find(const struct heap_special *v, size_t n, uint64_t p)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid].p == p)
			return &v[mid];
		if (v[mid].p < p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int special_cmp(const void *a, const void *b)
{
	const struct heap_special *x = a, *y = b;

	return (x->p > y->p) - (x->p < y->p);
}

/* A span as read: where its objects are and its list of specials. */
struct walk_span {
	uint64_t slot;    /* address of its heapArena.spans entry */
	uint64_t base;    /* where the page that marked it starts */
	uint64_t span;    /* *mspan */
	uint64_t start, end;
	uint64_t special; /* next record to read, 0 when done */
	uint32_t steps;
};

/* Scratch buffers of one walk, sized for the largest level. */
struct walk {
	pid_t pid;
	uint64_t *addrs, *vals;
	bool *ok;
	size_t cap;
};

static int walk_reserve(struct walk *w, size_t n)
{
	uint64_t *a, *v;
	bool *o;

	if (n <= w->cap)
		return 0;
	a = realloc(w->addrs, n * sizeof(*a));
	if (a)
		w->addrs = a;
	v = a ? realloc(w->vals, n * sizeof(*v)) : NULL;
	if (v)
		w->vals = v;
	o = v ? realloc(w->ok, n * sizeof(*o)) : NULL;
	if (!o)
		return -ENOMEM;
	w->ok = o;
	w->cap = n;
	return 0;
}

static int add_result(struct heap_special **res, size_t *n, size_t *cap, uint64_t p, uint64_t b)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 1024;
		struct heap_special *v = realloc(*res, nc * sizeof(*v));

		if (!v)
			return -ENOMEM;
		*res = v;
		*cap = nc;
	}
	(*res)[*n].p = p;
	(*res)[(*n)++].bucket = b;
	return 0;
}

/* Levels 1-2: the marked pages of every arena -> spans[] (slot, base). */
static int walk_arenas(struct walk *w, const struct heap_walk_layout *l, const uint64_t *idx,
		       size_t nar, uint64_t l2, struct walk_span **spans, size_t *nspan,
		       struct heap_walk_stats *st)
{
	uint8_t *bits = NULL;
	uint32_t *pages = NULL;
	uint64_t *ha;
	size_t cap = 0;
	long got;
	int ret = 0;

	if (walk_reserve(w, nar))
		return -ENOMEM;
	ha = w->vals;
	for (size_t i = 0; i < nar; i++)
		w->addrs[i] = idx[i] < GO_ARENA_L2_ENTRIES ? l2 + idx[i] * 8 : 0;
	got = proc_read_many(w->pid, w->addrs, nar, sizeof(uint64_t), ha, w->ok);
	if (got < 0)
		return (int)got;
	bits = malloc(nar * PAGE_SPECIALS_BYTES);
	pages = malloc(GO_PAGES_PER_ARENA * sizeof(*pages));
	if (!bits || !pages) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nar; i++) {
		if (!w->ok[i] || !ha[i] || (ha[i] & 7)) {
			st->read_errors += !w->ok[i];
			ha[i] = 0;
		}
		/* vals (ha) and addrs are distinct buffers: safe to reuse addrs */
		w->addrs[i] = ha[i] ? ha[i] + (uint64_t)l->page_specials : 0;
	}
	got = proc_read_many(w->pid, w->addrs, nar, PAGE_SPECIALS_BYTES, bits, w->ok);
	if (got < 0) {
		ret = (int)got;
		goto out;
	}
	for (size_t i = 0; i < nar; i++) {
		size_t np;

		if (!ha[i])
			continue;
		if (!w->ok[i]) {
			st->read_errors++;
			continue;
		}
		np = heap_walk_bitmap_pages(bits + i * PAGE_SPECIALS_BYTES, PAGE_SPECIALS_BYTES, pages,
					    GO_PAGES_PER_ARENA);
		for (size_t j = 0; j < np; j++) {
			struct walk_span *s;

			if (*nspan >= HW_MAX_SPANS) {
				st->truncated = true;
				goto out;
			}
			if (*nspan == cap) {
				size_t nc = cap ? cap * 2 : 4096;
				struct walk_span *v = realloc(*spans, nc * sizeof(*v));

				if (!v) {
					ret = -ENOMEM;
					goto out;
				}
				*spans = v;
				cap = nc;
			}
			s = &(*spans)[(*nspan)++];
			memset(s, 0, sizeof(*s));
			s->slot = ha[i] + (uint64_t)l->spans + pages[j] * 8ull;
			s->base = idx[i] * GO_ARENA_BYTES + GO_ARENA_BASE_OFFSET +
				  pages[j] * (uint64_t)GO_PAGE_SIZE;
		}
	}
out:
	free(bits);
	free(pages);
	return ret;
}

/* Levels 3-4: each marked page's *mspan, then the span's startAddr, npages
 * and specials in one read of the header window that holds all three. A
 * span must start at the page that marked it (else it was freed and its
 * slot reused while we read). */
static int walk_spans(struct walk *w, const struct heap_walk_layout *l, struct walk_span *v,
		      size_t n, struct heap_walk_stats *st)
{
	int lo = l->span_lo;
	size_t len = (size_t)l->span_len, k = 0;
	uint8_t *hdr;
	long got;

	if (walk_reserve(w, n))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		w->addrs[i] = v[i].slot;
	got = proc_read_many(w->pid, w->addrs, n, sizeof(uint64_t), w->vals, w->ok);
	if (got < 0)
		return (int)got;
	for (size_t i = 0; i < n; i++) {
		st->read_errors += !w->ok[i];
		v[i].span = w->ok[i] && !(w->vals[i] & 7) ? w->vals[i] : 0;
	}
	hdr = malloc((n ? n : 1) * len);
	if (!hdr)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (v[i].span)
			w->addrs[k++] = v[i].span + (uint64_t)lo;
	got = k ? proc_read_many(w->pid, w->addrs, k, len, hdr, w->ok) : 0;
	if (got < 0) {
		free(hdr);
		return (int)got;
	}
	k = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *h;
		uint64_t np, sp;

		if (!v[i].span)
			continue;
		h = hdr + k * len;
		if (!w->ok[k++]) {
			v[i].span = 0;
			continue;
		}
		v[i].start = le64(h + (l->span_start - lo));
		np = le64(h + (l->span_npages - lo));
		sp = le64(h + (l->span_specials - lo));
		if (v[i].start != v[i].base || np == 0 || np > GO_ARENA_L2_ENTRIES) {
			st->rejected++;
			v[i].span = 0;
			continue;
		}
		v[i].end = v[i].start + np * GO_PAGE_SIZE;
		v[i].special = (sp & 7) ? 0 : sp;
	}
	free(hdr);
	return 0;
}

/* Level 5: the lists, one record of every span per round, in one batch. */
static int walk_lists(struct walk *w, const struct heap_walk_layout *l, struct walk_span *v,
		      size_t n, struct heap_special **res, size_t *nres,
		      struct heap_walk_stats *st)
{
	size_t rec = (size_t)l->sp_bucket + 8, capres = 0;
	uint8_t *recs = malloc((n ? n : 1) * rec);
	int ret = 0;

	if (!recs)
		return -ENOMEM;
	for (;;) {
		size_t k = 0;
		long got;

		for (size_t s = 0; s < n; s++)
			if (v[s].special)
				w->addrs[k++] = v[s].special;
		if (!k)
			break;
		got = proc_read_many(w->pid, w->addrs, k, rec, recs, w->ok);
		if (got < 0) {
			ret = (int)got;
			break;
		}
		k = 0;
		for (size_t s = 0; s < n; s++) {
			struct walk_span *sp = &v[s];
			uint64_t next = 0, offset, bucket;
			const uint8_t *r;

			if (!sp->special)
				continue;
			r = recs + k * rec;
			if (!w->ok[k++]) {
				st->read_errors++;
				sp->special = 0;
				continue;
			}
			if (++st->specials >= HW_MAX_SPECIALS) {
				st->truncated = true;
				goto out;
			}
			if (heap_walk_parse_special(l, r, &next, &offset, &bucket)) {
				if (offset >= sp->end - sp->start || !bucket || (bucket & 7))
					st->rejected++;
				else if ((ret = add_result(res, nres, &capres, sp->start + offset, bucket)))
					goto out;
			}
			if (++sp->steps >= HW_MAX_LIST) {
				st->truncated = true;
				next = 0;
			}
			sp->special = (next & 7) ? 0 : next;
		}
	}
out:
	free(recs);
	return ret;
}

int heap_walk_profile_specials(pid_t pid, const struct heap_walk_layout *l,
			       struct heap_special **out, size_t *n, struct heap_walk_stats *st)
{
	struct walk w = { .pid = pid };
	struct walk_span *spans = NULL;
	struct heap_special *res = NULL;
	uint64_t l2, hdr[3], *idx = NULL;
	size_t nar, nspan = 0, nres = 0, nlive = 0;
	int ret;

	*out = NULL;
	*n = 0;
	memset(st, 0, sizeof(*st));
	ret = proc_read(pid, l->mheap + (uint64_t)l->arenas, &l2, sizeof(l2));
	if (!ret)
		ret = proc_read(pid, l->mheap + (uint64_t)l->all_arenas, hdr, sizeof(hdr));
	if (ret)
		return ret == -ESRCH ? -ESRCH : -EFAULT;
	nar = hdr[1];
	if (!l2 || !hdr[0] || nar == 0)
		return 0; /* no heap yet */
	if (hdr[1] > hdr[2])
		return -EFAULT;
	if (nar > HW_MAX_ARENAS) {
		st->truncated = true;
		nar = HW_MAX_ARENAS;
	}
	idx = malloc(nar * sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	ret = proc_read(pid, hdr[0], idx, nar * sizeof(*idx));
	if (ret) {
		ret = ret == -ESRCH ? -ESRCH : -EFAULT;
		goto out;
	}
	st->arenas = nar;
	ret = walk_arenas(&w, l, idx, nar, l2, &spans, &nspan, st);
	st->spans = nspan;
	if (!ret && nspan)
		ret = walk_spans(&w, l, spans, nspan, st);
	if (!ret && nspan)
		ret = walk_lists(&w, l, spans, nspan, &res, &nres, st);
	if (ret)
		goto out;
	/* Sorted, one entry per object (a torn read can repeat one). */
	if (nres)
		qsort(res, nres, sizeof(*res), special_cmp);
	for (size_t i = 0; i < nres; i++)
		if (!nlive || res[nlive - 1].p != res[i].p)
			res[nlive++] = res[i];
	st->profile = nlive;
	*out = res;
	*n = nlive;
	res = NULL;
out:
	free(res);
	free(idx);
	free(spans);
	free(w.addrs);
	free(w.vals);
	free(w.ok);
	return ret;
}

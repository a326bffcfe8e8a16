/* The heap walk (daemon/watch/heap_walk.c) against a synthetic Go heap built in
 * this process's own memory and read back through process_vm_readv on our
 * own pid: mheap_.arenas / allArenas, heapArena.spans / pageSpecials, the
 * mspans and their special lists, in both record layouts (Go <= 1.23:
 * uint16 offset, kind at 10, bucket at 16; Go 1.24: uintptr offset, kind
 * at 16, bucket at 24). Only metadata is read, so the object addresses
 * the spans claim need not exist here. Also: bounds on torn input (a
 * cycle in a list, a span slot reused, an offset outside its span) and
 * the layout's refusal of unknown offsets. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "watch/heap_walk.h"

#define PAGES 8192
#define ARENA_IDX 0x203000ull /* the arena at 0xc000000000 */
#define ARENA_BASE 0xc000000000ull
#define KIND_PROFILE 3
#define KIND_FINALIZER 1

/* Field offsets of the synthetic structs (as go_offsets would give). */
enum { MHEAP_ARENAS = 0, MHEAP_ALL_ARENAS = 8, HA_SPANS = 0, HA_PAGE_SPECIALS = PAGES * 8,
       SPAN_START = 24, SPAN_NPAGES = 32, SPAN_SPECIALS = 128, SPAN_SIZE = 160 };

struct fake_heap {
	uint8_t mheap[64];
	uint64_t l2_slot;      /* mheap_.arenas[0][ARENA_IDX] lives here */
	uint64_t all_arenas[1];
	uint8_t *arena;        /* heapArena: spans[PAGES], pageSpecials[PAGES/8] */
	uint8_t spans[4][SPAN_SIZE];
	uint8_t recs[16][32];  /* special records */
	int nrec;
	bool go124;
};

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, sizeof(v)); }

static void fake_init(struct fake_heap *h, bool go124)
{
	memset(h, 0, sizeof(*h));
	h->go124 = go124;
	h->arena = calloc(1, HA_PAGE_SPECIALS + PAGES / 8);
	assert_non_null(h->arena);
	/* arenas[0] points at a virtual L2 array whose ARENA_IDX entry is l2_slot */
	put64(h->mheap + MHEAP_ARENAS, (uint64_t)(uintptr_t)&h->l2_slot - ARENA_IDX * 8);
	h->all_arenas[0] = ARENA_IDX;
	put64(h->mheap + MHEAP_ALL_ARENAS, (uint64_t)(uintptr_t)h->all_arenas);
	put64(h->mheap + MHEAP_ALL_ARENAS + 8, 1);
	put64(h->mheap + MHEAP_ALL_ARENAS + 16, 1);
	h->l2_slot = (uint64_t)(uintptr_t)h->arena;
}

/* Span i starting at arena page `page`, npages long, marked in
 * pageSpecials; start_delta != 0 makes its startAddr disagree. */
static uint8_t *fake_span(struct fake_heap *h, int i, unsigned page, uint64_t npages,
			  int64_t start_delta)
{
	uint8_t *s = h->spans[i];

	put64(h->arena + HA_SPANS + page * 8, (uint64_t)(uintptr_t)s);
	h->arena[HA_PAGE_SPECIALS + page / 8] |= (uint8_t)(1u << (page % 8));
	put64(s + SPAN_START, ARENA_BASE + page * 8192ull + (uint64_t)start_delta);
	put64(s + SPAN_NPAGES, npages);
	return s;
}

/* A record appended after *link (a span's specials field or a record's next). */
static uint8_t *fake_special(struct fake_heap *h, uint8_t *link, uint64_t offset, uint8_t kind,
			     uint64_t bucket)
{
	uint8_t *r = h->recs[h->nrec++];

	put64(link, (uint64_t)(uintptr_t)r);
	if (h->go124) {
		put64(r + 8, offset);
		r[16] = kind;
		put64(r + 24, bucket);
	} else {
		uint16_t o = (uint16_t)offset;

		memcpy(r + 8, &o, sizeof(o));
		r[10] = kind;
		put64(r + 16, bucket);
	}
	return r;
}

static struct heap_walk_layout layout(const struct fake_heap *h)
{
	struct go_offsets off;
	struct heap_walk_layout l;

	memset(&off, 0, sizeof(off));
	off.mheap_arenas = MHEAP_ARENAS;
	off.mheap_all_arenas = MHEAP_ALL_ARENAS;
	off.heaparena_spans = HA_SPANS;
	off.heaparena_page_specials = HA_PAGE_SPECIALS;
	off.mspan_start_addr = SPAN_START;
	off.mspan_npages = SPAN_NPAGES;
	off.mspan_specials = SPAN_SPECIALS;
	assert_int_equal(heap_walk_layout_init(&l, &off, (uint64_t)(uintptr_t)h->mheap,
					       h->go124 ? 16 : 10, KIND_PROFILE, h->go124 ? 24 : 16),
			 0);
	return l;
}

static void walk_both_layouts(bool go124)
{
	struct fake_heap h;
	struct heap_walk_layout l;
	struct heap_special *v;
	struct heap_walk_stats st;
	uint8_t *s, *r;
	size_t n;

	fake_init(&h, go124);
	/* span 0: page 3, one page of 64-byte objects: profile at 0 and 128,
	 * a finalizer at 64 between them */
	s = fake_span(&h, 0, 3, 1, 0);
	r = fake_special(&h, s + SPAN_SPECIALS, 0, KIND_PROFILE, 0x1000);
	r = fake_special(&h, r, 64, KIND_FINALIZER, 0xdead0);
	fake_special(&h, r, 128, KIND_PROFILE, 0x2000);
	/* span 1: page 4100, a 3-page large object with a profile at 0 */
	s = fake_span(&h, 1, 4100, 3, 0);
	fake_special(&h, s + SPAN_SPECIALS, 0, KIND_PROFILE, 0x3000);
	/* span 2: its slot was reused (startAddr elsewhere): skipped */
	s = fake_span(&h, 2, 9, 1, 8192);
	fake_special(&h, s + SPAN_SPECIALS, 0, KIND_PROFILE, 0x4000);
	/* span 3: a record whose offset lies past the span: rejected */
	s = fake_span(&h, 3, 11, 1, 0);
	fake_special(&h, s + SPAN_SPECIALS, 9000, KIND_PROFILE, 0x5000);

	l = layout(&h);
	assert_int_equal(heap_walk_profile_specials(getpid(), &l, &v, &n, &st), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].p, ARENA_BASE + 3 * 8192);
	assert_int_equal(v[0].bucket, 0x1000);
	assert_int_equal(v[1].p, ARENA_BASE + 3 * 8192 + 128);
	assert_int_equal(v[1].bucket, 0x2000);
	assert_int_equal(v[2].p, ARENA_BASE + 4100ull * 8192);
	assert_int_equal(v[2].bucket, 0x3000);
	assert_int_equal(st.arenas, 1);
	assert_int_equal(st.spans, 4);
	assert_int_equal(st.specials, 5); /* span 2's list is not read */
	assert_int_equal(st.profile, 3);
	assert_int_equal(st.rejected, 2); /* span 2, span 3's record */
	assert_int_equal(st.read_errors, 0);
	assert_false(st.truncated);
	assert_non_null(heap_special_find(v, n, ARENA_BASE + 3 * 8192 + 128));
	assert_null(heap_special_find(v, n, ARENA_BASE + 3 * 8192 + 64));
	free(v);
	free(h.arena);
}

static void test_walk_go123_layout(void **state)
{
	(void)state;
	walk_both_layouts(false);
}

static void test_walk_go124_layout(void **state)
{
	(void)state;
	walk_both_layouts(true);
}

static void test_walk_bounds(void **state)
{
	struct fake_heap h;
	struct heap_walk_layout l;
	struct heap_special *v;
	struct heap_walk_stats st;
	uint8_t *s, *r;
	size_t n;

	(void)state;
	fake_init(&h, true);
	/* a list that loops on itself (a torn read of a recycled record) */
	s = fake_span(&h, 0, 0, 1, 0);
	r = fake_special(&h, s + SPAN_SPECIALS, 16, KIND_PROFILE, 0x1000);
	put64(r, (uint64_t)(uintptr_t)r);
	l = layout(&h);
	assert_int_equal(heap_walk_profile_specials(getpid(), &l, &v, &n, &st), 0);
	assert_true(st.truncated);
	assert_int_equal(st.specials, HW_MAX_LIST);
	assert_int_equal(n, 1); /* the repeats fold into one object */
	free(v);

	/* allArenas len > cap: not a slice */
	put64(h.mheap + MHEAP_ALL_ARENAS + 8, 5);
	assert_int_equal(heap_walk_profile_specials(getpid(), &l, &v, &n, &st), -EFAULT);
	/* no arenas yet: nothing, no error */
	put64(h.mheap + MHEAP_ALL_ARENAS + 8, 0);
	assert_int_equal(heap_walk_profile_specials(getpid(), &l, &v, &n, &st), 0);
	assert_int_equal(n, 0);
	assert_null(v);
	/* an unreadable heapArena pointer: counted, no crash */
	put64(h.mheap + MHEAP_ALL_ARENAS + 8, 1);
	h.l2_slot = 8;
	assert_int_equal(heap_walk_profile_specials(getpid(), &l, &v, &n, &st), 0);
	assert_int_equal(n, 0);
	assert_int_equal(st.read_errors, 1);
	free(h.arena);
}

static void test_layout_init(void **state)
{
	struct go_offsets off;
	struct heap_walk_layout l;

	(void)state;
	memset(&off, 0, sizeof(off));
	off.mheap_arenas = 66008;
	off.mheap_all_arenas = 66096;
	off.heaparena_spans = 0;
	off.heaparena_page_specials = 67584;
	off.mspan_start_addr = 24;
	off.mspan_npages = 32;
	off.mspan_specials = 128;
	assert_int_equal(heap_walk_layout_init(&l, &off, 0x1000, 16, 3, 24), 0);
	assert_int_equal(l.sp_offset_size, 8);
	/* startAddr..specials read as one window */
	assert_int_equal(l.span_lo, 24);
	assert_int_equal(l.span_len, 128 + 8 - 24);
	assert_int_equal(heap_walk_layout_init(&l, &off, 0x1000, 10, 2, 16), 0);
	assert_int_equal(l.sp_offset_size, 2);
	/* no mheap_, an unknown field, an unknown record layout */
	assert_int_equal(heap_walk_layout_init(&l, &off, 0, 16, 3, 24), -ENOTSUP);
	assert_int_equal(heap_walk_layout_init(&l, &off, 0x1000, 12, 3, 24), -ENOTSUP);
	off.mspan_specials = 4096; /* a window too wide to read at once */
	assert_int_equal(heap_walk_layout_init(&l, &off, 0x1000, 16, 3, 24), -ENOTSUP);
	off.mspan_specials = GO_OFF_NONE;
	assert_int_equal(heap_walk_layout_init(&l, &off, 0x1000, 16, 3, 24), -ENOTSUP);
}

static void test_bitmap_pages(void **state)
{
	uint8_t bits[PAGES / 8] = { 0 };
	uint32_t pages[PAGES];

	(void)state;
	assert_int_equal(heap_walk_bitmap_pages(bits, sizeof(bits), pages, PAGES), 0);
	bits[0] = 0x81;
	bits[1023] = 0x80;
	assert_int_equal(heap_walk_bitmap_pages(bits, sizeof(bits), pages, PAGES), 3);
	assert_int_equal(pages[0], 0);
	assert_int_equal(pages[1], 7);
	assert_int_equal(pages[2], 8191);
	/* more set than room: the count still tells */
	memset(bits, 0xff, sizeof(bits));
	assert_int_equal(heap_walk_bitmap_pages(bits, sizeof(bits), pages, 10), PAGES);
	assert_int_equal(pages[9], 9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walk_go123_layout),
		cmocka_unit_test(test_walk_go124_layout),
		cmocka_unit_test(test_walk_bounds),
		cmocka_unit_test(test_layout_init),
		cmocka_unit_test(test_bitmap_pages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

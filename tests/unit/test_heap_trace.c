/* Go heap probes, pure parts: the log2 size classes the BPF side bins
 * mallocgc sizes into, the runtime.special layout per Go release (which
 * freeSpecial calls are sampled objects dying), the probe-stack vs
 * runtime-bucket-stack check, in-use arithmetic (baseline at attach +
 * counts since), probe placement on real Go prologues, and where
 * mProf_Malloc spills its arguments (the one-hit allocation probe). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "heap_trace.h"
#include "heapprof.h"
#include "probe_place.h"

static void test_size_class(void **state)
{
	(void)state;
	assert_int_equal(ht_size_class(0), 0);
	assert_int_equal(ht_size_class(1), 1);
	assert_int_equal(ht_size_class(2), 2);
	assert_int_equal(ht_size_class(3), 2);
	assert_int_equal(ht_size_class(4), 3);
	assert_int_equal(ht_size_class(8), 4);
	assert_int_equal(ht_size_class(16383), 14);
	assert_int_equal(ht_size_class(16384), 15);
	assert_int_equal(ht_size_class(65536), 17);
	assert_int_equal(ht_size_class(1ull << 40), 41);
	assert_int_equal(ht_size_class(UINT64_MAX), HT_HIST_BUCKETS - 1);
	/* every class's lower bound falls in that class */
	for (unsigned c = 1; c < HT_HIST_BUCKETS - 1; c++) {
		assert_int_equal(ht_size_class(heap_hist_lower(c)), c);
		assert_int_equal(ht_size_class(heap_hist_lower(c + 1) - 1), c);
	}
	assert_int_equal(heap_hist_lower(0), 0);
}

static void test_special_layout(void **state)
{
	int off, boff;
	unsigned kind;

	(void)state;
	assert_int_equal(heap_special_layout(1, 19, &off, &kind, &boff), 0);
	assert_int_equal(off, 10);
	assert_int_equal(kind, 2);
	assert_int_equal(boff, 16);
	assert_int_equal(heap_special_layout(1, 22, &off, &kind, &boff), 0);
	assert_int_equal(kind, 2);
	/* 1.23: weak handles took kind 2 */
	assert_int_equal(heap_special_layout(1, 23, &off, &kind, &boff), 0);
	assert_int_equal(off, 10);
	assert_int_equal(kind, 3);
	assert_int_equal(boff, 16);
	/* 1.24: special.offset became a uintptr */
	assert_int_equal(heap_special_layout(1, 24, &off, &kind, &boff), 0);
	assert_int_equal(off, 16);
	assert_int_equal(kind, 3);
	assert_int_equal(boff, 24);
	assert_int_equal(heap_special_layout(1, 25, &off, &kind, &boff), -ENOTSUP);
	assert_int_equal(heap_special_layout(1, 16, &off, &kind, &boff), -ENOTSUP);
	assert_int_equal(heap_special_layout(2, 0, &off, &kind, &boff), -ENOTSUP);
}

static void test_stack_matches(void **state)
{
	/* probe stack: IP in mProf_Malloc, ret into mallocgc, makeslice, user... */
	const uint64_t mine[] = { 0x42dd2c, 0x40d800, 0x44a100, 0x4a0010, 0x4a0200, 0x436000 };
	const uint64_t bucket[] = { 0x44a100, 0x4a0010, 0x4a0200, 0x436000 };
	const uint64_t deeper[] = { 0x4a0010, 0x4a0200, 0x436000, 0x470001, 0x470002 };
	const uint64_t other[] = { 0x44a100, 0x4a0011 };

	(void)state;
	assert_true(heap_stack_matches(mine, 6, bucket, 4));
	/* the bucket is deeper than what the probe captured: overlap matches */
	assert_true(heap_stack_matches(mine, 6, deeper, 5));
	assert_false(heap_stack_matches(mine, 6, other, 2));
	/* 1.23+: the runtime expands inlined calls into extra logical PCs */
	{
		const uint64_t inl[] = { 0x44a100, 0x4a0010, 0x4a0014, 0x4a0200, 0x4a0204, 0x436000 };
		const uint64_t wrong[] = { 0x44a100, 0x4a0010, 0x4a0014, 0x4a0300, 0x436000 };

		assert_true(heap_stack_matches(mine, 6, inl, 6));
		assert_false(heap_stack_matches(mine, 6, wrong, 5));
	}
	assert_false(heap_stack_matches(mine, 6, bucket, 0));
	assert_false(heap_stack_matches(mine, 0, bucket, 4));
}

static void test_bucket_inuse(void **state)
{
	struct ht_bucket_counts k = { .allocs = 5, .alloc_bytes = 5 * 65536, .frees = 1,
				      .free_bytes = 65536, .stackid = 3 };
	int64_t count, bytes, sc, sb;

	(void)state;
	/* 10 sampled before attach, 2 of them freed before attach */
	heap_bucket_inuse(10, 2, 10 * 65536, 2 * 65536, &k, &count, &bytes);
	assert_int_equal(count, 12);
	assert_int_equal(bytes, 12 * 65536);
	/* a pre-attach free seen twice (attach race) never makes it negative */
	k = (struct ht_bucket_counts){ .frees = 3, .free_bytes = 3 * 16384 };
	heap_bucket_inuse(2, 0, 2 * 16384, 0, &k, &count, &bytes);
	assert_int_equal(count, 0);
	assert_int_equal(bytes, 0);
	/* scaled like runtime/pprof: the same function both tiers use */
	heap_scale_sample(12, 12 * 65536, 524288, &sc, &sb);
	assert_true(sb > 12 * 65536 * 8 && sb < 12 * 65536 * 9);
}

static void test_place_prologues(void **state)
{
	/* go1.22 runtime.mProf_Malloc: big frame, lea r12 form */
	static const uint8_t mprof_malloc_122[] = {
		0x4c, 0x8d, 0xa4, 0x24, 0x08, 0xff, 0xff, 0xff, /* lea r12,[rsp-0xf8] */
		0x4d, 0x3b, 0x66, 0x10,                         /* cmp r12,[r14+0x10] */
		0x0f, 0x86, 0xb8, 0x01, 0x00, 0x00,             /* jbe morestack */
		0x55,                                           /* push rbp */
	};
	/* go1.23 runtime.mallocgc */
	static const uint8_t mallocgc_123[] = {
		0x4c, 0x8d, 0x64, 0x24, 0xe8,       /* lea r12,[rsp-0x18] */
		0x4d, 0x3b, 0x66, 0x10,             /* cmp r12,[r14+0x10] */
		0x0f, 0x86, 0xbc, 0x09, 0x00, 0x00, /* jbe */
		0x55,
	};
	struct probe_place p;

	(void)state;
	assert_int_equal(probe_place_x86(mprof_malloc_122, sizeof(mprof_malloc_122), 0x42dd20, &p), 0);
	assert_int_equal(p.offset, 12);
	assert_true(p.emulated);
	assert_int_equal(p.stack_check, PROBE_STACK_CHECK_JBE);
	assert_int_equal(probe_place_x86(mallocgc_123, sizeof(mallocgc_123), 0x465140, &p), 0);
	assert_int_equal(p.offset, 9);
	assert_true(p.emulated);
	assert_int_equal(p.stack_check, PROBE_STACK_CHECK_JBE);
}

static void test_spill_slots(void **state)
{
	/* go1.19 runtime.mProf_Malloc(p, size): sub rsp first, rbp stored and
	 * set by lea; p (rax) and size (rbx) spilled to their slots */
	static const uint8_t mprof_119[] = {
		0x4c, 0x8d, 0xa4, 0x24, 0x10, 0xff, 0xff, 0xff, /* lea r12,[rsp-0xf0] */
		0x4d, 0x3b, 0x66, 0x10,                         /* cmp r12,[r14+0x10] */
		0x0f, 0x86, 0xaa, 0x01, 0x00, 0x00,             /* jbe morestack */
		0x48, 0x81, 0xec, 0x70, 0x01, 0x00, 0x00,       /* sub rsp,0x170 */
		0x48, 0x89, 0xac, 0x24, 0x68, 0x01, 0x00, 0x00, /* mov [rsp+0x168],rbp */
		0x48, 0x8d, 0xac, 0x24, 0x68, 0x01, 0x00, 0x00, /* lea rbp,[rsp+0x168] */
		0x48, 0x89, 0x84, 0x24, 0x78, 0x01, 0x00, 0x00, /* mov [rsp+0x178],rax */
		0x48, 0x89, 0x9c, 0x24, 0x80, 0x01, 0x00, 0x00, /* mov [rsp+0x180],rbx */
		0x48, 0x8d, 0x7c, 0x24, 0x40,                   /* lea rdi,[rsp+0x40] */
	};
	/* go1.21 (p, size): push rbp; mov rbp,rsp; sub rsp,0x170 */
	static const uint8_t mprof_121[] = {
		0x4c, 0x8d, 0xa4, 0x24, 0x08, 0xff, 0xff, 0xff,
		0x4d, 0x3b, 0x66, 0x10,
		0x0f, 0x86, 0xa7, 0x01, 0x00, 0x00,
		0x55,
		0x48, 0x89, 0xe5,
		0x48, 0x81, 0xec, 0x70, 0x01, 0x00, 0x00,
		0x48, 0x89, 0x84, 0x24, 0x80, 0x01, 0x00, 0x00, /* mov [rsp+0x180],rax */
		0x48, 0x89, 0x9c, 0x24, 0x88, 0x01, 0x00, 0x00, /* mov [rsp+0x188],rbx */
	};
	/* go1.23 (mp, p, size): small frame, an early-return jcc and loads
	 * through rax before the spills */
	static const uint8_t mprof_123[] = {
		0x49, 0x3b, 0x66, 0x10,                         /* cmp rsp,[r14+0x10] */
		0x0f, 0x86, 0xa6, 0x01, 0x00, 0x00,             /* jbe */
		0x55, 0x48, 0x89, 0xe5,                         /* push rbp; mov rbp,rsp */
		0x48, 0x83, 0xec, 0x70,                         /* sub rsp,0x70 */
		0x48, 0x8b, 0xb0, 0xb0, 0x02, 0x00, 0x00,       /* mov rsi,[rax+0x2b0] */
		0x48, 0x85, 0xf6,                               /* test rsi,rsi */
		0x0f, 0x84, 0x61, 0x01, 0x00, 0x00,             /* je (return, far away) */
		0x48, 0x89, 0x84, 0x24, 0x80, 0x00, 0x00, 0x00, /* mov [rsp+0x80],rax */
		0x48, 0x89, 0x9c, 0x24, 0x88, 0x00, 0x00, 0x00, /* mov [rsp+0x88],rbx */
		0x48, 0x89, 0x8c, 0x24, 0x90, 0x00, 0x00, 0x00, /* mov [rsp+0x90],rcx */
	};
	/* rbx overwritten before any spill: its argument is gone */
	static const uint8_t clobbered[] = {
		0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x70,
		0xbb, 0x01, 0x00, 0x00, 0x00,                   /* mov ebx,1 */
		0x48, 0x89, 0x9c, 0x24, 0x88, 0x00, 0x00, 0x00, /* mov [rsp+0x88],rbx */
	};
	/* no frame pointer set up */
	static const uint8_t no_bp[] = {
		0x48, 0x83, 0xec, 0x70,
		0x48, 0x89, 0x84, 0x24, 0x80, 0x00, 0x00, 0x00,
	};

	(void)state;
	assert_int_equal(heap_arg_spill_slot_x86(mprof_119, sizeof(mprof_119), 0x42d0e0, sizeof(mprof_119),
						 PROBE_REG_RAX), 0);
	assert_int_equal(heap_arg_spill_slot_x86(mprof_119, sizeof(mprof_119), 0x42d0e0, sizeof(mprof_119),
						 PROBE_REG_RBX), 1);
	assert_int_equal(heap_arg_spill_slot_x86(mprof_119, sizeof(mprof_119), 0x42d0e0, sizeof(mprof_119),
						 PROBE_REG_RCX), -ENOENT);
	/* the probe before the store: not spilled yet */
	assert_int_equal(heap_arg_spill_slot_x86(mprof_119, sizeof(mprof_119), 0x42d0e0, 41,
						 PROBE_REG_RAX), -ENOENT);
	assert_int_equal(heap_arg_spill_slot_x86(mprof_121, sizeof(mprof_121), 0x42be60, sizeof(mprof_121),
						 PROBE_REG_RAX), 0);
	assert_int_equal(heap_arg_spill_slot_x86(mprof_121, sizeof(mprof_121), 0x42be60, sizeof(mprof_121),
						 PROBE_REG_RBX), 1);
	assert_int_equal(heap_arg_spill_slot_x86(mprof_123, sizeof(mprof_123), 0x42bec0, sizeof(mprof_123),
						 PROBE_REG_RBX), 1);
	assert_int_equal(heap_arg_spill_slot_x86(mprof_123, sizeof(mprof_123), 0x42bec0, sizeof(mprof_123),
						 PROBE_REG_RCX), 2);
	assert_int_equal(heap_arg_spill_slot_x86(clobbered, sizeof(clobbered), 0, sizeof(clobbered),
						 PROBE_REG_RBX), -ENOENT);
	assert_int_equal(heap_arg_spill_slot_x86(no_bp, sizeof(no_bp), 0, sizeof(no_bp),
						 PROBE_REG_RAX), -ENOENT);
	assert_int_equal(heap_arg_spill_slot_x86(no_bp, sizeof(no_bp), 0, sizeof(no_bp),
						 PROBE_REG_RDI), -ENOENT);
}

static void test_obj_sets(void **state)
{
	static uint16_t hits[HT_OBJ_SETS];
	unsigned most = 0;

	(void)state;
	/* 64 Ki objects 16 bytes apart (one size class, one span after the
	 * other): every set index in range, no set beyond twice its share */
	for (uint64_t i = 0; i < HT_MAX_OBJECTS; i++) {
		uint32_t k = ht_obj_set_index(0xc000000000ull + i * 16);

		assert_true(k < HT_OBJ_SETS);
		hits[k]++;
	}
	for (unsigned k = 0; k < HT_OBJ_SETS; k++)
		most = hits[k] > most ? hits[k] : most;
	assert_true(most <= 2 * HT_OBJ_WAYS);
	assert_true(ht_obj_set_index(UINT64_MAX) < HT_OBJ_SETS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_class),
		cmocka_unit_test(test_special_layout),
		cmocka_unit_test(test_stack_matches),
		cmocka_unit_test(test_bucket_inuse),
		cmocka_unit_test(test_place_prologues),
		cmocka_unit_test(test_spill_slots),
		cmocka_unit_test(test_obj_sets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Heap profile buckets parsed from byte buffers laid out as Go 1.19–1.24 lay
 * them out (DWARF: bucket 48 B {next 0, allnext 8, typ 16, hash 24, size 32,
 * nstk 40}, memRecord 128 B {active; future[3]} of 4 uintptr), the cycle
 * folding of runtime.MemProfile, and runtime/pprof's scaling (reference
 * values printed by Go 1.24's scaleHeapSample).
 *
 * Debugging entry point: `test_heapprof --pid PID [--pprof FILE]` prints the
 * live heap profile of a Go process (top sites) and optionally writes pprof. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include <cmocka.h>

#include "discover/target.h"
#include "watch/heapprof.h"

static const struct heap_bucket_layout go119 = {
	.header_size = 48, .allnext = 8, .typ = 16, .size = 32, .nstk = 40, .memrecord_size = 128,
	.cycle_size = 32,
};
/* 1.27: memRecordCycle{allocs, frees}, bytes = count * bucket.size */
static const struct heap_bucket_layout go127 = {
	.header_size = 48, .allnext = 8, .typ = 16, .size = 32, .nstk = 40, .memrecord_size = 64,
	.cycle_size = 16,
};

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* A bucket with nstk frames 0x401000+i, size 64 KiB, next at 0xc000, active
 * {allocs 9, frees 4, 9*64K, 4*64K}, future[k] = {k+1, 0, (k+1)*64K, 0}. */
static size_t make_bucket(uint8_t *buf, uint64_t nstk, int64_t typ)
{
	uint8_t *mr;

	memset(buf, 0xee, 48);
	put64(buf + 0, 0);
	put64(buf + 8, 0xc000);
	put64(buf + 16, (uint64_t)typ);
	put64(buf + 24, 0x1234);
	put64(buf + 32, 65536);
	put64(buf + 40, nstk);
	for (uint64_t i = 0; i < nstk; i++)
		put64(buf + 48 + 8 * i, 0x401000 + i);
	mr = buf + 48 + 8 * nstk;
	put64(mr + 0, 9);
	put64(mr + 8, 4);
	put64(mr + 16, 9 * 65536);
	put64(mr + 24, 4 * 65536);
	for (int k = 0; k < 3; k++) {
		put64(mr + 32 * (k + 1) + 0, (uint64_t)k + 1);
		put64(mr + 32 * (k + 1) + 8, 0);
		put64(mr + 32 * (k + 1) + 16, ((uint64_t)k + 1) * 65536);
		put64(mr + 32 * (k + 1) + 24, 0);
	}
	return 48 + 8 * nstk + 128;
}

static void parse_bucket(void **state)
{
	uint8_t buf[48 + 8 * 40 + 128];
	struct heap_bucket_raw r;
	size_t len = make_bucket(buf, 40, HEAP_MEM_PROFILE), need = 0;

	(void)state;
	assert_int_equal(heap_parse_bucket(&go119, buf, len, &r, &need), 0);
	assert_int_equal(need, len);
	assert_int_equal(r.allnext, 0xc000);
	assert_int_equal(r.typ, HEAP_MEM_PROFILE);
	assert_int_equal(r.object_size, 65536);
	assert_int_equal(r.nstk, 40);
	assert_int_equal(r.stk - buf, 48);
	assert_int_equal(r.active.allocs, 9);
	assert_int_equal(r.active.frees, 4);
	assert_int_equal(r.active.alloc_bytes, 9 * 65536);
	assert_int_equal(r.active.free_bytes, 4 * 65536);
	assert_int_equal(r.future[2].allocs, 3);
	assert_int_equal(r.future[1].alloc_bytes, 2 * 65536);
	/* a first read that stops inside the stack says how much it needs */
	assert_int_equal(heap_parse_bucket(&go119, buf, 100, &r, &need), -ENODATA);
	assert_int_equal(need, len);
	assert_int_equal(heap_parse_bucket(&go119, buf, len - 1, &r, &need), -ENODATA);
	assert_int_equal(heap_parse_bucket(&go119, buf, 47, &r, &need), -EINVAL);
	/* an implausible depth is refused, not read */
	put64(buf + 40, HEAP_MAX_NSTK + 1);
	assert_int_equal(heap_parse_bucket(&go119, buf, len, &r, &need), -E2BIG);
}

static void fold_cycles(void **state)
{
	uint8_t buf[48 + 8 * 3 + 128];
	struct heap_bucket_raw r;
	struct heap_cycle c;

	(void)state;
	make_bucket(buf, 3, HEAP_MEM_PROFILE);
	assert_int_equal(heap_parse_bucket(&go119, buf, sizeof(buf), &r, NULL), 0);
	c = heap_bucket_counts(&r, -1, false);
	assert_int_equal(c.allocs, 9);
	assert_int_equal(c.alloc_bytes - c.free_bytes, 5 * 65536);
	/* MemProfile folds future[cycle % 3] */
	c = heap_bucket_counts(&r, 1, false);
	assert_int_equal(c.allocs, 9 + 2);
	assert_int_equal(c.alloc_bytes, 11 * 65536);
	/* no GC yet: everything */
	c = heap_bucket_counts(&r, 1, true);
	assert_int_equal(c.allocs, 9 + 1 + 2 + 3);
	assert_int_equal(c.frees, 4);
}

static void scale_like_go(void **state)
{
	/* {count, size, rate, scaled count, scaled size} from Go 1.24 */
	static const int64_t ref[][5] = {
		{ 3, 196608, 524288, 25, 1673215 },  { 10, 160, 524288, 327685, 5242960 },
		{ 1, 16384, 524288, 32, 532522 },    { 7, 7340032, 524288, 8, 8488876 },
		{ 5, 1000, 1, 5, 1000 },             { 4, 4096, 4096, 18, 18517 },
		{ 0, 10, 512, 0, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ref) / sizeof(ref[0]); i++) {
		int64_t c, s;

		heap_scale_sample(ref[i][0], ref[i][1], ref[i][2], &c, &s);
		assert_int_equal(c, ref[i][3]);
		assert_int_equal(s, ref[i][4]);
	}
}

static void layout_from_offsets(void **state)
{
	struct go_offsets off = { 0 };
	struct heap_bucket_layout l;

	(void)state;
	off.bucket_header_size = 48;
	off.bucket_allnext = 8;
	off.bucket_size = 32;
	off.bucket_nstk = 40;
	off.memrecord_size = 128;
	off.memrecord_cycle_size = GO_OFF_NONE; /* a binary without the cycle's type */
	assert_int_equal(heap_layout_from_offsets(&off, &l), 0);
	assert_memory_equal(&l, &go119, sizeof(l));
	off.memrecord_cycle_size = 32;
	assert_int_equal(heap_layout_from_offsets(&off, &l), 0);
	assert_memory_equal(&l, &go119, sizeof(l));
	off.memrecord_size = 64;
	off.memrecord_cycle_size = 16;
	assert_int_equal(heap_layout_from_offsets(&off, &l), 0);
	assert_memory_equal(&l, &go127, sizeof(l));
	/* a record too small for four cycles, or an unknown cycle shape */
	off.memrecord_size = 48;
	assert_int_equal(heap_layout_from_offsets(&off, &l), -EINVAL);
	off.memrecord_size = 96;
	off.memrecord_cycle_size = 24;
	assert_int_equal(heap_layout_from_offsets(&off, &l), -EINVAL);
	off.memrecord_cycle_size = 16;
	off.memrecord_size = 1 << 20; /* implausible */
	assert_int_equal(heap_layout_from_offsets(&off, &l), -E2BIG);
	off.memrecord_size = 0;
	assert_int_equal(heap_layout_from_offsets(&off, &l), -EINVAL);
	assert_int_equal(heap_layout_from_offsets(NULL, &l), -EINVAL);
}

/* 1.27 buckets: two words per cycle, bytes derived from bucket.size. */
static void parse_bucket_two_word_cycles(void **state)
{
	uint8_t buf[48 + 8 * 2 + 64];
	struct heap_bucket_raw raw;
	struct heap_cycle c;
	uint8_t *mr = buf + 48 + 16;
	size_t need;

	(void)state;
	memset(buf, 0, sizeof(buf));
	put64(buf + 8, 0xc000);
	put64(buf + 16, 1);
	put64(buf + 32, 4096);
	put64(buf + 40, 2);
	put64(buf + 48, 0x401000);
	put64(buf + 56, 0x401001);
	put64(mr + 0, 9);      /* active.allocs */
	put64(mr + 8, 4);      /* active.frees */
	put64(mr + 16, 1);     /* future[0] */
	put64(mr + 32, 2);     /* future[1] */
	put64(mr + 48 + 8, 5); /* future[2].frees */
	assert_int_equal(heap_parse_bucket(&go127, buf, sizeof(buf), &raw, &need), 0);
	assert_int_equal(need, sizeof(buf));
	assert_int_equal(raw.active.allocs, 9);
	assert_int_equal(raw.active.frees, 4);
	assert_int_equal(raw.active.alloc_bytes, 9 * 4096);
	assert_int_equal(raw.active.free_bytes, 4 * 4096);
	assert_int_equal(raw.future[1].alloc_bytes, 2 * 4096);
	assert_int_equal(raw.future[2].free_bytes, 5 * 4096);
	c = heap_bucket_counts(&raw, -1, true);
	assert_int_equal(c.allocs, 12);
	assert_int_equal(c.frees, 9);
	assert_int_equal(c.alloc_bytes, 12 * 4096);
	assert_int_equal(c.free_bytes, 9 * 4096);
	/* one byte short of the 64-byte record */
	assert_int_equal(heap_parse_bucket(&go127, buf, sizeof(buf) - 1, &raw, &need), -ENODATA);
}

static void runtime_funcs(void **state)
{
	(void)state;
	assert_true(heap_is_runtime_func("runtime.makeslice"));
	assert_true(heap_is_runtime_func("internal/runtime/maps.newarray"));
	assert_false(heap_is_runtime_func("runtime/pprof.writeHeap"));
	assert_false(heap_is_runtime_func("main.retainBlock"));
	assert_false(heap_is_runtime_func("github.com/x/runtime.F"));
	/* the allocator's own frames, on top of 1.26+ bucket stacks */
	assert_true(heap_is_alloc_frame("runtime.mallocgc"));
	assert_true(heap_is_alloc_frame("runtime.mallocgcSmallScanNoHeaderSC3"));
	assert_true(heap_is_alloc_frame("runtime.newobject"));
	assert_true(heap_is_alloc_frame("runtime.makeslicecopy"));
	assert_false(heap_is_alloc_frame("runtime.malg"));
	assert_false(heap_is_alloc_frame("main.retainBlock"));
	assert_false(heap_is_alloc_frame(NULL));
}

static void maps_text(void **state)
{
	const char *maps =
		"00400000-00401000 r--p 00000000 fd:01 1234 /usr/bin/app\n"
		"00401000-004a0000 r-xp 00001000 fd:01 1234 /usr/bin/app\n"
		"7f0000000000-7f0000001000 r-xp 00000000 fd:01 999 /lib/libc.so.6\n";
	uint64_t s, e, o;

	(void)state;
	assert_int_equal(proc_maps_find_text(maps, makedev(0xfd, 1), 1234, &s, &e, &o), 0);
	assert_int_equal(s, 0x401000);
	assert_int_equal(e, 0x4a0000);
	assert_int_equal(o, 0x1000);
	assert_int_equal(proc_maps_find_text(maps, makedev(0xfd, 2), 1234, &s, &e, &o), -ENOENT);
}

static int live(pid_t pid, const char *pprof_path)
{
	struct go_target t;
	struct heap_profile hp;
	struct heap_site *sites;
	size_t n;
	char err[256] = "";
	int ret;

	ret = go_target_open(pid, &t, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	ret = heap_profile_read(&t, &hp, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "%s\n", err);
		go_target_close(&t);
		return 1;
	}
	printf("rate %lld buckets %zu records %zu skipped %zu truncated %d pending_flush %d "
	       "no_gc_yet %d\n",
	       (long long)hp.rate, hp.buckets, hp.nrecords, hp.skipped, hp.truncated,
	       hp.pending_flush, hp.no_gc_yet);
	if (heap_profile_sites(&t, &hp, &sites, &n) == 0) {
		for (size_t i = 0; i < n && i < 15; i++)
			printf("%12lld B %8lld obj  alloc %12lld B  %s %s:%d\n",
			       (long long)sites[i].inuse_bytes, (long long)sites[i].inuse_objects,
			       (long long)sites[i].alloc_bytes, sites[i].function, sites[i].file,
			       sites[i].line);
		free(sites);
	}
	if (pprof_path && heap_profile_write_pprof(&t, &hp, pprof_path, err, sizeof(err)) < 0)
		fprintf(stderr, "%s\n", err);
	heap_profile_free(&hp);
	go_target_close(&t);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_bucket),   cmocka_unit_test(fold_cycles),
		cmocka_unit_test(scale_like_go),  cmocka_unit_test(layout_from_offsets),
		cmocka_unit_test(parse_bucket_two_word_cycles),
		cmocka_unit_test(runtime_funcs),  cmocka_unit_test(maps_text),
	};

	if (argc >= 3 && strcmp(argv[1], "--pid") == 0)
		return live(atoi(argv[2]), argc >= 5 && strcmp(argv[3], "--pprof") == 0 ? argv[4] : NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* C memory tracing, pure parts: the realloc and munmap rules the BPF side
 * applies (include/native_trace_abi.h), per-stack aggregation, the Go caller
 * choice, and runtime.cgocall placement on real Go 1.19 / 1.22 code. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trace/native_trace.h"

static void test_realloc_rules(void **state)
{
	(void)state;
	/* realloc(NULL, n) = malloc(n) */
	assert_int_equal(native_realloc_action(0, 64, 0x1000), NATIVE_REALLOC_INSERT_NEW);
	assert_int_equal(native_realloc_action(0, 64, 0), 0); /* failed malloc: nothing */
	/* realloc(p, 0) = free(p) (glibc returns NULL) */
	assert_int_equal(native_realloc_action(0x1000, 0, 0), NATIVE_REALLOC_FREE_OLD);
	assert_int_equal(native_realloc_action(0x1000, 0, 0x2000),
			 NATIVE_REALLOC_FREE_OLD | NATIVE_REALLOC_INSERT_NEW);
	/* failure keeps p */
	assert_int_equal(native_realloc_action(0x1000, 64, 0), NATIVE_REALLOC_RESTORE_OLD);
	/* moved or in place: free + alloc */
	assert_int_equal(native_realloc_action(0x1000, 64, 0x3000),
			 NATIVE_REALLOC_FREE_OLD | NATIVE_REALLOC_INSERT_NEW);
	assert_int_equal(native_realloc_action(0x1000, 64, 0x1000),
			 NATIVE_REALLOC_FREE_OLD | NATIVE_REALLOC_INSERT_NEW);
}

static void test_munmap_rules(void **state)
{
	(void)state;
	assert_int_equal(native_munmap_remaining(8192, 8192), 0);
	assert_int_equal(native_munmap_remaining(8192, 100000), 0);
	assert_int_equal(native_munmap_remaining(10000, 12288), 0); /* pages, not bytes */
	assert_int_equal(native_munmap_remaining(16384, 4096), 12288);
	assert_int_equal(native_munmap_remaining(16384, 1), 12288);
	assert_int_equal(native_page_round(0), 0);
	assert_int_equal(native_page_round(4097), 8192);
}

static struct native_alloc A(int32_t stack, int32_t go, uint64_t caller, uint64_t size,
			     uint64_t birth, uint32_t kind)
{
	return (struct native_alloc){ .size = size, .birth_ns = birth, .caller = caller,
				      .stackid = stack, .go_stackid = go, .kind = kind };
}

static void test_aggregate(void **state)
{
	struct native_alloc a[] = {
		A(1, 7, 0x10, 100, 50, NATIVE_KIND_MALLOC),
		A(1, 8, 0x10, 100, 40, NATIVE_KIND_MALLOC), /* same C stack, other Go caller */
		A(1, 7, 0x10, 300, 30, NATIVE_KIND_MALLOC),
		A(1, 7, 0x11, 5, 10, NATIVE_KIND_CALLOC),   /* other immediate caller */
		A(-1, -1, 0x20, 4096, 5, NATIVE_KIND_MMAP),
		A(1, 7, 0x10, 0, 60, NATIVE_KIND_REALLOC),
	};
	struct native_site s[8];
	uint64_t dropped;
	size_t n;

	(void)state;
	assert_int_equal(native_sites_aggregate(a, 6, s, 8, &n, &dropped), 0);
	assert_int_equal(n, 4);
	assert_int_equal(dropped, 0);
	/* largest first */
	assert_int_equal(s[0].bytes, 4096);
	assert_int_equal(s[0].key.stackid, -1);
	assert_int_equal(s[1].bytes, 400);
	assert_int_equal(s[1].count, 3);
	assert_int_equal(s[1].oldest_birth_ns, 30);
	assert_int_equal(s[1].kinds, (1u << NATIVE_KIND_MALLOC) | (1u << NATIVE_KIND_REALLOC));
	assert_int_equal(s[1].key.go_stackid, 7);
	assert_int_equal(s[2].bytes, 100);
	assert_int_equal(s[2].key.go_stackid, 8);
	assert_int_equal(s[3].bytes, 5);
	assert_int_equal(s[3].key.caller, 0x11);

	/* bounded: sites that do not fit are counted, never merged */
	assert_int_equal(native_sites_aggregate(a, 6, s, 2, &n, &dropped), 0);
	assert_int_equal(n, 2);
	assert_int_equal(dropped, 2); /* the 2nd and 3rd distinct sites' blocks */

	assert_int_equal(native_sites_aggregate(a, 0, s, 8, &n, &dropped), 0);
	assert_int_equal(n, 0);
}

static void test_go_caller(void **state)
{
	struct sym_frame f[] = {
		{ .function = "__libc_malloc" },
		{ .function = "_cgo_abc_Cfunc__Cmalloc" },
		{ .function = "runtime.cgocall", .go = true },
		{ .function = "main._cgo_cmalloc", .go = true },
		{ .function = "main._Cfunc_CString", .go = true },
		{ .function = "main.leakOne", .go = true, .file = "leak_cgo.go", .line = 50 },
		{ .function = "main.main", .go = true },
	};
	const struct sym_frame *g;

	(void)state;
	g = native_go_caller(f, 7);
	assert_non_null(g);
	assert_string_equal(g->function, "main.leakOne");
	assert_int_equal(g->line, 50);
	assert_null(native_go_caller(f, 5));
}

/* runtime.cgocall of Go 1.19 (sub rsp; mov [rsp+0x28],rbp; lea rbp; cmp; je)
 * and 1.22 (push rbp), from binaries built here. */
static const uint8_t cgocall_119[] = {
	0x48, 0x83, 0xec, 0x30, 0x48, 0x89, 0x6c, 0x24, 0x28, 0x48, 0x8d, 0x6c, 0x24, 0x28, 0x80,
	0x3d, 0xeb, 0x49, 0x17, 0x00, 0x00, 0x0f, 0x84, 0xb5, 0x00, 0x00, 0x00, 0x0f, 0x1f, 0x44,
	0x00, 0x00, 0x48, 0x85, 0xc0, 0x0f, 0x84, 0x96, 0x00, 0x00, 0x00, 0x48, 0x89, 0x5c, 0x24,
	0x40, 0x48, 0x89, 0x44, 0x24, 0x38, 0x49, 0x8b, 0x46, 0x30, 0x48, 0x89, 0x44, 0x24, 0x20,
	0x48, 0xff, 0x80, 0x30, 0x01, 0x00, 0x00, 0xff, 0x80, 0x38, 0x01, 0x00, 0x00, 0x48, 0x8b,
	0x88, 0x40, 0x01, 0x00, 0x00, 0x48, 0xc7, 0x01, 0x00, 0x00, 0x00, 0x00, 0xe8, 0x04, 0x9d,
	0x05, 0x00, 0x48, 0x8b, 0x44, 0x24, 0x20, 0xc6, 0x80, 0x18, 0x01, 0x00, 0x00, 0x01, 0x48,
	0x8b, 0x4c, 0x24, 0x38, 0x48, 0x89, 0x0c, 0x24, 0x48, 0x8b, 0x54, 0x24, 0x40, 0x48, 0x89,
	0x54, 0x24, 0x08, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xe8, 0x7b, 0xdd, 0x05, 0x00, 0x45, 0x0f,
	0x57, 0xff, 0x64, 0x4c, 0x8b, 0x34, 0x25, 0xf8, 0xff, 0xff, 0xff, 0x8b, 0x44, 0x24, 0x10,
	0x89, 0x44, 0x24, 0x1c, 0x48, 0x8b, 0x4c, 0x24, 0x20, 0xc6, 0x81, 0x18, 0x01, 0x00, 0x00,
	0x00, 0xff, 0x89, 0x38, 0x01, 0x00, 0x00, 0xe8, 0xef, 0x9c, 0x05, 0x00, 0x8b, 0x44, 0x24,
	0x1c, 0x48, 0x8b, 0x6c, 0x24, 0x28, 0x48, 0x83, 0xc4, 0x30, 0xc3,
};

static const uint8_t cgocall_122[] = {
	0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x28, 0x80, 0x3d, 0xb1, 0xd1, 0x18, 0x00, 0x00,
	0x0f, 0x84, 0xb0, 0x00, 0x00, 0x00, 0x48, 0x85, 0xc0, 0x0f, 0x84, 0x91, 0x00, 0x00, 0x00,
	0x48, 0x89, 0x44, 0x24, 0x38, 0x48, 0x89, 0x5c, 0x24, 0x40, 0x49, 0x8b, 0x46, 0x30, 0x48,
	0x89, 0x44, 0x24, 0x20, 0x48, 0xff, 0x80, 0x28, 0x01, 0x00, 0x00, 0x48, 0x8b, 0x88, 0x38,
	0x01, 0x00, 0x00, 0x48, 0xc7, 0x01, 0x00, 0x00, 0x00, 0x00, 0xe8, 0x55, 0xd9, 0x05, 0x00,
	0x48, 0x8b, 0x44, 0x24, 0x20, 0xc6, 0x80, 0x18, 0x01, 0x00, 0x00, 0x01, 0xff, 0x80, 0x30,
	0x01, 0x00, 0x00, 0x48, 0x8b, 0x4c, 0x24, 0x38, 0x48, 0x89, 0x0c, 0x24, 0x48, 0x8b, 0x54,
	0x24, 0x40, 0x48, 0x89, 0x54, 0x24, 0x08, 0xe8, 0x2b, 0x18, 0x06, 0x00, 0x45, 0x0f, 0x57,
	0xff, 0x64, 0x4c, 0x8b, 0x34, 0x25, 0xf8, 0xff, 0xff, 0xff, 0x8b, 0x44, 0x24, 0x10, 0x89,
	0x44, 0x24, 0x1c, 0x48, 0x8b, 0x4c, 0x24, 0x20, 0xc6, 0x81, 0x18, 0x01, 0x00, 0x00, 0x00,
	0xff, 0x89, 0x30, 0x01, 0x00, 0x00, 0x0f, 0x1f, 0x40, 0x00, 0xe8, 0x1b, 0xd9, 0x05, 0x00,
	0x8b, 0x44, 0x24, 0x1c, 0x48, 0x83, 0xc4, 0x28, 0x5d, 0xc3,
};

static void test_place_cgocall(void **state)
{
	struct native_probe_info pi;
	uint64_t delta, done;

	(void)state;
	memset(&pi, 0, sizeof(pi));
	assert_int_equal(native_place_cgocall(cgocall_119, sizeof(cgocall_119), 0x4056c0, 0x45f460,
					      &pi, &delta, &done), 0);
	assert_int_equal(pi.offset, 0x15); /* je after the frame setup */
	assert_true(pi.emulated);
	assert_int_equal(delta, 0x30);
	assert_int_equal(done, 0xac);      /* call runtime.exitsyscall */

	memset(&pi, 0, sizeof(pi));
	assert_int_equal(native_place_cgocall(cgocall_122, sizeof(cgocall_122), 0x406cc0, 0x464680,
					      &pi, &delta, &done), 0);
	assert_int_equal(pi.offset, 0); /* push rbp */
	assert_true(pi.emulated);
	assert_int_equal(delta, 0);
	assert_int_equal(done, 0xa0);

	/* wrong exitsyscall address: placement still found, no done point */
	assert_int_equal(native_place_cgocall(cgocall_122, sizeof(cgocall_122), 0x406cc0, 0x1234,
					      &pi, &delta, &done), 0);
	assert_int_equal(done, 0);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(native_kind_name(NATIVE_KIND_POSIX_MEMALIGN), "posix_memalign");
	assert_string_equal(native_kind_name(99), "?");
	assert_string_equal(native_stat_name(NATIVE_STAT_ALLOCS_FULL), "allocs_map_full");
	assert_null(native_stat_name(NATIVE_STAT_HITS));
	for (uint32_t s = NATIVE_STAT_ALLOCS; s < NATIVE_STAT_MAX; s++)
		assert_non_null(native_stat_name(s)); /* every counter is reported */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_realloc_rules),
		cmocka_unit_test(test_munmap_rules),
		cmocka_unit_test(test_aggregate),
		cmocka_unit_test(test_go_caller),
		cmocka_unit_test(test_place_cgocall),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

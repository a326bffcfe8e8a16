/* discover/classify: the one decision of kind (go, go+cgo, jvm, native) and
 * libc (glibc, musl), on fixture names and paths, this test's own process,
 * and the Go targets when built (MEMDRIFT_TARGETS, default .output/targets). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "discover/classify.h"

static void test_libc_soname(void **state)
{
	assert_int_equal(classify_libc_soname("libc.so.6"), LIBC_GLIBC);
	/* Debian's musl-gcc links DT_NEEDED "libc.so"; Alpine's names its arch */
	assert_int_equal(classify_libc_soname("libc.so"), LIBC_MUSL);
	assert_int_equal(classify_libc_soname("libc.musl-x86_64.so.1"), LIBC_MUSL);
	assert_int_equal(classify_libc_soname("libc.musl-aarch64.so.1"), LIBC_MUSL);
	assert_int_equal(classify_libc_soname("libcrypt.so.1"), LIBC_NONE);
	assert_int_equal(classify_libc_soname("libc.so.6.1"), LIBC_NONE);
	assert_int_equal(classify_libc_soname("libpthread.so.0"), LIBC_NONE);
	assert_int_equal(classify_libc_soname(""), LIBC_NONE);
}

static void test_libc_path(void **state)
{
	static const struct {
		const char *path;
		enum libc_kind want;
	} cases[] = {
		{ "/usr/lib/x86_64-linux-gnu/libc.so.6", LIBC_GLIBC },
		{ "/lib64/libc.so.6", LIBC_GLIBC },
		{ "/usr/lib/x86_64-linux-musl/libc.so", LIBC_MUSL }, /* Debian musl, as mapped */
		{ "/lib/ld-musl-x86_64.so.1", LIBC_MUSL },           /* Alpine */
		{ "/lib/libc.musl-x86_64.so.1", LIBC_MUSL },
		{ "/usr/lib/libc.so", LIBC_NONE },                   /* a linker script's name */
		{ "/opt/app/libc.so.6.bak", LIBC_NONE },
		{ "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", LIBC_NONE },
		{ "/usr/lib/jvm/java-17/lib/server/libjvm.so", LIBC_NONE },
		{ "libc.so", LIBC_NONE },
		{ "", LIBC_NONE },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum libc_kind got = classify_libc_path(cases[i].path);

		if (got != cases[i].want)
			fail_msg("%s: %s, want %s", cases[i].path, libc_kind_name(got),
				 libc_kind_name(cases[i].want));
	}
}

static void test_names(void **state)
{
	assert_string_equal(proc_kind_name(PROC_GO), "go");
	assert_string_equal(proc_kind_name(PROC_GO_CGO), "go+cgo");
	assert_string_equal(proc_kind_name(PROC_JVM), "jvm");
	assert_string_equal(proc_kind_name(PROC_NATIVE), "native");
	assert_string_equal(libc_kind_name(LIBC_MUSL), "musl");
}

/* This test is a glibc program: its own libc is found and named. */
static void test_process_libc_self(void **state)
{
	char path[PATH_MAX];
	uint64_t start = 0;
	enum libc_kind kind = LIBC_NONE;
	struct proc_exe exe;

	assert_int_equal(classify_process_libc(getpid(), path, sizeof(path), &start, &kind), 0);
	assert_int_equal(kind, LIBC_GLIBC);
	assert_non_null(strstr(path, "libc.so.6"));
	assert_true(start != 0);
	assert_false(classify_maps_jvm(getpid()));
	assert_int_equal(proc_exe_info(getpid(), &exe), 0);
	assert_int_equal(classify_process(getpid(), &exe, NULL), PROC_NATIVE);
	assert_int_equal(classify_process_libc(999999999, path, sizeof(path), &start, &kind) < 0, 1);
}

static const char *targets_root(void)
{
	const char *root = getenv("MEMDRIFT_TARGETS");

	return root && *root ? root : ".output/targets";
}

/* The newest toolchain's cgoleak in each flavor: plain is go, cgo and musl
 * (CC=musl-gcc) are go+cgo. */
static void test_exe_targets(void **state)
{
	static const struct {
		const char *flavor;
		enum proc_kind want;
	} cases[] = { { "plain", PROC_GO }, { "stripped", PROC_GO }, { "cgo", PROC_GO_CGO },
		      { "musl", PROC_GO_CGO } };
	int checked = 0;

	for (int minor = 40; minor >= 19 && !checked; minor--) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			char path[PATH_MAX];
			struct go_version v = { 0 };
			enum proc_kind got;

			snprintf(path, sizeof(path), "%s/go1.%d/cgoleak-%s", targets_root(), minor,
				 cases[i].flavor);
			if (access(path, X_OK) != 0)
				continue;
			got = classify_exe(path, &v);
			if (got != cases[i].want)
				fail_msg("%s: %s, want %s", path, proc_kind_name(got),
					 proc_kind_name(cases[i].want));
			assert_int_equal(v.minor, minor);
			checked++;
		}
	}
	if (!checked) {
		if (getenv("CI"))
			fail_msg("no cgoleak targets under %s (make targets)", targets_root());
		skip();
	}
	printf("classified %d cgoleak binaries\n", checked);
}

/* The cache answers by (dev, inode): a second executable with the same
 * identity gets the first one's answer; a full cache overwrites. */
static void test_cache(void **state)
{
	struct classify_cache *c = calloc(1, sizeof(*c));
	struct proc_exe exe = { 0 };

	assert_non_null(c);
	snprintf(exe.open_path, sizeof(exe.open_path), "/nonexistent/classify-fixture");
	exe.dev = 1;
	exe.ino = 42;
	assert_int_equal(classify_exe_cached(c, &exe, NULL), PROC_NATIVE);
	snprintf(exe.open_path, sizeof(exe.open_path), "/proc/self/exe");
	assert_int_equal(classify_exe_cached(c, &exe, NULL), PROC_NATIVE);
	assert_int_equal(c->n, 1);
	for (size_t i = 0; i < CLASSIFY_CACHE_MAX + 5; i++) {
		exe.ino = 1000 + i;
		classify_exe_cached(c, &exe, NULL);
	}
	assert_int_equal(c->n, CLASSIFY_CACHE_MAX);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_libc_soname),
		cmocka_unit_test(test_libc_path),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_process_libc_self),
		cmocka_unit_test(test_exe_targets),
		cmocka_unit_test(test_cache),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

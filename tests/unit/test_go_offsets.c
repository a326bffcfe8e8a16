/* go_offsets: the version table against GO_RUNTIME_NOTES.md's verified
 * numbers, and the DWARF reader against the table on a program built with
 * every installed toolchain (so neither can drift from reality unnoticed). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "binary/go_offsets.h"

#define CACHE ".output/unit-go-offsets"
#define FIRST_MINOR 17
#define LAST_MINOR 27

static const char prog_src[] =
	"package main\n\n"
	"import (\n\t\"fmt\"\n\t\"sync\"\n)\n\n"
	"func main() {\n"
	"\tvar wg sync.WaitGroup\n\tch := make(chan int)\n"
	"\tfor i := 0; i < 4; i++ {\n\t\twg.Add(1)\n"
	"\t\tgo func() { defer wg.Done(); ch <- 1 }()\n\t}\n"
	"\tfor i := 0; i < 4; i++ {\n\t\t<-ch\n\t}\n\twg.Wait()\n\tfmt.Println(\"done\")\n}\n";

/* Builds the test program with go1.<minor> (flavor: "" or linker flags) and
 * returns its path, or NULL when that toolchain is not installed. Cached. */
static const char *build_prog(int minor, const char *flavor, const char *ldflags)
{
	static char path[512];
	char go[128], cmd[2048], srcdir[256];
	struct stat st;
	FILE *f;

	snprintf(go, sizeof(go), "/usr/lib/go-1.%d/bin/go", minor);
	if (access(go, X_OK) != 0)
		return NULL;
	snprintf(srcdir, sizeof(srcdir), CACHE "/src");
	snprintf(path, sizeof(path), CACHE "/go1.%d/prog-%s", minor, flavor);
	if (stat(path, &st) == 0 && st.st_size > 0)
		return path;
	if (system("mkdir -p " CACHE "/src") != 0)
		return NULL;
	f = fopen(CACHE "/src/main.go", "w");
	assert_non_null(f);
	fputs(prog_src, f);
	fclose(f);
	f = fopen(CACHE "/src/go.mod", "w");
	assert_non_null(f);
	fputs("module memdrift/unit-go-offsets\n\ngo 1.17\n", f);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=off CGO_ENABLED=0 "
		 "GOCACHE=\"$PWD/../../gocache\" %s build -ldflags='%s' -o ../go1.%d/prog-%s . "
		 ">/dev/null 2>&1",
		 srcdir, go, ldflags, minor, flavor);
	if (system(cmd) != 0)
		fail_msg("go1.%d build failed: %s", minor, cmd);
	return path;
}

static void test_table_versions(void **state)
{
	struct go_offsets off;

	(void)state;
	for (int minor = FIRST_MINOR; minor <= LAST_MINOR; minor++) {
		memset(&off, 0xa5, sizeof(off));
		assert_int_equal(go_offsets_from_table(1, minor, &off), 0);
		assert_int_equal(off.source, GO_OFFSETS_TABLE);
		assert_int_equal(off.go_major, 1);
		assert_int_equal(off.go_minor, minor);
		for (size_t i = 0; i < go_offsets_nfields; i++)
			if (go_offsets_field(&off, i) < GO_OFF_NONE)
				fail_msg("go1.%d %s = %d", minor, go_offsets_fields[i].name,
					 go_offsets_field(&off, i));
		assert_true(off.n_wait_reasons > 20 && off.n_wait_reasons <= GO_MAX_WAIT_REASONS);
		/* heapGoal is a field before 1.19 and a method after. */
		assert_true((off.gc_heap_goal >= 0) == (minor < 19));
		assert_true((off.gc_percent_heap_goal >= 0) == (minor >= 19));
		assert_true((off.g_parent_goid >= 0) == (minor >= 21));
		/* The heap walk's fields exist in every version. */
		assert_true(off.mheap_arenas > 60000 && off.mheap_all_arenas > off.mheap_arenas);
		assert_true(off.heaparena_spans >= 0 &&
			    off.heaparena_page_specials > off.heaparena_spans);
		assert_int_equal(off.mspan_start_addr, 24);
		assert_int_equal(off.mspan_npages, 32);
		assert_true(off.mspan_specials >= 128);
	}
	assert_int_equal(go_offsets_from_table(1, 16, &off), -ENOTSUP);
	assert_int_equal(go_offsets_from_table(1, LAST_MINOR + 1, &off), -ENOTSUP);
	assert_int_equal(go_offsets_from_table(2, 0, &off), -ENOTSUP);
	assert_int_equal(go_offsets_from_table(0, 0, &off), -ENOTSUP);
}

/* Numbers GO_RUNTIME_NOTES.md marks as checked in real binaries (✔), and the
 * 1.17/1.18 ones it derives from source and other tools' tables. */
static void test_table_matches_notes(void **state)
{
	struct go_offsets o;

	(void)state;
	assert_int_equal(go_offsets_from_table(1, 19, &o), 0);
	assert_int_equal(o.g_atomicstatus, 144);
	assert_int_equal(o.g_goid, 152);
	assert_int_equal(o.g_waitsince, 168);
	assert_int_equal(o.g_waitreason, 176);
	assert_int_equal(o.g_parent_goid, GO_OFF_NONE);
	assert_int_equal(o.g_gopc, 296);
	assert_int_equal(o.g_startpc, 312);
	assert_int_equal(o.m_procid, 72);
	assert_int_equal(o.m_curg, 192);
	assert_int_equal(o.m_ncgocall, 304);
	assert_int_equal(o.gc_memory_limit, 8);
	assert_int_equal(o.gc_percent_heap_goal, 104);
	assert_int_equal(o.gc_heap_live, 136);
	assert_int_equal(o.gc_heap_marked, 184);
	assert_int_equal(o.gc_total_alloc, 328);
	assert_int_equal(o.gc_total_free, 336);
	assert_int_equal(o.ms_numgc, 7704);
	assert_int_equal(o.ms_last_gc_nanotime, 7720);
	assert_int_equal(o.bucket_header_size, 48);
	assert_int_equal(o.bucket_allnext, 8);
	assert_int_equal(o.bucket_size, 32);
	assert_int_equal(o.bucket_nstk, 40);
	/* heapArena: 2 MiB pointer bitmap before spans until 1.20, a 1 MiB
	 * bitmap and noMorePtrs in 1.20/1.21, none from 1.22 (allocheaders). */
	assert_int_equal(o.mheap_arenas, 65936);
	assert_int_equal(o.mheap_all_arenas, 66016);
	assert_int_equal(o.heaparena_spans, 2097152);
	assert_int_equal(o.heaparena_page_specials, 2164736);
	assert_int_equal(o.mspan_specials, 128);
	assert_int_equal(go_offsets_from_table(1, 21, &o), 0);
	assert_int_equal(o.heaparena_spans, 1064960);
	assert_int_equal(o.mspan_specials, 136);
	assert_int_equal(go_offsets_from_table(1, 24, &o), 0);
	assert_int_equal(o.mheap_arenas, 66008);
	assert_int_equal(o.mheap_all_arenas, 66096);
	assert_int_equal(o.heaparena_spans, 0);
	assert_int_equal(o.heaparena_page_specials, 67584);
	assert_int_equal(o.mspan_start_addr, 24);
	assert_int_equal(o.mspan_npages, 32);
	assert_int_equal(o.mspan_specials, 128);

	assert_int_equal(go_offsets_from_table(1, 23, &o), 0);
	assert_int_equal(o.g_atomicstatus, 152);
	assert_int_equal(o.g_goid, 160);
	assert_int_equal(o.g_waitsince, 176);
	assert_int_equal(o.g_waitreason, 184);
	assert_int_equal(o.g_parent_goid, 280);
	assert_int_equal(o.g_gopc, 288);
	assert_int_equal(o.g_startpc, 304);
	assert_int_equal(o.m_ncgocall, 296);
	assert_int_equal(o.gc_percent_heap_goal, 72);
	assert_int_equal(o.gc_heap_live, 104);
	assert_int_equal(o.gc_heap_marked, 152);
	assert_int_equal(o.gc_total_alloc, 296);
	assert_int_equal(o.gc_total_free, 304);
	assert_int_equal(o.ms_numgc, 7704);

	assert_int_equal(go_offsets_from_table(1, 21, &o), 0);
	assert_int_equal(o.g_parent_goid, 272);
	assert_int_equal(o.g_gopc, 280);
	assert_int_equal(o.g_startpc, 296);
	assert_int_equal(o.m_ncgocall, 304);

	assert_int_equal(go_offsets_from_table(1, 17, &o), 0);
	assert_int_equal(o.g_goid, 152);
	assert_int_equal(o.gc_heap_goal, 32);
	assert_int_equal(o.gc_heap_live, 48);
	assert_int_equal(o.gc_heap_marked, 64);
	assert_int_equal(o.ms_numgc, 4280);
	assert_int_equal(go_offsets_from_table(1, 18, &o), 0);
	assert_int_equal(o.gc_heap_goal, 104);
	assert_int_equal(o.gc_heap_live, 120);
	assert_int_equal(o.gc_heap_marked, 168);

	/* Wait reasons 0-20 are stable 1.19..1.24; 1.24 has 44. */
	for (int minor = 19; minor <= 24; minor++) {
		assert_int_equal(go_offsets_from_table(1, minor, &o), 0);
		assert_string_equal(o.wait_reasons[3], "chan receive (nil chan)");
		assert_string_equal(o.wait_reasons[9], "select");
		assert_string_equal(o.wait_reasons[10], "select (no cases)");
		assert_string_equal(o.wait_reasons[14], "chan receive");
		assert_string_equal(o.wait_reasons[15], "chan send");
		assert_string_equal(o.wait_reasons[18], "semacquire");
		assert_string_equal(o.wait_reasons[19], "sleep");
		assert_string_equal(o.wait_reasons[20], "sync.Cond.Wait");
	}
	assert_int_equal(o.n_wait_reasons, 44);
	/* 1.25 inserts "GOMAXPROCS updater (idle)" at 18; 1.26 moves every
	 * channel, select and sync wait into 15..25 (the leak detector's range) */
	assert_int_equal(go_offsets_from_table(1, 25, &o), 0);
	assert_int_equal(o.n_wait_reasons, 47);
	assert_string_equal(o.wait_reasons[14], "chan receive");
	assert_string_equal(o.wait_reasons[18], "GOMAXPROCS updater (idle)");
	assert_string_equal(o.wait_reasons[19], "semacquire");
	assert_string_equal(o.wait_reasons[46], "cleanup wait");
	for (int minor = 26; minor <= 27; minor++) {
		assert_int_equal(go_offsets_from_table(1, minor, &o), 0);
		assert_int_equal(o.n_wait_reasons, 47);
		assert_string_equal(o.wait_reasons[13], "semacquire");
		assert_string_equal(o.wait_reasons[14], "sleep");
		assert_string_equal(o.wait_reasons[15], "chan receive (nil chan)");
		assert_string_equal(o.wait_reasons[18], "select");
		assert_string_equal(o.wait_reasons[19], "chan receive");
		assert_string_equal(o.wait_reasons[25], "sync.WaitGroup.Wait");
		assert_int_equal(o.status_leaked, 10);
		assert_int_equal(o.kind_special_profile, 4);
		assert_int_equal(o.g_gopc, 288);
		assert_int_equal(o.m_ncgocall, 320);
	}
	assert_int_equal(o.memrecord_cycle_size, 16); /* 1.27: {allocs, frees} */
	assert_int_equal(o.memrecord_size, 64);
	assert_int_equal(go_offsets_from_table(1, 26, &o), 0);
	assert_int_equal(o.memrecord_cycle_size, 32);
	assert_int_equal(go_offsets_from_table(1, 24, &o), 0);
	assert_int_equal(o.status_leaked, GO_OFF_NONE);
}

/* Is text a wait reason of a release newer than go1.minor? DWARF alone
 * names a reason by its constant; its text then comes from the newest
 * release that has the name (gobin reads the binary's own
 * runtime.waitReasonStrings on top). */
static bool text_of_newer_release(int minor, const char *text)
{
	struct go_offsets o;

	for (int m = minor + 1; m <= LAST_MINOR; m++)
		if (go_offsets_from_table(1, m, &o) == 0)
			for (int i = 0; i < o.n_wait_reasons; i++)
				if (!strcmp(o.wait_reasons[i], text))
					return true;
	return false;
}

static void assert_same(const struct go_offsets *a, const struct go_offsets *b, int minor,
			const char *what)
{
	bool dwarf_only = !strcmp(what, "DWARF only");

	for (size_t i = 0; i < go_offsets_nfields; i++)
		if (go_offsets_field(a, i) != go_offsets_field(b, i))
			fail_msg("go1.%d %s: %s DWARF %d, table %d", minor, what, go_offsets_fields[i].name,
				 go_offsets_field(a, i), go_offsets_field(b, i));
	assert_int_equal(a->n_wait_reasons, b->n_wait_reasons);
	for (int i = 0; i < a->n_wait_reasons; i++)
		if (strcmp(a->wait_reasons[i], b->wait_reasons[i]) != 0 &&
		    !(dwarf_only && text_of_newer_release(minor, a->wait_reasons[i])))
			fail_msg("go1.%d %s: wait reason %d DWARF \"%s\", table \"%s\"", minor, what,
				 i, a->wait_reasons[i], b->wait_reasons[i]);
}

static void test_dwarf_equals_table(void **state)
{
	int tested = 0;

	(void)state;
	for (int minor = FIRST_MINOR; minor <= LAST_MINOR; minor++) {
		struct go_offsets table, dwarf, pure;
		const char *path = build_prog(minor, "plain", "");
		struct timespec t0, t1;
		char err[256] = "";
		double ms;

		if (!path)
			continue;
		assert_int_equal(go_offsets_from_table(1, minor, &table), 0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (go_offsets_from_dwarf(path, 1, minor, &dwarf, err, sizeof(err)) != 0)
			fail_msg("go1.%d: %s", minor, err);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
		print_message("go1.%d: DWARF read in %.1f ms\n", minor, ms);
		assert_true(ms < 500);
		assert_int_equal(dwarf.source, GO_OFFSETS_DWARF);
		assert_int_equal(dwarf.go_minor, minor);
		assert_same(&dwarf, &table, minor, "merged");
		/* Version 0.0 has no table entry: every value must come from DWARF. */
		if (go_offsets_from_dwarf(path, 0, 0, &pure, err, sizeof(err)) != 0)
			fail_msg("go1.%d: %s", minor, err);
		assert_same(&pure, &table, minor, "DWARF only");
		tested++;
	}
	if (!tested)
		skip();
}

static void test_no_dwarf(void **state)
{
	struct go_offsets off;
	int tested = 0;

	(void)state;
	for (int minor = LAST_MINOR; minor >= FIRST_MINOR && tested < 2; minor--) {
		const char *path = build_prog(minor, "stripped", "-s -w");
		char err[256] = "";

		if (!path)
			continue;
		assert_int_equal(go_offsets_from_dwarf(path, 1, minor, &off, err, sizeof(err)), -ENODATA);
		assert_non_null(strstr(err, "DWARF"));
		tested++;
	}
	if (!tested)
		skip();
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void test_bad_files(void **state)
{
	char path[] = "/tmp/memdrift-test-go-offsets-XXXXXX";
	struct go_offsets off;
	char err[256], buf[8192];
	const char *prog;
	int fd, ret;
	FILE *f;

	(void)state;
	assert_int_equal(go_offsets_from_dwarf("/nonexistent/go-binary", 1, 22, &off, err,
					       sizeof(err)), -ENOENT);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	srand(42);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)rand();
	write_file(path, buf, sizeof(buf));
	assert_int_equal(go_offsets_from_dwarf(path, 1, 22, &off, err, sizeof(err)), -ENOEXEC);
	write_file(path, "", 0);
	assert_true(go_offsets_from_dwarf(path, 1, 22, &off, err, sizeof(err)) < 0);

	/* An ELF with DWARF but no Go runtime: this test binary itself. */
	ret = go_offsets_from_dwarf("/proc/self/exe", 1, 22, &off, err, sizeof(err));
	assert_true(ret < 0);

	/* A real Go binary cut short, and one with its middle scrambled. */
	prog = build_prog(LAST_MINOR, "plain", "");
	if (!prog)
		prog = build_prog(19, "plain", "");
	if (prog) {
		static char whole[32 << 20];
		size_t n;

		f = fopen(prog, "r");
		assert_non_null(f);
		n = fread(whole, 1, sizeof(whole), f);
		fclose(f);
		assert_true(n > 65536);
		write_file(path, whole, 65536);
		assert_true(go_offsets_from_dwarf(path, 1, 24, &off, err, sizeof(err)) < 0);
		for (size_t i = n / 2; i < n / 2 + 200000 && i < n; i += 7)
			whole[i] ^= (char)(i * 31);
		write_file(path, whole, n);
		ret = go_offsets_from_dwarf(path, 1, 24, &off, err, sizeof(err));
		print_message("scrambled binary: %d %s\n", ret, ret ? err : "");
	}
	unlink(path);
}

static void test_names(void **state)
{
	struct go_offsets off;

	(void)state;
	assert_int_equal(go_offsets_from_table(1, 22, &off), 0);
	assert_string_equal(go_status_name(&off, 1), "runnable");
	assert_string_equal(go_status_name(&off, 2), "running");
	assert_string_equal(go_status_name(&off, 3), "syscall");
	assert_string_equal(go_status_name(&off, 4), "waiting");
	assert_string_equal(go_status_name(&off, 4 | 0x1000), "waiting");
	assert_string_equal(go_status_name(&off, 6), "dead");
	assert_string_equal(go_status_name(&off, 9), "preempted");
	assert_string_equal(go_status_name(&off, 77), "unknown");
	assert_string_equal(go_wait_reason_name(&off, 14), "chan receive");
	assert_string_equal(go_wait_reason_name(&off, 9), "select");
	assert_string_equal(go_wait_reason_name(&off, 0), "waiting");
	assert_string_equal(go_wait_reason_name(&off, 250), "waiting");
	assert_string_equal(go_wait_reason_name(NULL, 14), "waiting");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_versions),
		cmocka_unit_test(test_table_matches_notes),
		cmocka_unit_test(test_dwarf_equals_table),
		cmocka_unit_test(test_no_dwarf),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

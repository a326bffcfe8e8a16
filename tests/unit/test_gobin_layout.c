/* Offsets recovered from runtime code (gobin_layout.c) against the binary's
 * own DWARF, for the plain, PIE and cgo targets of every installed
 * toolchain; the stripped target against the DWARF of the plain build of
 * the same toolchain and program. Wait-reason names against the plain
 * build's .symtab runtime.waitReasonStrings. Any difference fails; so does
 * a field that DWARF has but the code did not give. Binaries:
 * MEMDRIFT_TARGETS (default .output/targets), versions from its
 * versions.txt. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "binary/go_offsets.h"
#include "binary/gobin.h"
#include "binary/gobin_internal.h"
#include "trace/heap_trace.h"
#include "watch/heap_walk.h"
#include "watch/heapprof.h"

/* What gobin_layout.c recovers; every other field stays the table's. */
static const char *const covered[] = {
	"g_size", "g_stack_lo", "g_stack_hi", "g_m", "g_atomicstatus", "g_goid",
	"g_waitsince", "g_waitreason", "g_parent_goid", "g_gopc", "g_startpc",
	"m_alllink", "m_ncgocall", "m_curg", "gc_heap_live", "gc_heap_marked",
	"gc_percent_heap_goal", "gc_total_alloc", "gc_total_free", "ms_numgc",
	"bucket_header_size", "bucket_allnext", "bucket_nstk", "bucket_size", "memrecord_size",
	"memrecord_cycle_size", "mheap_arenas", "mheap_all_arenas", "heaparena_spans",
	"heaparena_page_specials", "mspan_start_addr", "mspan_npages", "mspan_specials",
	"special_kind", "specialprofile_b", "kind_special_profile",
	"status_dead", "status_scan_bit", "status_leaked",
};
#define NCOVERED (sizeof(covered) / sizeof(covered[0]))

static int failures, nbinaries;

#define CHECK(cond, ...)                                                                     \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			failures++;                                                          \
			fprintf(stderr, "FAIL %s: ", path);                                  \
			fprintf(stderr, __VA_ARGS__);                                        \
			fputc('\n', stderr);                                                 \
		}                                                                            \
	} while (0)

static int field(const struct go_offsets *o, const char *name)
{
	for (size_t i = 0; i < go_offsets_nfields; i++)
		if (!strcmp(go_offsets_fields[i].name, name))
			return go_offsets_field(o, i);
	return GO_OFF_NONE;
}

static bool exists(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0;
}

/* runtime.waitReasonStrings through .symtab: the oracle for the names. */
static int symtab_wait_reasons(const char *path, char names[][GO_WAIT_REASON_LEN])
{
	struct gobin *bin = NULL;
	char err[256];
	uint64_t addr;
	int n = 0;

	if (gobin_open_flags(path, GOBIN_OPEN_SKIP_OFFSETS, &bin, err, sizeof(err)))
		return -1;
	if (gobin_symtab_lookup(bin, "runtime.waitReasonStrings", &addr) == 0) {
		for (n = 0; n < GO_MAX_WAIT_REASONS; n++) {
			uint64_t ptr, len;
			size_t avail;
			const uint8_t *p;

			if (!gobin_read_u64(bin, addr + 16ull * n, &ptr) ||
			    !gobin_read_u64(bin, addr + 16ull * n + 8, &len) || len >= GO_WAIT_REASON_LEN)
				break;
			if (len == 0 && n > 0)
				break; /* past the array: the next global's zero words */
			p = gobin_vaddr_ptr(bin, ptr, &avail);
			if (len && (!p || avail < len))
				break;
			memcpy(names[n], p ? (const char *)p : "", len);
			names[n][len] = '\0';
		}
	}
	gobin_free(bin);
	return n;
}

struct row {
	char version[12], name[256];
	int recovered, expected, wait_n;
	bool ok;
	char missing[256];
};
static struct row rows[256];
static int nrows;

static void check(int minor, const char *path, const char *name, const char *ref_path)
{
	struct go_offsets dwarf, code;
	struct gobin *bin = NULL;
	char err[512], names[GO_MAX_WAIT_REASONS][GO_WAIT_REASON_LEN];
	struct row *row = nrows < 256 ? &rows[nrows++] : &rows[255];
	int ret, n, before = failures;

	memset(row, 0, sizeof(*row));
	snprintf(row->version, sizeof(row->version), "go1.%d", minor);
	snprintf(row->name, sizeof(row->name), "%s", name);
	nbinaries++;
	ret = go_offsets_from_dwarf(ref_path, 1, minor, &dwarf, err, sizeof(err));
	CHECK(ret == 0, "DWARF of %s: %s", ref_path, err);
	if (ret)
		return;
	ret = gobin_open_flags(path, GOBIN_OPEN_SKIP_OFFSETS, &bin, err, sizeof(err));
	CHECK(ret == 0, "open: %s", err);
	if (ret)
		return;
	ret = gobin_layout_recover(bin, &code);
	CHECK(ret == 0, "gobin_layout_recover: %d", ret);
	for (size_t i = 0; i < NCOVERED; i++) {
		int want = field(&dwarf, covered[i]), got = field(&code, covered[i]);

		if (want != GO_OFF_NONE)
			row->expected++;
		if (got != GO_OFF_NONE && got == want)
			row->recovered++;
		if (got == GO_OFF_NONE && want != GO_OFF_NONE) {
			size_t l = strlen(row->missing);

			snprintf(row->missing + l, sizeof(row->missing) - l, "%s%s", l ? "," : "",
				 covered[i]);
		}
		CHECK(got == want, "%s: code %d, DWARF %d", covered[i], got, want);
	}
	/* fields nothing recovers must stay unknown, never a guess */
	for (size_t i = 0; i < go_offsets_nfields; i++) {
		bool cov = false;

		for (size_t j = 0; j < NCOVERED; j++)
			cov |= !strcmp(covered[j], go_offsets_fields[i].name);
		if (!cov)
			CHECK(go_offsets_field(&code, i) == GO_OFF_NONE, "%s set by code",
			      go_offsets_fields[i].name);
	}
	/* what the heap tiers build from it is accepted as from the table */
	{
		struct heap_bucket_layout hl;
		struct heap_walk_layout wl;
		unsigned kind_profile;
		int kind_off, bucket_off;
		uint64_t mheap = 0;

		CHECK(heap_layout_from_offsets(&code, &hl) == 0, "heap profile layout refused");
		CHECK(heap_special_layout(&code, &kind_off, &kind_profile, &bucket_off) == 0,
		      "special layout refused");
		CHECK(gobin_global(bin, "runtime.mheap_", &mheap) == 0 &&
		      heap_walk_layout_init(&wl, &code, mheap, kind_off, kind_profile, bucket_off) == 0,
		      "heap walk layout refused");
	}
	n = symtab_wait_reasons(ref_path, names);
	CHECK(n > 20, "oracle: %d wait reasons in .symtab of %s", n, ref_path);
	CHECK(code.n_wait_reasons == n, "wait reasons: code %d, symtab %d", code.n_wait_reasons, n);
	for (int i = 0; i < n && i < code.n_wait_reasons; i++)
		CHECK(!strcmp(code.wait_reasons[i], names[i]), "wait reason %d: code \"%s\", symtab \"%s\"",
		      i, code.wait_reasons[i], names[i]);
	row->wait_n = code.n_wait_reasons;
	if (strstr(name, "parker-stripped")) { /* the values, once per toolchain */
		printf("go1.%d stripped, from code:", minor);
		for (size_t i = 0; i < NCOVERED; i++)
			printf(" %s=%d", covered[i], field(&code, covered[i]));
		printf("\n");
	}
	row->ok = failures == before;
	gobin_free(bin);
}

static void check_toolchain(const char *root, int minor)
{
	static const char *const flavors[] = { "plain", "pie", "cgo", "stripped" };
	char dir[512];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/go1.%d", root, minor);
	d = opendir(dir);
	if (!d) {
		failures++;
		fprintf(stderr, "FAIL: %s listed in versions.txt but missing\n", dir);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		char path[1024], ref[1024], prog[256];
		const char *dash = strrchr(de->d_name, '-');
		size_t plen;

		if (de->d_name[0] == '.' || !dash)
			continue;
		for (size_t i = 0; i < 4; i++) {
			if (strcmp(dash + 1, flavors[i]))
				continue;
			plen = (size_t)(dash - de->d_name);
			snprintf(prog, sizeof(prog), "%.*s", (int)plen, de->d_name);
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (i == 3)
				snprintf(ref, sizeof(ref), "%s/%s-plain", dir, prog);
			else
				snprintf(ref, sizeof(ref), "%s", path);
			if (exists(ref))
				check(minor, path, de->d_name, ref);
		}
	}
	closedir(d);
}

static void test_recovered_equals_dwarf(void **state)
{
	const char *root = getenv("MEMDRIFT_TARGETS");
	char list[512], line[64];
	FILE *f;
	int versions = 0;

	(void)state;
	if (!root || !*root)
		root = ".output/targets";
	snprintf(list, sizeof(list), "%s/versions.txt", root);
	f = fopen(list, "r");
	if (!f) {
		if (getenv("CI"))
			fail_msg("%s missing: run make targets", list);
		skip();
	}
	while (fgets(line, sizeof(line), f)) {
		int minor;

		if (sscanf(line, "go1.%d", &minor) == 1) {
			check_toolchain(root, minor);
			versions++;
		}
	}
	fclose(f);
	printf("%-8s %-20s %-9s %-5s %s\n", "version", "binary", "fields", "wait", "not recovered");
	for (int i = 0; i < nrows; i++)
		printf("%-8s %-20s %2d/%-2d %-3s %-5d %s\n", rows[i].version, rows[i].name,
		       rows[i].recovered, rows[i].expected, rows[i].ok ? "ok" : "BAD", rows[i].wait_n,
		       rows[i].missing[0] ? rows[i].missing : "-");
	assert_true(versions > 0);
	assert_true(nbinaries >= 4 * versions);
	assert_int_equal(failures, 0);
}

/* Not a Go binary's code: nothing recovered, no crash. */
static void test_not_go(void **state)
{
	struct gobin *bin = NULL;
	char err[256];

	(void)state;
	/* the test binary itself is not Go: gobin_open refuses it, cleanly */
	assert_int_not_equal(gobin_open_flags("/proc/self/exe", GOBIN_OPEN_SKIP_OFFSETS, &bin, err,
					      sizeof(err)), 0);
	assert_null(bin);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_go),
		cmocka_unit_test(test_recovered_equals_dwarf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

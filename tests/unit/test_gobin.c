/* Go binary analysis against buffers and real binaries from every installed
 * toolchain. Oracles: `go version -m`, `go tool addr2line` and the .symtab of
 * the same build (stripped copies made with strip(1) keep every address).
 * Binaries: MEMDRIFT_TARGETS (default .output/targets) plus a small program
 * of our own built into .output/unit-go/go1.NN/ on first use. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "binary/go_offsets.h"
#include "binary/gobin.h"
#include "binary/gobin_internal.h"

#define UNIT_DIR ".output/unit-go"

static const char *const global_names[] = {
	"runtime.allglen", "runtime.allgptr", "runtime.gcController", "runtime.memstats",
	"runtime.ncgocall", "runtime.allm", "runtime.mbuckets", "runtime.MemProfileRate",
	"runtime.sched", "runtime.mheap_",
};
#define NGLOBALS (sizeof(global_names) / sizeof(global_names[0]))

/* ---------- buffer-level ---------- */

static size_t put_uvarint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static size_t make_buildinfo(uint8_t *buf, size_t at, const char *version, uint8_t flags)
{
	const char *mod = "path\texample.com/x\nmod\texample.com/x\t(devel)\t\n";
	size_t n = at;

	memset(buf, 0xee, at);
	memcpy(buf + n, "\xff Go buildinf:", 14);
	buf[n + 14] = 8;
	buf[n + 15] = flags;
	memset(buf + n + 16, 0, 16);
	n += 32;
	n += put_uvarint(buf + n, strlen(version));
	memcpy(buf + n, version, strlen(version));
	n += strlen(version);
	n += put_uvarint(buf + n, strlen(mod));
	memcpy(buf + n, mod, strlen(mod));
	return n + strlen(mod);
}

static void test_buildinfo_inline(void **state)
{
	uint8_t buf[512];
	struct go_version v;
	char err[128];
	size_t n;

	n = make_buildinfo(buf, 0, "go1.22.3", 2);
	assert_int_equal(gobin_parse_buildinfo(buf, n, &v, err, sizeof(err)), 0);
	assert_string_equal(v.str, "go1.22.3");
	assert_int_equal(v.major, 1);
	assert_int_equal(v.minor, 22);
	assert_int_equal(v.patch, 3);

	/* the header is found at any 16-byte boundary, not elsewhere */
	n = make_buildinfo(buf, 48, "go1.24.4", 2);
	assert_int_equal(gobin_parse_buildinfo(buf, n, &v, err, sizeof(err)), 0);
	assert_int_equal(v.minor, 24);
	n = make_buildinfo(buf, 40, "go1.24.4", 2);
	assert_int_equal(gobin_parse_buildinfo(buf, n, &v, err, sizeof(err)), -ENOENT);

	/* every truncation fails cleanly */
	n = make_buildinfo(buf, 0, "go1.21.13", 2);
	for (size_t cut = 0; cut < 32 + 1 + 9; cut++)
		assert_int_not_equal(gobin_parse_buildinfo(buf, cut, &v, err, sizeof(err)), 0);
	assert_int_equal(gobin_parse_buildinfo(buf, 32 + 1 + 9, &v, err, sizeof(err)), 0);
	/* a length prefix past the end */
	buf[32] = 0x7f;
	assert_int_equal(gobin_parse_buildinfo(buf, 64, &v, err, sizeof(err)), -ENOEXEC);
	/* an overlong uvarint */
	memset(buf + 32, 0xff, 16);
	assert_int_equal(gobin_parse_buildinfo(buf, 64, &v, err, sizeof(err)), -ENOEXEC);
}

static void test_buildinfo_pointer_and_garbage(void **state)
{
	uint8_t buf[256];
	struct go_version v;
	char err[128] = "";

	make_buildinfo(buf, 0, "go1.17.13", 0);
	assert_int_equal(gobin_parse_buildinfo(buf, 64, &v, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "pointer"));
	buf[14] = 3; /* bad pointer size */
	assert_int_equal(gobin_parse_buildinfo(buf, 64, &v, err, sizeof(err)), -ENOEXEC);

	srand(42);
	for (int round = 0; round < 2000; round++) {
		size_t n = (size_t)rand() % sizeof(buf);

		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)rand();
		if (round & 1 && n >= 32)
			memcpy(buf, "\xff Go buildinf:", 14);
		(void)gobin_parse_buildinfo(buf, n, &v, err, sizeof(err));
	}
	assert_int_equal(gobin_parse_buildinfo(buf, 0, &v, err, sizeof(err)), -ENOENT);
}

static void test_parse_version(void **state)
{
	struct go_version v;

	assert_int_equal(go_parse_version("go1.22.3", &v), 0);
	assert_int_equal(v.major * 10000 + v.minor * 100 + v.patch, 12203);
	assert_int_equal(go_parse_version("go1.21rc2", &v), 0);
	assert_int_equal(v.minor, 21);
	assert_int_equal(v.patch, 0);
	assert_string_equal(v.str, "go1.21rc2");
	assert_int_equal(go_parse_version("go1.19", &v), 0);
	assert_int_equal(v.minor, 19);
	assert_int_equal(go_parse_version("go1.24.4 X:boringcrypto", &v), 0);
	assert_int_equal(v.patch, 4);
	assert_int_equal(go_parse_version("devel go1.24-abc123 Tue Jan 2", &v), 0);
	assert_int_equal(v.major, 1);
	assert_int_equal(v.minor, 24);
	assert_int_equal(go_parse_version("devel +abc", &v), 0);
	assert_int_equal(v.major, 0);
	assert_int_equal(go_parse_version("1.22.3", &v), -EINVAL);
	assert_int_equal(go_parse_version("go", &v), -EINVAL);
	assert_int_equal(go_parse_version("go1.x", &v), -EINVAL);
	assert_int_equal(go_parse_version("", &v), -EINVAL);
}

/* ---------- helpers for real binaries ---------- */

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static const char go_main_src[] =
	"package main\n"
	"\n"
	"import (\n"
	"\t\"fmt\"\n"
	"\t\"os\"\n"
	"\t\"runtime\"\n"
	")\n"
	"\n"
	"var sink []byte\n"
	"\n"
	"func scale(a, b int) int {\n"
	"\treturn a*b + 1\n"
	"}\n"
	"\n"
	"//go:noinline\n"
	"func worker(ch chan int) {\n"
	"\tfor v := range ch {\n"
	"\t\tsink = make([]byte, v)\n"
	"\t}\n"
	"}\n"
	"\n"
	"func main() {\n"
	"\tch := make(chan int)\n"
	"\tgo worker(ch)\n"
	"\tn := scale(len(os.Args), 3)\n"
	"\tch <- n\n"
	"\tvar ms runtime.MemStats\n"
	"\truntime.ReadMemStats(&ms)\n"
	"\tfmt.Println(runtime.NumGoroutine(), ms.NumGC, n)\n"
	"}\n";

static const char go_cgo_src[] =
	"//go:build cgo\n\npackage main\n\n/*\nstatic int cadd(int a, int b) { return a + b; }\n*/\n"
	"import \"C\"\n\nfunc init() { _ = C.cadd(1, 2) }\n";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Builds the unit program with toolchain 1.minor in four flavors plus strip(1)
 * copies; skipped when already present. */
static bool build_unit_program(int minor)
{
	static const char *const flavors[][2] = {
		{ "plain", "CGO_ENABLED=0 %s build -o %s/plain ." },
		{ "stripped", "CGO_ENABLED=0 %s build -ldflags='-s -w' -o %s/stripped ." },
		{ "pie", "CGO_ENABLED=0 %s build -buildmode=pie -o %s/pie ." },
		{ "cgo", "CGO_ENABLED=1 %s build -o %s/cgo ." },
	};
	char gobin[128], dir[1200], cwd[1024], cmd[1200];
	bool ok = true;

	snprintf(gobin, sizeof(gobin), "/usr/lib/go-1.%d/bin/go", minor);
	if (!exists(gobin))
		return false;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(dir, sizeof(dir), "%s/%s/go1.%d", cwd, UNIT_DIR, minor);
	run("mkdir -p %s/%s/src %s", cwd, UNIT_DIR, dir);
	snprintf(cmd, sizeof(cmd), "%s/%s/src/main.go", cwd, UNIT_DIR);
	write_file(cmd, go_main_src);
	snprintf(cmd, sizeof(cmd), "%s/%s/src/cgo.go", cwd, UNIT_DIR);
	write_file(cmd, go_cgo_src);
	snprintf(cmd, sizeof(cmd), "%s/%s/src/go.mod", cwd, UNIT_DIR);
	write_file(cmd, "module example.com/unitgo\n\ngo 1.17\n");
	for (size_t i = 0; i < 4; i++) {
		char out[1300], build[3000];

		snprintf(out, sizeof(out), "%s/%s", dir, flavors[i][0]);
		if (exists(out))
			continue;
		snprintf(build, sizeof(build), flavors[i][1], gobin, dir);
		if (run("cd %s/%s/src && GOTOOLCHAIN=local GOFLAGS='-mod=mod -buildvcs=false' "
			"GOPROXY=off GOCACHE=%s/.output/gocache %s >/dev/null 2>&1",
			cwd, UNIT_DIR, cwd, build) != 0) {
			fprintf(stderr, "build failed: %s\n", build);
			ok = false;
		}
	}
	return ok;
}

/* Copy of path with .symtab and DWARF removed by strip(1): same addresses. */
static bool strip_copy(const char *path, char *out, size_t outlen)
{
	static int seq;

	run("mkdir -p %s/stripcopy", UNIT_DIR);
	snprintf(out, outlen, "%s/stripcopy/%d-%d", UNIT_DIR, (int)getpid(), seq++);
	return run("strip -o %s %s 2>/dev/null", out, path) == 0;
}

/* `go version -m` first line: "<path>: go1.22.3" */
static bool go_version_of(const char *gotool, const char *path, char *out, size_t outlen)
{
	char cmd[1024], line[512];
	FILE *p;
	char *colon;

	snprintf(cmd, sizeof(cmd), "%s version %s 2>/dev/null", gotool, path);
	p = popen(cmd, "r");
	if (!p)
		return false;
	if (!fgets(line, sizeof(line), p)) {
		pclose(p);
		return false;
	}
	pclose(p);
	line[strcspn(line, "\n")] = '\0';
	/* after the path: the version may hold a colon ("go1.26.0-X:exp") */
	if (strncmp(line, path, strlen(path)) != 0 || strncmp(line + strlen(path), ": ", 2) != 0)
		return false;
	colon = line + strlen(path);
	snprintf(out, outlen, "%s", colon + 2);
	return true;
}

struct result_row {
	char version[24], name[64];
	bool symtab, opened, globals_ok, lines_ok, strip_same;
	const char *offsets; /* "dwarf", "table", or "none" when gobin_open refused */
	int globals_found;
	double open_ms;
};

static struct result_row rows[256];
static int nrows;
static int failures;

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "FAIL %s: ", path);                \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
			failures++;                                        \
			ok = false;                                        \
		}                                                          \
	} while (0)

/* pcs of fn every `step` bytes, looked up by us and by go tool addr2line. */
static bool check_lines(const char *gotool, const char *path, struct gobin *bin, const char *fn,
			bool want_inline, bool oracle_may_fail)
{
	char tmp[256], cmd[1024], fname[512], fileline[1024];
	struct gobin_func f;
	bool ok = true, saw_inline = false;
	int compared = 0;
	FILE *in, *p;

	if (gobin_func_by_name(bin, fn, &f) != 0)
		return false;
	snprintf(tmp, sizeof(tmp), "%s/pcs-%d", UNIT_DIR, (int)getpid());
	in = fopen(tmp, "w");
	assert_non_null(in);
	for (uint64_t pc = f.entry; pc < f.end; pc += 3)
		fprintf(in, "0x%llx\n", (unsigned long long)pc);
	fclose(in);
	snprintf(cmd, sizeof(cmd), "%s tool addr2line %s < %s", gotool, path, tmp);
	p = popen(cmd, "r");
	assert_non_null(p);
	for (uint64_t pc = f.entry; pc < f.end; pc += 3) {
		struct gobin_pcinfo pi;
		struct gobin_func phys;
		char *colon;
		int line;

		if (!fgets(fname, sizeof(fname), p) || !fgets(fileline, sizeof(fileline), p))
			break;
		fname[strcspn(fname, "\n")] = '\0';
		fileline[strcspn(fileline, "\n")] = '\0';
		colon = strrchr(fileline, ':');
		if (!colon)
			continue;
		*colon = '\0';
		line = atoi(colon + 1);
		CHECK(gobin_pc_lookup(bin, pc, &pi) == 0, "pc 0x%llx not found",
		      (unsigned long long)pc);
		if (line <= 0)
			continue;
		compared++;
		CHECK(pi.line == line && strcmp(pi.file, fileline) == 0,
		      "pc 0x%llx: %s:%d, addr2line %s:%d", (unsigned long long)pc, pi.file,
		      pi.line, fileline, line);
		/* addr2line names the physical function; ours the inlined one */
		CHECK(gobin_func_by_name(bin, fname, &phys) == 0 && phys.entry == pi.entry,
		      "pc 0x%llx: entry mismatch (%s)", (unsigned long long)pc, fname);
		if (strcmp(pi.func, fname) != 0 && strcmp(pi.func, "main.scale") == 0)
			saw_inline = true;
	}
	pclose(p);
	unlink(tmp);
	if (compared == 0 && oracle_may_fail) {
		fprintf(stderr, "note %s: go tool addr2line resolves nothing here, lines unchecked\n",
			path);
		return ok;
	}
	CHECK(compared > 10, "only %d pcs compared in %s", compared, fn);
	if (want_inline)
		CHECK(saw_inline, "no pc in %s reported the inlined main.scale", fn);
	return ok;
}

static bool same_functions(const struct gobin *a, const struct gobin *b)
{
	if (a->nfuncs != b->nfuncs)
		return false;
	for (size_t i = 0; i < a->nfuncs; i++)
		if (a->funcs[i].entry != b->funcs[i].entry || a->funcs[i].end != b->funcs[i].end ||
		    strcmp(a->funcs[i].name, b->funcs[i].name) != 0)
			return false;
	return true;
}

/* All checks on one binary; flavor from the file name suffix. */
static void check_binary(const char *gotool, int minor, const char *path, const char *name,
			 bool own_program)
{
	struct result_row *row = &rows[nrows < 255 ? nrows++ : 255];
	/* "<target>-<flavor>" or just "<flavor>": the target name may hold "cgo" */
	const char *flavor = strrchr(name, '-') ? strrchr(name, '-') + 1 : name;
	bool stripped = !strcmp(flavor, "stripped"), pie = !strcmp(flavor, "pie");
	bool cgo = !strcmp(flavor, "cgo"), ok = true;
	struct timespec t0, t1;
	struct go_offsets table;
	struct gobin *bin = NULL, *copy = NULL;
	struct gobin_func f;
	char err[256], want[64], copy_path[512];
	int ret;

	memset(row, 0, sizeof(*row));
	snprintf(row->version, sizeof(row->version), "go1.%d", minor);
	snprintf(row->name, sizeof(row->name), "%s", name);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = gobin_open_flags(path, GOBIN_OPEN_ALLOW_NO_OFFSETS, &bin, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	row->open_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	CHECK(ret == 0, "gobin_open: %s", err);
	if (ret)
		return;
	row->opened = true;
	row->symtab = gobin_has_symtab(bin);
	if (row->open_ms >= 100) {
		/* the first open may have paid for cold page cache: time a second one */
		struct gobin *again = NULL;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		gobin_open_flags(path, GOBIN_OPEN_ALLOW_NO_OFFSETS, &again, err, sizeof(err));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		gobin_free(again);
		row->open_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	}
	CHECK(row->open_ms < 100, "gobin_open took %.1f ms", row->open_ms);

	CHECK(go_version_of(gotool, path, want, sizeof(want)), "go version -m failed");
	CHECK(strcmp(gobin_version(bin)->str, want) == 0, "version %s, go says %s",
	      gobin_version(bin)->str, want);
	CHECK(gobin_version(bin)->minor == minor, "minor %d", gobin_version(bin)->minor);
	CHECK(gobin_is_pie(bin) == pie, "pie %d", gobin_is_pie(bin));
	CHECK(gobin_kind(bin) == (cgo ? GOBIN_GO_CGO : GOBIN_GO), "kind %d", gobin_kind(bin));
	CHECK(gobin_has_symtab(bin) == !stripped, "symtab %d", gobin_has_symtab(bin));
	CHECK(gobin_has_dwarf(bin) == !stripped, "dwarf %d", gobin_has_dwarf(bin));
	CHECK(strlen(gobin_build_id(bin)) >= 40, "build id \"%s\"", gobin_build_id(bin));
	/* gc links executables and internally linked PIEs at 0x400000 */
	CHECK(gobin_base_vaddr(bin) == 0x400000, "base 0x%llx",
	      (unsigned long long)gobin_base_vaddr(bin));

	static const char *const must[] = { "main.main", "runtime.newproc", "runtime.mallocgc",
					    "runtime.goexit1", "runtime.casgstatus" };
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		CHECK(gobin_func_by_name(bin, must[i], &f) == 0 && f.end > f.entry, "no %s",
		      must[i]);
	CHECK(gobin_func_by_name(bin, "main.nosuchfunction", &f) == -ENOENT, "phantom function");

	/* entry bytes through both address paths agree */
	if (gobin_func_by_name(bin, "main.main", &f) == 0) {
		uint8_t a[16], b[16];
		uint64_t off;
		FILE *fp = fopen(path, "rb");

		CHECK(gobin_read_vaddr(bin, f.entry, a, sizeof(a)) == sizeof(a), "read_vaddr");
		CHECK(gobin_vaddr_to_offset(bin, f.entry, &off) == 0, "vaddr_to_offset");
		CHECK(fp && fseek(fp, (long)off, SEEK_SET) == 0 && fread(b, 1, 16, fp) == 16 &&
		      memcmp(a, b, 16) == 0, "entry bytes differ");
		if (fp)
			fclose(fp);
		CHECK(gobin_vaddr_to_offset(bin, 0x10, &off) == -ENOENT, "vaddr 0x10 mapped");
	}

	if (own_program) {
		/* go1.19's addr2line cannot read PIE binaries (it reports ?:0) */
		bool weak_oracle = pie && minor < 20;

		row->lines_ok = check_lines(gotool, path, bin, "main.main", !weak_oracle, weak_oracle) &&
				check_lines(gotool, path, bin, "main.worker", false, weak_oracle);
	} else {
		row->lines_ok = check_lines(gotool, path, bin, "main.main", false, pie && minor < 20);
	}

	/* offsets: with a table entry gobin_open itself must succeed */
	row->offsets = "none";
	if (go_offsets_from_table(1, minor, &table) == 0) {
		struct gobin *full = NULL;

		CHECK(gobin_open(path, &full, err, sizeof(err)) == 0, "gobin_open: %s", err);
		if (full) {
			const struct go_offsets *off = gobin_offsets(full);

			if (off)
				row->offsets = off->source == GO_OFFSETS_DWARF ? "dwarf" : "table";

			CHECK(off != NULL, "no offsets");
			if (off && !stripped) {
				/* the numbers move between releases (1.25 inserts
				 * one, 1.26 reorders): the names must be there */
				int recv = -1, sleep = -1;

				for (int k = 0; k < off->n_wait_reasons; k++) {
					if (!strcmp(off->wait_reasons[k], "chan receive"))
						recv = k;
					if (!strcmp(off->wait_reasons[k], "sleep"))
						sleep = k;
				}
				CHECK(off->n_wait_reasons > 20 && recv > 0 && sleep > 0,
				      "wait reasons %d: chan receive at %d, sleep at %d",
				      off->n_wait_reasons, recv, sleep);
			}
			gobin_free(full);
		}
	}

	/* globals: code patterns vs .symtab of this binary, then in a strip(1) copy */
	row->globals_ok = true;
	if (!stripped) {
		for (size_t i = 0; i < NGLOBALS; i++) {
			uint64_t sym = 0, code = 0;

			CHECK(gobin_symtab_lookup(bin, global_names[i], &sym) == 0, "no symbol %s",
			      global_names[i]);
			if (gobin_global_from_code(bin, global_names[i], &code) == 0 && code == sym)
				row->globals_found++;
			else
				row->globals_ok = false;
			CHECK(code == sym, "%s: code 0x%llx, symtab 0x%llx", global_names[i],
			      (unsigned long long)code, (unsigned long long)sym);
		}
		if (strip_copy(path, copy_path, sizeof(copy_path))) {
			ret = gobin_open_flags(copy_path, GOBIN_OPEN_ALLOW_NO_OFFSETS, &copy, err,
					       sizeof(err));
			CHECK(ret == 0, "strip copy: %s", err);
			if (copy) {
				row->strip_same = same_functions(bin, copy);
				CHECK(row->strip_same, "function tables differ after strip");
				CHECK(!gobin_has_symtab(copy), "strip kept .symtab");
				CHECK(gobin_kind(copy) == gobin_kind(bin), "kind changed by strip");
				for (size_t i = 0; i < NGLOBALS; i++) {
					uint64_t sym = 0, got = 0;

					gobin_symtab_lookup(bin, global_names[i], &sym);
					CHECK(gobin_global(copy, global_names[i], &got) == 0 &&
					      got == sym, "stripped %s: 0x%llx, want 0x%llx",
					      global_names[i], (unsigned long long)got,
					      (unsigned long long)sym);
					if (got != sym)
						row->globals_ok = false;
				}
				gobin_free(copy);
			}
			unlink(copy_path);
		}
	} else {
		for (size_t i = 0; i < NGLOBALS; i++) {
			uint64_t addr;

			if (gobin_global(bin, global_names[i], &addr) == 0)
				row->globals_found++;
		}
		row->globals_ok = row->globals_found == (int)NGLOBALS;
		CHECK(row->globals_ok, "only %d globals recovered", row->globals_found);
	}
	(void)ok;
	gobin_free(bin);
}

static void for_each_toolchain(void (*fn)(int minor, const char *gotool))
{
	for (int minor = 17; minor <= 40; minor++) {
		char gotool[128];

		snprintf(gotool, sizeof(gotool), "/usr/lib/go-1.%d/bin/go", minor);
		if (exists(gotool))
			fn(minor, gotool);
	}
}

static void check_unit_programs(int minor, const char *gotool)
{
	static const char *const flavors[] = { "plain", "stripped", "pie", "cgo" };

	build_unit_program(minor);
	for (size_t i = 0; i < 4; i++) {
		char path[512], name[64];

		snprintf(path, sizeof(path), "%s/go1.%d/%s", UNIT_DIR, minor, flavors[i]);
		snprintf(name, sizeof(name), "unit-%s", flavors[i]);
		if (exists(path))
			check_binary(gotool, minor, path, name, true);
		else
			failures++, fprintf(stderr, "FAIL: %s missing\n", path);
	}
}

static void check_targets(int minor, const char *gotool)
{
	const char *root = getenv("MEMDRIFT_TARGETS");
	char dir[512];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/go1.%d", root && *root ? root : ".output/targets", minor);
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		char path[1024];
		enum gobin_kind kind;
		struct go_version v;
		const char *dash = strrchr(de->d_name, '-');

		if (de->d_name[0] == '.' || !dash)
			continue;
		if (strcmp(dash, "-plain") && strcmp(dash, "-stripped") && strcmp(dash, "-pie") &&
		    strcmp(dash, "-cgo"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (gobin_classify(path, &kind, &v, NULL, 0) != 0 || kind == GOBIN_NOT_GO)
			continue; /* e.g. a Java target */
		check_binary(gotool, minor, path, de->d_name, false);
	}
	closedir(d);
}

static void test_real_binaries(void **state)
{
	failures = 0;
	nrows = 0;
	for_each_toolchain(check_unit_programs);
	for_each_toolchain(check_targets);
	printf("%-8s %-26s %-6s %-6s %-8s %-7s %-7s %s\n", "version", "binary", "symtab",
	       "lines", "globals", "strip=", "open", "offsets");
	for (int i = 0; i < nrows; i++)
		printf("%-8s %-26s %-6s %-6s %d/%zu %-3s %-7s %5.1fms %s\n", rows[i].version,
		       rows[i].name, rows[i].symtab ? "yes" : "no", rows[i].lines_ok ? "ok" : "FAIL",
		       rows[i].globals_found, NGLOBALS, rows[i].globals_ok ? "ok" : "BAD",
		       rows[i].symtab ? (rows[i].strip_same ? "same" : "DIFF") : "-",
		       rows[i].open_ms, rows[i].offsets ? rows[i].offsets : "-");
	assert_true(nrows >= 4);
	assert_int_equal(failures, 0);
}

/* ---------- error paths ---------- */

static const char *first_unit_binary(const char *flavor, char *out, size_t outlen)
{
	for (int minor = 17; minor <= 40; minor++) {
		snprintf(out, outlen, "%s/go1.%d/%s", UNIT_DIR, minor, flavor);
		if (exists(out))
			return out;
		if (build_unit_program(minor) && exists(out))
			return out;
	}
	return NULL;
}

/* Copies src to dst replacing the inline build-info version by one of the same length. */
static bool patch_version(const char *src, const char *dst, const char *major_minor)
{
	FILE *f = fopen(src, "rb");
	uint8_t *buf;
	long n;
	bool ok = false;

	if (!f)
		return false;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n);
	if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
		for (long off = 0; off + 48 < n; off += 16) {
			if (memcmp(buf + off, "\xff Go buildinf:", 14) != 0)
				continue;
			uint8_t len = buf[off + 32];
			char *v = (char *)buf + off + 33;

			/* "go1.NN" + pad the remainder with ".0..." keeping the length */
			memset(v, '0', len);
			memcpy(v, major_minor, strlen(major_minor));
			if (len > strlen(major_minor))
				v[strlen(major_minor)] = '.';
			FILE *o = fopen(dst, "wb");

			ok = o && fwrite(buf, 1, (size_t)n, o) == (size_t)n;
			if (o)
				fclose(o);
			run("chmod +x %s", dst);
			break;
		}
	}
	free(buf);
	fclose(f);
	return ok;
}

static void test_errors(void **state)
{
	char path[512], tmp[512], err[256];
	struct gobin *bin = (struct gobin *)1;
	enum gobin_kind kind;
	struct go_version v;

	assert_int_equal(gobin_open("/nonexistent/memdrift", &bin, err, sizeof(err)), -ENOENT);
	assert_null(bin);
	assert_non_null(strstr(err, "/nonexistent/memdrift"));

	run("mkdir -p %s", UNIT_DIR);
	snprintf(tmp, sizeof(tmp), "%s/not-elf-%d", UNIT_DIR, (int)getpid());
	write_file(tmp, "#!/bin/sh\necho this is not an ELF file, just some text to fill 64 bytes\n");
	assert_int_equal(gobin_open(tmp, &bin, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "not an ELF"));
	assert_int_equal(gobin_classify(tmp, &kind, &v, err, sizeof(err)), -ENOEXEC);

	/* a native ELF: classified, refused by gobin_open */
	assert_int_equal(gobin_classify("/bin/sh", &kind, &v, err, sizeof(err)), 0);
	assert_int_equal(kind, GOBIN_NOT_GO);
	assert_int_equal(gobin_open("/bin/sh", &bin, err, sizeof(err)), -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "not a Go binary"));

	assert_non_null(first_unit_binary("stripped", path, sizeof(path)));
	assert_int_equal(gobin_classify(path, &kind, &v, err, sizeof(err)), 0);
	assert_int_equal(kind, GOBIN_GO);
	assert_true(v.minor >= 17);

	/* truncated copies of a real Go binary */
	for (long cut = 64; cut <= 1 << 20; cut *= 4) {
		run("head -c %ld %s > %s", cut, path, tmp);
		assert_int_not_equal(gobin_open(tmp, &bin, err, sizeof(err)), 0);
		assert_null(bin);
	}

	/* too old, and too new for the table without DWARF: the layout is then
	 * read from the runtime's code and equals the real version's row */
	assert_true(patch_version(path, tmp, "go1.16"));
	assert_int_equal(gobin_open(tmp, &bin, err, sizeof(err)), -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "is older than go1.17, the oldest supported"));
	assert_true(patch_version(path, tmp, "go1.97"));
	assert_int_equal(gobin_open(tmp, &bin, err, sizeof(err)), 0);
	assert_int_equal(gobin_version(bin)->minor, 97);
	assert_string_equal(gobin_offsets_source(bin), "code");
	{
		struct gobin *real = NULL;
		const struct go_offsets *a, *b;

		assert_int_equal(gobin_open(path, &real, err, sizeof(err)), 0);
		a = gobin_offsets(real);
		b = gobin_offsets(bin);
		assert_string_equal(gobin_offsets_source(real), "table");
		assert_int_equal(b->g_goid, a->g_goid);
		assert_int_equal(b->g_gopc, a->g_gopc);
		assert_int_equal(b->g_startpc, a->g_startpc);
		assert_int_equal(b->g_atomicstatus, a->g_atomicstatus);
		assert_int_equal(b->g_waitreason, a->g_waitreason);
		assert_int_equal(b->g_waitsince, a->g_waitsince);
		assert_int_equal(b->n_wait_reasons, a->n_wait_reasons);
		assert_int_equal(b->bucket_header_size, a->bucket_header_size);
		assert_int_equal(b->memrecord_size, a->memrecord_size);
		assert_int_equal(b->mheap_arenas, a->mheap_arenas);
		assert_int_equal(b->kind_special_profile, a->kind_special_profile);
		gobin_free(real);
	}
	gobin_free(bin);
	unlink(tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buildinfo_inline),
		cmocka_unit_test(test_buildinfo_pointer_and_garbage),
		cmocka_unit_test(test_parse_version),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_real_binaries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

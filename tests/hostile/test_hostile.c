/* The hostile-target suite: this process plays a target that lies. Its own
 * memory holds forged runtime structures (a fake gobin's globals point at
 * them, bias 0, the reader's pid is getpid()), and forged files sit where a
 * target would put them (FIFO, symlink, directory at the hsperfdata, libjvm
 * and libc paths; a compressed-DWARF bomb; a huge .symtab). Built with
 * ASan/UBSan against the fuzzers' sanitized objects (make unit), so reading
 * one byte past a buffer fails the run. Every case runs under a wall-time and
 * peak-RSS budget (VmHWM reset through /proc/self/clear_refs): the budgets
 * are hang and bomb detectors, loose by design, not performance figures. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <elf.h>
#include <zlib.h>

#include <cmocka.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "binary/go_offsets.h"
#include "binary/gobin.h"
#include "binary/gobin_internal.h"
#include "discover/proc.h"
#include "discover/target.h"
#include "probe/usdt_notes.h"
#include "symbols/symbolize.h"
#include "watch/heapprof.h"
#include "watch/hsperf.h"
#include "watch/snapshot.h"

void prom_escape(struct strbuf *sb, const char *s); /* daemon_http.c */

/* The daemon's objects are built to report UB and go on (the fuzzers'
 * flags); here any report fails the run. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

/* ------------------------------------------------------------ budgets --- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long status_kib(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtol(line + strlen(key), NULL, 10);
	if (f)
		fclose(f);
	return v;
}

struct budget {
	uint64_t t0;
	long rss0;
	const char *what;
};

static struct budget budget_start(const char *what)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);

	/* "5" resets the peak RSS (VmHWM) to the current RSS */
	if (fd >= 0) {
		assert_int_equal(write(fd, "5", 1), 1);
		close(fd);
	}
	return (struct budget){ now_ns(), status_kib("VmHWM:"), what };
}

static void budget_check(const struct budget *b, uint64_t max_ms, long max_mib)
{
	uint64_t ms = (now_ns() - b->t0) / 1000000;
	long grew = (status_kib("VmHWM:") - b->rss0) / 1024;

	printf("# %-44s %5llu ms (budget %llu), peak RSS +%ld MiB (budget %ld)\n", b->what,
	       (unsigned long long)ms, (unsigned long long)max_ms, grew, max_mib);
	assert_true(ms <= max_ms);
	assert_true(grew <= max_mib);
}

/* ------------------------------------------------------- forged files --- */

static char dir[64];

static void make_dir(void)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/memdrift-hostile-XXXXXX");
		assert_non_null(mkdtemp(dir));
	}
}

/* A path as the daemon builds it: through /proc/PID/root. */
static void rooted(char *out, size_t len, const char *name)
{
	snprintf(out, len, "/proc/%d/root%s/%s", (int)getpid(), dir, name);
}

enum kind { FIFO, SYMLINK, DIRECTORY, KINDS };
static const char *const kind_name[] = { "FIFO", "symlink", "directory" };

/* name: a FIFO, a symlink to /etc/shadow-like host file, or a directory */
static void place(enum kind k, const char *name)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	unlink(p);
	rmdir(p);
	if (k == FIFO)
		assert_int_equal(mkfifo(p, 0600), 0);
	else if (k == SYMLINK)
		assert_int_equal(symlink("/etc/passwd", p), 0);
	else
		assert_int_equal(mkdir(p, 0700), 0);
}

/* Each reader of a target-influenced path, given a FIFO, a symlink and a
 * directory: an error within 100 ms (a FIFO used to block open() forever). */
static void test_paths_fifo_symlink_dir(void **state)
{
	static const char *const readers[] = { "hsperf_read", "usdt_notes_read (libjvm)",
					       "symbolize_elf_symbol (libjvm, libc)",
					       "gobin_open", "go_offsets_from_dwarf" };
	char p[256], err[256], what[96];

	make_dir();
	for (int k = 0; k < KINDS; k++) {
		for (size_t r = 0; r < sizeof(readers) / sizeof(readers[0]); r++) {
			struct hsperf_stats hs;
			struct usdt_notes notes;
			struct go_offsets off;
			struct gobin *bin = NULL;
			uint64_t a, s, o;
			struct budget b;
			int ret = 0;

			place((enum kind)k, "target-file");
			rooted(p, sizeof(p), "target-file");
			snprintf(what, sizeof(what), "%s at %s", kind_name[k], readers[r]);
			b = budget_start(what);
			err[0] = '\0';
			switch (r) {
			case 0: ret = hsperf_read(p, &hs, err, sizeof(err)); break;
			case 1: ret = usdt_notes_read(p, &notes, err, sizeof(err)); break;
			case 2: ret = symbolize_elf_symbol(p, "malloc", &a, &s, &o); break;
			case 3: ret = gobin_open(p, &bin, err, sizeof(err)); break;
			case 4: ret = go_offsets_from_dwarf(p, 1, 22, &off, err, sizeof(err)); break;
			}
			budget_check(&b, 100, 16);
			assert_true(ret < 0);
			assert_null(bin);
			if (r != 2)
				assert_true(err[0] != '\0');
		}
	}
}

/* The opener itself: which refusals, and that a regular file still opens
 * through /proc/PID/root (RESOLVE_IN_ROOT) and through a magic link. */
static void test_opener(void **state)
{
	char p[256], real[256];
	uint64_t size = 0;
	int fd;

	make_dir();
	snprintf(real, sizeof(real), "%s/regular", dir);
	fd = open(real, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "12345678", 8), 8);
	close(fd);
	rooted(p, sizeof(p), "regular");
	fd = proc_open_untrusted(p, 1 << 20, &size);
	assert_true(fd >= 0);
	assert_int_equal(size, 8);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);
	assert_int_equal(proc_open_untrusted(p, 4, NULL), -EFBIG);
	place(FIFO, "t");
	rooted(p, sizeof(p), "t");
	assert_int_equal(proc_open_untrusted(p, 1 << 20, NULL), -EINVAL);
	place(SYMLINK, "t");
	assert_int_equal(proc_open_untrusted(p, 1 << 20, NULL), -ELOOP);
	place(DIRECTORY, "t");
	assert_int_equal(proc_open_untrusted(p, 1 << 20, NULL), -EISDIR);
	/* /proc/self/exe is a magic link: followed */
	fd = proc_open_untrusted("/proc/self/exe", PROC_MAX_ELF_FILE, &size);
	assert_true(fd >= 0);
	assert_true(size > 0);
	close(fd);
	assert_non_null(strstr(proc_open_error(-EINVAL), "not a regular file"));
}

/* An ELF64 with .debug_abbrev and a SHF_COMPRESSED .debug_info whose zlib
 * stream inflates to `inflated` bytes of zeros and whose header claims
 * `claimed`. */
static void write_bomb(const char *path, uint64_t inflated, uint64_t claimed)
{
	static const char shstr[] = "\0.debug_abbrev\0.debug_info\0.shstrtab";
	static uint8_t zeros[1 << 20];
	size_t cap = inflated / 512 + (1 << 16), clen;
	uint8_t *z = malloc(cap);
	z_stream zs = { 0 };
	Elf64_Ehdr eh = { 0 };
	Elf64_Shdr sh[4] = { { 0 } };
	Elf64_Chdr ch = { .ch_type = ELFCOMPRESS_ZLIB, .ch_size = claimed, .ch_addralign = 1 };
	uint8_t abbrev[1] = { 0 };
	FILE *f;

	assert_non_null(z);
	assert_int_equal(deflateInit(&zs, 9), Z_OK);
	zs.next_out = z;
	zs.avail_out = (uInt)cap;
	for (uint64_t left = inflated; left;) {
		size_t n = left < sizeof(zeros) ? left : sizeof(zeros);

		zs.next_in = zeros;
		zs.avail_in = (uInt)n;
		left -= n;
		assert_true(deflate(&zs, left ? Z_NO_FLUSH : Z_FINISH) != Z_STREAM_ERROR);
		assert_int_equal(zs.avail_in, 0);
	}
	clen = cap - zs.avail_out;
	deflateEnd(&zs);

	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_ehsize = sizeof(eh);
	eh.e_shentsize = sizeof(Elf64_Shdr);
	eh.e_shnum = 4;
	eh.e_shstrndx = 3;
	sh[1] = (Elf64_Shdr){ .sh_name = 1, .sh_type = SHT_PROGBITS, .sh_offset = sizeof(eh),
			      .sh_size = 1, .sh_addralign = 1 };
	sh[2] = (Elf64_Shdr){ .sh_name = 15, .sh_type = SHT_PROGBITS, .sh_flags = SHF_COMPRESSED,
			      .sh_offset = sizeof(eh) + 1, .sh_size = sizeof(ch) + clen,
			      .sh_addralign = 1 };
	sh[3] = (Elf64_Shdr){ .sh_name = 27, .sh_type = SHT_STRTAB,
			      .sh_offset = sizeof(eh) + 1 + sizeof(ch) + clen,
			      .sh_size = sizeof(shstr), .sh_addralign = 1 };
	eh.e_shoff = (sh[3].sh_offset + sizeof(shstr) + 7) & ~7ull;
	f = fopen(path, "we");
	assert_non_null(f);
	fwrite(&eh, sizeof(eh), 1, f);
	fwrite(abbrev, 1, 1, f);
	fwrite(&ch, sizeof(ch), 1, f);
	fwrite(z, 1, clen, f);
	fwrite(shstr, 1, sizeof(shstr), f);
	while (ftell(f) < (long)eh.e_shoff)
		fputc(0, f);
	fwrite(sh, sizeof(sh), 1, f);
	fclose(f);
	free(z);
}

/* A 256 KiB ELF whose DWARF inflates to 256 MiB, and one claiming 3 GiB:
 * refused before inflating (used to cost GiBs and seconds at discovery). */
static void test_compressed_dwarf_bomb(void **state)
{
	static const uint64_t sizes[][2] = { { 256u << 20, 256u << 20 }, { 1u << 20, 3ull << 30 } };
	char p[256], err[256];
	struct go_offsets off;

	make_dir();
	snprintf(p, sizeof(p), "%s/bomb", dir);
	for (size_t i = 0; i < 2; i++) {
		struct budget b;
		int ret;

		write_bomb(p, sizes[i][0], sizes[i][1]);
		b = budget_start(i ? "DWARF claiming 3 GiB" : "DWARF bomb 256 KiB -> 256 MiB");
		ret = go_offsets_from_dwarf(p, 1, 22, &off, err, sizeof(err));
		budget_check(&b, 1000, 32);
		assert_int_equal(ret, -E2BIG);
		assert_non_null(strstr(err, "refused"));
	}
}

/* ------------------------------------------------ a forged Go target --- */

struct fake {
	struct gobin bin;
	struct go_target t;
};

/* A gobin describing nothing but the given globals (name, address in this
 * process) and Go 1.22's table offsets; no functions. */
static void fake_target(struct fake *f, const char *const *names, const uint64_t *addrs, int n)
{
	static uint8_t no_file[64];

	memset(f, 0, sizeof(*f));
	f->bin.path = (char *)"forged";
	f->bin.map = no_file;
	f->bin.size = sizeof(no_file);
	f->bin.kind = GOBIN_GO;
	assert_int_equal(go_offsets_from_table(1, 22, &f->bin.offsets), 0);
	f->bin.have_offsets = true;
	assert_int_equal(go_parse_version("go1.22.0", &f->bin.ver), 0);
	for (int i = 0; i < n; i++)
		f->bin.globals[f->bin.nglobals++] = (struct gobin_global_entry){ names[i], addrs[i] };
	f->t.pid = getpid();
	f->t.bin = &f->bin;
}

/* Go 1.19-1.24's runtime.bucket (48 B: allnext 8, size 32, nstk 40) with a
 * memRecord of memrecord bytes. */
static void bucket_layout(struct fake *f, int memrecord)
{
	f->bin.offsets.bucket_header_size = 48;
	f->bin.offsets.bucket_allnext = 8;
	f->bin.offsets.bucket_size = 32;
	f->bin.offsets.bucket_nstk = 40;
	f->bin.offsets.memrecord_size = memrecord;
}

/* runtime.g members at DWARF offsets past the 1,024 bytes read per g:
 * refused at load (go_offsets_check) and at snapshot, never read past (this
 * was an ASan heap-buffer-overflow at snapshot.c:134). */
static void test_g_offsets_past_buffer(void **state)
{
	static const char *const names[] = { "runtime.allglen", "runtime.allgptr" };
	static uint8_t g[4096];
	static uint64_t allg[1];
	uint64_t allglen = 1, allgptr = (uint64_t)(uintptr_t)allg;
	uint64_t addrs[2] = { (uint64_t)(uintptr_t)&allglen, (uint64_t)(uintptr_t)&allgptr };
	struct go_snapshot snap;
	struct fake f;
	struct budget b;
	char err[256];

	allg[0] = (uint64_t)(uintptr_t)g;
	fake_target(&f, names, addrs, 2);
	assert_int_equal(go_offsets_check(&f.bin.offsets, err, sizeof(err)), 0);
	f.bin.offsets.g_goid = 2000;
	assert_int_equal(go_offsets_check(&f.bin.offsets, err, sizeof(err)), -ERANGE);
	assert_non_null(strstr(err, "g_goid"));
	b = budget_start("runtime.g goid at offset 2000");
	assert_int_equal(go_snapshot_take(&f.t, &snap, err, sizeof(err)), -ENOTSUP);
	budget_check(&b, 100, 8);
	assert_non_null(strstr(err, "refused"));
	f.bin.offsets.g_goid = GO_OFF_NONE + 0; /* a negative offset other than NONE */
	f.bin.offsets.g_startpc = -5;
	assert_int_equal(go_offsets_check(&f.bin.offsets, err, sizeof(err)), -ERANGE);
}

/* A bucket layout with a huge memRecord/bucket size: refused (heapprof.c
 * used to read header + nstk*8 + memrecord_size into a 9,728-byte buffer). */
static void test_bucket_sizes(void **state)
{
	static const char *const names[] = { "runtime.mbuckets", "runtime.MemProfileRate" };
	static uint8_t bucket[48 + 1024 * 8 + 65536];
	uint64_t mbuckets = (uint64_t)(uintptr_t)bucket, rate = 512 * 1024;
	uint64_t addrs[2] = { (uint64_t)(uintptr_t)&mbuckets, (uint64_t)(uintptr_t)&rate };
	struct heap_bucket_layout l;
	struct heap_profile p;
	struct fake f;
	struct budget b;
	char err[256];
	uint64_t v;

	fake_target(&f, names, addrs, 2);
	bucket_layout(&f, 60000);
	memset(bucket, 0x41, sizeof(bucket));
	v = 0, memcpy(bucket + 8, &v, 8);
	v = 1, memcpy(bucket + 16, &v, 8);
	v = 1024, memcpy(bucket + 40, &v, 8);
	assert_int_equal(heap_layout_from_offsets(&f.bin.offsets, &l), -E2BIG);
	assert_int_equal(go_offsets_check(&f.bin.offsets, err, sizeof(err)), -ERANGE);
	b = budget_start("memRecord of 60,000 bytes");
	assert_int_equal(heap_profile_read(&f.t, &p, err, sizeof(err)), -E2BIG);
	budget_check(&b, 100, 8);
	assert_non_null(strstr(err, "refused"));
	/* the largest accepted layout, 1,024 frames: read in full, in bounds */
	f.bin.offsets.bucket_header_size = HEAP_MAX_HEADER;
	f.bin.offsets.memrecord_size = HEAP_MAX_MEMRECORD;
	assert_int_equal(heap_profile_read(&f.t, &p, err, sizeof(err)), 0);
	assert_int_equal(p.nrecords, 1);
	assert_int_equal(p.records[0].nstk, 1024);
	heap_profile_free(&p);
}

/* A bucket whose allnext points at itself, 1,024 frames deep: one record,
 * the cycle reported (used to walk 65,536 times: ~1 GiB, seconds). */
static void test_bucket_self_loop(void **state)
{
	static const char *const names[] = { "runtime.mbuckets", "runtime.MemProfileRate" };
	static uint8_t bucket[48 + 1024 * 8 + 128];
	uint64_t mbuckets = (uint64_t)(uintptr_t)bucket, rate = 512 * 1024, v;
	uint64_t addrs[2] = { (uint64_t)(uintptr_t)&mbuckets, (uint64_t)(uintptr_t)&rate };
	struct heap_profile p;
	struct fake f;
	struct budget b;
	char err[256];

	fake_target(&f, names, addrs, 2);
	bucket_layout(&f, 128);
	memset(bucket, 0, sizeof(bucket));
	v = (uint64_t)(uintptr_t)bucket, memcpy(bucket + 8, &v, 8);
	v = 1, memcpy(bucket + 16, &v, 8);
	v = 64, memcpy(bucket + 32, &v, 8);
	v = 1024, memcpy(bucket + 40, &v, 8);
	for (int i = 0; i < 1024; i++)
		v = 0x401000 + (uint64_t)i, memcpy(bucket + 48 + i * 8, &v, 8);
	b = budget_start("self-looping mbuckets, 1,024 frames");
	assert_int_equal(heap_profile_read(&f.t, &p, err, sizeof(err)), 0);
	budget_check(&b, 500, 16);
	assert_true(p.cycle);
	assert_int_equal(p.nrecords, 1);
	heap_profile_free(&p);
}

/* allglen of 16 Mi: pointers into an unreadable (PROT_NONE) reservation
 * and into nothing, or all to one readable g (a "self-looping" allgs):
 * bounded time and memory, truncation counted. Was ~11.6 us per unreadable
 * pointer (minutes per tick) and ~400 B per entry allocated up front. */
static void test_allgs_16mi(void **state)
{
	static const char *const names[] = { "runtime.allglen", "runtime.allgptr" };
	const size_t n = 16u << 20;
	static uint8_t g[1024];
	uint64_t allglen = n, allgptr, *allg;
	uint64_t addrs[2] = { (uint64_t)(uintptr_t)&allglen, (uint64_t)(uintptr_t)&allgptr };
	uint8_t *none = mmap(NULL, 1u << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			     -1, 0);
	struct go_snapshot snap;
	struct fake f;
	struct budget b;
	char err[256];
	uint32_t st;

	assert_true(none != MAP_FAILED);
	allg = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(allg != MAP_FAILED);
	allgptr = (uint64_t)(uintptr_t)allg;
	fake_target(&f, names, addrs, 2);
	for (size_t i = 0; i < n; i++)
		allg[i] = i & 1 ? (uint64_t)(uintptr_t)(none + (i * 64) % (1u << 30))
				: 0x10000 + (i % 4096) * 8; /* below mmap_min_addr */
	b = budget_start("allglen 16 Mi, every pointer unreadable");
	assert_int_equal(go_snapshot_take(&f.t, &snap, err, sizeof(err)), 0);
	budget_check(&b, 4000, 48);
	assert_int_equal(snap.ngs, 0);
	printf("#   %zu not examined (walk budget)\n", snap.truncated);
	go_snapshot_free(&snap);

	/* every entry the same live g */
	memset(g, 0, sizeof(g));
	st = 4; /* _Gwaiting */
	memcpy(g + f.bin.offsets.g_atomicstatus, &st, 4);
	for (size_t i = 0; i < n; i++)
		allg[i] = (uint64_t)(uintptr_t)g;
	b = budget_start("allglen 16 Mi, all the same live g");
	assert_int_equal(go_snapshot_take(&f.t, &snap, err, sizeof(err)), 0);
	budget_check(&b, 4000, 192); /* 1 Mi recorded x 72 B, ASan's quarantine */
	assert_true(snap.truncated > 0);
	assert_true(snap.ngs + snap.truncated <= n);
	go_snapshot_free(&snap);
	munmap(allg, n * 8);
	munmap(none, 1u << 30);
}

/* proc_read_many on n unreadable ranges: one process_vm_readv per failure at
 * most, and after the first, none for pointers outside every mapping. */
static void test_read_many_unreadable(void **state)
{
	const size_t n = 1u << 20;
	uint64_t *addrs = malloc(n * 8);
	uint8_t *out = malloc(n * 64);
	bool *ok = malloc(n);
	static uint8_t good[64];
	struct budget b;

	assert_non_null(addrs);
	assert_non_null(out);
	assert_non_null(ok);
	for (size_t i = 0; i < n; i++)
		addrs[i] = i % 1000 == 0 ? (uint64_t)(uintptr_t)good : 0x1000 + (i % 512) * 64;
	memset(out, 1, n * 64); /* the caller's buffer: not the reader's memory */
	memset(ok, 1, n);
	b = budget_start("proc_read_many, 1 Mi ranges, 99.9% unreadable");
	assert_int_equal(proc_read_many(getpid(), addrs, n, 64, out, ok), (long)((n + 999) / 1000));
	budget_check(&b, 2000, 16);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ok[i], i % 1000 == 0);
	free(addrs);
	free(out);
	free(ok);
}

/* Names that are not UTF-8 (a comm set by prctl, a forged pclntab name):
 * the exposition stays UTF-8 (promtool rejects it otherwise). */
static void test_label_utf8(void **state)
{
	static const char *const in[] = { "\xff\xfe", "ok\xc3\xa9", "\xc0\xaf", "\xed\xa0\x80",
					  "a\"b\\c\nd", "\xf4\x90\x80\x80", "\xe2\x82" };
	static const char *const want[] = { "\xef\xbf\xbd\xef\xbf\xbd", "ok\xc3\xa9",
					    "\xef\xbf\xbd\xef\xbf\xbd",
					    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
					    "a\\\"b\\\\c\\nd",
					    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
					    "\xef\xbf\xbd\xef\xbf\xbd" };

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		struct strbuf sb;

		strbuf_init(&sb, 1024);
		prom_escape(&sb, in[i]);
		assert_non_null(sb.buf);
		assert_string_equal(sb.buf, want[i]);
		strbuf_free(&sb);
	}
}

/* A Go binary whose .symtab claims 5 Mi entries (a sparse file): ignored
 * at open, so 1,000 global lookups stay cheap (each scanned it before). */
static void test_huge_symtab(void **state)
{
	const char *src = getenv("HOSTILE_GO_BINARY");
	char p[256], err[256];
	struct gobin *bin = NULL;
	struct budget b;
	uint8_t *m;
	size_t size;
	int fd;

	if (!src || access(src, R_OK)) {
		if (getenv("CI") && !strcmp(getenv("CI"), "true"))
			fail_msg("HOSTILE_GO_BINARY unset: make targets, then tests/run-all.sh");
		skip();
	}
	make_dir();
	snprintf(p, sizeof(p), "%s/huge-symtab", dir);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, p);
		assert_int_equal(system(cmd), 0);
	}
	fd = open(p, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	size = (size_t)lseek(fd, 0, SEEK_END);
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	{
		Elf64_Ehdr *eh = (Elf64_Ehdr *)m;
		Elf64_Shdr *sh = (Elf64_Shdr *)(m + eh->e_shoff);
		bool found = false;

		for (int i = 0; i < eh->e_shnum; i++) {
			if (sh[i].sh_type != SHT_SYMTAB)
				continue;
			/* moved to the end of the file, 5 Mi zero entries */
			sh[i].sh_offset = (size + 4095) & ~4095ull;
			sh[i].sh_size = (5ull << 20) * sizeof(Elf64_Sym);
			found = true;
			assert_int_equal(ftruncate(fd, (off_t)(sh[i].sh_offset + sh[i].sh_size)), 0);
		}
		assert_true(found);
	}
	munmap(m, size);
	close(fd);
	b = budget_start("a .symtab of 5 Mi entries, 1,000 lookups");
	assert_int_equal(gobin_open(p, &bin, err, sizeof(err)), 0);
	for (int i = 0; i < 1000; i++) {
		uint64_t a;

		(void)gobin_global(bin, i & 1 ? "runtime.nosuch" : "runtime.allglen", &a);
	}
	budget_check(&b, 3000, 64);
	assert_false(gobin_has_symtab(bin));
	gobin_free(bin);
	unlink(p);
}

static int teardown(void **state)
{
	char cmd[128];

	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths_fifo_symlink_dir),
		cmocka_unit_test(test_opener),
		cmocka_unit_test(test_compressed_dwarf_bomb),
		cmocka_unit_test(test_g_offsets_past_buffer),
		cmocka_unit_test(test_bucket_sizes),
		cmocka_unit_test(test_bucket_self_loop),
		cmocka_unit_test(test_allgs_16mi),
		cmocka_unit_test(test_read_many_unreadable),
		cmocka_unit_test(test_label_utf8),
		cmocka_unit_test(test_huge_symtab),
	};

	return cmocka_run_group_tests_name("hostile target", tests, NULL, teardown);
}

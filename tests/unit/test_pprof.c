/* pprof builder: the encoded profile decodes (protobuf-c) to what was added,
 * with pprof's conventions (string 0 is "", ids from 1, leaf first), tables
 * are deduplicated, and the gzip form round-trips. */
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

#include "output/pprof.h"
#include "profile.pb-c.h"

static const struct pprof_value_type heap_types[] = {
	{ "alloc_objects", "count" }, { "alloc_space", "bytes" },
	{ "inuse_objects", "count" }, { "inuse_space", "bytes" },
};

static const char *str(const Perftools__Profiles__Profile *p, int64_t i)
{
	assert_true(i >= 0 && (size_t)i < p->n_string_table);
	return p->string_table[i];
}

static Perftools__Profiles__Profile *decode(const struct pprof_builder *b)
{
	uint8_t *buf;
	size_t len;
	Perftools__Profiles__Profile *p;

	assert_int_equal(pprof_encode(b, &buf, &len), 0);
	p = perftools__profiles__profile__unpack(NULL, len, buf);
	free(buf);
	assert_non_null(p);
	return p;
}

static const Perftools__Profiles__Function *func(const Perftools__Profiles__Profile *p, uint64_t id)
{
	for (size_t i = 0; i < p->n_function; i++)
		if (p->function[i]->id == id)
			return p->function[i];
	fail_msg("function %llu missing", (unsigned long long)id);
	return NULL;
}

static const Perftools__Profiles__Location *loc(const Perftools__Profiles__Profile *p, uint64_t id)
{
	for (size_t i = 0; i < p->n_location; i++)
		if (p->location[i]->id == id)
			return p->location[i];
	fail_msg("location %llu missing", (unsigned long long)id);
	return NULL;
}

/* Fake symbolizer: 0x1000.. is main.leak, 0x2000.. main.main, the rest unknown. */
static int calls;
static int sym(void *ctx, uint64_t addr, size_t index, struct pprof_frame *fr, size_t max, size_t *n)
{
	(void)ctx;
	(void)index;
	calls++;
	*n = 0;
	if (addr >= 0x1000 && addr < 0x2000) {
		/* an inlined helper inside main.leak: innermost first */
		fr[0] = (struct pprof_frame){ "main.grow", NULL, "/src/main.go", 10, 0 };
		fr[1] = (struct pprof_frame){ "main.leak", NULL, "/src/main.go", 20, 0 };
		*n = max >= 2 ? 2 : 1;
	} else if (addr >= 0x2000 && addr < 0x3000) {
		fr[0] = (struct pprof_frame){ "main.main", NULL, "/src/main.go", 30, 0 };
		*n = 1;
	}
	return 0;
}

static void heap_profile_roundtrip(void **state)
{
	struct pprof_builder *b;
	Perftools__Profiles__Profile *p;
	const uint64_t s1[] = { 0x1010, 0x2020 }, s2[] = { 0x1010, 0x2030 }, s3[] = { 0x9000 };
	const int64_t v1[] = { 10, 1000, 5, 500 }, v2[] = { 1, 2, 3, 4 }, v3[] = { 7, 7, 7, 7 };
	struct pprof_label lab = { .key = "bytes", .num = 100 };
	struct pprof_label slab = { .key = "site", .str = "leak" };
	uint64_t mid = 0;

	(void)state;
	calls = 0;
	assert_int_equal(pprof_builder_new(heap_types, 4, &b), 0);
	assert_int_equal(pprof_set_period(b, "space", "bytes", 524288), 0);
	assert_int_equal(pprof_set_default_sample_type(b, "inuse_space"), 0);
	assert_int_equal(pprof_set_default_sample_type(b, "nope"), -EINVAL);
	assert_int_equal(pprof_set_drop_frames(b, "runtime\\..*"), 0);
	pprof_set_time(b, 1234567890, 5);
	assert_int_equal(pprof_add_comment(b, "hello"), 0);
	assert_int_equal(pprof_add_mapping(b, 0x1000, 0x3000, 0, "/bin/x", "abcd", true, &mid), 0);
	assert_int_equal(mid, 1);
	assert_int_equal(pprof_add_sample_addrs(b, s1, 2, v1, &lab, 1, sym, NULL), 0);
	assert_int_equal(pprof_add_sample_addrs(b, s2, 2, v2, NULL, 0, sym, NULL), 0);
	assert_int_equal(pprof_add_sample_addrs(b, s3, 1, v3, &slab, 1, sym, NULL), 0);
	/* 0x1010 symbolized once, shared by two samples */
	assert_int_equal(calls, 4);
	assert_int_equal(pprof_location_count(b), 4);
	assert_int_equal(pprof_sample_count(b), 3);
	assert_int_not_equal(pprof_find_location(b, 0x1010), 0);
	assert_int_equal(pprof_find_location(b, 0x1011), 0);

	p = decode(b);
	assert_string_equal(p->string_table[0], "");
	assert_int_equal(p->n_sample_type, 4);
	assert_string_equal(str(p, p->sample_type[0]->type), "alloc_objects");
	assert_string_equal(str(p, p->sample_type[3]->type), "inuse_space");
	assert_string_equal(str(p, p->sample_type[3]->unit), "bytes");
	assert_non_null(p->period_type);
	assert_string_equal(str(p, p->period_type->type), "space");
	assert_int_equal(p->period, 524288);
	assert_string_equal(str(p, p->default_sample_type), "inuse_space");
	assert_string_equal(str(p, p->drop_frames), "runtime\\..*");
	assert_int_equal(p->time_nanos, 1234567890);
	assert_int_equal(p->duration_nanos, 5);
	assert_int_equal(p->n_comment, 1);
	assert_string_equal(str(p, p->comment[0]), "hello");

	assert_int_equal(p->n_mapping, 1);
	assert_int_equal(p->mapping[0]->id, 1);
	assert_int_equal(p->mapping[0]->memory_start, 0x1000);
	assert_int_equal(p->mapping[0]->memory_limit, 0x3000);
	assert_string_equal(str(p, p->mapping[0]->filename), "/bin/x");
	assert_string_equal(str(p, p->mapping[0]->build_id), "abcd");
	assert_true(p->mapping[0]->has_functions);

	assert_int_equal(p->n_sample, 3);
	assert_int_equal(p->sample[0]->n_location_id, 2);
	assert_int_equal(p->sample[0]->n_value, 4);
	assert_int_equal(p->sample[0]->value[1], 1000);
	assert_int_equal(p->sample[0]->value[3], 500);
	assert_int_equal(p->sample[1]->value[2], 3);
	assert_int_equal(p->sample[0]->n_label, 1);
	assert_string_equal(str(p, p->sample[0]->label[0]->key), "bytes");
	assert_int_equal(p->sample[0]->label[0]->num, 100);
	assert_string_equal(str(p, p->sample[2]->label[0]->str), "leak");
	assert_int_equal(p->sample[0]->location_id[0], p->sample[1]->location_id[0]);
	assert_int_not_equal(p->sample[0]->location_id[1], p->sample[1]->location_id[1]);

	{
		const Perftools__Profiles__Location *l = loc(p, p->sample[0]->location_id[0]);

		assert_int_equal(l->address, 0x1010);
		assert_int_equal(l->mapping_id, 1);
		assert_int_equal(l->n_line, 2);
		assert_string_equal(str(p, func(p, l->line[0]->function_id)->name), "main.grow");
		assert_string_equal(str(p, func(p, l->line[1]->function_id)->name), "main.leak");
		assert_string_equal(str(p, func(p, l->line[1]->function_id)->filename), "/src/main.go");
		assert_int_equal(l->line[1]->line, 20);
		/* outside every mapping, unknown to the symbolizer */
		l = loc(p, p->sample[2]->location_id[0]);
		assert_int_equal(l->mapping_id, 0);
		assert_int_equal(l->n_line, 0);
	}
	/* main.main at two addresses: one function */
	assert_int_equal(p->n_function, 3);
	/* every string once */
	for (size_t i = 0; i < p->n_string_table; i++)
		for (size_t j = i + 1; j < p->n_string_table; j++)
			assert_string_not_equal(p->string_table[i], p->string_table[j]);
	perftools__profiles__profile__free_unpacked(p, NULL);
	pprof_builder_free(b);
}

static void gzip_roundtrip(void **state)
{
	struct pprof_builder *b;
	uint8_t *raw, *gz, *back;
	size_t rawlen, gzlen, backlen;
	const struct pprof_value_type t[] = { { "goroutine", "count" } };
	char path[] = "/tmp/test_pprof_XXXXXX";
	int fd;
	FILE *f;
	uint8_t filebuf[1 << 16];
	size_t flen;

	(void)state;
	assert_int_equal(pprof_builder_new(t, 1, &b), 0);
	for (uint64_t i = 0; i < 500; i++) {
		const uint64_t addrs[] = { 0x4000 + i, 0x5000 };
		const int64_t v[] = { (int64_t)i };

		assert_int_equal(pprof_add_sample_addrs(b, addrs, 2, v, NULL, 0, NULL, NULL), 0);
	}
	assert_int_equal(pprof_encode(b, &raw, &rawlen), 0);
	assert_int_equal(pprof_encode_gzip(b, &gz, &gzlen), 0);
	assert_true(gzlen > 18);
	assert_int_equal(gz[0], 0x1f); /* gzip magic */
	assert_int_equal(gz[1], 0x8b);
	assert_int_equal(pprof_gunzip(gz, gzlen, 1 << 24, &back, &backlen), 0);
	assert_int_equal(backlen, rawlen);
	assert_memory_equal(back, raw, rawlen);
	free(back);
	/* a bound smaller than the output is refused, truncation is detected */
	assert_int_equal(pprof_gunzip(gz, gzlen, 16, &back, &backlen), -E2BIG);
	assert_int_equal(pprof_gunzip(gz, gzlen / 2, 1 << 24, &back, &backlen), -EINVAL);
	assert_int_equal(pprof_gunzip(raw, rawlen, 1 << 24, &back, &backlen), -EINVAL);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(pprof_write_file(b, path), 0);
	f = fopen(path, "rb");
	assert_non_null(f);
	flen = fread(filebuf, 1, sizeof(filebuf), f);
	fclose(f);
	unlink(path);
	assert_int_equal(flen, gzlen);
	assert_int_equal(pprof_gunzip(filebuf, flen, 1 << 24, &back, &backlen), 0);
	assert_memory_equal(back, raw, rawlen);
	free(back);
	free(raw);
	free(gz);
	pprof_builder_free(b);
}

static void bad_input(void **state)
{
	struct pprof_builder *b;
	const struct pprof_value_type t[] = { { "x", "count" } };
	const uint64_t bogus[] = { 99 };
	const int64_t v[] = { 1 };

	(void)state;
	assert_int_equal(pprof_builder_new(t, 0, &b), -EINVAL);
	assert_null(b);
	assert_int_equal(pprof_builder_new(t, 1, &b), 0);
	assert_int_equal(pprof_add_sample(b, bogus, 1, v, NULL, 0), -EINVAL);
	assert_int_equal(pprof_add_mapping(b, 10, 5, 0, "x", NULL, false, NULL), -EINVAL);
	pprof_builder_free(b);
}

/* A symlink planted at DIR/NAME.tmp (DIR writable by someone else) must
 * not make the writer overwrite its target. */
static void write_never_follows_symlinks(void **state)
{
	char dir[] = "/tmp/memdrift-pprof-test-XXXXXX", canary[64], link[80], out[64], buf[16];
	const struct pprof_value_type t[] = { { "x", "count" } };
	struct pprof_builder *b;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(canary, sizeof(canary), "%s/canary", dir);
	snprintf(out, sizeof(out), "%s/heap.pb.gz", dir);
	snprintf(link, sizeof(link), "%s.tmp", out);
	f = fopen(canary, "w");
	assert_non_null(f);
	fputs("canary\n", f);
	fclose(f);
	assert_int_equal(symlink(canary, link), 0);
	assert_int_equal(pprof_builder_new(t, 1, &b), 0);
	assert_int_equal(pprof_write_file(b, out), 0);
	pprof_builder_free(b);
	f = fopen(canary, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "canary\n");
	assert_int_equal(access(link, F_OK), -1); /* the link itself is gone */
	f = fopen(out, "rb");
	assert_non_null(f);
	assert_int_equal(fgetc(f), 0x1f); /* gzip */
	fclose(f);
	unlink(out);
	unlink(canary);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(heap_profile_roundtrip),
		cmocka_unit_test(gzip_roundtrip),
		cmocka_unit_test(bad_input),
		cmocka_unit_test(write_never_follows_symlinks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

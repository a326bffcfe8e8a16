/* hsperfdata parsing on hand-built files in both byte orders (the layout of
 * JDK 17's perfMemory/perfData: 32-byte prologue, 20-byte entry headers),
 * G1-style counters, and malformed input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "watch/hsperf.h"

struct builder {
	uint8_t buf[16384];
	size_t len;
	int n;
	bool big;
};

static void put32(struct builder *b, size_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b->buf[off + (size_t)i] = (uint8_t)(b->big ? v >> (24 - 8 * i) : v >> (8 * i));
}

static void put64(struct builder *b, size_t off, uint64_t v)
{
	if (b->big) {
		put32(b, off, (uint32_t)(v >> 32));
		put32(b, off + 4, (uint32_t)v);
	} else {
		put32(b, off, (uint32_t)v);
		put32(b, off + 4, (uint32_t)(v >> 32));
	}
}

static void begin(struct builder *b, bool big)
{
	memset(b, 0, sizeof(*b));
	b->big = big;
	b->buf[0] = 0xca;
	b->buf[1] = 0xfe;
	b->buf[2] = 0xc0;
	b->buf[3] = 0xc0;
	b->buf[4] = big ? 0 : 1;
	b->buf[5] = 2; /* major */
	b->buf[6] = 0;
	b->buf[7] = 1; /* accessible */
	b->len = 32;
	put32(b, 24, 32);
}

static void entry(struct builder *b, const char *name, char type, int units, uint32_t vlen,
		  const void *data, size_t dlen)
{
	size_t off = b->len, name_off = 20, data_off = (20 + strlen(name) + 1 + 7) & ~(size_t)7;
	size_t elen = (data_off + dlen + 7) & ~(size_t)7;

	put32(b, off, (uint32_t)elen);
	put32(b, off + 4, (uint32_t)name_off);
	put32(b, off + 8, vlen);
	b->buf[off + 12] = (uint8_t)type;
	b->buf[off + 14] = (uint8_t)units;
	b->buf[off + 15] = 3;
	put32(b, off + 16, (uint32_t)data_off);
	memcpy(b->buf + off + name_off, name, strlen(name) + 1);
	memcpy(b->buf + off + data_off, data, dlen);
	b->len += elen;
	b->n++;
	put32(b, 8, (uint32_t)b->len);
	put32(b, 28, (uint32_t)b->n);
}

static void jlong_entry(struct builder *b, const char *name, int64_t v)
{
	uint8_t d[8];
	struct builder tmp = { .big = b->big };

	put64(&tmp, 0, (uint64_t)v);
	memcpy(d, tmp.buf, 8);
	entry(b, name, 'J', HSPERF_U_BYTES, 0, d, 8);
}

static void g1_like(struct builder *b, bool big)
{
	begin(b, big);
	entry(b, "sun.gc.policy.name", 'B', HSPERF_U_STRING, 13, "GarbageFirst", 13);
	jlong_entry(b, "sun.os.hrt.frequency", 1000000000);
	jlong_entry(b, "sun.gc.collector.0.invocations", 7);
	jlong_entry(b, "sun.gc.collector.0.time", 3000000);
	jlong_entry(b, "sun.gc.collector.1.invocations", 1);
	jlong_entry(b, "sun.gc.collector.1.time", 2000000);
	jlong_entry(b, "sun.gc.collector.2.invocations", 2);
	jlong_entry(b, "sun.gc.generation.0.capacity", 20971544);
	jlong_entry(b, "sun.gc.generation.0.space.0.used", 4194304);
	jlong_entry(b, "sun.gc.generation.0.space.0.capacity", 20971528);
	jlong_entry(b, "sun.gc.generation.0.space.1.used", 1048576);
	jlong_entry(b, "sun.gc.generation.1.capacity", 377487368);
	jlong_entry(b, "sun.gc.generation.1.space.0.used", 5000000);
	jlong_entry(b, "sun.gc.generation.0.agetable.bytes.00", 99); /* not a space */
	jlong_entry(b, "sun.gc.metaspace.used", 777);
	jlong_entry(b, "java.threads.live", 11);
	jlong_entry(b, "java.threads.daemon", 9);
}

static void check_g1(bool big)
{
	struct builder b;
	struct hsperf_stats s;
	char err[256];

	g1_like(&b, big);
	assert_int_equal(hsperf_stats_from_buffer(b.buf, b.len, &s, err, sizeof(err)), 0);
	assert_string_equal(s.gc_policy, "GarbageFirst");
	assert_int_equal(s.heap_used, 4194304 + 1048576 + 5000000);
	assert_int_equal(s.heap_capacity, 20971544 + 377487368);
	assert_int_equal(s.gc_count, 10);
	assert_int_equal(s.gc_young, 7);
	assert_int_equal(s.gc_full, 1);
	assert_int_equal(s.gc_time_ns, 5000000);
	assert_int_equal(s.metaspace_used, 777);
	assert_int_equal(s.threads_live, 11);
	assert_int_equal(s.threads_daemon, 9);
}

static void test_little_endian(void **state)
{
	(void)state;
	check_g1(false);
}

static void test_big_endian(void **state)
{
	(void)state;
	check_g1(true);
}

static void test_absent_counters(void **state)
{
	struct builder b;
	struct hsperf_stats s;
	char err[256];

	(void)state;
	begin(&b, false);
	jlong_entry(&b, "java.threads.live", 3);
	assert_int_equal(hsperf_stats_from_buffer(b.buf, b.len, &s, err, sizeof(err)), 0);
	assert_int_equal(s.threads_live, 3);
	assert_int_equal(s.heap_used, -1);
	assert_int_equal(s.gc_count, -1);
	assert_int_equal(s.gc_time_ns, -1);
}

static int count_cb(const struct hsperf_entry *e, void *ctx)
{
	(void)e;
	(*(int *)ctx)++;
	return 0;
}

static void test_malformed(void **state)
{
	struct builder b;
	struct hsperf_stats s;
	char err[256];
	int n = 0;

	(void)state;
	g1_like(&b, false);
	b.buf[0] = 0;
	assert_int_equal(hsperf_stats_from_buffer(b.buf, b.len, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "magic"));
	assert_int_equal(hsperf_stats_from_buffer(b.buf, 10, &s, err, sizeof(err)), -EINVAL);

	g1_like(&b, false);
	b.buf[5] = 9; /* version */
	assert_int_equal(hsperf_stats_from_buffer(b.buf, b.len, &s, err, sizeof(err)), -EINVAL);

	g1_like(&b, false);
	put32(&b, 24, 1u << 30); /* first entry beyond the file */
	assert_int_equal(hsperf_stats_from_buffer(b.buf, b.len, &s, err, sizeof(err)), -EINVAL);

	g1_like(&b, false);
	put32(&b, 32 + 4, 5000); /* name offset beyond the entry */
	assert_int_equal(hsperf_stats_from_buffer(b.buf, b.len, &s, err, sizeof(err)), -EINVAL);

	/* A file cut short (read while the JVM writes): the entries that fit. */
	g1_like(&b, false);
	assert_int_equal(hsperf_foreach(b.buf, 200, count_cb, &n, err, sizeof(err)), 0);
	assert_true(n > 0 && n < 17);
}

static void test_nspid_self(void **state)
{
	pid_t nspid = 0;

	(void)state;
	assert_int_equal(hsperf_nspid(getpid(), &nspid), 0);
	assert_true(nspid > 0);
	assert_int_equal(hsperf_find(getpid(), (char[256]){ 0 }, 256), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_little_endian), cmocka_unit_test(test_big_endian),
		cmocka_unit_test(test_absent_counters), cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_nspid_self),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

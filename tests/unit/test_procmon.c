/* procmon's pure logic: the in-kernel RSS throttle (the same inline function
 * the BPF program runs), ring-buffer record decoding, dev_t conversion and
 * the /proc/PID/status parser. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/sysmacros.h>

#include <cmocka.h>

#include "discover/procmon.h"

#define MIB (1024ull * 1024)
#define PAGE 4096ull

static void test_throttle_bounds(void **state)
{
	(void)state;
	/* no change is never due, even with both bounds off */
	assert_false(pm_rss_should_emit(5 * MIB, 5 * MIB, 0, 0));
	assert_true(pm_rss_should_emit(5 * MIB, 5 * MIB + PAGE, 0, 0));
	/* below 1 MiB: not due */
	assert_false(pm_rss_should_emit(0, MIB - PAGE, MIB, 10));
	assert_true(pm_rss_should_emit(0, MIB, MIB, 10));
	/* 50 MiB process: 1 MiB is 2% -> due */
	assert_true(pm_rss_should_emit(50 * MIB, 51 * MIB, MIB, 10));
	/* 500 MiB process: 1 MiB is 0.2% -> not due until 5 MiB */
	assert_false(pm_rss_should_emit(500 * MIB, 501 * MIB, MIB, 10));
	assert_false(pm_rss_should_emit(500 * MIB, 505 * MIB - PAGE, MIB, 10));
	assert_true(pm_rss_should_emit(500 * MIB, 505 * MIB, MIB, 10));
	/* shrinking counts the same way */
	assert_true(pm_rss_should_emit(500 * MIB, 495 * MIB, MIB, 10));
	assert_false(pm_rss_should_emit(500 * MIB, 499 * MIB, MIB, 10));
	/* percent off: bytes only */
	assert_true(pm_rss_should_emit(500 * MIB, 501 * MIB, MIB, 0));
	/* bytes off: percent only */
	assert_true(pm_rss_should_emit(10 * MIB, 10 * MIB + 103 * 1024, 0, 10));
	assert_false(pm_rss_should_emit(10 * MIB, 10 * MIB + 100 * 1024, 0, 10));
	/* huge values do not overflow: 1 TiB process, 1% = 10.24 GiB */
	assert_true(pm_rss_should_emit(1ull << 40, (1ull << 40) + (11ull << 30), MIB, 10));
	assert_false(pm_rss_should_emit(1ull << 40, (1ull << 40) + (10ull << 30), MIB, 10));
}

/* The kernel sees one rss_stat per page: replay 200 MiB page by page. */
static void test_throttle_replay_200mib(void **state)
{
	uint64_t last = 0, now, records = 0, pages = 200 * MIB / PAGE, i;

	(void)state;
	for (i = 1; i <= pages; i++) {
		now = i * PAGE;
		if (pm_rss_should_emit(last, now, PM_RSS_MIN_DELTA_BYTES, PM_RSS_MIN_DELTA_PERMILLE)) {
			records++;
			last = now;
		}
	}
	/* 1 MiB steps up to 100 MiB, then 1% steps: ~100 + ln(2)/ln(1.01) */
	assert_in_range(records, 150, 200);
	/* the last record trails the truth by less than one step (1%) */
	assert_true(200 * MIB - last < 2 * MIB + PAGE);
	print_message("# 200 MiB page by page: %llu records for %llu pages\n",
		      (unsigned long long)records, (unsigned long long)pages);
}

static void test_kernel_dev(void **state)
{
	(void)state;
	assert_true(procmon_kernel_dev(254u << 20) == makedev(254, 0));
	assert_true(procmon_kernel_dev((8u << 20) | 17) == makedev(8, 17));
	/* minor numbers above 255 (NVMe partitions, anonymous devs) */
	assert_true(procmon_kernel_dev((259u << 20) | 300) == makedev(259, 300));
	assert_int_equal(major(procmon_kernel_dev((259u << 20) | 300)), 259);
	assert_int_equal(minor(procmon_kernel_dev((259u << 20) | 300)), 300);
}

static void test_decode_exec(void **state)
{
	struct pm_exec_rec r;
	struct procmon_event ev;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.hdr.type = PM_REC_EXEC;
	r.hdr.tgid = 4242;
	r.hdr.ts_ns = 123456789;
	r.pid = 4242;
	r.old_pid = 4250;
	r.ppid = 1;
	r.exe_dev = (254u << 20) | 1;
	r.exe_ino = 99;
	/* a full-length comm without NUL must still come out terminated */
	memset(r.comm, 'c', sizeof(r.comm));
	strcpy(r.filename, "/usr/lib/go-1.24/bin/go");
	assert_int_equal(procmon_decode(&r, sizeof(r), &ev), 0);
	assert_int_equal(ev.type, PROCMON_EXEC);
	assert_int_equal(ev.tgid, 4242);
	assert_int_equal(ev.pid, 4242);
	assert_int_equal(ev.old_pid, 4250);
	assert_int_equal(ev.ppid, 1);
	assert_true(ev.ts_ns == 123456789);
	assert_true(ev.exe_dev == makedev(254, 1));
	assert_int_equal(ev.exe_ino, 99);
	assert_int_equal(strlen(ev.comm), PM_COMM_LEN);
	assert_string_equal(ev.filename, "/usr/lib/go-1.24/bin/go");
	assert_false(ev.initial);
	/* one byte short */
	assert_int_equal(procmon_decode(&r, sizeof(r) - 1, &ev), -EINVAL);
}

static void test_decode_exit_rss_fork_oom(void **state)
{
	struct pm_exit_rec x;
	struct pm_rss_rec r;
	struct pm_fork_rec f;
	struct pm_oom_rec o;
	struct procmon_event ev;

	(void)state;
	memset(&x, 0, sizeof(x));
	x.hdr.type = PM_REC_EXIT;
	x.hdr.tgid = 10;
	x.pid = 12;
	x.exit_code = 9;
	strcpy(x.comm, "parker");
	x.rss.bytes[PM_RSS_ANON] = 200 * MIB; /* not valid without the flag */
	assert_int_equal(procmon_decode(&x, sizeof(x), &ev), 0);
	assert_int_equal(ev.type, PROCMON_EXIT);
	assert_int_equal(ev.pid, 12);
	assert_int_equal(ev.exit_code, 9);
	assert_false(ev.rss_valid);
	assert_true(ev.rss.anon == 0);
	x.flags = PM_EXIT_F_RSS_VALID;
	assert_int_equal(procmon_decode(&x, sizeof(x), &ev), 0);
	assert_true(ev.rss_valid);
	assert_true(ev.rss.anon == 200 * MIB);

	memset(&r, 0, sizeof(r));
	r.hdr.type = PM_REC_RSS;
	r.hdr.tgid = 77;
	r.rss.bytes[PM_RSS_FILE] = 1;
	r.rss.bytes[PM_RSS_ANON] = 2;
	r.rss.bytes[PM_RSS_SWAP] = 3;
	r.rss.bytes[PM_RSS_SHMEM] = 4;
	assert_int_equal(procmon_decode(&r, sizeof(r), &ev), 0);
	assert_int_equal(ev.type, PROCMON_RSS);
	assert_int_equal(ev.pid, 77);
	assert_true(ev.rss_valid);
	assert_true(ev.rss.file == 1 && ev.rss.anon == 2 && ev.rss.swap == 3 && ev.rss.shmem == 4);

	memset(&f, 0, sizeof(f));
	f.hdr.type = PM_REC_FORK;
	f.hdr.tgid = 501;
	f.parent_tgid = 500;
	strcpy(f.comm, "sh");
	assert_int_equal(procmon_decode(&f, sizeof(f), &ev), 0);
	assert_int_equal(ev.type, PROCMON_FORK);
	assert_int_equal(ev.tgid, 501);
	assert_int_equal(ev.ppid, 500);
	assert_string_equal(ev.comm, "sh");

	memset(&o, 0, sizeof(o));
	o.hdr.type = PM_REC_OOM;
	o.hdr.tgid = 900;
	o.pid = 903;
	o.uid = 1000;
	o.oom_score_adj = -500;
	o.total_vm = 80 * MIB;
	o.rss.bytes[PM_RSS_ANON] = 64 * MIB;
	assert_int_equal(procmon_decode(&o, sizeof(o), &ev), 0);
	assert_false(ev.rss_valid); /* old kernels: pid only */
	o.flags = PM_OOM_F_TASK;
	assert_int_equal(procmon_decode(&o, sizeof(o), &ev), 0);
	assert_int_equal(ev.type, PROCMON_OOM);
	assert_int_equal(ev.tgid, 900);
	assert_int_equal(ev.pid, 903);
	assert_int_equal(ev.uid, 1000);
	assert_int_equal(ev.oom_score_adj, -500);
	assert_true(ev.total_vm == 80 * MIB);
	assert_true(ev.rss_valid && ev.rss.anon == 64 * MIB);
}

static void test_decode_bad(void **state)
{
	struct pm_hdr h = { .type = 99, .tgid = 1 };
	struct procmon_event ev;
	char tiny[4] = { 1, 0, 0, 0 };

	(void)state;
	assert_int_equal(procmon_decode(&h, sizeof(h), &ev), -EINVAL);
	assert_int_equal(procmon_decode(tiny, sizeof(tiny), &ev), -EINVAL);
	h.type = PM_REC_RSS; /* a header alone is short for any record */
	assert_int_equal(procmon_decode(&h, sizeof(h), &ev), -EINVAL);
}

static void test_parse_status(void **state)
{
	const char *status =
		"Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n"
		"VmPeak:\t  222000 kB\nVmRSS:\t  211672 kB\nRssAnon:\t  204800 kB\n"
		"RssFile:\t    6848 kB\nRssShmem:\t      24 kB\nVmData:\t  210000 kB\n"
		"VmSwap:\t      12 kB\nThreads:\t1\n";
	const char *kthread = "Name:\tkthreadd\nState:\tS (sleeping)\nTgid:\t2\nThreads:\t1\n";
	struct procmon_rss r;

	(void)state;
	assert_int_equal(procmon_parse_status(status, &r), 0);
	assert_true(r.anon == 204800ull * 1024);
	assert_true(r.file == 6848ull * 1024);
	assert_true(r.shmem == 24ull * 1024);
	assert_true(r.swap == 12ull * 1024);
	assert_int_equal(procmon_parse_status(kthread, &r), -EINVAL);
	assert_int_equal(procmon_parse_status("RssAnon:\tgarbage\n", &r), -EINVAL);
	/* a key that only starts the same way is not matched */
	assert_int_equal(procmon_parse_status("RssAnonX:\t5 kB\n", &r), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_throttle_bounds),
		cmocka_unit_test(test_throttle_replay_200mib),
		cmocka_unit_test(test_kernel_dev),
		cmocka_unit_test(test_decode_exec),
		cmocka_unit_test(test_decode_exit_rss_fork_oom),
		cmocka_unit_test(test_decode_bad),
		cmocka_unit_test(test_parse_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

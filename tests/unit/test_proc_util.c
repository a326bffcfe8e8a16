/* /proc parsers and the small parsing helpers: fed fixtures, not the live /proc. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/util.h"
#include "discover/proc.h"

static void test_maps_find_start(void **state)
{
	/* a pathless mapping (anon) must not swallow the next line */
	static const char maps[] =
		"00400000-00401000 r--p 00000000 08:01 1234 /usr/bin/app\n"
		"7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n"
		"55d000000000-55d000010000 r--p 00000000 08:01 5678 /usr/bin/pie\n"
		"55d000010000-55d000020000 r-xp 00010000 08:01 5678 /usr/bin/pie\n";
	uint64_t start = 0;

	assert_int_equal(proc_maps_find_start(maps, makedev(8, 1), 5678, &start), 0);
	assert_int_equal(start, 0x55d000000000ull);
	assert_int_equal(proc_maps_find_start(maps, makedev(8, 1), 1234, &start), 0);
	assert_int_equal(start, 0x400000ull);
	assert_int_equal(proc_maps_find_start(maps, makedev(8, 2), 1234, &start), -ENOENT);
	assert_int_equal(proc_maps_find_start(maps, makedev(8, 1), 999, &start), -ENOENT);
	assert_int_equal(proc_maps_find_start("garbage\n\n", makedev(8, 1), 1, &start), -ENOENT);
}

struct seen {
	struct proc_map m[8];
	char path[8][64];
	int n, stop_at;
};

static int collect(const struct proc_map *m, void *ctx)
{
	struct seen *s = ctx;

	if (s->n == 8)
		return -1;
	s->m[s->n] = *m;
	snprintf(s->path[s->n], sizeof(s->path[0]), "%.*s", (int)m->path_len, m->path);
	return ++s->n == s->stop_at ? 7 : 0;
}

static void test_maps_foreach(void **state)
{
	/* the one maps parser: fields, anonymous and deleted mappings, a
	 * malformed line skipped, the last line without a newline */
	static const char maps[] =
		"00400000-00401000 r-xp 00001000 08:01 1234     /usr/bin/my app\n"
		"7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n"
		"not a maps line\n"
		"7f0000002000-7f0000003000 rw-s 00000000 00:05 77 /tmp/hsperfdata_x/1 (deleted)";
	struct seen s = { .stop_at = -1 };

	assert_int_equal(proc_maps_foreach(maps, collect, &s), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.m[0].start, 0x400000);
	assert_int_equal(s.m[0].end, 0x401000);
	assert_int_equal(s.m[0].offset, 0x1000);
	assert_string_equal(s.m[0].perms, "r-xp");
	assert_true(s.m[0].dev == makedev(8, 1));
	assert_int_equal(s.m[0].ino, 1234);
	assert_string_equal(s.path[0], "/usr/bin/my app");
	assert_string_equal(s.path[1], "");
	assert_int_equal(s.m[1].ino, 0);
	assert_string_equal(s.path[2], "/tmp/hsperfdata_x/1 (deleted)");
	/* a callback's non-zero return stops the walk and is returned */
	s = (struct seen){ .stop_at = 2 };
	assert_int_equal(proc_maps_foreach(maps, collect, &s), 7);
	assert_int_equal(s.n, 2);
	/* the executable text mapping of (dev, ino) */
	uint64_t st, en, off;
	assert_int_equal(proc_maps_find_text(maps, makedev(8, 1), 1234, &st, &en, &off), 0);
	assert_int_equal(off, 0x1000);
	assert_int_equal(proc_maps_find_text(maps, makedev(0, 5), 77, &st, &en, &off), -ENOENT);
}

static void test_container_id(void **state)
{
	static const char docker[] =
		"0::/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n";
	static const char k8s[] =
		"12:memory:/kubepods/burstable/pod0a1b2c3d-0000-4111-8222-123456789abc/"
		"fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210\n";
	static const char k8s_systemd[] =
		"0::/kubepods.slice/kubepods-besteffort.slice/"
		"kubepods-besteffort-pod0a1b2c3d_0000_4111_8222_123456789abc.slice/"
		"cri-containerd-fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210.scope\n";
	static const char podman[] =
		"4:memory:/libpod_parent/libpod-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n";
	struct proc_container c;

	assert_int_equal(proc_parse_container(docker, &c), 0);
	assert_string_equal(c.id, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_string_equal(c.pod_uid, "");
	assert_int_equal(proc_parse_container(k8s, &c), 0);
	assert_string_equal(c.id, "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
	assert_string_equal(c.pod_uid, "0a1b2c3d-0000-4111-8222-123456789abc");
	assert_int_equal(proc_parse_container(k8s_systemd, &c), 0);
	assert_string_equal(c.id, "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
	assert_string_equal(c.pod_uid, "0a1b2c3d-0000-4111-8222-123456789abc");
	assert_int_equal(proc_parse_container(podman, &c), 0);
	assert_string_equal(c.id, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(proc_parse_container("0::/user.slice/session-1.scope\n", &c), -ENOENT);
	assert_string_equal(c.id, "");
	/* 65 hex digits is not an id; a short pod<...> is not a uid */
	assert_int_equal(proc_parse_container(
		"0::/x/pod1/00123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", &c),
		-ENOENT);
	assert_string_equal(c.pod_uid, "");
}

static void test_make_dirs(void **state)
{
	char base[] = "/tmp/memdrift-test-dirs-XXXXXX", path[256], file[256];
	struct stat st;
	FILE *f;

	assert_non_null(mkdtemp(base));
	snprintf(path, sizeof(path), "%s/a/b/c", base);
	assert_int_equal(make_dirs(path, 0700), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(make_dirs(path, 0700), 0); /* exists: fine */
	snprintf(file, sizeof(file), "%s/file", base);
	f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(make_dirs(file, 0700), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/file/sub", base);
	assert_int_equal(make_dirs(path, 0700), -ENOTDIR);
	assert_int_equal(make_dirs("", 0700), -EINVAL);
	unlink(file);
	for (const char *sub = "/a/b/c"; ; ) {
		snprintf(path, sizeof(path), "%s%s", base, sub);
		assert_int_equal(rmdir(path), 0);
		if (!strcmp(sub, ""))
			break;
		sub = !strcmp(sub, "/a/b/c") ? "/a/b" : !strcmp(sub, "/a/b") ? "/a" : "";
	}
}

static void test_parse_pid(void **state)
{
	pid_t pid;

	assert_int_equal(parse_pid("1234", &pid), 0);
	assert_int_equal(pid, 1234);
	assert_int_equal(parse_pid("0", &pid), -EINVAL);
	assert_int_equal(parse_pid("-1", &pid), -EINVAL);
	assert_int_equal(parse_pid("12abc", &pid), -EINVAL);
	assert_int_equal(parse_pid("", &pid), -EINVAL);
	assert_int_equal(parse_pid("99999999999999999999", &pid), -EINVAL);
}

static void test_parse_duration_size(void **state)
{
	uint64_t v;

	assert_int_equal(parse_duration_ns("2s", &v), 0);
	assert_int_equal(v, 2000000000ull);
	assert_int_equal(parse_duration_ns("500ms", &v), 0);
	assert_int_equal(v, 500000000ull);
	assert_int_equal(parse_duration_ns("10m", &v), 0);
	assert_int_equal(v, 600000000000ull);
	assert_int_equal(parse_duration_ns("3", &v), 0);
	assert_int_equal(v, 3000000000ull);
	assert_int_equal(parse_duration_ns("10x", &v), -EINVAL);
	assert_int_equal(parse_duration_ns("-1s", &v), -EINVAL);
	assert_int_equal(parse_size("64MiB", &v), 0);
	assert_int_equal(v, 64ull << 20);
	assert_int_equal(parse_size("1g", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(parse_size("12 parsecs", &v), -EINVAL);
}

static void test_fmt(void **state)
{
	char b[32];

	assert_string_equal(fmt_bytes(b, sizeof(b), 512), "512 B");
	assert_string_equal(fmt_bytes(b, sizeof(b), 3 << 20), "3.0 MiB");
	assert_string_equal(fmt_duration(b, sizeof(b), 75000000000ull), "1m15s");
	assert_string_equal(path_base("/a/b/c.go"), "c.go");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_maps_find_start),
		cmocka_unit_test(test_maps_foreach),
		cmocka_unit_test(test_container_id),
		cmocka_unit_test(test_make_dirs),
		cmocka_unit_test(test_parse_pid),
		cmocka_unit_test(test_parse_duration_size),
		cmocka_unit_test(test_fmt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

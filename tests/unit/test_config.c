/* Config: every key parses, bad values name file:line:key, unknown keys and
 * sections are errors, a failed load never touches the running config, the
 * written reference reads back to the same values and is the shipped example. */
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

#include "service/config.h"

#define SEC 1000000000ull

static char err[CONFIG_ERR_MAX];

/* A value for every key that differs from its default. */
static const char *const all_keys[][2] = {
	{ "metrics.listen", "[::1]:9100" },
	{ "metrics.unix_socket", "/run/memdrift/memdrift.sock" },
	{ "metrics.token_file", "/etc/memdrift/token" },
	{ "metrics.tls_cert", "/etc/memdrift/cert.pem" },
	{ "metrics.tls_key", "/etc/memdrift/key.pem" },
	{ "metrics.insecure_listen", "true" },
	{ "metrics.max_connections", "128" },
	{ "metrics.max_connections_per_ip", "0" },
	{ "metrics.timeout", "30s" },
	{ "alerts.file", "/var/log/memdrift/alerts.json" },
	{ "alerts.stdout", "no" },
	{ "alerts.hysteresis", "5" },
	{ "alerts.rate_limit", "0" },
	{ "alerts.rate_interval", "5m" },
	{ "alerts.max_active", "64" },
	{ "state.dir", "/srv/memdrift" },
	{ "state.postmortem_max_count", "10" },
	{ "state.postmortem_max_bytes", "1GiB" },
	{ "select.go", "off" },
	{ "select.jvm", "false" },
	{ "select.include_comm", "api-*, worker" },
	{ "select.exclude_comm", "gopls" },
	{ "select.include_exe", "/usr/local/bin/*" },
	{ "select.exclude_exe", "/usr/bin/dockerd" },
	{ "select.include_cgroup", "/kubepods.slice/*" },
	{ "select.exclude_cgroup", "/system.slice/*" },
	{ "detect.window", "30m" },
	{ "detect.interval", "30s" },
	{ "detect.min_points", "20" },
	{ "detect.max_points", "200" },
	{ "detect.p_threshold", "0.001" },
	{ "detect.persist_fraction", "0.25" },
	{ "detect.critical_factor", "8" },
	{ "detect.min_slope.goroutines", "0.05" },
	{ "detect.min_slope.go_heap", "1MiB/s" },
	{ "detect.min_slope.native", "512KiB" },
	{ "detect.min_slope.jni_refs", "2" },
	{ "detect.min_slope.rss", "2MiB/s" },
	{ "detect.rss_k", "4.5" },
	{ "goroutine.blocked_min_age", "5m" },
	{ "goroutine.blocked_fraction", "0.75" },
	{ "native.min_oldest_age", "10m" },
	{ "trace.on_drift", "true" },
	{ "trace.duration", "2m" },
	{ "trace.cpu_budget", "0.5" },
	{ "limits.max_processes", "100" },
	{ "limits.max_sites", "64" },
	{ "limits.max_native_allocations", "1048576" },
	{ "limits.label_cardinality", "500" },
	{ "limits.series_points", "480" },
};
#define N_ALL (sizeof(all_keys) / sizeof(all_keys[0]))

static void defaults_are_documented_values(void **state)
{
	struct memdrift_config c;
	struct detect_params d;
	struct alert_params a;

	config_defaults(&c);
	detect_params_defaults(&d);
	alert_params_defaults(&a);
	assert_string_equal(c.metrics_listen, "127.0.0.1:9464");
	assert_string_equal(c.state_dir, "/var/lib/memdrift");
	assert_string_equal(c.alerts_file, "");
	assert_true(c.alerts_stdout);
	assert_int_equal(c.detect.window_ns, 600 * SEC);
	assert_int_equal(c.interval_ns, 15 * SEC);
	assert_false(c.trace_on_drift);
	/* detect.c and alert.c keep their own defaults for tests: same values */
	assert_memory_equal(&c.detect, &d, sizeof(d));
	assert_memory_equal(&c.alert, &a, sizeof(a));
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
}

static void every_key_parses(void **state)
{
	struct memdrift_config c, def;
	char text[8192];
	size_t pos = 0;

	config_defaults(&def);
	/* set one by one: each must change the struct */
	for (size_t i = 0; i < N_ALL; i++) {
		config_defaults(&c);
		if (config_set(&c, all_keys[i][0], all_keys[i][1], err, sizeof(err)))
			fail_msg("%s", err);
		if (!memcmp(&c, &def, sizeof(c)))
			fail_msg("%s = %s changed nothing", all_keys[i][0], all_keys[i][1]);
	}
	/* and all at once from a file, fully qualified keys */
	for (size_t i = 0; i < N_ALL; i++)
		pos += snprintf(text + pos, sizeof(text) - pos, "%s = %s\n", all_keys[i][0],
				all_keys[i][1]);
	/* go and jvm both off would watch nothing: a later line wins */
	snprintf(text + pos, sizeof(text) - pos, "select.go = on\n");
	config_defaults(&c);
	if (config_parse_buffer("t.conf", text, &c, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_string_equal(c.metrics_listen, "[::1]:9100");
	assert_false(c.alerts_stdout);
	assert_true(c.select_go);
	assert_false(c.select_jvm);
	assert_int_equal(c.alert.rate_interval_ns, 300 * SEC);
	assert_int_equal(c.include_comm.count, 2);
	assert_string_equal(c.include_comm.pattern[0], "api-*");
	assert_string_equal(c.include_comm.pattern[1], "worker");
	assert_int_equal(c.detect.window_ns, 1800 * SEC);
	assert_true(c.detect.min_slope[DRIFT_GO_HEAP_GROWTH] == 1048576.0);
	assert_true(c.detect.min_slope[DRIFT_NATIVE_LEAK] == 524288.0);
	assert_true(c.detect.rss_k == 4.5);
	assert_int_equal(c.max_native_allocations, 1048576);
	assert_int_equal(c.series_points, 480);
	assert_int_equal(c.postmortem_max_bytes, 1ull << 30);
	assert_int_equal(c.metrics_timeout_ns, 30 * SEC);
	assert_int_equal(c.metrics_max_connections_per_ip, 0);
}

static void sections_comments_quotes(void **state)
{
	struct memdrift_config c;
	const char *text = "# a comment\n"
			   "\n"
			   "  ; another\n"
			   "[detect]\n"
			   "window = 20m   # trailing comment\n"
			   "min_slope.goroutines=0.5\n"
			   "[select]\n"
			   "include_comm = \"a#b, c\"  # quoted keeps the #\n"
			   "exclude_exe = /opt/x#1\n"
			   "[alerts]\n"
			   "file = \"\"\n";

	config_defaults(&c);
	if (config_parse_buffer("t.conf", text, &c, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(c.detect.window_ns, 1200 * SEC);
	assert_true(c.detect.min_slope[DRIFT_GOROUTINE_LEAK] == 0.5);
	assert_int_equal(c.include_comm.count, 2);
	assert_string_equal(c.include_comm.pattern[0], "a#b");
	assert_string_equal(c.exclude_exe.pattern[0], "/opt/x#1");
	assert_string_equal(c.alerts_file, "");
}

static void expect_error(const char *text, const char *want)
{
	struct memdrift_config c;

	config_defaults(&c);
	assert_int_not_equal(config_parse_buffer("/etc/memdrift.conf", text, &c, err, sizeof(err)), 0);
	assert_string_equal(err, want);
}

static void bad_values_name_file_line_key(void **state)
{
	expect_error("# x\n\n\n\n\n\n\n\n\n\n\n[detect]\nwindow = 10x\n",
		     "/etc/memdrift.conf:13: detect.window: '10x' is not a duration (e.g. 500ms, 15s, 10m, 1h)");
	expect_error("detect.min_points = 3\n",
		     "/etc/memdrift.conf:1: detect.min_points: '3' is out of range (9 to 512)");
	expect_error("detect.min_points = -3\n",
		     "/etc/memdrift.conf:1: detect.min_points: '-3' is not a whole number");
	expect_error("detect.window = 1s\n",
		     "/etc/memdrift.conf:1: detect.window: '1s' is out of range (10s to 604800s)");
	expect_error("detect.p_threshold = 0.7\n",
		     "/etc/memdrift.conf:1: detect.p_threshold: '0.7' is out of range (1e-12 to 0.5)");
	expect_error("detect.rss_k = nan\n", "/etc/memdrift.conf:1: detect.rss_k: 'nan' is not a number");
	expect_error("detect.min_slope.rss = fast\n",
		     "/etc/memdrift.conf:1: detect.min_slope.rss: 'fast' is not a byte rate (e.g. 100KiB/s)");
	expect_error("alerts.stdout = maybe\n",
		     "/etc/memdrift.conf:1: alerts.stdout: 'maybe' is not a boolean (true or false)");
	expect_error("metrics.listen = localhost\n",
		     "/etc/memdrift.conf:1: metrics.listen: 'localhost' is not an address (host:port)");
	expect_error("metrics.listen = 127.0.0.1:99999\n",
		     "/etc/memdrift.conf:1: metrics.listen: '127.0.0.1:99999' is not an address (host:port)");
	expect_error("state.dir = relative/dir\n",
		     "/etc/memdrift.conf:1: state.dir: 'relative/dir' is not an absolute path");
	expect_error("state.dir = \"\"\n", "/etc/memdrift.conf:1: state.dir: '' is not an absolute path");
	expect_error("select.include_comm = a,,b\n",
		     "/etc/memdrift.conf:1: select.include_comm: 'a,,b' has an empty pattern");
	expect_error("select.include_comm = a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\n",
		     "/etc/memdrift.conf:1: select.include_comm: 'a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q' has more than 16 patterns");
}

static void unknown_keys_and_syntax_are_errors(void **state)
{
	expect_error("\ndetect.windw = 10m\n", "/etc/memdrift.conf:2: detect.windw: unknown key");
	expect_error("[detect]\nwindw = 10m\n", "/etc/memdrift.conf:2: detect.windw: unknown key");
	expect_error("[detcet]\n", "/etc/memdrift.conf:1: [detcet]: unknown section");
	expect_error("[detect\n", "/etc/memdrift.conf:1: [detect: expected [section]");
	expect_error("window 10m\n", "/etc/memdrift.conf:1: expected 'key = value'");
	expect_error("= 10m\n", "/etc/memdrift.conf:1: expected 'key = value'");
	expect_error("alerts.file = \"/x\n", "/etc/memdrift.conf:1: alerts.file: unterminated quote");
}

static void set_flags_override(void **state)
{
	struct memdrift_config c;

	config_defaults(&c);
	assert_int_equal(config_set_arg(&c, "detect.window=1m", err, sizeof(err)), 0);
	assert_int_equal(c.detect.window_ns, 60 * SEC);
	assert_int_equal(config_set_arg(&c, "detect.window=10x", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "--set: detect.window: '10x' is not a duration (e.g. 500ms, 15s, 10m, 1h)");
	assert_int_equal(config_set_arg(&c, "nope=1", err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "--set: nope: unknown key");
	assert_int_equal(config_set_arg(&c, "detect.window", err, sizeof(err)), -EINVAL);
	assert_int_equal(config_set(&c, "nope", "1", err, sizeof(err)), -ENOENT);
}

static void cross_key_validation(void **state)
{
	struct memdrift_config c;

	config_defaults(&c);
	config_set(&c, "detect.min_points", "200", NULL, 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "detect.min_points: 200 is more than detect.max_points (120)");
	config_defaults(&c);
	config_set(&c, "detect.interval", "5m", NULL, 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	config_defaults(&c);
	config_set(&c, "detect.interval", "1s", NULL, 0); /* 601 points in 10m > 240 */
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "limits.series_points"));
	config_defaults(&c);
	config_set(&c, "select.go", "false", NULL, 0);
	config_set(&c, "select.jvm", "false", NULL, 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
}

/* Who may reach the endpoint is decided at config time. */
static void endpoint_policy(void **state)
{
	static const char *const loopback[] = { "127.0.0.1:9464", "127.1.2.3:1", "[::1]:9464",
						"localhost:9464" };
	static const char *const open[] = { "0.0.0.0:9464", "10.0.0.1:9464", "[::]:9464",
					    "127.0.0.1.example:9464", "localhostx:1" };
	struct memdrift_config c;

	for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
		config_defaults(&c);
		assert_int_equal(config_set(&c, "metrics.listen", loopback[i], err, sizeof(err)), 0);
		if (config_validate(&c, err, sizeof(err)))
			fail_msg("%s: %s", loopback[i], err);
	}
	for (size_t i = 0; i < sizeof(open) / sizeof(open[0]); i++) {
		config_defaults(&c);
		assert_int_equal(config_set(&c, "metrics.listen", open[i], err, sizeof(err)), 0);
		assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "metrics.insecure_listen"));
		/* TLS alone or a token alone is not enough */
		config_set(&c, "metrics.tls_cert", "/c.pem", NULL, 0);
		config_set(&c, "metrics.tls_key", "/k.pem", NULL, 0);
		assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
		config_set(&c, "metrics.token_file", "/t", NULL, 0);
		assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
		config_defaults(&c);
		config_set(&c, "metrics.listen", open[i], NULL, 0);
		config_set(&c, "metrics.insecure_listen", "yes", NULL, 0);
		assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	}
	config_defaults(&c);
	config_set(&c, "metrics.tls_key", "/k.pem", NULL, 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metrics.tls_cert: metrics.tls_cert and metrics.tls_key go together");
	config_defaults(&c);
	assert_int_equal(config_set(&c, "metrics.unix_socket",
				    "/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock", err, sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	config_defaults(&c);
	assert_int_equal(config_set(&c, "state.postmortem_max_bytes", "1KiB", err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "state.postmortem_max_bytes: '1KiB' is out of range (1048576B to "
				 "1099511627776B)");
	assert_int_equal(config_set(&c, "state.postmortem_max_bytes", "lots", err, sizeof(err)),
			 -EINVAL);
}

static char *write_tmp(const char *text)
{
	static char path[64];
	int fd;

	strcpy(path, "/tmp/memdrift-test-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void failed_reload_keeps_running_config(void **state)
{
	struct memdrift_config running, saved;
	const char *sets[] = { "detect.window=2m", "detect.interval=1s" };
	char *path;

	path = write_tmp("[detect]\nwindow = 20m\n");
	assert_int_equal(config_load(path, &running, err, sizeof(err)), 0);
	assert_int_equal(running.detect.window_ns, 1200 * SEC);
	unlink(path);
	saved = running;

	path = write_tmp("[detect]\nwindow = 5m\ninterval = bogus\n");
	assert_int_equal(config_load(path, &running, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ":3: detect.interval: 'bogus' is not a duration"));
	assert_memory_equal(&running, &saved, sizeof(running));
	unlink(path);

	/* cross-key failure also leaves it alone, and names the file */
	path = write_tmp("detect.min_points = 300\n");
	assert_int_equal(config_load(path, &running, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ": detect.min_points: 300 is more than"));
	assert_memory_equal(&running, &saved, sizeof(running));
	unlink(path);

	assert_true(config_load("/nonexistent/memdrift.conf", &running, err, sizeof(err)) == -ENOENT);
	assert_string_equal(err, "/nonexistent/memdrift.conf: No such file or directory");
	assert_memory_equal(&running, &saved, sizeof(running));

	/* --set applies after the file, and validation sees both */
	path = write_tmp("detect.window = 20m\n");
	assert_int_equal(config_load_with(path, sets, 2, &running, err, sizeof(err)), 0);
	assert_int_equal(running.detect.window_ns, 120 * SEC);
	assert_int_equal(running.interval_ns, SEC);
	unlink(path);
}

static void written_config_reads_back(void **state)
{
	struct memdrift_config c, back;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	config_defaults(&c);
	for (size_t i = 0; i < N_ALL; i++)
		config_set(&c, all_keys[i][0], all_keys[i][1], NULL, 0);
	f = open_memstream(&buf, &len);
	assert_int_equal(config_write(f, &c), 0);
	fclose(f);
	config_defaults(&back);
	if (config_parse_buffer("written", buf, &back, err, sizeof(err)))
		fail_msg("%s", err);
	assert_memory_equal(&c, &back, sizeof(c));
	free(buf);
}

/* The shipped example is exactly the written defaults: regenerate it when a
 * key changes (config_write of config_defaults). */
static void example_is_the_written_defaults(void **state)
{
	struct memdrift_config c, loaded;
	char *buf = NULL, *file = malloc(1 << 16);
	size_t len = 0, n;
	FILE *f;

	config_defaults(&c);
	f = open_memstream(&buf, &len);
	config_write(f, &c);
	fclose(f);
	f = fopen("daemon/service/memdrift.conf.example", "r");
	if (!f)
		f = fopen("../../daemon/service/memdrift.conf.example", "r");
	assert_non_null(f);
	n = fread(file, 1, (1 << 16) - 1, f);
	fclose(f);
	file[n] = '\0';
	assert_string_equal(file, buf);
	if (config_load("daemon/service/memdrift.conf.example", &loaded, err, sizeof(err)) == 0)
		assert_memory_equal(&loaded, &c, sizeof(c));
	free(buf);
	free(file);
}

static void selectors(void **state)
{
	struct memdrift_config c;

	config_defaults(&c);
	assert_true(config_selects(&c, "api", "/usr/bin/api", "/"));
	config_set(&c, "select.include_comm", "api-*,worker", NULL, 0);
	config_set(&c, "select.exclude_cgroup", "/system.slice/*", NULL, 0);
	assert_true(config_selects(&c, "api-1", "/x", "/kubepods/pod1"));
	assert_false(config_selects(&c, "other", "/x", "/kubepods/pod1"));
	assert_false(config_selects(&c, "worker", "/x", "/system.slice/worker.service"));
	assert_true(config_selects(&c, "worker", "/x", NULL));
	config_set(&c, "select.include_exe", "/opt/*", NULL, 0);
	assert_true(config_selects(&c, "worker", "/opt/a/b/worker", NULL)); /* '*' crosses '/' */
	assert_false(config_selects(&c, "worker", NULL, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_are_documented_values),
		cmocka_unit_test(every_key_parses),
		cmocka_unit_test(sections_comments_quotes),
		cmocka_unit_test(bad_values_name_file_line_key),
		cmocka_unit_test(unknown_keys_and_syntax_are_errors),
		cmocka_unit_test(set_flags_override),
		cmocka_unit_test(cross_key_validation),
		cmocka_unit_test(endpoint_policy),
		cmocka_unit_test(failed_reload_keeps_running_config),
		cmocka_unit_test(written_config_reads_back),
		cmocka_unit_test(example_is_the_written_defaults),
		cmocka_unit_test(selectors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

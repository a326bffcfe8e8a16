/* Alert lifecycle (one record per key while firing, hysteresis, escalation,
 * rate limit, bound), JSON rendering parsed back with json-c, and the
 * correlation sentence. */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "detect/alert.h"

#define SEC 1000000000ull
#define MIB (1024.0 * 1024.0)

struct sink {
	int n;
	struct alert_record last;
	struct alert_record all[16];
};

static void collect(const struct alert_record *rec, void *ctx)
{
	struct sink *s = ctx;

	if (s->n < 16)
		s->all[s->n] = *rec;
	s->n++;
	s->last = *rec;
}

static struct alert_observation obs(pid_t pid, uint64_t site, enum drift_severity sev)
{
	return (struct alert_observation){ .pid = pid, .comm = "svc", .kind = DRIFT_GOROUTINE_LEAK,
					   .site_id = site, .severity = sev, .summary = "s" };
}

/* One evaluation 15 s after the previous one. */
static int step(struct alert_table *t, const struct alert_observation *o, uint64_t *now,
		struct sink *s)
{
	*now += 15 * SEC;
	return alert_table_update(t, o, *now, *now, collect, s);
}

static struct alert_table *table(uint32_t hysteresis, uint32_t rate, uint32_t max)
{
	struct alert_params p = { hysteresis, rate, 60 * SEC, max };
	struct alert_table *t = alert_table_new(&p);

	assert_non_null(t);
	return t;
}

static void fires_once_resolves_after_hysteresis(void **state)
{
	struct alert_table *t = table(3, 0, 8);
	struct alert_observation f = obs(10, 1, DRIFT_WARNING), c = obs(10, 1, DRIFT_CLEAR);
	struct sink s = { 0 };
	uint64_t now = SEC;

	for (int i = 0; i < 5; i++)
		step(t, &f, &now, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.last.state, ALERT_FIRING);
	/* two clears, then it fires again: the streak starts over */
	step(t, &c, &now, &s);
	step(t, &c, &now, &s);
	step(t, &f, &now, &s);
	step(t, &c, &now, &s);
	step(t, &c, &now, &s);
	assert_int_equal(s.n, 1);
	c.summary = "cleared";
	assert_int_equal(step(t, &c, &now, &s), 1);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.last.state, ALERT_RESOLVED);
	assert_string_equal(s.last.summary, "cleared");
	assert_int_equal(alert_table_counters(t)->active, 0);
	assert_int_equal(alert_table_counters(t)->fired, 1);
	assert_int_equal(alert_table_counters(t)->resolved, 1);
	/* a later clear of a key that is not firing emits nothing */
	assert_int_equal(step(t, &c, &now, &s), 0);
	/* and the key can fire again */
	assert_int_equal(step(t, &f, &now, &s), 1);
	assert_int_equal(s.n, 3);
	alert_table_free(t);
}

static void keys_are_pid_kind_site(void **state)
{
	struct alert_table *t = table(1, 0, 8);
	struct alert_observation a = obs(10, 1, DRIFT_WARNING), b = a, c = a, d = a;
	struct sink s = { 0 };

	b.site_id = 2;
	c.pid = 11;
	d.kind = DRIFT_NATIVE_LEAK;
	alert_table_update(t, &a, SEC, SEC, collect, &s);
	alert_table_update(t, &b, SEC, SEC, collect, &s);
	alert_table_update(t, &c, SEC, SEC, collect, &s);
	alert_table_update(t, &d, SEC, SEC, collect, &s);
	alert_table_update(t, &a, SEC, SEC, collect, &s);
	assert_int_equal(s.n, 4);
	assert_int_equal(alert_table_counters(t)->active, 4);
	a.pid = 0;
	assert_int_equal(alert_table_update(t, &a, SEC, SEC, collect, &s), -EINVAL);
	alert_table_free(t);
}

static void escalation_is_reemitted_once(void **state)
{
	struct alert_table *t = table(2, 0, 8);
	struct alert_observation w = obs(10, 1, DRIFT_WARNING), c = obs(10, 1, DRIFT_CRITICAL);
	struct sink s = { 0 };

	alert_table_update(t, &w, SEC, SEC, collect, &s);
	alert_table_update(t, &c, 2 * SEC, 2 * SEC, collect, &s);
	alert_table_update(t, &c, 3 * SEC, 3 * SEC, collect, &s);
	alert_table_update(t, &w, 4 * SEC, 4 * SEC, collect, &s); /* no downgrade record */
	assert_int_equal(s.n, 2);
	assert_int_equal(s.all[1].severity, DRIFT_CRITICAL);
	assert_int_equal(s.all[1].state, ALERT_FIRING);
	assert_int_equal(alert_table_counters(t)->escalated, 1);
	assert_int_equal(alert_table_counters(t)->fired, 1);
	alert_table_free(t);
}

static void rate_limit_is_honoured(void **state)
{
	struct alert_table *t = table(1, 2, 64);
	struct sink s = { 0 };
	struct alert_observation o;

	/* 5 new keys at once: a burst of 2 */
	for (int k = 1; k <= 5; k++) {
		o = obs(10, k, DRIFT_WARNING);
		alert_table_update(t, &o, 100 * SEC, 100 * SEC, collect, &s);
	}
	assert_int_equal(s.n, 2);
	assert_int_equal(alert_table_counters(t)->rate_limited, 3);
	/* 30 s later one token (2 per 60 s) came back */
	for (int k = 3; k <= 5; k++) {
		o = obs(10, k, DRIFT_WARNING);
		alert_table_update(t, &o, 130 * SEC, 130 * SEC, collect, &s);
	}
	assert_int_equal(s.n, 3);
	/* resolutions are never limited */
	o = obs(10, 1, DRIFT_CLEAR);
	assert_int_equal(alert_table_update(t, &o, 131 * SEC, 131 * SEC, collect, &s), 1);
	/* a long pause refills the bucket only up to the burst */
	for (int k = 4; k <= 9; k++) {
		o = obs(10, k, DRIFT_WARNING);
		alert_table_update(t, &o, 1000 * SEC, 1000 * SEC, collect, &s);
	}
	assert_int_equal(s.n, 6);
	alert_table_free(t);
}

static void bound_is_counted(void **state)
{
	struct alert_table *t = table(1, 0, 3);
	struct alert_params p;
	struct sink s = { 0 };
	struct alert_observation o;

	for (int k = 1; k <= 5; k++) {
		o = obs(10, k, DRIFT_WARNING);
		alert_table_update(t, &o, SEC, SEC, collect, &s);
	}
	assert_int_equal(s.n, 3);
	assert_int_equal(alert_table_counters(t)->dropped_full, 2);
	assert_int_equal(alert_table_counters(t)->active, 3);
	o = obs(10, 1, DRIFT_CLEAR);
	alert_table_update(t, &o, SEC, SEC, collect, &s);
	o = obs(10, 4, DRIFT_WARNING);
	assert_int_equal(alert_table_update(t, &o, SEC, SEC, collect, &s), 1);
	/* reload with a bigger bound */
	alert_params_defaults(&p);
	p.rate_limit = 0;
	p.max_active = 5;
	assert_int_equal(alert_table_set_params(t, &p), 0);
	o = obs(10, 5, DRIFT_WARNING);
	assert_int_equal(alert_table_update(t, &o, SEC, SEC, collect, &s), 1);
	/* a smaller bound keeps the 4 firing but refuses new ones */
	p.max_active = 2;
	assert_int_equal(alert_table_set_params(t, &p), 0);
	o = obs(10, 6, DRIFT_WARNING);
	assert_int_equal(alert_table_update(t, &o, SEC, SEC, collect, &s), 0);
	assert_int_equal(alert_table_counters(t)->dropped_full, 3);
	assert_int_equal(alert_table_counters(t)->active, 4);
	p.max_active = 0;
	assert_int_equal(alert_table_set_params(t, &p), -EINVAL);
	alert_table_free(t);
}

static void process_exit_resolves(void **state)
{
	struct alert_table *t = table(5, 0, 8);
	struct alert_observation a = obs(10, 1, DRIFT_WARNING), b = obs(10, 2, DRIFT_WARNING),
				 c = obs(11, 1, DRIFT_WARNING);
	struct sink s = { 0 };

	alert_table_update(t, &a, SEC, SEC, collect, &s);
	alert_table_update(t, &b, SEC, SEC, collect, &s);
	alert_table_update(t, &c, SEC, SEC, collect, &s);
	assert_int_equal(alert_table_forget_pid(t, 10, 2 * SEC, collect, &s), 2);
	assert_int_equal(s.n, 5);
	assert_int_equal(s.last.state, ALERT_RESOLVED);
	assert_string_equal(s.last.summary, "process exited");
	assert_int_equal(alert_table_counters(t)->active, 1);
	alert_table_free(t);
}

static void oom_is_oneshot(void **state)
{
	struct alert_table *t = table(1, 1, 1);
	struct alert_observation o = obs(10, 0, DRIFT_CLEAR), f = obs(12, 1, DRIFT_WARNING);
	struct sink s = { 0 };

	alert_table_update(t, &f, SEC, SEC, collect, &s); /* uses the only token and slot */
	o.kind = DRIFT_OOM_KILL;
	alert_table_oneshot(t, &o, SEC, collect, &s);
	alert_table_oneshot(t, &o, SEC, collect, &s);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.last.kind, DRIFT_OOM_KILL);
	assert_int_equal(s.last.severity, DRIFT_CRITICAL);
	assert_int_equal(alert_table_counters(t)->active, 1);
	alert_table_free(t);
}

/* ---- JSON ---- */

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_string(v);
}

static void json_record(void **state)
{
	struct alert_record r = { 0 };
	struct json_object *o, *site, *ev, *v;
	char buf[2048];
	int n;

	r.ts_ns = 1714566896789123456ull; /* 2024-05-01T12:34:56.789 UTC */
	r.pid = 4242;
	strcpy(r.comm, "conv \"svc\"");
	r.kind = DRIFT_NATIVE_LEAK;
	r.severity = DRIFT_CRITICAL;
	r.state = ALERT_FIRING;
	r.has_site = true;
	strcpy(r.site.function, "main.(*Conv).toC");
	strcpy(r.site.file, "/src/conv/conv.go");
	r.site.line = 88;
	strcpy(r.summary, "C memory outstanding +270 MiB in 10m");
	r.evidence = (struct detect_evidence){ .window_seconds = 600, .slope_per_second = 471859.2,
					       .mann_kendall_z = 12.345678, .p_value = 1.5e-12,
					       .start_value = 100 * MIB, .end_value = 370 * MIB,
					       .points = 121 };
	detect_evidence_add(&r.evidence, "oldest_age_seconds", 590.5);
	detect_evidence_add(&r.evidence, "not_a_number", NAN);

	n = alert_record_json(&r, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(strlen(buf), n);
	assert_null(strchr(buf, '\n'));
	o = json_tokener_parse(buf);
	assert_non_null(o);
	assert_string_equal(get_str(o, "ts"), "2024-05-01T12:34:56.789Z");
	assert_string_equal(get_str(o, "comm"), "conv \"svc\"");
	assert_string_equal(get_str(o, "kind"), "native_leak");
	assert_string_equal(get_str(o, "severity"), "critical");
	assert_string_equal(get_str(o, "state"), "firing");
	assert_string_equal(get_str(o, "summary"), r.summary);
	assert_true(json_object_object_get_ex(o, "pid", &v));
	assert_int_equal(json_object_get_int64(v), 4242);
	assert_true(json_object_object_get_ex(o, "site", &site));
	assert_string_equal(get_str(site, "function"), "main.(*Conv).toC");
	assert_string_equal(get_str(site, "file"), "/src/conv/conv.go");
	assert_true(json_object_object_get_ex(site, "line", &v));
	assert_int_equal(json_object_get_int(v), 88);
	assert_true(json_object_object_get_ex(o, "evidence", &ev));
	assert_true(json_object_object_get_ex(ev, "end_value", &v));
	assert_int_equal(json_object_get_int64(v), 370 * 1048576ll);
	assert_true(json_object_object_get_ex(ev, "p_value", &v));
	assert_true(fabs(json_object_get_double(v) - 1.5e-12) < 1e-20);
	assert_true(json_object_object_get_ex(ev, "mann_kendall_z", &v));
	assert_true(fabs(json_object_get_double(v) - 12.3457) < 1e-9);
	assert_true(json_object_object_get_ex(ev, "points", &v));
	assert_int_equal(json_object_get_int(v), 121);
	assert_true(json_object_object_get_ex(ev, "oldest_age_seconds", &v));
	assert_true(fabs(json_object_get_double(v) - 590.5) < 1e-9);
	assert_true(json_object_object_get_ex(ev, "not_a_number", &v));
	assert_null(v);
	assert_true(json_object_object_get_ex(ev, "window_seconds", &v));
	assert_true(json_object_is_type(v, json_type_int));
	json_object_put(o);

	/* no site: "site": null; resolved */
	r.has_site = false;
	r.state = ALERT_RESOLVED;
	assert_true(alert_record_json(&r, buf, sizeof(buf)) > 0);
	o = json_tokener_parse(buf);
	assert_true(json_object_object_get_ex(o, "site", &site));
	assert_null(site);
	assert_string_equal(get_str(o, "state"), "resolved");
	json_object_put(o);
	assert_int_equal(alert_record_json(&r, buf, 40), -ENOSPC);
}

/* ---- correlation ---- */

static const struct alert_site conv_site = { "main.(*Conv).toC", "/src/conv/conv.go", 88 };

static void correlation_sentence(void **state)
{
	struct correlation_input in = { .window_ns = 600 * SEC, .rss_known = true,
					.rss_anon_delta = 310 * MIB };
	enum drift_layer grew;
	char buf[512];

	in.layer[LAYER_GO_HEAP] = (struct layer_delta){ true, 22 * MIB, NULL };
	in.layer[LAYER_GOROUTINE_STACKS] = (struct layer_delta){ true, 9 * MIB, NULL };
	in.layer[LAYER_C_MEMORY] = (struct layer_delta){ true, 279 * MIB, &conv_site };
	in.layer[LAYER_RSS_FILE] = (struct layer_delta){ true, 0.2 * MIB, NULL };
	correlate_layers(&in, buf, sizeof(buf), &grew);
	assert_string_equal(buf, "RSS +310 MiB in 10m: Go heap +22 MiB, goroutine stacks +9 MiB, "
				 "C memory +279 MiB at main.(*Conv).toC (conv.go:88)");
	assert_int_equal(grew, LAYER_C_MEMORY);

	/* RSS grows outside every known layer */
	in.layer[LAYER_C_MEMORY] = (struct layer_delta){ true, 1 * MIB, NULL };
	in.layer[LAYER_JNI_REFS] = (struct layer_delta){ true, 1200, NULL };
	in.window_ns = 90 * SEC;
	correlate_layers(&in, buf, sizeof(buf), &grew);
	assert_string_equal(buf, "RSS +310 MiB in 1m30s: Go heap +22 MiB, goroutine stacks +9 MiB, "
				 "C memory +1 MiB, JNI refs +1200, unattributed +278 MiB");
	assert_int_equal(grew, LAYER_OTHER);

	/* Go heap the biggest; no RSS known */
	in.rss_known = false;
	in.layer[LAYER_JNI_REFS].known = false;
	correlate_layers(&in, buf, sizeof(buf), &grew);
	assert_string_equal(buf, "In 1m30s: Go heap +22 MiB, goroutine stacks +9 MiB, C memory +1 MiB");
	assert_int_equal(grew, LAYER_GO_HEAP);

	/* nothing grew by a MiB */
	memset(&in, 0, sizeof(in));
	in.window_ns = 600 * SEC;
	in.layer[LAYER_GO_HEAP] = (struct layer_delta){ true, -3 * MIB, NULL };
	correlate_layers(&in, buf, sizeof(buf), &grew);
	assert_string_equal(buf, "In 10m: Go heap -3 MiB");
	assert_int_equal(grew, LAYER_NONE);
	/* truncation stays a C string */
	assert_int_equal(correlate_layers(&in, buf, 8, &grew), 7);
	assert_string_equal(buf, "In 10m:");
}

static void summary_sentence(void **state)
{
	struct detect_evidence ev = { .window_seconds = 600, .slope_per_second = 0.2 };
	struct alert_site site = { "main.worker", "/app/main.go", 42 };
	char buf[256];

	detect_evidence_add(&ev, "blocked_long", 100);
	alert_summary(DRIFT_GOROUTINE_LEAK, &ev, &site, buf, sizeof(buf));
	assert_string_equal(buf, "goroutines at main.worker (main.go:42) +120 in 10m (0.20/s), "
				 "100 blocked long in waits");
	ev = (struct detect_evidence){ .window_seconds = 600, .slope_per_second = MIB };
	alert_summary(DRIFT_GO_HEAP_GROWTH, &ev, NULL, buf, sizeof(buf));
	assert_string_equal(buf, "Go heap (marked after GC) +600 MiB in 10m (+1 MiB/s)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fires_once_resolves_after_hysteresis),
		cmocka_unit_test(keys_are_pid_kind_site),
		cmocka_unit_test(escalation_is_reemitted_once),
		cmocka_unit_test(rate_limit_is_honoured),
		cmocka_unit_test(bound_is_counted),
		cmocka_unit_test(process_exit_resolves),
		cmocka_unit_test(oom_is_oneshot),
		cmocka_unit_test(json_record),
		cmocka_unit_test(correlation_sentence),
		cmocka_unit_test(summary_sentence),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Detectors on synthetic series: negative controls (GC sawtooth, bursts that
 * drain, step then plateau) must stay silent through a whole run evaluated
 * every 15 s; leaks must fire with the right slope. Theil–Sen and
 * Mann–Kendall against values worked out by hand. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "detect/detect.h"
#include "state/series.h"

#define SEC 1000000000ull
#define MIB (1024.0 * 1024.0)
#define EVAL_NS (15 * SEC)

/* cmocka 1.1 only compares floats. */
#define assert_double_equal(a, b, eps)                                                  \
	do {                                                                            \
		double a_ = (a), b_ = (b);                                              \
		if (!(fabs(a_ - b_) <= (eps)))                                          \
			fail_msg("%s = %.9g, expected %.9g", #a, a_, b_);               \
	} while (0)

/* Deterministic noise: xorshift64 and Box–Muller. */
static uint64_t rng_state = 88172645463325252ull;

static double uniform(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(double sd)
{
	return sd * sqrt(-2 * log(uniform())) * cos(2 * M_PI * uniform());
}

/* ---- Theil–Sen and Mann–Kendall by hand ---- */

static struct series_point pt(double t_s, double v)
{
	return (struct series_point){ (uint64_t)(t_s * SEC), v };
}

/* (0,1) (1,3) (2,2) (3,5): pairwise slopes 2, 0.5, 4/3, -1, 1, 3; sorted
 * -1 0.5 1 4/3 2 3 -> median (1 + 4/3)/2 = 7/6. Residuals y - 7/6 t:
 * 1, 11/6, -1/3, 3/2 -> median (1 + 3/2)/2 = 5/4. */
static void theil_sen_by_hand(void **state)
{
	struct series_point p[] = { pt(0, 1), pt(1, 3), pt(2, 2), pt(3, 5) };
	double slope, icpt;

	assert_int_equal(detect_theil_sen(p, 4, &slope, &icpt), 0);
	assert_double_equal(slope, 7.0 / 6.0, 1e-12);
	assert_double_equal(icpt, 1.25, 1e-12);
}

/* One outlier cannot move it: y = 2t except one wild point. */
static void theil_sen_robust_to_outlier(void **state)
{
	struct series_point p[11];
	double slope;

	for (int i = 0; i < 11; i++)
		p[i] = pt(i * 0.5, 2 * i * 0.5);
	p[5].value = 1e6;
	assert_int_equal(detect_theil_sen(p, 11, &slope, NULL), 0);
	assert_double_equal(slope, 2.0, 1e-9);
}

static void theil_sen_degenerate(void **state)
{
	struct series_point p[] = { pt(1, 1), pt(1, 2), pt(1, 3) };
	double slope;

	assert_int_equal(detect_theil_sen(p, 1, &slope, NULL), -EINVAL);
	assert_int_equal(detect_theil_sen(p, 3, &slope, NULL), -EINVAL);
}

/* 1 2 3 4 5: S = 10 (all 10 pairs up); var = 5*4*15/18 = 50/3;
 * z = (10-1)/sqrt(50/3) = 2.204541; p = erfc(z/sqrt 2) = 0.027486.
 * 1 2 2 3: S = 5 (one tied pair); var = (4*3*13 - 2*1*9)/18 = 23/3;
 * z = 4/sqrt(23/3) = 1.444630; p = 0.148562.  4 3 3 1: the mirror. */
static void mann_kendall_by_hand(void **state)
{
	const double up[] = { 1, 2, 3, 4, 5 }, ties[] = { 1, 2, 2, 3 }, down[] = { 4, 3, 3, 1 };
	const double flat[] = { 7, 7, 7, 7 };
	struct mann_kendall mk;

	assert_int_equal(detect_mann_kendall(up, 5, &mk), 0);
	assert_double_equal(mk.s, 10, 0);
	assert_double_equal(mk.variance, 50.0 / 3, 1e-9);
	assert_double_equal(mk.z, 2.204541, 1e-6);
	assert_double_equal(mk.p, 0.027486, 1e-6);

	assert_int_equal(detect_mann_kendall(ties, 4, &mk), 0);
	assert_double_equal(mk.s, 5, 0);
	assert_double_equal(mk.variance, 23.0 / 3, 1e-9);
	assert_double_equal(mk.z, 1.444630, 1e-6);
	assert_double_equal(mk.p, 0.148562, 1e-6);

	assert_int_equal(detect_mann_kendall(down, 4, &mk), 0);
	assert_double_equal(mk.s, -5, 0);
	assert_double_equal(mk.z, -1.444630, 1e-6);

	assert_int_equal(detect_mann_kendall(flat, 4, &mk), 0);
	assert_double_equal(mk.s, 0, 0);
	assert_double_equal(mk.z, 0, 0);
	assert_double_equal(mk.p, 1, 0);
	assert_int_equal(detect_mann_kendall(up, 2, &mk), -EINVAL);
}

/* ---- series ---- */

static void series_ring_and_window(void **state)
{
	struct series *s = series_new(8);
	struct series_point out[8], last;
	size_t raw;

	assert_non_null(s);
	assert_null(series_new(1));
	assert_null(series_new(SERIES_MAX_CAPACITY + 1));
	assert_int_equal(series_last(s, &last), -ENOENT);
	for (int i = 0; i < 12; i++)
		series_push(s, (uint64_t)i * SEC, i);
	assert_int_equal(series_len(s), 8);
	series_push(s, 3 * SEC, 99); /* back in time */
	assert_int_equal(series_out_of_order(s), 1);
	assert_int_equal(series_last(s, &last), 0);
	assert_double_equal(last.value, 11, 0);
	/* oldest kept is 4; since 6 s gives 6..11 */
	assert_int_equal(series_window(s, 6 * SEC, out, 8, &raw), 6);
	assert_int_equal(raw, 6);
	assert_double_equal(out[0].value, 6, 0);
	assert_double_equal(out[5].value, 11, 0);
	/* 8 points (4..11) into 4 buckets of 2: means 4.5 6.5 8.5 10.5 */
	assert_int_equal(series_window(s, 0, out, 4, &raw), 4);
	assert_int_equal(raw, 8);
	assert_double_equal(out[0].value, 4.5, 0);
	assert_int_equal(out[0].t_ns, 4 * SEC + SEC / 2);
	assert_double_equal(out[3].value, 10.5, 0);
	assert_int_equal(series_window(s, 100 * SEC, out, 8, &raw), 0);
	/* the ends of a window without copying it: since 6 s -> 6 and 11 */
	{
		struct series_point first, end;

		assert_int_equal(series_window_ends(s, 6 * SEC, &first, &end), 6);
		assert_double_equal(first.value, 6, 0);
		assert_int_equal(first.t_ns, 6 * SEC);
		assert_double_equal(end.value, 11, 0);
		assert_int_equal(series_window_ends(s, 0, &first, &end), 8);
		assert_double_equal(first.value, 4, 0);
		assert_int_equal(series_window_ends(s, 100 * SEC, &first, &end), 0);
	}
	series_free(s);
}

/* ---- simulated runs ---- */

struct run {
	enum drift_severity worst;
	uint64_t first_fire_ns; /* 0: never */
	struct detect_result last_fire;
	int evaluations;
};

typedef int (*judge_fn)(const struct series *s, uint64_t now, const struct detect_params *p,
			struct detect_result *r, void *ctx);

static void record(struct run *run, uint64_t now, const struct detect_result *r)
{
	run->evaluations++;
	if (r->severity > run->worst)
		run->worst = r->severity;
	if (r->severity != DRIFT_CLEAR) {
		if (!run->first_fire_ns)
			run->first_fire_ns = now;
		run->last_fire = *r;
	}
}

static int judge_heap(const struct series *s, uint64_t now, const struct detect_params *p,
		      struct detect_result *r, void *ctx)
{
	return detect_go_heap(s, now, p, r);
}

static int judge_rss(const struct series *s, uint64_t now, const struct detect_params *p,
		     struct detect_result *r, void *ctx)
{
	return detect_rss(s, now, p, r);
}

static int judge_native(const struct series *s, uint64_t now, const struct detect_params *p,
			struct detect_result *r, void *ctx)
{
	return detect_outstanding(DRIFT_NATIVE_LEAK, s, now, ctx ? *(uint64_t *)ctx : UINT64_MAX,
				  p, r);
}

static int judge_goroutines(const struct series *s, uint64_t now, const struct detect_params *p,
			    struct detect_result *r, void *ctx)
{
	return detect_goroutine_site(s, now, ctx, p, r);
}

/* Samples f every step_ns for duration and evaluates every 15 s. */
static struct run simulate(double (*f)(uint64_t t, void *arg), void *arg, uint64_t step_ns,
			   uint64_t duration_ns, const struct detect_params *p, judge_fn judge,
			   void *ctx)
{
	struct series *s = series_new(2048);
	struct run run = { 0 };
	uint64_t next_eval = EVAL_NS;

	assert_non_null(s);
	for (uint64_t t = 0; t <= duration_ns; t += step_ns) {
		double v = f(t, arg);

		if (!isnan(v))
			series_push(s, t, v);
		while (next_eval <= t) {
			struct detect_result r;

			assert_int_equal(judge(s, next_eval, p, &r, ctx), 0);
			record(&run, next_eval, &r);
			next_eval += EVAL_NS;
		}
	}
	series_free(s);
	return run;
}

/* Go heap: one heap-marked point per GC cycle (period ~10 s with jitter);
 * between cycles the live heap saws up to the goal, which the detector never
 * sees. Returns NAN between cycles. trough_climb in bytes/s. */
struct gc_model {
	double base, trough_climb, noise;
	uint64_t next_gc;
};

static double heap_marked_at(uint64_t t, void *arg)
{
	struct gc_model *m = arg;

	if (t < m->next_gc)
		return NAN;
	m->next_gc = t + (uint64_t)((8 + 4 * uniform()) * SEC);
	return m->base + m->trough_climb * (double)t / SEC + gauss(m->noise);
}

static void go_heap_sawtooth_flat_is_silent(void **state)
{
	struct gc_model m = { 100 * MIB, 0, 2 * MIB, 0 };
	struct detect_params p;
	struct run run;

	detect_params_defaults(&p);
	run = simulate(heap_marked_at, &m, SEC, 3600 * SEC, &p, judge_heap, NULL);
	assert_true(run.evaluations > 200);
	assert_int_equal(run.worst, DRIFT_CLEAR);
}

static void go_heap_climbing_troughs_fire(void **state)
{
	struct gc_model m = { 100 * MIB, 1 * MIB, 2 * MIB, 0 };
	struct detect_params p;
	struct run run;
	double slope;

	detect_params_defaults(&p);
	run = simulate(heap_marked_at, &m, SEC, 900 * SEC, &p, judge_heap, NULL);
	assert_int_not_equal(run.worst, DRIFT_CLEAR);
	/* a 10 min window must be (nearly) filled before the thirds agree */
	assert_true(run.first_fire_ns <= 660 * SEC);
	slope = run.last_fire.evidence.slope_per_second;
	assert_true(fabs(slope - MIB) < 0.1 * MIB);
	assert_true(run.last_fire.evidence.points >= 40);
	assert_true(run.last_fire.evidence.p_value < 1e-6);
}

/* The raw sawtooth itself (what RSS or heap-live would show, sampled 1 s,
 * 100 -> 200 MiB every 10 s) must not look like a trend either. */
static double raw_sawtooth(uint64_t t, void *arg)
{
	double phase = fmod((double)t / SEC, 10.0) / 10.0;

	return 100 * MIB * (1 + phase) + gauss(MIB);
}

static void raw_sawtooth_is_silent(void **state)
{
	struct detect_params p;
	struct run run;

	detect_params_defaults(&p);
	run = simulate(raw_sawtooth, NULL, SEC, 3600 * SEC, &p, judge_rss, NULL);
	assert_int_equal(run.worst, DRIFT_CLEAR);
}

/* Goroutines at one site: 50 +- 3, a burst of +400 every 90 s that drains
 * within 20 s; sampled every 5 s. */
static double goroutine_bursts(uint64_t t, void *arg)
{
	double s = (double)(t / SEC % 90);
	double extra = s < 5 ? 400 * s / 5 : s < 20 ? 400 * (20 - s) / 15 : 0;

	return round(50 + extra + gauss(3));
}

static void goroutine_bursts_that_drain_are_silent(void **state)
{
	struct goroutine_site_blocking blk = { 0, 0 };
	struct detect_params p;
	struct run run;

	detect_params_defaults(&p);
	run = simulate(goroutine_bursts, NULL, 5 * SEC, 3600 * SEC, &p, judge_goroutines, &blk);
	assert_int_equal(run.worst, DRIFT_CLEAR);
}

/* A slow goroutine leak, 0.2/s: warning on the count alone, critical when
 * the new goroutines sit blocked long in channel waits. */
static double goroutine_leak(uint64_t t, void *arg)
{
	return round(50 + 0.2 * (double)t / SEC + gauss(2));
}

static void goroutine_leak_fires(void **state)
{
	struct goroutine_site_blocking none = { 0, 0 }, blocked = { 100, 500 * SEC };
	struct detect_params p;
	struct run run;

	detect_params_defaults(&p);
	run = simulate(goroutine_leak, NULL, 5 * SEC, 900 * SEC, &p, judge_goroutines, &none);
	assert_int_equal(run.worst, DRIFT_WARNING);
	assert_true(fabs(run.last_fire.evidence.slope_per_second - 0.2) < 0.02);
	run = simulate(goroutine_leak, NULL, 5 * SEC, 900 * SEC, &p, judge_goroutines, &blocked);
	assert_int_equal(run.worst, DRIFT_CRITICAL);
	assert_int_equal(run.last_fire.evidence.n_extra, 2);
	assert_string_equal(run.last_fire.evidence.extra[0].name, "blocked_long");
}

/* Goroutines the Go runtime marked leaked (_Gleaked) are confirmed: a
 * growing site with them is critical, and a flat one is raised to a warning
 * (the runtime proved them blocked forever); none marked changes nothing. */
static double goroutine_flat(uint64_t t, void *arg)
{
	return round(40 + gauss(1));
}

static void goroutine_runtime_leaked_confirms(void **state)
{
	struct goroutine_site_blocking marked = { 0, 0, 12 }, none = { 0, 0, 0 };
	struct detect_params p;
	struct run run;

	detect_params_defaults(&p);
	run = simulate(goroutine_leak, NULL, 5 * SEC, 900 * SEC, &p, judge_goroutines, &marked);
	assert_int_equal(run.worst, DRIFT_CRITICAL);
	assert_string_equal(run.last_fire.reason,
			    "sustained upward trend, confirmed leaked by the Go runtime");
	assert_string_equal(run.last_fire.evidence.extra[2].name, "runtime_leaked");
	assert_true(run.last_fire.evidence.extra[2].value == 12);
	run = simulate(goroutine_flat, NULL, 5 * SEC, 900 * SEC, &p, judge_goroutines, &marked);
	assert_int_equal(run.worst, DRIFT_WARNING);
	assert_string_equal(run.last_fire.reason,
			    "goroutines marked leaked by the Go runtime's leak detector");
	run = simulate(goroutine_flat, NULL, 5 * SEC, 900 * SEC, &p, judge_goroutines, &none);
	assert_int_equal(run.worst, DRIFT_CLEAR);
}

/* 100 MiB until 15 min, then +300 MiB in one step (or over 60 s), then flat;
 * sampled every 5 s with 1 MiB noise; evaluated for 40 min. */
static double step_plateau(uint64_t t, void *arg)
{
	double ramp = *(double *)arg, s = (double)t / SEC, v = 100 * MIB;

	if (s >= 900)
		v += ramp > 0 && s < 900 + ramp ? 300 * MIB * (s - 900) / ramp : 300 * MIB;
	return v + gauss(MIB);
}

static void step_then_plateau_is_silent(void **state)
{
	uint64_t old = 3600 * SEC;
	struct detect_params p;
	double ramps[] = { 0, 60 };
	struct run run;

	detect_params_defaults(&p);
	for (int i = 0; i < 2; i++) {
		run = simulate(step_plateau, &ramps[i], 5 * SEC, 2400 * SEC, &p, judge_rss, NULL);
		assert_int_equal(run.worst, DRIFT_CLEAR);
		run = simulate(step_plateau, &ramps[i], 5 * SEC, 2400 * SEC, &p, judge_native, &old);
		assert_int_equal(run.worst, DRIFT_CLEAR);
	}
}

/* Noisy linear leak: 1 MiB/s under 30 MiB of noise, sampled every 5 s. */
static double noisy_leak(uint64_t t, void *arg)
{
	return 200 * MIB + MIB * (double)t / SEC + gauss(30 * MIB);
}

static void noisy_linear_leak_fires(void **state)
{
	uint64_t old = 3600 * SEC, young = 10 * SEC;
	struct detect_params p;
	struct run run;

	detect_params_defaults(&p);
	run = simulate(noisy_leak, NULL, 5 * SEC, 900 * SEC, &p, judge_native, &old);
	assert_int_not_equal(run.worst, DRIFT_CLEAR);
	assert_true(fabs(run.last_fire.evidence.slope_per_second - MIB) < 0.1 * MIB);
	assert_true(run.last_fire.evidence.mann_kendall_z > 5);
	assert_int_equal(run.last_fire.evidence.points, 121); /* 10 min at 5 s */
	/* same growth, but everything older than 10 s was freed: churn */
	run = simulate(noisy_leak, NULL, 5 * SEC, 900 * SEC, &p, judge_native, &young);
	assert_int_equal(run.worst, DRIFT_CLEAR);
	run = simulate(noisy_leak, NULL, 5 * SEC, 900 * SEC, &p, judge_rss, NULL);
	assert_int_not_equal(run.worst, DRIFT_CLEAR);
}

/* RSS flat for 20 min, then a 2 MiB/s leak: the growth-rate anomaly fires
 * well before the trend rule could (it needs most of the 10 min window). */
static double rss_late_leak(uint64_t t, void *arg)
{
	double s = (double)t / SEC;

	return 300 * MIB + (s > 1200 ? 2 * MIB * (s - 1200) : 0) + gauss(512 * 1024);
}

static void rss_anomaly_fires_early(void **state)
{
	struct detect_params p;
	struct run run;

	detect_params_defaults(&p);
	run = simulate(rss_late_leak, NULL, 5 * SEC, 1800 * SEC, &p, judge_rss, NULL);
	assert_int_not_equal(run.worst, DRIFT_CLEAR);
	assert_true(run.first_fire_ns > 1200 * SEC);
	assert_true(run.first_fire_ns < 1200 * SEC + 300 * SEC);
}

/* The min slope is a threshold on the whole window's Theil–Sen slope: a
 * clean line at 0.7x does not fire, at 1.3x it is a warning, at 5x critical. */
static double scaled_line(uint64_t t, void *arg)
{
	return 50 * MIB + *(double *)arg * 256 * 1024 * (double)t / SEC + gauss(64 * 1024);
}

static void min_slope_is_the_threshold(void **state)
{
	double factors[] = { 0.7, 1.3, 5 };
	enum drift_severity want[] = { DRIFT_CLEAR, DRIFT_WARNING, DRIFT_CRITICAL };
	uint64_t old = 3600 * SEC;
	struct detect_params p;
	struct run run;

	detect_params_defaults(&p);
	p.min_slope[DRIFT_NATIVE_LEAK] = 256 * 1024;
	for (int i = 0; i < 3; i++) {
		run = simulate(scaled_line, &factors[i], 5 * SEC, 900 * SEC, &p, judge_native, &old);
		assert_int_equal(run.worst, want[i]);
	}
}

/* The same noisy leak with too few points must not be judged. */
static void too_few_points_not_judged(void **state)
{
	struct series_point pts[5];
	struct detect_params p;
	struct detect_result r;

	detect_params_defaults(&p);
	for (int i = 0; i < 5; i++)
		pts[i] = pt(i, i * 10 * MIB);
	assert_int_equal(detect_trend(pts, 5, MIB, &p, &r), 0);
	assert_false(r.enough_data);
	assert_int_equal(r.severity, DRIFT_CLEAR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(theil_sen_by_hand),
		cmocka_unit_test(theil_sen_robust_to_outlier),
		cmocka_unit_test(theil_sen_degenerate),
		cmocka_unit_test(mann_kendall_by_hand),
		cmocka_unit_test(series_ring_and_window),
		cmocka_unit_test(go_heap_sawtooth_flat_is_silent),
		cmocka_unit_test(go_heap_climbing_troughs_fire),
		cmocka_unit_test(raw_sawtooth_is_silent),
		cmocka_unit_test(goroutine_bursts_that_drain_are_silent),
		cmocka_unit_test(goroutine_leak_fires),
		cmocka_unit_test(goroutine_runtime_leaked_confirms),
		cmocka_unit_test(step_then_plateau_is_silent),
		cmocka_unit_test(noisy_linear_leak_fires),
		cmocka_unit_test(rss_anomaly_fires_early),
		cmocka_unit_test(min_slope_is_the_threshold),
		cmocka_unit_test(too_few_points_not_judged),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

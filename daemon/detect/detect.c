#include "detect/detect.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *drift_kind_name(enum drift_kind kind)
{
	static const char *const names[DRIFT_KIND_COUNT] = {
		[DRIFT_GOROUTINE_LEAK] = "goroutine_leak",
		[DRIFT_GO_HEAP_GROWTH] = "go_heap_growth",
		[DRIFT_NATIVE_LEAK] = "native_leak",
		[DRIFT_JNI_REF_LEAK] = "jni_ref_leak",
		[DRIFT_RSS_GROWTH] = "rss_growth",
		[DRIFT_OOM_KILL] = "oom_kill",
	};

	return (unsigned)kind < DRIFT_KIND_COUNT ? names[kind] : "?";
}

const char *drift_severity_name(enum drift_severity sev)
{
	switch (sev) {
	case DRIFT_CLEAR: return "clear";
	case DRIFT_WARNING: return "warning";
	case DRIFT_CRITICAL: return "critical";
	}
	return "?";
}

void detect_params_defaults(struct detect_params *p)
{
	memset(p, 0, sizeof(*p));
	p->window_ns = 600ull * 1000000000ull;
	p->min_points = 12;
	p->max_points = 120;
	p->p_threshold = 0.01;
	p->persist_fraction = 0.5;
	p->critical_factor = 4;
	p->min_slope[DRIFT_GOROUTINE_LEAK] = 0.1;
	p->min_slope[DRIFT_GO_HEAP_GROWTH] = 100 * 1024;
	p->min_slope[DRIFT_NATIVE_LEAK] = 100 * 1024;
	p->min_slope[DRIFT_JNI_REF_LEAK] = 0.5;
	p->min_slope[DRIFT_RSS_GROWTH] = 256 * 1024;
	p->rss_k = 3;
	p->goroutine_blocked_fraction = 0.5;
	p->native_min_oldest_age_ns = 120ull * 1000000000ull;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts v in place. */
static double median_sorted(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int detect_theil_sen(const struct series_point *pts, size_t n, double *slope_per_s,
		     double *intercept)
{
	double *buf, slope;
	size_t m = 0;

	if (n < 2 || n > DETECT_MAX_POINTS)
		return -EINVAL;
	buf = malloc(n * (n - 1) / 2 * sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++) {
			if (pts[j].t_ns == pts[i].t_ns)
				continue;
			buf[m++] = (pts[j].value - pts[i].value) /
				   (((double)pts[j].t_ns - (double)pts[i].t_ns) / 1e9);
		}
	if (!m) {
		free(buf);
		return -EINVAL;
	}
	slope = median_sorted(buf, m);
	if (intercept) {
		for (size_t i = 0; i < n; i++)
			buf[i] = pts[i].value - slope * ((double)(pts[i].t_ns - pts[0].t_ns) / 1e9);
		*intercept = median_sorted(buf, n);
	}
	free(buf);
	*slope_per_s = slope;
	return 0;
}

int detect_mann_kendall(const double *values, size_t n, struct mann_kendall *out)
{
	double s = 0, ties = 0, var, *sorted;

	if (n < 3 || n > DETECT_MAX_POINTS)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			s += (values[j] > values[i]) - (values[j] < values[i]);
	sorted = malloc(n * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	memcpy(sorted, values, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_double);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		double t;

		while (j < n && sorted[j] == sorted[i])
			j++;
		t = (double)(j - i);
		ties += t * (t - 1) * (2 * t + 5);
		i = j;
	}
	free(sorted);
	var = ((double)n * (n - 1) * (2.0 * n + 5) - ties) / 18;
	out->s = s;
	out->variance = var;
	if (var <= 0 || s == 0)
		out->z = 0;
	else
		out->z = (s > 0 ? s - 1 : s + 1) / sqrt(var);
	out->p = erfc(fabs(out->z) / M_SQRT2);
	return 0;
}

void detect_evidence_add(struct detect_evidence *ev, const char *name, double value)
{
	if (ev->n_extra < DETECT_MAX_EXTRA)
		ev->extra[ev->n_extra++] = (struct detect_extra){ name, value };
}

static void result_clear(struct detect_result *out, const char *reason)
{
	memset(out, 0, sizeof(*out));
	out->severity = DRIFT_CLEAR;
	out->reason = reason;
	out->evidence.p_value = 1;
}

int detect_trend(const struct series_point *pts, size_t n, double min_slope,
		 const struct detect_params *p, struct detect_result *out)
{
	double values[DETECT_MAX_POINTS], slope, intercept;
	struct detect_evidence *ev = &out->evidence;
	struct mann_kendall mk;
	int err;

	result_clear(out, "too few points");
	ev->points = (uint32_t)n;
	if (n > DETECT_MAX_POINTS)
		return -EINVAL;
	if (n < p->min_points || n < 3)
		return 0;
	for (size_t i = 0; i < n; i++)
		values[i] = pts[i].value;
	err = detect_theil_sen(pts, n, &slope, &intercept);
	if (err == -EINVAL)
		return 0;
	if (err)
		return err;
	err = detect_mann_kendall(values, n, &mk);
	if (err)
		return err;
	out->enough_data = true;
	ev->window_seconds = (double)(pts[n - 1].t_ns - pts[0].t_ns) / 1e9;
	ev->slope_per_second = slope;
	ev->mann_kendall_z = mk.z;
	ev->p_value = mk.p;
	ev->start_value = pts[0].value;
	ev->end_value = pts[n - 1].value;

	if (mk.z <= 0 || mk.p >= p->p_threshold) {
		out->reason = "no significant upward trend";
		return 0;
	}
	if (slope < min_slope) {
		out->reason = "slope below minimum";
		return 0;
	}
	for (int third = 0; third < 3; third++) {
		size_t from = third * n / 3, to = (third + 1) * n / 3;
		double part;

		if (detect_theil_sen(pts + from, to - from, &part, NULL) ||
		    part < p->persist_fraction * min_slope) {
			out->reason = "growth not sustained across the window (step or burst)";
			return 0;
		}
	}
	out->severity = slope >= p->critical_factor * min_slope ? DRIFT_CRITICAL : DRIFT_WARNING;
	out->reason = "sustained upward trend";
	return 0;
}

static uint64_t window_start(uint64_t now_ns, const struct detect_params *p)
{
	return now_ns > p->window_ns ? now_ns - p->window_ns : 0;
}

/* Takes the window from a series and runs the trend rule on it. */
static int trend_on_series(const struct series *s, uint64_t now_ns, double min_slope,
			   const struct detect_params *p, struct series_point *pts, size_t *n,
			   struct detect_result *out)
{
	size_t max = p->max_points && p->max_points <= DETECT_MAX_POINTS ? p->max_points
									: DETECT_MAX_POINTS;
	size_t raw;
	int err;

	*n = series_window(s, window_start(now_ns, p), pts, max, &raw);
	err = detect_trend(pts, *n, min_slope, p, out);
	out->evidence.points = (uint32_t)raw;
	return err;
}

int detect_go_heap(const struct series *heap_marked, uint64_t now_ns,
		   const struct detect_params *p, struct detect_result *out)
{
	struct series_point pts[DETECT_MAX_POINTS];
	size_t n;
	int err;

	err = trend_on_series(heap_marked, now_ns, p->min_slope[DRIFT_GO_HEAP_GROWTH], p, pts, &n,
			      out);
	if (!err && out->enough_data)
		detect_evidence_add(&out->evidence, "gc_cycles", out->evidence.points);
	return err;
}

int detect_goroutine_site(const struct series *count, uint64_t now_ns,
			  const struct goroutine_site_blocking *blocked,
			  const struct detect_params *p, struct detect_result *out)
{
	struct series_point pts[DETECT_MAX_POINTS];
	double growth;
	size_t n;
	int err;

	err = trend_on_series(count, now_ns, p->min_slope[DRIFT_GOROUTINE_LEAK], p, pts, &n, out);
	if (err || !out->enough_data)
		return err;
	if (!blocked)
		return 0;
	detect_evidence_add(&out->evidence, "blocked_long", blocked->blocked_long);
	detect_evidence_add(&out->evidence, "oldest_blocked_seconds",
			    (double)blocked->oldest_blocked_ns / 1e9);
	growth = out->evidence.slope_per_second * out->evidence.window_seconds;
	if (out->severity == DRIFT_WARNING && growth > 0 &&
	    blocked->blocked_long >= p->goroutine_blocked_fraction * growth) {
		out->severity = DRIFT_CRITICAL;
		out->reason = "sustained upward trend, growth blocked long in waits";
	}
	if (!blocked->leaked)
		return 0;
	/* The runtime proved these blocked forever (their channel or lock is
	 * unreachable): confirmed evidence, whatever the trend says. */
	detect_evidence_add(&out->evidence, "runtime_leaked", blocked->leaked);
	if (out->severity == DRIFT_WARNING) {
		out->severity = DRIFT_CRITICAL;
		out->reason = "sustained upward trend, confirmed leaked by the Go runtime";
	} else if (out->severity == DRIFT_CLEAR) {
		out->severity = DRIFT_WARNING;
		out->reason = "goroutines marked leaked by the Go runtime's leak detector";
	}
	return 0;
}

int detect_outstanding(enum drift_kind kind, const struct series *outstanding, uint64_t now_ns,
		       uint64_t oldest_age_ns, const struct detect_params *p,
		       struct detect_result *out)
{
	struct series_point pts[DETECT_MAX_POINTS];
	size_t n;
	int err;

	if (kind != DRIFT_NATIVE_LEAK && kind != DRIFT_JNI_REF_LEAK)
		return -EINVAL;
	err = trend_on_series(outstanding, now_ns, p->min_slope[kind], p, pts, &n, out);
	if (err || !out->enough_data)
		return err;
	if (oldest_age_ns != UINT64_MAX)
		detect_evidence_add(&out->evidence, "oldest_age_seconds",
				    (double)oldest_age_ns / 1e9);
	if (out->severity != DRIFT_CLEAR && oldest_age_ns != UINT64_MAX &&
	    oldest_age_ns < p->native_min_oldest_age_ns) {
		out->severity = DRIFT_CLEAR;
		out->reason = "growing but the oldest outstanding is young (churn)";
	}
	return 0;
}

static double mean_stddev(const double *v, size_t n, double *sd)
{
	double m = 0, q = 0;

	for (size_t i = 0; i < n; i++)
		m += v[i];
	m /= (double)n;
	for (size_t i = 0; i < n; i++)
		q += (v[i] - m) * (v[i] - m);
	*sd = n > 1 ? sqrt(q / (double)(n - 1)) : 0;
	return m;
}

int detect_rss(const struct series *rss, uint64_t now_ns, const struct detect_params *p,
	       struct detect_result *out)
{
	struct series_point pts[DETECT_MAX_POINTS];
	double rates[DETECT_MAX_POINTS], base_mean, base_sd, recent, min_slope;
	size_t n, nrates = 0, split;
	int err;

	min_slope = p->min_slope[DRIFT_RSS_GROWTH];
	err = trend_on_series(rss, now_ns, min_slope, p, pts, &n, out);
	if (err || !out->enough_data)
		return err;
	/* rates[i] is the growth from point i to i+1; the last third's
	 * intervals are "recent", the rest the baseline. */
	for (size_t i = 0; i + 1 < n; i++) {
		double dt = (double)(pts[i + 1].t_ns - pts[i].t_ns) / 1e9;

		if (dt > 0)
			rates[nrates++] = (pts[i + 1].value - pts[i].value) / dt;
	}
	split = nrates * 2 / 3;
	if (split < 3 || nrates - split < 3)
		return 0;
	base_mean = mean_stddev(rates, split, &base_sd);
	recent = median_sorted(rates + split, nrates - split);
	detect_evidence_add(&out->evidence, "recent_growth_rate", recent);
	detect_evidence_add(&out->evidence, "baseline_growth_rate_mean", base_mean);
	detect_evidence_add(&out->evidence, "baseline_growth_rate_stddev", base_sd);
	detect_evidence_add(&out->evidence, "k", p->rss_k);
	if (out->severity == DRIFT_CLEAR && recent >= min_slope &&
	    recent > base_mean + p->rss_k * base_sd) {
		out->severity = recent >= p->critical_factor * min_slope ? DRIFT_CRITICAL
									 : DRIFT_WARNING;
		out->reason = "growth-rate anomaly";
	}
	return 0;
}

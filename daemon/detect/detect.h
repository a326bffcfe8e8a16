/* Drift detectors: robust slope (Theil–Sen), monotonic-trend test
 * (Mann–Kendall), growth-rate anomaly, and the per-kind judgement built on
 * them. Pure functions over series windows; no I/O, no globals.
 *
 * Trend rule (detect_trend), chosen so that GC sawtooth, bursts that drain and
 * one-off steps do not alarm:
 *   1. at least min_points in the window (downsampled to max_points);
 *   2. Mann–Kendall z > 0 with two-sided p < p_threshold;
 *   3. Theil–Sen slope over the window >= the kind's min_slope;
 *   4. persistence: the Theil–Sen slope of EACH third of the window is
 *      >= persist_fraction * min_slope. A step lands in one third (its
 *      neighbours see a flat line), so a step then plateau never passes,
 *      wherever it sits in the window; a leak grows in every third. The cost:
 *      a new leak is reported once it has covered most of the window.
 * Severity: critical when the slope is >= critical_factor * min_slope (and
 * for some kinds on extra evidence, see below), else warning. */
#ifndef MEMDRIFT_DETECT_H
#define MEMDRIFT_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/series.h"

/* Downsampling cap: Theil–Sen is O(n^2) in time and memory. */
#define DETECT_MAX_POINTS 512u
#define DETECT_MAX_EXTRA 6

enum drift_kind {
	DRIFT_GOROUTINE_LEAK,
	DRIFT_GO_HEAP_GROWTH,
	DRIFT_NATIVE_LEAK,
	DRIFT_JNI_REF_LEAK,
	DRIFT_RSS_GROWTH,
	DRIFT_OOM_KILL,
	DRIFT_KIND_COUNT,
};

enum drift_severity {
	DRIFT_CLEAR,
	DRIFT_WARNING,
	DRIFT_CRITICAL,
};

/* "goroutine_leak", ... ; "clear", "warning", "critical". */
const char *drift_kind_name(enum drift_kind kind);
const char *drift_severity_name(enum drift_severity sev);

struct detect_params {
	uint64_t window_ns;
	uint32_t min_points;
	uint32_t max_points;            /* <= DETECT_MAX_POINTS */
	double p_threshold;             /* Mann–Kendall two-sided p */
	double persist_fraction;        /* per-third slope vs min_slope */
	double critical_factor;         /* slope >= factor*min_slope: critical */
	double min_slope[DRIFT_KIND_COUNT]; /* units/s: goroutines, bytes, refs */
	double rss_k;                   /* anomaly: mean + k*stddev */
	double goroutine_blocked_fraction; /* blocked_long >= this * growth: critical */
	uint64_t native_min_oldest_age_ns; /* younger oldest allocation: churn, not a leak */
};

/* Production defaults (the same values as config.c's table). */
void detect_params_defaults(struct detect_params *p);

/* Theil–Sen: median of pairwise slopes (per second), intercept = median of
 * value - slope*(t - t[0]). Pairs with equal times are skipped. 0, or
 * -EINVAL (n < 2 or all times equal), -ENOMEM. */
int detect_theil_sen(const struct series_point *pts, size_t n, double *slope_per_s,
		     double *intercept);

struct mann_kendall {
	double s;        /* sum of sign(x_j - x_i), i < j */
	double variance; /* with tie correction */
	double z;        /* continuity-corrected normal approximation */
	double p;        /* two-sided */
};

/* values in time order. 0, or -EINVAL (n < 3), -ENOMEM. */
int detect_mann_kendall(const double *values, size_t n, struct mann_kendall *out);

struct detect_extra {
	const char *name; /* static string, a JSON key */
	double value;
};

struct detect_evidence {
	double window_seconds;   /* time spanned by the points */
	double slope_per_second; /* Theil–Sen */
	double mann_kendall_z;
	double p_value;
	double start_value;      /* first and last (downsampled) points */
	double end_value;
	uint32_t points;         /* raw points in the window */
	uint32_t n_extra;
	struct detect_extra extra[DETECT_MAX_EXTRA];
};

struct detect_result {
	enum drift_severity severity;
	bool enough_data;
	const char *reason; /* static: why it fired or why not (debug logs, tests) */
	struct detect_evidence evidence;
};

/* The trend rule above on points already taken from a window. */
int detect_trend(const struct series_point *pts, size_t n, double min_slope,
		 const struct detect_params *p, struct detect_result *out);

/* Go heap: the trend rule on heap-marked points (one per GC cycle), so the
 * sawtooth between cycles never matters. */
int detect_go_heap(const struct series *heap_marked, uint64_t now_ns,
		   const struct detect_params *p, struct detect_result *out);

/* What the snapshot says about one goroutine creation site right now. */
struct goroutine_site_blocking {
	uint32_t blocked_long;      /* in chan/select/sync waits longer than the configured age */
	uint64_t oldest_blocked_ns; /* longest such wait */
	uint32_t leaked;            /* marked leaked by the runtime's own detector (1.26+) */
};

/* Goroutine site: the trend rule on its count (min_slope goroutines/s).
 * blocked (may be NULL when unknown) raises it to critical when at least
 * goroutine_blocked_fraction of the window's growth sits blocked long in
 * channel/select/sync waits — the pattern of a leak, not of a busy pool. */
int detect_goroutine_site(const struct series *count, uint64_t now_ns,
			  const struct goroutine_site_blocking *blocked,
			  const struct detect_params *p, struct detect_result *out);

/* C memory (DRIFT_NATIVE_LEAK, bytes) or JNI refs (DRIFT_JNI_REF_LEAK, refs)
 * outstanding for one stack: the trend rule, and the oldest outstanding
 * allocation must be at least native_min_oldest_age old (a growing backlog
 * that is still being freed is churn). oldest_age_ns = UINT64_MAX: unknown. */
int detect_outstanding(enum drift_kind kind, const struct series *outstanding, uint64_t now_ns,
		       uint64_t oldest_age_ns, const struct detect_params *p,
		       struct detect_result *out);

/* RSS: fires on either
 *  - growth-rate anomaly: per-interval growth rates of the window's first two
 *    thirds give mean m and stddev sd; the MEDIAN rate of the last third
 *    (a single step is one interval and cannot move a median) must exceed
 *    m + rss_k*sd and be >= min_slope — catches a new leak early; or
 *  - the trend rule — keeps a long-running leak firing once the anomaly's
 *    baseline has absorbed it. */
int detect_rss(const struct series *rss, uint64_t now_ns, const struct detect_params *p,
	       struct detect_result *out);

/* Adds a kind-specific number to the evidence (ignored when full). */
void detect_evidence_add(struct detect_evidence *ev, const char *name, double value);

#endif

/* Bounded time series: a ring buffer of (time, value) points per process and
 * metric, with window queries that downsample so detectors stay cheap. */
#ifndef MEMDRIFT_SERIES_H
#define MEMDRIFT_SERIES_H

#include <stddef.h>
#include <stdint.h>

/* Hard cap on points kept per series (16 bytes each). */
#define SERIES_MAX_CAPACITY 4096u

struct series_point {
	uint64_t t_ns; /* monotonic time */
	double value;
};

struct series;

/* capacity in 2..SERIES_MAX_CAPACITY; NULL on a bad capacity or no memory. */
struct series *series_new(uint32_t capacity);
void series_free(struct series *s);
/* Appends a point; the oldest is overwritten when full. A point older than
 * the newest one is dropped and counted (series_out_of_order). */
void series_push(struct series *s, uint64_t t_ns, double value);
void series_clear(struct series *s);
uint32_t series_len(const struct series *s);
uint32_t series_capacity(const struct series *s);
uint64_t series_out_of_order(const struct series *s);
/* Newest point; -ENOENT when empty. */
int series_last(const struct series *s, struct series_point *out);
/* Points with t_ns >= since_ns, oldest first. When there are more than
 * max_out, consecutive points are averaged in equal-count buckets (time and
 * value) so that exactly max_out come back. Returns the number written; the
 * number of raw points in the window goes to *raw_count when not NULL. */
size_t series_window(const struct series *s, uint64_t since_ns, struct series_point *out,
		     size_t max_out, size_t *raw_count);

/* Oldest and newest point with t_ns >= since_ns, without copying the
 * window; returns how many points it holds (first/last untouched at 0). */
size_t series_window_ends(const struct series *s, uint64_t since_ns, struct series_point *first,
			  struct series_point *last);

/* The per-process series the daemon keeps. */
enum series_metric {
	SERIES_HEAP_MARKED,       /* bytes, one point per GC cycle */
	SERIES_HEAP_LIVE,         /* bytes */
	SERIES_GOROUTINES,        /* count */
	SERIES_GOROUTINE_STACKS,  /* bytes */
	SERIES_C_OUTSTANDING,     /* bytes */
	SERIES_JNI_REFS,          /* count */
	SERIES_RSS_ANON,          /* bytes */
	SERIES_RSS_FILE,          /* bytes */
	SERIES_METRIC_COUNT,
};

/* "heap_marked", "rss_anon", ... (also used as metric label values). */
const char *series_metric_name(enum series_metric m);

struct process_series {
	struct series *metric[SERIES_METRIC_COUNT];
};

/* 0 or -EINVAL / -ENOMEM; on error nothing stays allocated. */
int process_series_init(struct process_series *ps, uint32_t capacity);
void process_series_free(struct process_series *ps);

#endif

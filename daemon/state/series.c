#include "state/series.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct series {
	uint32_t capacity;
	uint32_t head; /* next slot to write */
	uint32_t count;
	uint64_t out_of_order;
	struct series_point points[];
};

struct series *series_new(uint32_t capacity)
{
	struct series *s;

	if (capacity < 2 || capacity > SERIES_MAX_CAPACITY)
		return NULL;
	s = calloc(1, sizeof(*s) + (size_t)capacity * sizeof(s->points[0]));
	if (s)
		s->capacity = capacity;
	return s;
}

void series_free(struct series *s)
{
	free(s);
}

/* i-th oldest point, 0 <= i < count. */
static const struct series_point *point_at(const struct series *s, uint32_t i)
{
	uint32_t start = (s->head + s->capacity - s->count) % s->capacity;

	return &s->points[(start + i) % s->capacity];
}

void series_push(struct series *s, uint64_t t_ns, double value)
{
	if (s->count && t_ns < point_at(s, s->count - 1)->t_ns) {
		/* Windows are found by binary search, so time must not go back. */
		s->out_of_order++;
		return;
	}
	s->points[s->head] = (struct series_point){ .t_ns = t_ns, .value = value };
	s->head = (s->head + 1) % s->capacity;
	if (s->count < s->capacity)
		s->count++;
}

void series_clear(struct series *s)
{
	s->head = 0;
	s->count = 0;
}

uint32_t series_len(const struct series *s) { return s->count; }
uint32_t series_capacity(const struct series *s) { return s->capacity; }
uint64_t series_out_of_order(const struct series *s) { return s->out_of_order; }

int series_last(const struct series *s, struct series_point *out)
{
	if (!s->count)
		return -ENOENT;
	*out = *point_at(s, s->count - 1);
	return 0;
}

/* Index of the oldest point with t_ns >= since_ns (count when none). */
static uint32_t first_since(const struct series *s, uint64_t since_ns)
{
	uint32_t lo = 0, hi = s->count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (point_at(s, mid)->t_ns < since_ns)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

size_t series_window_ends(const struct series *s, uint64_t since_ns, struct series_point *first,
			  struct series_point *last)
{
	uint32_t i = first_since(s, since_ns);

	if (i < s->count) {
		*first = *point_at(s, i);
		*last = *point_at(s, s->count - 1);
	}
	return s->count - i;
}

size_t series_window(const struct series *s, uint64_t since_ns, struct series_point *out,
		     size_t max_out, size_t *raw_count)
{
	uint32_t first = first_since(s, since_ns), n;

	n = s->count - first;
	if (raw_count)
		*raw_count = n;
	if (!max_out)
		return 0;
	if (n <= max_out) {
		for (uint32_t i = 0; i < n; i++)
			out[i] = *point_at(s, first + i);
		return n;
	}
	for (size_t b = 0; b < max_out; b++) {
		size_t from = b * n / max_out, to = (b + 1) * n / max_out;
		uint64_t t0 = point_at(s, first + from)->t_ns;
		double dt = 0, v = 0;

		/* Offsets from the bucket's first time keep the sum exact enough. */
		for (size_t i = from; i < to; i++) {
			const struct series_point *p = point_at(s, first + i);

			dt += (double)(p->t_ns - t0);
			v += p->value;
		}
		out[b].t_ns = t0 + (uint64_t)(dt / (double)(to - from));
		out[b].value = v / (double)(to - from);
	}
	return max_out;
}

const char *series_metric_name(enum series_metric m)
{
	static const char *const names[SERIES_METRIC_COUNT] = {
		[SERIES_HEAP_MARKED] = "heap_marked",
		[SERIES_HEAP_LIVE] = "heap_live",
		[SERIES_GOROUTINES] = "goroutines",
		[SERIES_GOROUTINE_STACKS] = "goroutine_stacks",
		[SERIES_C_OUTSTANDING] = "c_outstanding",
		[SERIES_JNI_REFS] = "jni_refs",
		[SERIES_RSS_ANON] = "rss_anon",
		[SERIES_RSS_FILE] = "rss_file",
	};

	return (unsigned)m < SERIES_METRIC_COUNT ? names[m] : "?";
}

int process_series_init(struct process_series *ps, uint32_t capacity)
{
	memset(ps, 0, sizeof(*ps));
	for (int m = 0; m < SERIES_METRIC_COUNT; m++) {
		ps->metric[m] = series_new(capacity);
		if (!ps->metric[m]) {
			process_series_free(ps);
			return capacity < 2 || capacity > SERIES_MAX_CAPACITY ? -EINVAL : -ENOMEM;
		}
	}
	return 0;
}

void process_series_free(struct process_series *ps)
{
	for (int m = 0; m < SERIES_METRIC_COUNT; m++) {
		series_free(ps->metric[m]);
		ps->metric[m] = NULL;
	}
}

#include "detect/alert.h"
#include "base/util.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct alert_entry {
	bool used;
	uint64_t site_id;
	uint32_t clear_streak;
	struct alert_record rec; /* the latest firing record; key = rec.pid, rec.kind, site_id */
};

struct alert_table {
	struct alert_params params;
	uint32_t capacity; /* slots allocated, >= params.max_active */
	double tokens;
	uint64_t refill_ns; /* last refill, 0 = never */
	struct alert_counters counters;
	struct alert_entry *entries;
};

void alert_params_defaults(struct alert_params *p)
{
	p->hysteresis = 3;
	p->rate_limit = 10;
	p->rate_interval_ns = 60ull * 1000000000ull;
	p->max_active = 256;
}

static bool params_valid(const struct alert_params *p)
{
	return p->hysteresis >= 1 && p->max_active >= 1 && p->max_active <= ALERT_MAX_ACTIVE_LIMIT &&
	       (p->rate_limit == 0 || p->rate_interval_ns > 0);
}

struct alert_table *alert_table_new(const struct alert_params *p)
{
	struct alert_table *t;

	if (!params_valid(p))
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->entries = calloc(p->max_active, sizeof(t->entries[0]));
	if (!t->entries) {
		free(t);
		return NULL;
	}
	t->capacity = p->max_active;
	t->params = *p;
	t->tokens = p->rate_limit;
	return t;
}

void alert_table_free(struct alert_table *t)
{
	if (!t)
		return;
	free(t->entries);
	free(t);
}

int alert_table_set_params(struct alert_table *t, const struct alert_params *p)
{
	if (!params_valid(p))
		return -EINVAL;
	if (p->max_active > t->capacity) {
		struct alert_entry *e = realloc(t->entries, p->max_active * sizeof(*e));

		if (!e)
			return -ENOMEM;
		memset(e + t->capacity, 0, (p->max_active - t->capacity) * sizeof(*e));
		t->entries = e;
		t->capacity = p->max_active;
	}
	if (t->tokens > p->rate_limit)
		t->tokens = p->rate_limit;
	t->params = *p;
	return 0;
}

static struct alert_entry *find(struct alert_table *t, pid_t pid, enum drift_kind kind,
				uint64_t site_id)
{
	for (uint32_t i = 0; i < t->capacity; i++) {
		struct alert_entry *e = &t->entries[i];

		if (e->used && e->rec.pid == pid && e->rec.kind == kind && e->site_id == site_id)
			return e;
	}
	return NULL;
}

static struct alert_entry *free_slot(struct alert_table *t)
{
	for (uint32_t i = 0; i < t->capacity; i++)
		if (!t->entries[i].used)
			return &t->entries[i];
	return NULL;
}

/* Token bucket: rate_limit tokens per interval, burst of rate_limit. */
static bool rate_allow(struct alert_table *t, uint64_t now_ns)
{
	const struct alert_params *p = &t->params;

	if (!p->rate_limit)
		return true;
	if (t->refill_ns && now_ns > t->refill_ns) {
		t->tokens += (double)(now_ns - t->refill_ns) / (double)p->rate_interval_ns *
			     p->rate_limit;
		if (t->tokens > p->rate_limit)
			t->tokens = p->rate_limit;
	}
	if (now_ns > t->refill_ns)
		t->refill_ns = now_ns;
	if (t->tokens < 1)
		return false;
	t->tokens -= 1;
	return true;
}

static void copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static void fill_record(struct alert_record *rec, const struct alert_observation *obs,
			uint64_t ts_ns)
{
	memset(rec, 0, sizeof(*rec));
	rec->ts_ns = ts_ns;
	rec->pid = obs->pid;
	copy_str(rec->comm, sizeof(rec->comm), obs->comm);
	rec->kind = obs->kind;
	rec->severity = obs->severity;
	rec->state = ALERT_FIRING;
	if (obs->site) {
		rec->has_site = true;
		rec->site = *obs->site;
	}
	copy_str(rec->summary, sizeof(rec->summary), obs->summary);
	if (obs->evidence)
		rec->evidence = *obs->evidence;
}

static bool key_valid(const struct alert_observation *obs)
{
	return obs->pid > 0 && (unsigned)obs->kind < DRIFT_KIND_COUNT &&
	       (unsigned)obs->severity <= DRIFT_CRITICAL;
}

static void resolve(struct alert_table *t, struct alert_entry *e, uint64_t ts_ns,
		    const char *summary, const struct detect_evidence *ev, alert_emit_fn emit,
		    void *ctx)
{
	e->rec.state = ALERT_RESOLVED;
	e->rec.ts_ns = ts_ns;
	if (summary)
		copy_str(e->rec.summary, sizeof(e->rec.summary), summary);
	if (ev)
		e->rec.evidence = *ev;
	t->counters.resolved++;
	t->counters.active--;
	if (emit)
		emit(&e->rec, ctx);
	e->used = false;
}

int alert_table_update(struct alert_table *t, const struct alert_observation *obs,
		       uint64_t now_ns, uint64_t ts_ns, alert_emit_fn emit, void *ctx)
{
	struct alert_entry *e;

	if (!key_valid(obs))
		return -EINVAL;
	e = find(t, obs->pid, obs->kind, obs->site_id);
	if (obs->severity == DRIFT_CLEAR) {
		if (!e || ++e->clear_streak < t->params.hysteresis)
			return 0;
		resolve(t, e, ts_ns, obs->summary, obs->evidence, emit, ctx);
		return 1;
	}
	if (e) {
		e->clear_streak = 0;
		if (obs->severity <= e->rec.severity) {
			/* Still firing: keep the newest numbers for the resolution and /metrics. */
			if (obs->evidence)
				e->rec.evidence = *obs->evidence;
			return 0;
		}
		/* The same alert, raised: re-emitted so the operator sees it. */
		fill_record(&e->rec, obs, ts_ns);
		t->counters.escalated++;
		if (emit)
			emit(&e->rec, ctx);
		return 1;
	}
	if (t->counters.active >= t->params.max_active || !(e = free_slot(t))) {
		t->counters.dropped_full++;
		return 0;
	}
	if (!rate_allow(t, now_ns)) {
		/* Not remembered: it is retried at the next evaluation. */
		t->counters.rate_limited++;
		return 0;
	}
	e->used = true;
	e->site_id = obs->site_id;
	e->clear_streak = 0;
	fill_record(&e->rec, obs, ts_ns);
	t->counters.fired++;
	t->counters.active++;
	if (emit)
		emit(&e->rec, ctx);
	return 1;
}

int alert_table_forget_pid(struct alert_table *t, pid_t pid, uint64_t ts_ns, alert_emit_fn emit,
			   void *ctx)
{
	int n = 0;

	for (uint32_t i = 0; i < t->capacity; i++) {
		struct alert_entry *e = &t->entries[i];

		if (e->used && e->rec.pid == pid) {
			resolve(t, e, ts_ns, "process exited", NULL, emit, ctx);
			n++;
		}
	}
	return n;
}

void alert_table_oneshot(struct alert_table *t, const struct alert_observation *obs,
			 uint64_t ts_ns, alert_emit_fn emit, void *ctx)
{
	struct alert_record rec;

	fill_record(&rec, obs, ts_ns);
	if (rec.severity == DRIFT_CLEAR)
		rec.severity = DRIFT_CRITICAL;
	t->counters.fired++;
	if (emit)
		emit(&rec, ctx);
}

const struct alert_counters *alert_table_counters(const struct alert_table *t)
{
	return &t->counters;
}

void alert_table_foreach(const struct alert_table *t, alert_emit_fn fn, void *ctx)
{
	for (uint32_t i = 0; i < t->capacity; i++)
		if (t->entries[i].used)
			fn(&t->entries[i].rec, ctx);
}

/* ---- JSON ---- */

int alert_format_time(uint64_t ts_ns, char *buf, size_t len)
{
	time_t secs = (time_t)(ts_ns / 1000000000ull);
	struct tm tm;
	int n;

	gmtime_r(&secs, &tm);
	n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     (unsigned)(ts_ns / 1000000ull % 1000));
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

/* Whole numbers print as integers, others with 6 significant digits; json-c's
 * default %.17g would print 1048576.0000000002. NaN/inf are not JSON: null. */
static struct json_object *json_number(double v)
{
	char s[64];

	if (!isfinite(v))
		return NULL;
	if (fabs(v) < 9e15 && (fabs(v) >= 1000 || v == floor(v)))
		return json_object_new_int64((int64_t)llround(v));
	snprintf(s, sizeof(s), "%.6g", v);
	return json_object_new_double_s(v, s);
}

static int add(struct json_object *obj, const char *key, struct json_object *val)
{
	return json_object_object_add(obj, key, val);
}

int alert_record_json(const struct alert_record *rec, char *buf, size_t len)
{
	const struct detect_evidence *ev = &rec->evidence;
	struct json_object *o, *site = NULL, *e;
	const char *s;
	char ts[40];
	size_t n;

	alert_format_time(rec->ts_ns, ts, sizeof(ts));
	o = json_object_new_object();
	e = json_object_new_object();
	if (!o || !e) {
		json_object_put(o);
		json_object_put(e);
		return -ENOMEM;
	}
	add(o, "ts", json_object_new_string(ts));
	add(o, "pid", json_object_new_int64(rec->pid));
	add(o, "comm", json_object_new_string(rec->comm));
	add(o, "kind", json_object_new_string(drift_kind_name(rec->kind)));
	add(o, "severity", json_object_new_string(drift_severity_name(rec->severity)));
	add(o, "state", json_object_new_string(rec->state == ALERT_FIRING ? "firing" : "resolved"));
	if (rec->has_site) {
		site = json_object_new_object();
		add(site, "function", json_object_new_string(rec->site.function));
		add(site, "file", rec->site.file[0] ? json_object_new_string(rec->site.file) : NULL);
		add(site, "line", rec->site.line ? json_object_new_int64(rec->site.line) : NULL);
	}
	add(o, "site", site);
	add(o, "summary", json_object_new_string(rec->summary));
	add(e, "window_seconds", json_number(ev->window_seconds));
	add(e, "slope_per_second", json_number(ev->slope_per_second));
	add(e, "mann_kendall_z", json_number(ev->mann_kendall_z));
	add(e, "p_value", json_number(ev->p_value));
	add(e, "start_value", json_number(ev->start_value));
	add(e, "end_value", json_number(ev->end_value));
	add(e, "points", json_object_new_int64(ev->points));
	for (uint32_t i = 0; i < ev->n_extra && i < DETECT_MAX_EXTRA; i++)
		if (ev->extra[i].name)
			add(e, ev->extra[i].name, json_number(ev->extra[i].value));
	add(o, "evidence", e);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	n = s ? strlen(s) : 0;
	if (!s || n >= len) {
		json_object_put(o);
		return s ? -ENOSPC : -ENOMEM;
	}
	memcpy(buf, s, n + 1);
	json_object_put(o);
	return (int)n;
}

/* ---- sentences ---- */

struct text {
	char *buf;
	size_t len, pos; /* pos may run past len: the would-be length */
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(t->pos < t->len ? t->buf + t->pos : NULL,
		      t->pos < t->len ? t->len - t->pos : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->pos += (size_t)n;
}

static void put_bytes(struct text *t, double v)
{
	const char *sign = v < 0 ? "-" : "+";
	double a = fabs(v);

	if (a >= 1024.0 * 1024 * 1024)
		put(t, "%s%.1f GiB", sign, a / (1024.0 * 1024 * 1024));
	else if (a >= 1024.0 * 1024)
		put(t, "%s%.0f MiB", sign, a / (1024.0 * 1024));
	else if (a >= 1024)
		put(t, "%s%.0f KiB", sign, a / 1024);
	else
		put(t, "%s%.0f B", sign, a);
}

/* 600 s -> "10m", 90 s -> "1m30s", 45 s -> "45s", 5400 s -> "1h30m". */
static void put_duration(struct text *t, double secs)
{
	uint64_t s = (uint64_t)llround(secs);

	if (s >= 3600)
		s % 3600 / 60 ? put(t, "%luh%lum", (unsigned long)(s / 3600),
				    (unsigned long)(s % 3600 / 60))
			      : put(t, "%luh", (unsigned long)(s / 3600));
	else if (s >= 60)
		s % 60 ? put(t, "%lum%lus", (unsigned long)(s / 60), (unsigned long)(s % 60))
		       : put(t, "%lum", (unsigned long)(s / 60));
	else
		put(t, "%lus", (unsigned long)s);
}

static void put_site(struct text *t, const struct alert_site *site)
{
	if (!site || !site->function[0])
		return;
	put(t, " at %s", site->function);
	if (site->file[0] && site->line)
		put(t, " (%s:%u)", path_base(site->file), site->line);
	else if (site->file[0])
		put(t, " (%s)", site->file);
}

static int text_end(struct text *t)
{
	if (t->len && t->pos >= t->len)
		t->buf[t->len - 1] = '\0';
	return (int)(t->pos < t->len ? t->pos : (t->len ? t->len - 1 : 0));
}

#define MIB_D (1024.0 * 1024)

int correlate_layers(const struct correlation_input *in, char *buf, size_t len,
		     enum drift_layer *grew)
{
	static const char *const names[LAYER_COUNT] = {
		[LAYER_GO_HEAP] = "Go heap",
		[LAYER_GOROUTINE_STACKS] = "goroutine stacks",
		[LAYER_C_MEMORY] = "C memory",
		[LAYER_JNI_REFS] = "JNI refs",
		[LAYER_RSS_FILE] = "file-backed",
	};
	struct text t = { buf, len, 0 };
	enum drift_layer best = LAYER_NONE;
	double best_delta = MIB_D, explained = 0, rest;
	bool first = true;

	if (len)
		buf[0] = '\0';
	for (int l = 0; l < LAYER_COUNT; l++) {
		const struct layer_delta *d = &in->layer[l];

		if (!d->known || l == LAYER_JNI_REFS)
			continue;
		if (l != LAYER_RSS_FILE)
			explained += d->delta;
		if (d->delta >= best_delta) {
			best = (enum drift_layer)l;
			best_delta = d->delta;
		}
	}
	/* Anon RSS the layers do not explain (allocator slack, other libraries,
	 * thread stacks) is a layer of its own when it is the biggest. */
	rest = in->rss_known ? in->rss_anon_delta - explained : 0;
	if (rest >= best_delta)
		best = LAYER_OTHER;

	if (in->rss_known) {
		double total = in->rss_anon_delta +
			       (in->layer[LAYER_RSS_FILE].known ? in->layer[LAYER_RSS_FILE].delta : 0);

		put(&t, "RSS ");
		put_bytes(&t, total);
		put(&t, " in ");
	} else {
		put(&t, "In ");
	}
	put_duration(&t, (double)in->window_ns / 1e9);
	put(&t, ":");
	for (int l = 0; l < LAYER_COUNT; l++) {
		const struct layer_delta *d = &in->layer[l];

		if (!d->known)
			continue;
		/* File-backed RSS only when it moved; the others always, zeros included. */
		if (l == LAYER_RSS_FILE && fabs(d->delta) < MIB_D)
			continue;
		put(&t, "%s %s ", first ? "" : ",", names[l]);
		if (l == LAYER_JNI_REFS)
			put(&t, "%+.0f", d->delta);
		else
			put_bytes(&t, d->delta);
		put_site(&t, d->site);
		first = false;
	}
	if (in->rss_known && fabs(rest) >= MIB_D) {
		put(&t, "%s unattributed ", first ? "" : ",");
		put_bytes(&t, rest);
		first = false;
	}
	if (first)
		put(&t, " no layer data");
	if (grew)
		*grew = best;
	return text_end(&t);
}

int alert_summary(enum drift_kind kind, const struct detect_evidence *ev,
		  const struct alert_site *site, char *buf, size_t len)
{
	struct text t = { buf, len, 0 };
	double growth = ev->slope_per_second * ev->window_seconds;

	if (len)
		buf[0] = '\0';
	switch (kind) {
	case DRIFT_GOROUTINE_LEAK:
		put(&t, "goroutines");
		put_site(&t, site);
		put(&t, " %+.0f in ", growth);
		put_duration(&t, ev->window_seconds);
		put(&t, " (%.2f/s)", ev->slope_per_second);
		for (uint32_t i = 0; i < ev->n_extra; i++)
			if (ev->extra[i].name && !strcmp(ev->extra[i].name, "blocked_long"))
				put(&t, ", %.0f blocked long in waits", ev->extra[i].value);
		break;
	case DRIFT_JNI_REF_LEAK:
		put(&t, "JNI global refs");
		put_site(&t, site);
		put(&t, " %+.0f in ", growth);
		put_duration(&t, ev->window_seconds);
		put(&t, " (%.2f/s)", ev->slope_per_second);
		break;
	case DRIFT_GO_HEAP_GROWTH:
	case DRIFT_NATIVE_LEAK:
	case DRIFT_RSS_GROWTH:
		put(&t, "%s", kind == DRIFT_GO_HEAP_GROWTH ? "Go heap (marked after GC)" :
			      kind == DRIFT_NATIVE_LEAK ? "C memory outstanding" : "RSS");
		put_site(&t, site);
		put(&t, " ");
		put_bytes(&t, growth);
		put(&t, " in ");
		put_duration(&t, ev->window_seconds);
		put(&t, " (");
		put_bytes(&t, ev->slope_per_second);
		put(&t, "/s)");
		break;
	case DRIFT_OOM_KILL:
		put(&t, "killed by the OOM killer");
		break;
	default:
		return -EINVAL;
	}
	for (uint32_t i = 0; i < ev->n_extra; i++)
		if (ev->extra[i].name && !strcmp(ev->extra[i].name, "oldest_age_seconds")) {
			put(&t, ", oldest outstanding ");
			put_duration(&t, ev->extra[i].value);
			put(&t, " old");
		}
	return text_end(&t);
}

/* The daemon's per-kind evaluation: each process's series through the pure
 * detectors (detect.h) into the alert table, with the layers that explain
 * an RSS growth (alert.h correlate_layers) and the site that names it. */
#include "detect/evaluate.h"

#include <stdio.h>
#include <string.h>

#include "detect/alert.h"
#include "detect/detect.h"
#include "service/daemon.h"
#include "state/watched.h"

static double window_delta(const struct series *s, uint64_t since)
{
	struct series_point first, last;

	if (series_window_ends(s, since, &first, &last) < 2)
		return 0;
	return last.value - first.value;
}

/* Time of the oldest point of s at or after since (since when none). */
static uint64_t window_start(const struct series *s, uint64_t since)
{
	struct series_point first, last;

	return series_window_ends(s, since, &first, &last) ? first.t_ns : since;
}

/* Replaces the first occurrence of what in buf (NUL-terminated, size len),
 * truncating at len - 1. */
static void replace_word(char *buf, size_t len, const char *what, const char *with)
{
	char tail[ALERT_SUMMARY_MAX];
	char *at = strstr(buf, what);
	size_t head, wl = strlen(with);

	if (!at || !len)
		return;
	head = (size_t)(at - buf);
	snprintf(tail, sizeof(tail), "%s", at + strlen(what));
	if (head + wl >= len)
		wl = len - 1 - head;
	memcpy(buf + head, with, wl);
	buf[head + wl] = '\0';
	if (head + wl + 1 < len)
		snprintf(buf + head + wl, len - head - wl, "%s", tail);
}


/* One verdict into the alert table, its summary composed from the evidence. */
static void update_alert(struct daemon *d, struct watched *w, enum drift_kind kind, uint64_t site_id,
			 const struct alert_site *site, struct detect_result *r, uint64_t now,
			 uint64_t ts)
{
	char summary[ALERT_SUMMARY_MAX];
	struct alert_observation obs;

	alert_summary(kind, &r->evidence, site, summary, sizeof(summary));
	obs = (struct alert_observation){ .pid = w->pid, .comm = w->comm, .kind = kind,
					  .site_id = site_id, .site = site, .severity = r->severity,
					  .summary = summary, .evidence = &r->evidence };
	alert_table_update(d->alerts, &obs, now, ts, daemon_emit_alert, d);
}

static void evaluate_native(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	const struct detect_params *p = &d->cfg.detect;
	struct detect_result r;

	if (!w->trace.native)
		return;
	for (size_t i = 0; i < native_watch_nsites(w->trace.native); i++) {
		struct native_watch_site *s = native_watch_site(w->trace.native, i);

		if (detect_outstanding(DRIFT_NATIVE_LEAK, s->bytes, now, s->oldest_age_ns, p, &r) < 0 ||
		    !r.enough_data)
			continue;
		detect_evidence_add(&r.evidence, "outstanding_bytes", (double)s->bytes_now);
		detect_evidence_add(&r.evidence, "outstanding_blocks", (double)s->count_now);
		update_alert(d, w, DRIFT_NATIVE_LEAK, s->id, &s->site, &r, now, ts);
	}
}

static void evaluate_goroutines(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	const struct detect_params *p = &d->cfg.detect;
	struct detect_result r;

	for (size_t i = 0; i < w->go.nsites; i++) {
		struct site_track *t = &w->go.sites[i];
		struct goroutine_site_blocking b = { t->blocked_long, t->oldest_blocked_ns,
						     t->leaked };

		/* too few points is no verdict: a firing alert stays as it is */
		if (detect_goroutine_site(t->count, now, &b, p, &r) < 0 || !r.enough_data)
			continue;
		detect_evidence_add(&r.evidence, "goroutines", t->live);
		update_alert(d, w, DRIFT_GOROUTINE_LEAK, t->gopc, &t->site, &r, now, ts);
		if (r.severity != DRIFT_CLEAR)
			drift_trace_request(d, w, DRIFT_GOROUTINE_LEAK, t->site.function);
	}
}

/* Go heap, judged on heap marked after each GC */
static void evaluate_go_heap(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	struct detect_result r;
	struct alert_site top = { 0 };
	bool have_top = false;

	if (detect_go_heap(w->series.metric[SERIES_HEAP_MARKED], now, &d->cfg.detect, &r) < 0 ||
	    !r.enough_data)
		return;
	if (r.severity != DRIFT_CLEAR) {
		/* name the allocation site that holds the most in-use heap */
		struct heap_profile hp = { 0 };
		struct heap_site *hs = NULL;
		size_t nhs = 0;
		char err[256];

		if (heap_profile_top_sites(&w->go.target, &hp, 1, &hs, &nhs, err, sizeof(err)) == 0 &&
		    nhs > 0) {
			heap_site_to_alert(&hs[0], &top);
			detect_evidence_add(&r.evidence, "top_site_inuse_bytes",
					    (double)hs[0].inuse_bytes);
			have_top = true;
		}
		free(hs);
		heap_profile_free(&hp);
	}
	update_alert(d, w, DRIFT_GO_HEAP_GROWTH, 0, have_top ? &top : NULL, &r, now, ts);
}

/* RSS, with the layers that explain it, over the span the points cover (a
 * process watched for less than detect.window has a shorter one). */
static void evaluate_rss(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	const struct detect_params *p = &d->cfg.detect;
	struct correlation_input in = { .rss_known = true };
	char summary[ALERT_SUMMARY_MAX];
	struct alert_observation obs;
	struct detect_result r;
	const struct alert_site *top_site = NULL;
	enum drift_layer grew = LAYER_NONE;
	uint64_t since = now > p->window_ns ? now - p->window_ns : 0;
	uint32_t top_live = 0;
	double rest;

	if (detect_rss(w->series.metric[SERIES_RSS_ANON], now, p, &r) < 0 || !r.enough_data)
		return;
	since = window_start(w->series.metric[SERIES_RSS_ANON], since);
	in.window_ns = now > since ? now - since : 0;
	in.rss_anon_delta = window_delta(w->series.metric[SERIES_RSS_ANON], since);
	if (w->cls == CLASS_GO) {
		in.layer[LAYER_GO_HEAP].known = true;
		in.layer[LAYER_GO_HEAP].delta =
			window_delta(w->series.metric[SERIES_HEAP_LIVE], since);
		for (size_t i = 0; i < w->go.nsites; i++)
			if (w->go.sites[i].live > top_live) {
				top_live = w->go.sites[i].live;
				top_site = &w->go.sites[i].site;
			}
		in.layer[LAYER_GOROUTINE_STACKS].known = true;
		in.layer[LAYER_GOROUTINE_STACKS].delta =
			window_delta(w->series.metric[SERIES_GOROUTINE_STACKS], since);
		in.layer[LAYER_GOROUTINE_STACKS].site = top_site;
		if (w->trace.native) {
			const struct native_watch_site *top = NULL;

			for (size_t i = 0; i < native_watch_nsites(w->trace.native); i++) {
				const struct native_watch_site *ns = native_watch_site(w->trace.native, i);

				if (!top || ns->bytes_now > top->bytes_now)
					top = ns;
			}
			in.layer[LAYER_C_MEMORY].known = true;
			in.layer[LAYER_C_MEMORY].delta =
				window_delta(w->series.metric[SERIES_C_OUTSTANDING], since);
			in.layer[LAYER_C_MEMORY].site = top ? &top->site : NULL;
		}
	} else if (w->cls == CLASS_JVM && w->jvm->trace) {
		in.layer[LAYER_JNI_REFS].known = true;
		in.layer[LAYER_JNI_REFS].delta = window_delta(w->series.metric[SERIES_JNI_REFS], since);
	}
	in.layer[LAYER_RSS_FILE].known = true;
	in.layer[LAYER_RSS_FILE].delta = window_delta(w->series.metric[SERIES_RSS_FILE], since);
	correlate_layers(&in, summary, sizeof(summary), &grew);
	rest = in.rss_anon_delta - in.layer[LAYER_GO_HEAP].delta -
	       in.layer[LAYER_GOROUTINE_STACKS].delta;
	/* anon memory a Go program has outside its heap and stacks is, in a
	 * cgo program, most likely what its C code allocated */
	if (w->cls == CLASS_GO && w->go.cgo)
		replace_word(summary, sizeof(summary), " unattributed ",
			     " outside the Go heap (likely C/native memory, cgo) ");
	else if (w->cls == CLASS_GO)
		replace_word(summary, sizeof(summary), " unattributed ",
			     " outside the Go heap and stacks ");
	if (r.severity == DRIFT_CLEAR)
		alert_summary(DRIFT_RSS_GROWTH, &r.evidence, NULL, summary, sizeof(summary));
	/* the anomaly path fills 4 of DETECT_MAX_EXTRA slots: the two numbers
	 * that say which layer grew come first (stacks are in the summary) */
	if (w->cls == CLASS_GO) {
		detect_evidence_add(&r.evidence, "go_heap_delta_bytes", in.layer[LAYER_GO_HEAP].delta);
		detect_evidence_add(&r.evidence, "outside_go_heap_delta_bytes", rest);
	} else if (in.layer[LAYER_JNI_REFS].known) {
		detect_evidence_add(&r.evidence, "jni_refs_delta", in.layer[LAYER_JNI_REFS].delta);
	}
	detect_evidence_add(&r.evidence, "rss_anon_delta_bytes", in.rss_anon_delta);
	obs = (struct alert_observation){ .pid = w->pid, .comm = w->comm, .kind = DRIFT_RSS_GROWTH,
					  .severity = r.severity, .summary = summary,
					  .evidence = &r.evidence };
	alert_table_update(d->alerts, &obs, now, ts, daemon_emit_alert, d);
	if (r.severity != DRIFT_CLEAR && w->cls == CLASS_GO && w->go.cgo && grew == LAYER_OTHER)
		drift_trace_request(d, w, DRIFT_NATIVE_LEAK, "RSS grows outside the Go heap");
}

/* JNI global refs outstanding per creating native stack */
static void evaluate_jni(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	struct jvm_state *j = w->jvm;
	struct detect_result r;

	for (size_t i = 0; i < j->nsites; i++) {
		struct jni_site_track *t = &j->sites[i];

		/* the age of the oldest ref is not kept per site: unknown */
		if (detect_outstanding(DRIFT_JNI_REF_LEAK, t->count, now, UINT64_MAX, &d->cfg.detect,
				       &r) < 0 || !r.enough_data)
			continue;
		detect_evidence_add(&r.evidence, "live_refs", (double)(t->created - t->deleted));
		detect_evidence_add(&r.evidence, "created_refs", (double)t->created);
		detect_evidence_add(&r.evidence, "weak", t->kind == JNI_KIND_WEAK);
		update_alert(d, w, DRIFT_JNI_REF_LEAK, t->id, &t->site, &r, now, ts);
	}
}

void daemon_evaluate(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	/* the native series start with the trace; the detector needs its own
	 * points, not the process's age */
	evaluate_native(d, w, now, ts);
	/* no verdict before the process's series cover enough of the window:
	 * start-up growth is not drift (firing alerts stay as they are) */
	if ((double)(now - w->first_seen_ns) <
	    DAEMON_MIN_WINDOW_COVERAGE * (double)d->cfg.detect.window_ns)
		return;
	if (w->cls == CLASS_GO) {
		evaluate_goroutines(d, w, now, ts);
		evaluate_go_heap(d, w, now, ts);
	} else if (w->cls == CLASS_JVM && w->jvm->trace) {
		evaluate_jni(d, w, now, ts);
	}
	evaluate_rss(d, w, now, ts);
}

/* The daemon's Go sampling: one snapshot of goroutines and heap per
 * process and interval (watch tier, process_vm_readv), goroutines grouped
 * by creation site into series, the top heap sites cached for a
 * post-mortem. */
#include "state/sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "service/daemon.h"
#include "state/watched.h"

static bool is_leak_wait(const char *reason)
{
	/* channel, select and sync waits: where leaked goroutines sit */
	return strstr(reason, "chan") || strstr(reason, "select") || strstr(reason, "sync") ||
	       strstr(reason, "semacquire") || strstr(reason, "Mutex") || strstr(reason, "Cond") ||
	       strstr(reason, "WaitGroup");
}

static struct site_track *site_find(struct watched *w, uint64_t gopc)
{
	for (size_t i = 0; i < w->go.nsites; i++)
		if (w->go.sites[i].gopc == gopc)
			return &w->go.sites[i];
	return NULL;
}

static struct site_track *site_add(struct daemon *d, struct watched *w, const struct snap_site *s)
{
	struct site_track *n, *t;

	if (w->go.nsites >= d->cfg.max_sites)
		return NULL;
	n = realloc(w->go.sites, (w->go.nsites + 1) * sizeof(*n));
	if (!n)
		return NULL;
	w->go.sites = n;
	t = &w->go.sites[w->go.nsites];
	memset(t, 0, sizeof(*t));
	t->count = series_new(d->cfg.series_points);
	if (!t->count)
		return NULL;
	t->gopc = s->gopc;
	snprintf(t->site.function, sizeof(t->site.function), "%s", s->function);
	snprintf(t->site.file, sizeof(t->site.file), "%s", s->file);
	t->site.line = s->line > 0 ? (uint32_t)s->line : 0;
	w->go.nsites++;
	return t;
}

void heap_site_to_alert(const struct heap_site *hs, struct alert_site *out)
{
	snprintf(out->function, sizeof(out->function), "%s", hs->function);
	snprintf(out->file, sizeof(out->file), "%s", hs->file);
	out->line = hs->line > 0 ? (uint32_t)hs->line : 0;
}

static void heap_cache_refresh(struct watched *w, uint64_t now)
{
	struct heap_profile hp = { 0 };
	struct heap_site *hs = NULL;
	size_t n = 0;
	char err[256];

	if ((w->heap_top.at_ns && now - w->heap_top.at_ns < DAEMON_HEAP_CACHE_NS) ||
	    w->go.heap.marked_bytes < w->heap_top.marked + (1u << 20))
		return;
	w->heap_top.at_ns = now;
	w->heap_top.marked = w->go.heap.marked_bytes;
	if (heap_profile_top_sites(&w->go.target, &hp, DAEMON_TOP_SITES, &hs, &n, err,
				   sizeof(err)) == 0) {
		for (size_t i = 0; i < n; i++) {
			heap_site_to_alert(&hs[i], &w->heap_top.site[i]);
			w->heap_top.bytes[i] = (uint64_t)hs[i].inuse_bytes;
		}
		w->heap_top.n = n;
	}
	free(hs);
	heap_profile_free(&hp);
}

int daemon_sample_go(struct daemon *d, struct watched *w, uint64_t now)
{
	const struct go_offsets *off = gobin_offsets(w->go.target.bin);
	struct go_snapshot snap;
	struct snap_site *sites = NULL;
	size_t nsites = 0;
	char err[512];
	int ret;

	ret = go_snapshot_take(&w->go.target, &snap, err, sizeof(err));
	if (ret < 0) {
		d->n.snapshot_errors++;
		if (++w->go.failures == DAEMON_SNAPSHOT_FAILURES_MAX && w->go.ready)
			log_warn("PID %d (%s): %s", w->pid, w->comm, err);
		return ret;
	}
	w->go.failures = 0;
	w->go.ready = true;
	w->snapshots++;
	w->go.goroutines = snap.goroutines;
	w->go.goroutines_leaked = snap.leaked;
	w->go.heap = snap.heap;
	w->go.cgo_calls = snap.cgo_calls;
	w->go.stack_bytes = 0;
	for (size_t i = 0; i < snap.ngs; i++)
		w->go.stack_bytes += snap.gs[i].stack_bytes;

	series_push(w->series.metric[SERIES_GOROUTINES], now, (double)snap.goroutines);
	series_push(w->series.metric[SERIES_GOROUTINE_STACKS], now, (double)w->go.stack_bytes);
	series_push(w->series.metric[SERIES_HEAP_LIVE], now, (double)snap.heap.live_bytes);
	/* the leak signal: one point per completed GC cycle */
	if (!w->go.have_numgc || (uint32_t)snap.heap.gc_cycles != w->go.last_numgc) {
		if (w->go.have_numgc || snap.heap.gc_cycles > 0)
			series_push(w->series.metric[SERIES_HEAP_MARKED], now,
				    (double)snap.heap.marked_bytes);
		w->go.last_numgc = (uint32_t)snap.heap.gc_cycles;
		w->go.have_numgc = true;
	}
	watched_push_rss(w, now);

	for (size_t i = 0; i < w->go.nsites; i++) {
		w->go.sites[i].seen = false;
		w->go.sites[i].live = 0;
		w->go.sites[i].blocked_long = 0;
		w->go.sites[i].leaked = 0;
		w->go.sites[i].oldest_blocked_ns = 0;
	}
	if (go_snapshot_sites(&w->go.target, &snap, &sites, &nsites) == 0) {
		for (size_t i = 0; i < nsites; i++) {
			struct site_track *t = site_find(w, sites[i].gopc);

			if (!t)
				t = site_add(d, w, &sites[i]);
			if (!t)
				continue;
			t->seen = true;
			t->live = (uint32_t)sites[i].count;
			t->leaked = (uint32_t)sites[i].leaked;
		}
	}
	for (size_t i = 0; i < snap.ngs; i++) {
		const struct snap_goroutine *g = &snap.gs[i];
		struct site_track *t;
		uint64_t age;

		if (g->system || g->status != 4 || g->waitsince <= 0 ||
		    (uint64_t)g->waitsince >= now)
			continue;
		age = now - (uint64_t)g->waitsince;
		if (age < d->cfg.goroutine_blocked_min_age_ns ||
		    !is_leak_wait(go_wait_reason_name(off, g->waitreason)))
			continue;
		t = site_find(w, g->gopc);
		if (!t)
			continue;
		t->blocked_long++;
		if (age > t->oldest_blocked_ns)
			t->oldest_blocked_ns = age;
	}
	for (size_t i = 0; i < w->go.nsites; i++)
		series_push(w->go.sites[i].count, now, (double)w->go.sites[i].live);
	free(sites);
	go_snapshot_free(&snap);
	heap_cache_refresh(w, now);
	return 0;
}

void go_sample_free(struct go_sample *g, bool opened)
{
	for (size_t i = 0; i < g->nsites; i++)
		series_free(g->sites[i].count);
	free(g->sites);
	if (opened)
		go_target_close(&g->target);
}

/* Trace on drift: the trace-tier probes a drifting process gets for
 * trace.duration under trace.cpu_budget (state/drift_trace.h). */
#include "state/drift_trace.h"

#include <stdio.h>

#include "base/log.h"
#include "base/util.h"
#include "service/daemon.h"
#include "state/watched.h"

/* What each drift switches on (each request counted in
 * memdrift_daemon_events_total{event="trace_request"}, once per process and
 * kind):
 *   rss_growth of go+cgo with the growth outside the Go heap (native_leak)
 *       -> C memory tracing (state/native_watch.h over trace/native_trace.h:
 *          libc malloc/free by C stack joined to the Go caller of the cgo
 *          call), sampled each tick into per-site series that the
 *          native_leak detector judges (detect/evaluate.c), off after
 *          trace.duration or over trace.cpu_budget (drift_trace_sample);
 *   goroutine_leak -> logged: its sites are named by the snapshot already. */
void drift_trace_request(struct daemon *d, struct watched *w, enum drift_kind kind,
			  const char *why)
{
	if (!d->cfg.trace_on_drift || (w->trace.requested & (1u << kind)))
		return;
	w->trace.requested |= 1u << kind;
	d->n.trace_requests++;
	if (kind == DRIFT_NATIVE_LEAK && w->cls == CLASS_GO && !w->trace.native) {
		char err[512];
		int ret = native_watch_start(w->pid, &w->go.target, w->go.cgo, d->cfg.series_points,
					     d->cfg.max_sites, d->cfg.max_native_allocations,
					     &w->trace.native, err, sizeof(err));

		if (ret < 0) {
			d->n.trace_errors++;
			log_warn("PID %d (%s): cannot trace C memory: %s", w->pid, w->comm, err);
			return;
		}
		w->trace.native_until_ns = now_monotonic_ns() + d->cfg.trace_duration_ns;
		w->trace.native_cost_ns = 0;
		w->trace.native_cost_at_ns = native_watch_started_ns(w->trace.native);
		log_info("PID %d (%s): %s (%s): tracing C allocations for %.0fs", w->pid, w->comm,
			 drift_kind_name(kind), why, (double)d->cfg.trace_duration_ns / 1e9);
		return;
	}
	/* goroutine sites are named by the snapshot already; exact births and
	 * deaths are `memdrift attach --trace goroutines` */
	log_info("PID %d (%s): %s drift (%s)", w->pid, w->comm, drift_kind_name(kind), why);
}

/* trace.cpu_budget: the probes' cost to the target over the last sample
 * interval, as a percentage of one CPU. */
static double native_cost_percent(struct watched *w, uint64_t now)
{
	uint64_t cost = native_watch_cost_ns(w->trace.native), dt = now - w->trace.native_cost_at_ns;
	double pct = dt ? 100.0 * (double)(cost - w->trace.native_cost_ns) / (double)dt : 0;

	w->trace.native_cost_ns = cost;
	w->trace.native_cost_at_ns = now;
	return pct;
}

void drift_trace_free(struct drift_trace *t)
{
	native_watch_free(t->native);
	t->native = NULL;
}

/* Trace tier for C memory: sample while it runs, switch off when its time
 * is up or its probes cost the target more than trace.cpu_budget (a firing
 * native_leak alert then stays as it was). */
void drift_trace_sample(struct daemon *d, struct watched *w, uint64_t now)
{
	double pct;

	if (!w->trace.native)
		return;
	if (native_watch_sample(w->trace.native, now) < 0 || now >= w->trace.native_until_ns) {
		log_info("PID %d (%s): C allocation tracing off (%lu bytes outstanding at the end)",
			 w->pid, w->comm, (unsigned long)native_watch_outstanding(w->trace.native));
		drift_trace_free(&w->trace);
		return;
	}
	pct = native_cost_percent(w, now);
	if (pct > d->cfg.trace_cpu_budget_percent) {
		d->n.trace_over_budget++;
		log_warn("PID %d (%s): C allocation tracing off: its probes cost %.2f%% of a CPU "
			 "(trace.cpu_budget %g%%)", w->pid, w->comm, pct, d->cfg.trace_cpu_budget_percent);
		drift_trace_free(&w->trace);
		return;
	}
	series_push(w->series.metric[SERIES_C_OUTSTANDING], now,
		    (double)native_watch_outstanding(w->trace.native));
}

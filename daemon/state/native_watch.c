#include "state/native_watch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "symbols/symbolize.h"
#include "trace/native_trace.h"

struct native_watch {
	struct native_trace *nt;
	struct native_watch_site *sites;
	size_t nsites, max_sites;
	uint32_t series_points;
	uint64_t sites_full;
	uint64_t started_ns;
};

int native_watch_start(pid_t pid, const struct go_target *go, bool cgo, uint32_t series_points,
		       uint32_t max_sites, uint32_t max_allocs, struct native_watch **out,
		       char *err, size_t errlen)
{
	struct native_trace_opts o = { .pid = pid, .go = go, .trace_native = true,
				       .trace_cgo = cgo && go, .max_allocs = max_allocs };
	struct native_watch *nw;
	int ret;

	*out = NULL;
	nw = calloc(1, sizeof(*nw));
	if (!nw)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	nw->max_sites = max_sites ? max_sites : 256;
	nw->series_points = series_points;
	nw->sites = calloc(nw->max_sites, sizeof(*nw->sites));
	ret = nw->sites ? native_trace__new(&o, &nw->nt, err, errlen)
			: set_err(err, errlen, -ENOMEM, "out of memory");
	if (ret == 0)
		ret = native_trace__attach(nw->nt, err, errlen);
	if (ret) {
		native_watch_free(nw);
		return ret;
	}
	nw->started_ns = now_monotonic_ns();
	*out = nw;
	return 0;
}

static uint64_t site_id(const struct native_site *s)
{
	const uint64_t parts[] = { (uint64_t)(uint32_t)s->key.stackid,
				   (uint64_t)(uint32_t)s->key.go_stackid, s->key.caller,
				   s->key.go_caller };
	uint64_t h = hash_fnv1a(HASH_FNV1A_INIT, parts, sizeof(parts));

	return h ? h : 1;
}

/* The line a user fixes: the Go caller of the cgo call, else the first C
 * frame outside the allocator. */
static void name_site(struct native_watch *nw, const struct native_site *s, struct alert_site *out)
{
	struct sym_frame frames[NATIVE_MAX_FRAMES];
	const struct sym_frame *go;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	snprintf(out->function, sizeof(out->function), "[unknown]");
	if (native_trace__site_frames(nw->nt, s, frames, NATIVE_MAX_FRAMES, &n) < 0 || !n)
		return;
	go = native_go_caller(frames, n);
	if (go) {
		snprintf(out->function, sizeof(out->function), "%s", go->function);
		snprintf(out->file, sizeof(out->file), "%s", go->file ? go->file : "");
		out->line = go->line > 0 ? (uint32_t)go->line : 0;
		return;
	}
	/* frames[0] is the allocator itself; its caller is the site */
	go = n > 1 ? &frames[1] : &frames[0];
	snprintf(out->function, sizeof(out->function), "%s", go->function ? go->function : "?");
	snprintf(out->file, sizeof(out->file), "%s", go->object ? path_base(go->object) : "");
}

int native_watch_sample(struct native_watch *nw, uint64_t now)
{
	const struct native_site *s;
	size_t n;
	int ret;

	ret = native_trace__poll(nw->nt);
	if (ret)
		return ret;
	for (size_t i = 0; i < nw->nsites; i++)
		nw->sites[i].seen = false;
	s = native_trace__sites(nw->nt, &n);
	for (size_t i = 0; i < n; i++) {
		uint64_t id = site_id(&s[i]);
		struct native_watch_site *w = NULL;

		for (size_t k = 0; k < nw->nsites; k++)
			if (nw->sites[k].id == id) {
				w = &nw->sites[k];
				break;
			}
		if (!w) {
			if (nw->nsites >= nw->max_sites) {
				nw->sites_full++;
				continue;
			}
			w = &nw->sites[nw->nsites];
			w->bytes = series_new(nw->series_points);
			if (!w->bytes)
				continue;
			w->id = id;
			name_site(nw, &s[i], &w->site);
			nw->nsites++;
		}
		w->seen = true;
		w->bytes_now = s[i].bytes;
		w->count_now = s[i].count;
		w->oldest_age_ns = s[i].oldest_birth_ns && s[i].oldest_birth_ns < now ?
				   now - s[i].oldest_birth_ns : 0;
	}
	for (size_t i = 0; i < nw->nsites; i++) {
		struct native_watch_site *w = &nw->sites[i];

		if (!w->seen)
			w->bytes_now = w->count_now = w->oldest_age_ns = 0;
		series_push(w->bytes, now, (double)w->bytes_now);
	}
	return 0;
}

size_t native_watch_nsites(const struct native_watch *nw)
{
	return nw->nsites;
}

struct native_watch_site *native_watch_site(struct native_watch *nw, size_t i)
{
	return i < nw->nsites ? &nw->sites[i] : NULL;
}

uint64_t native_watch_outstanding(const struct native_watch *nw)
{
	struct native_stats st;

	native_trace__stats(nw->nt, &st);
	return st.outstanding_bytes;
}

uint64_t native_watch_lost(const struct native_watch *nw)
{
	struct native_stats st;

	native_trace__stats(nw->nt, &st);
	return st.counters[NATIVE_STAT_ALLOCS_FULL] + st.sites_dropped + nw->sites_full;
}

uint64_t native_watch_started_ns(const struct native_watch *nw)
{
	return nw->started_ns;
}

void native_watch_free(struct native_watch *nw)
{
	if (!nw)
		return;
	for (size_t i = 0; i < nw->nsites; i++)
		series_free(nw->sites[i].bytes);
	free(nw->sites);
	native_trace__free(nw->nt);
	free(nw);
}

/* CPU a probe hit costs the target, from scripts/bench/probe-cost and
 * native-cost on the reference machine (README "Measured here"), rounded
 * up: an entry probe on an emulated instruction 612-876 ns -> 900 ns; one
 * the kernel single-steps 10,020-13,255 ns -> 13,300 ns; a uretprobe's
 * return, from the malloc+free pair (3,627 ns with two placed entry probes
 * and one return) -> 2,400 ns; a C stack's first hit adds its stack copy
 * (native-cost: 5,127-6,738 ns more than a frame-pointer stack's) ->
 * 6,800 ns. */
#define NATIVE_HIT_EMULATED_NS 900
#define NATIVE_HIT_STEPPED_NS 13300
#define NATIVE_HIT_RETURN_NS 2400
#define NATIVE_NEW_STACK_NS 6800

uint64_t native_watch_cost_ns(const struct native_watch *nw)
{
	uint64_t per_hit[NATIVE_PROBE_MAX] = { 0 }, cost = 0;
	const struct native_probe_info *pi;
	struct native_stats st;
	size_t np = 0;

	native_trace__stats(nw->nt, &st);
	pi = native_trace__probes(nw->nt, &np);
	for (size_t i = 0; i < np; i++) {
		uint64_t c = pi[i].emulated ? NATIVE_HIT_EMULATED_NS : NATIVE_HIT_STEPPED_NS;

		if (pi[i].probe < NATIVE_PROBE_MAX && c > per_hit[pi[i].probe])
			per_hit[pi[i].probe] = c;
		if (pi[i].retprobe && (int)pi[i].probe < (int)NATIVE_KIND_MAX)
			per_hit[NATIVE_PROBE_RETURN + pi[i].probe] = NATIVE_HIT_RETURN_NS;
	}
	for (int p = 0; p < NATIVE_PROBE_MAX; p++)
		cost += st.counters[NATIVE_STAT_HITS + p] * per_hit[p];
	return cost + st.counters[NATIVE_STAT_STACKS_NEW] * NATIVE_NEW_STACK_NS;
}

/* Go heap probes, output: the "heap_trace" JSON, the live text view and the
 * trace tier's pprof. See trace/heap_trace.h. */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include "base/util.h"
#include "heap_trace.skel.h"
#include "output/json_out.h"
#include "output/pprof.h"
#include "trace/heap_trace_internal.h"

static const char *const stat_names[HT_STAT_MAX] = {
	[HT_STAT_MALLOC_HITS] = "mprof_malloc_hits",
	[HT_STAT_BUCKET_HITS] = "setprofilebucket_hits",
	[HT_STAT_FREE_HITS] = "mprof_free_hits",
	[HT_STAT_SPECIAL_HITS] = "free_special_hits",
	[HT_STAT_OBJECT_FREES] = "sampled_object_frees",
	[HT_STAT_MALLOCGC_HITS] = "mallocgc_hits",
	[HT_STAT_MORESTACK_SKIPS] = "morestack_skips",
	[HT_STAT_PENDING_MISSES] = "pending_misses",
	[HT_STAT_PENDING_FULL] = "pending_full",
	[HT_STAT_OBJECTS_FULL] = "objects_full",
	[HT_STAT_BUCKETS_FULL] = "buckets_full",
	[HT_STAT_PROF_STACK_ERRORS] = "profile_stack_errors",
	[HT_STAT_TRACE_SAMPLES] = "trace_samples",
	[HT_STAT_TRACE_STACK_ERRORS] = "trace_stack_errors",
	[HT_STAT_TRACE_SITES_FULL] = "trace_sites_full",
	[HT_STAT_READ_ERRORS] = "read_errors",
	[HT_STAT_OBJECT_REUSED] = "sampled_address_reused",
};

/* ------------------------------------------------------------ output */

static const char *state_name(enum heap_profile_state s)
{
	switch (s) {
	case HEAP_PROFILE_ON: return "on";
	case HEAP_PROFILE_RATE_ZERO: return "off_in_target";
	case HEAP_PROFILE_UNAVAILABLE: return "unavailable";
	default: return "not_requested";
	}
}

int heap_trace__json(struct heap_trace *t, struct json_object *obj, size_t max_sites)
{
	struct json_object *o = json_object_new_object(), *prof, *st;
	struct heap_trace_stats stats;
	uint64_t now = now_monotonic_ns();

	if (!o)
		return -ENOMEM;
	prof = json_object_new_object();
	json_object_object_add(prof, "state", json_object_new_string(state_name(t->state)));
	if (t->msg[0])
		json_object_object_add(prof, "message", json_object_new_string(t->msg));
	json_object_object_add(prof, "mem_profile_rate", json_object_new_int64(t->rate));
	if (t->state == HEAP_PROFILE_ON) {
		struct json_object *arr = json_object_new_array();

		for (size_t i = 0; i < t->nsites && i < max_sites; i++) {
			const struct heap_trace_site *s = &t->sites[i];
			struct json_object *so = json_object_new_object();

			json_site_add(so, s->function, s->file, s->line);
			json_object_object_add(so, "inuse_bytes", json_object_new_int64(s->inuse_bytes));
			json_object_object_add(so, "inuse_objects", json_object_new_int64(s->inuse_objects));
			json_object_object_add(so, "alloc_bytes", json_object_new_int64(s->alloc_bytes));
			json_object_object_add(so, "alloc_objects", json_object_new_int64(s->alloc_objects));
			json_object_object_add(so, "live_samples", json_object_new_int64((int64_t)s->live_samples));
			json_object_object_add(so, "freed_samples",
					       json_object_new_int64((int64_t)s->freed_samples));
			json_object_object_add(so, "freed_bytes",
					       json_object_new_int64((int64_t)s->freed_bytes));
			json_object_object_add(so, "live_samples_since_attach",
					       json_object_new_int64((int64_t)s->live_tracked));
			/* age of the oldest live sample seen since attach; samples
			 * from before attach are at least attach_age_s old */
			if (s->oldest_sample_ns && now > s->oldest_sample_ns)
				json_object_object_add(so, "oldest_sample_age_s",
						       json_object_new_double((double)(now - s->oldest_sample_ns) / 1e9));
			else
				json_object_object_add(so, "oldest_sample_age_s", NULL);
			json_object_array_add(arr, so);
		}
		json_object_object_add(prof, "sites", arr);
		json_object_object_add(prof, "attach_age_s",
				       json_object_new_double((double)(now - t->attach_ns) / 1e9));
	}
	json_object_object_add(o, "profile", prof);

	if (t->opts.trace) {
		const struct heap_rates *r = heap_trace__rates(t);
		struct json_object *tr = json_object_new_object(), *hist = json_object_new_array();
		struct json_object *arr = json_object_new_array();

		json_object_object_add(tr, "sample_bytes", json_object_new_int64((int64_t)t->opts.sample_bytes));
		if (r) {
			json_object_object_add(tr, "allocs", json_object_new_int64((int64_t)r->allocs));
			json_object_object_add(tr, "bytes", json_object_new_int64((int64_t)r->bytes));
			json_object_object_add(tr, "allocs_per_s", json_object_new_double(r->allocs_per_s));
			json_object_object_add(tr, "bytes_per_s", json_object_new_double(r->bytes_per_s));
			for (unsigned c = 0; c < HT_HIST_BUCKETS; c++) {
				struct json_object *h;

				if (!r->hist[c])
					continue;
				h = json_object_new_object();
				json_object_object_add(h, "min", json_object_new_int64((int64_t)heap_hist_lower(c)));
				json_object_object_add(h, "count", json_object_new_int64((int64_t)r->hist[c]));
				json_object_array_add(hist, h);
			}
		}
		json_object_object_add(tr, "size_histogram", hist);
		for (size_t i = 0; i < t->nalloc_sites && i < max_sites; i++) {
			const struct heap_alloc_site *s = &t->alloc_sites[i];
			struct json_object *so = json_object_new_object();

			json_site_add(so, s->function, s->file, s->line);
			json_object_object_add(so, "samples", json_object_new_int64((int64_t)s->samples));
			json_object_object_add(so, "est_bytes", json_object_new_int64((int64_t)s->est_bytes));
			json_object_array_add(arr, so);
		}
		json_object_object_add(tr, "sites", arr);
		json_object_object_add(o, "trace", tr);
	}

	heap_trace__stats(t, &stats);
	st = json_object_new_object();
	for (int i = 0; i < HT_STAT_MAX; i++)
		if (stat_names[i])
			json_object_object_add(st, stat_names[i],
					       json_object_new_int64((int64_t)stats.counters[i]));
	json_object_object_add(st, "stacks_checked", json_object_new_int64((int64_t)stats.stacks_checked));
	json_object_object_add(st, "stacks_matched", json_object_new_int64((int64_t)stats.stacks_matched));
	json_object_object_add(st, "buckets", json_object_new_int64((int64_t)stats.buckets));
	json_object_object_add(st, "kernel_missed", json_object_new_int64((int64_t)stats.kernel_missed));
	json_object_object_add(st, "frees_from", json_object_new_string(stats.walk ? "heap_walk" : "probe"));
	if (stats.walk) {
		struct json_object *w = json_object_new_object();

		json_object_object_add(w, "walks", json_object_new_int64((int64_t)stats.walks));
		json_object_object_add(w, "failures", json_object_new_int64((int64_t)stats.walk_failures));
		json_object_object_add(w, "ms_last", json_object_new_double((double)stats.walk_ns_last / 1e6));
		json_object_object_add(w, "ms_max", json_object_new_double((double)stats.walk_ns_max / 1e6));
		json_object_object_add(w, "arenas", json_object_new_int64((int64_t)stats.walk_last.arenas));
		json_object_object_add(w, "spans", json_object_new_int64((int64_t)stats.walk_last.spans));
		json_object_object_add(w, "specials", json_object_new_int64((int64_t)stats.walk_last.specials));
		json_object_object_add(w, "live_samples", json_object_new_int64((int64_t)stats.walk_last.profile));
		json_object_object_add(w, "rejected", json_object_new_int64((int64_t)stats.walk_last.rejected));
		json_object_object_add(w, "read_errors", json_object_new_int64((int64_t)stats.walk_last.read_errors));
		json_object_object_add(w, "truncated", json_object_new_boolean(stats.walk_last.truncated));
		json_object_object_add(st, "heap_walk", w);
	}
	json_object_object_add(o, "stats", st);
	json_object_object_add(obj, "heap_trace", o);
	return 0;
}

void heap_trace__print(struct heap_trace *t, FILE *f, size_t max_sites)
{
	uint64_t now = now_monotonic_ns();
	char b1[32], b2[32], age[32];

	if (t->state == HEAP_PROFILE_RATE_ZERO || t->state == HEAP_PROFILE_UNAVAILABLE) {
		if (t->msg[0])
			fprintf(f, "  heap probes: %s\n", t->msg);
	} else if (t->state == HEAP_PROFILE_ON) {
		fprintf(f, "  heap in use by stack (sampled every %lld B; frees %s):\n", (long long)t->rate,
			t->walk ? "from a heap walk" : "probed");
		for (size_t i = 0; i < t->nsites && i < max_sites; i++) {
			const struct heap_trace_site *s = &t->sites[i];

			if (s->inuse_bytes <= 0)
				break;
			if (s->oldest_sample_ns && now > s->oldest_sample_ns)
				fmt_duration(age, sizeof(age), now - s->oldest_sample_ns);
			else
				snprintf(age, sizeof(age), ">%s",
					 fmt_duration(b2, sizeof(b2), now - t->attach_ns));
			fprintf(f, "    %10s %8lld obj  oldest %-8s %s %s:%d\n",
				fmt_bytes(b1, sizeof(b1), (uint64_t)s->inuse_bytes),
				(long long)s->inuse_objects, age, s->function, path_base(s->file), s->line);
		}
	}
	if (t->opts.trace) {
		const struct heap_rates *r = heap_trace__rates(t);

		if (r) {
			fprintf(f, "  allocations: %.0f/s, %s/s (mallocgc, every call)\n", r->allocs_per_s,
				fmt_bytes(b1, sizeof(b1), (uint64_t)r->bytes_per_s));
			fprintf(f, "    sizes:");
			for (unsigned c = 0; c < HT_HIST_BUCKETS; c++)
				if (r->hist[c] && r->allocs && r->hist[c] * 100 >= r->allocs)
					fprintf(f, " >=%s:%.0f%%", fmt_bytes(b1, sizeof(b1), heap_hist_lower(c)),
						100.0 * (double)r->hist[c] / (double)r->allocs);
			fprintf(f, "\n");
		}
		for (size_t i = 0; i < t->nalloc_sites && i < max_sites; i++) {
			const struct heap_alloc_site *s = &t->alloc_sites[i];

			fprintf(f, "    alloc %10s  %s %s:%d\n",
				fmt_bytes(b1, sizeof(b1), s->est_bytes), s->function, path_base(s->file),
				s->line);
		}
	}
}

struct pprof_ctx {
	const struct go_target *go;
};

static int pprof_sym(void *ctx, uint64_t address, size_t index, struct pprof_frame *frames,
		     size_t max, size_t *n)
{
	struct pprof_ctx *c = ctx;
	struct gobin_pcinfo info;

	*n = 0;
	if (!max || ht_lookup_pc(c->go, address, index != 0, &info) < 0 || !info.func)
		return 0;
	frames[0] = (struct pprof_frame){ .function = info.func, .file = info.file, .line = info.line };
	*n = 1;
	return 0;
}

int heap_trace__write_alloc_pprof(struct heap_trace *t, const char *path)
{
	static const struct pprof_value_type types[] = {
		{ "alloc_samples", "count" },
		{ "alloc_space", "bytes" },
	};
	int sfd, stfd;
	struct ht_trace_key k, *prev = NULL;
	struct pprof_ctx ctx = { t->go };
	struct pprof_builder *b;
	uint64_t ips[HT_STACK_DEPTH];
	size_t guard = 0;
	int ret;

	if (!t->active || !t->opts.trace)
		return -ENODATA;
	sfd = bpf_map__fd(t->skel->maps.ht_trace_sites);
	stfd = bpf_map__fd(t->skel->maps.ht_trace_stacks);
	ret = pprof_builder_new(types, 2, &b);
	if (ret < 0)
		return ret;
	if ((ret = pprof_set_period(b, "space", "bytes", (int64_t)t->opts.sample_bytes)) < 0 ||
	    (ret = pprof_set_default_sample_type(b, "alloc_space")) < 0 ||
	    (ret = pprof_set_drop_frames(b, "runtime\\..*|internal/runtime/.*")) < 0)
		goto out;
	pprof_set_time(b, (int64_t)now_realtime_ns(), (int64_t)(now_monotonic_ns() - t->attach_ns));
	while (guard++ < HT_MAX_TRACE_SITES && !bpf_map_get_next_key(sfd, prev, &k)) {
		struct ht_trace_counts c;
		int64_t values[2];
		size_t n;

		prev = &k;
		if (k.tgid != (__u32)t->go->pid || bpf_map_lookup_elem(sfd, &k, &c))
			continue;
		n = ht_read_stack(stfd, k.stackid, ips);
		if (!n)
			continue;
		values[0] = (int64_t)c.samples;
		values[1] = (int64_t)(c.samples * t->opts.sample_bytes);
		ret = pprof_add_sample_addrs(b, ips, n, values, NULL, 0, pprof_sym, &ctx);
		if (ret < 0)
			goto out;
	}
	ret = pprof_write_file(b, path);
out:
	pprof_builder_free(b);
	return ret;
}

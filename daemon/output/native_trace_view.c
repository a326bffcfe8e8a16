/* The native tracer's views: JSON (attach --json, the daemon's evidence),
 * text (attach) and native.pb.gz, of what the last poll saw. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "output/json_out.h"
#include "output/pprof.h"
#include "trace/native_trace_internal.h"

/* The immediate caller of the allocator: frame 1 (frame 0 is the probe). */
static const struct sym_frame *c_caller(const struct sym_frame *f, size_t n)
{
	return n > 1 ? &f[1] : n ? &f[0] : NULL;
}

static void kinds_text(uint32_t kinds, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = 0;
	for (uint32_t k = 0; k < NATIVE_KIND_MAX && o < len; k++)
		if (kinds & (1u << k))
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? "," : "", native_kind_name(k));
}

static struct json_object *frame_json(const struct sym_frame *f, const char *how)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "function", json_object_new_string(f->function));
	json_object_object_add(o, "object", json_object_new_string(f->object));
	json_object_object_add(o, "offset", json_object_new_int64((int64_t)f->offset));
	if (f->go) {
		json_object_object_add(o, "file", json_object_new_string(f->file));
		json_object_object_add(o, "line", json_object_new_int(f->line));
	}
	if (how)
		json_object_object_add(o, "unwind", json_object_new_string(how));
	return o;
}

/* "[unwind stopped: REASON]", as the JNI profile shows it */
static const char *stop_text(const char *stop, char *buf, size_t len)
{
	snprintf(buf, len, "[unwind stopped: %s]", stop);
	return buf;
}

int native_trace__json(struct native_trace *t, struct json_object *obj, size_t max_sites)
{
	struct json_object *o = json_object_new_object(), *st = json_object_new_object();
	struct json_object *hits = json_object_new_object(), *sites = json_object_new_array();
	struct json_object *probes = json_object_new_array(), *cgo;
	struct sym_frame frames[NATIVE_MAX_FRAMES];
	uint64_t now = now_monotonic_ns();
	size_t shown = 0;

	if (!o || !st || !hits || !sites || !probes)
		return -ENOMEM;
	json_object_object_add(o, "libc", json_object_new_string(t->libc));
	json_object_object_add(o, "outstanding_bytes",
			       json_object_new_int64((int64_t)t->stats.outstanding_bytes));
	json_object_object_add(o, "outstanding_allocs",
			       json_object_new_int64((int64_t)t->stats.outstanding_allocs));
	json_object_object_add(o, "max_allocs", json_object_new_int64(t->stats.max_allocs));
	for (int i = 0; i < NATIVE_STAT_MAX; i++)
		if (native_stat_name((uint32_t)i))
			json_object_object_add(st, native_stat_name((uint32_t)i),
					       json_object_new_int64((int64_t)t->stats.counters[i]));
	json_object_object_add(st, "kernel_missed", json_object_new_int64((int64_t)t->stats.kernel_missed));
	json_object_object_add(st, "bpf_entry_runs", json_object_new_int64((int64_t)t->stats.entry_runs));
	json_object_object_add(st, "bpf_entry_run_ns",
			       json_object_new_int64((int64_t)t->stats.entry_run_ns));
	json_object_object_add(st, "sites_dropped", json_object_new_int64((int64_t)t->stats.sites_dropped));
	json_object_object_add(st, "go_runtime_mmap_bytes",
			       json_object_new_int64((int64_t)t->stats.go_runtime_mmap_bytes));
	json_object_object_add(o, "stats", st);
	for (size_t i = 0; i < t->nprobes; i++) {
		const struct native_probe_info *p = &t->probes[i];
		struct json_object *po = json_object_new_object();
		uint64_t h = t->stats.counters[NATIVE_STAT_HITS + p->probe];

		json_object_object_add(po, "name", json_object_new_string(p->name));
		json_object_object_add(po, "offset", json_object_new_int64((int64_t)p->offset));
		json_object_object_add(po, "insn", json_object_new_string(p->insn));
		json_object_object_add(po, "emulated", json_object_new_boolean(p->emulated));
		json_object_object_add(po, "retprobe", json_object_new_boolean(p->retprobe));
		json_object_object_add(po, "hits", json_object_new_int64((int64_t)h));
		if (p->retprobe)
			json_object_object_add(
				po, "return_hits",
				json_object_new_int64((int64_t)t->stats.counters
							      [NATIVE_STAT_HITS + NATIVE_PROBE_RETURN +
							       (p->probe - NATIVE_PROBE_ENTRY)]));
		json_object_array_add(probes, po);
	}
	json_object_put(hits);
	json_object_object_add(o, "probes", probes);
	if (t->go && t->opts.trace_cgo) {
		struct json_object *fa = json_object_new_array();
		double total_rate = 0;

		cgo = json_object_new_object();
		for (size_t i = 0; i < t->nfns; i++) {
			struct json_object *fo;
			struct sym_frame f;

			total_rate += t->fns[i].per_s;
			if (i >= 32)
				continue;
			symbolizer_lookup(t->sym, t->fns[i].fn, false, &f);
			fo = json_object_new_object();
			json_object_object_add(fo, "function", json_object_new_string(f.function));
			json_object_object_add(fo, "address", json_object_new_int64((int64_t)t->fns[i].fn));
			json_object_object_add(fo, "calls", json_object_new_int64((int64_t)t->fns[i].calls));
			json_object_object_add(fo, "per_s", json_object_new_double(t->fns[i].per_s));
			json_object_array_add(fa, fo);
		}
		json_object_object_add(cgo, "calls",
				       json_object_new_int64((int64_t)t->stats.counters[NATIVE_STAT_CGO_CALLS]));
		json_object_object_add(cgo, "per_s", json_object_new_double(total_rate));
		json_object_object_add(cgo, "functions", fa);
		json_object_object_add(o, "cgo", cgo);
	}
	for (size_t i = 0; i < t->nsites && shown < max_sites; i++, shown++) {
		const struct native_site *s = &t->sites[i];
		struct json_object *so = json_object_new_object(), *fa = json_object_new_array();
		const struct sym_frame *gc, *cc;
		struct site_unwind uw;
		char kinds[128], stopbuf[96];
		size_t nf = native_site_frames_unwind(t, s, frames, NATIVE_MAX_FRAMES, &uw);
		struct sym_frame stop_frame = {
			.function = uw.stop ? stop_text(uw.stop, stopbuf, sizeof(stopbuf)) : "",
			.object = "", .file = "" };

		kinds_text(s->kinds, kinds, sizeof(kinds));
		json_object_object_add(so, "bytes", json_object_new_int64((int64_t)s->bytes));
		json_object_object_add(so, "count", json_object_new_int64((int64_t)s->count));
		json_object_object_add(so, "oldest_age_s",
				       json_object_new_double(now > s->oldest_birth_ns ?
								      (double)(now - s->oldest_birth_ns) / 1e9 : 0));
		json_object_object_add(so, "kinds", json_object_new_string(kinds));
		cc = c_caller(frames, nf);
		json_object_object_add(so, "function", json_object_new_string(cc ? cc->function : "[unknown]"));
		json_object_object_add(so, "object", json_object_new_string(cc ? cc->object : ""));
		gc = native_go_caller(frames, nf);
		json_object_object_add(so, "go_function", gc ? json_object_new_string(gc->function) : NULL);
		json_object_object_add(so, "go_file", gc ? json_object_new_string(gc->file) : NULL);
		json_object_object_add(so, "go_line", gc ? json_object_new_int(gc->line) : NULL);
		for (size_t f = 0; f < nf; f++) {
			if (f == uw.nc && uw.stop)
				json_object_array_add(fa, frame_json(&stop_frame, ""));
			json_object_array_add(fa, frame_json(&frames[f], uw.how[f]));
		}
		if (uw.stop && uw.nc >= nf)
			json_object_array_add(fa, frame_json(&stop_frame, ""));
		json_object_object_add(so, "frames", fa);
		json_object_object_add(so, "c_frames", json_object_new_int((int)uw.nc));
		json_object_object_add(so, "unwind_stop", uw.stop ? json_object_new_string(uw.stop) : NULL);
		json_object_array_add(sites, so);
	}
	json_object_object_add(o, "sites", sites);
	json_object_object_add(o, "sites_total", json_object_new_int64((int64_t)t->nsites));
	json_object_object_add(obj, "native", o);
	return 0;
}

void native_trace__print(struct native_trace *t, FILE *f, size_t max_sites)
{
	struct sym_frame frames[NATIVE_MAX_FRAMES];
	const uint64_t *c = t->stats.counters;
	uint64_t now = now_monotonic_ns();
	char b[32];

	fmt_bytes(b, sizeof(b), t->stats.outstanding_bytes);
	fprintf(f, "  C memory outstanding %s in %" PRIu64 " blocks (map %" PRIu64 "/%u)", b,
		t->stats.outstanding_allocs, t->stats.outstanding_allocs, t->stats.max_allocs);
	if (t->go && t->opts.trace_cgo) {
		double rate = 0;

		for (size_t i = 0; i < t->nfns; i++)
			rate += t->fns[i].per_s;
		fprintf(f, "  cgo calls %" PRIu64 " (%.0f/s)", c[NATIVE_STAT_CGO_CALLS], rate);
	}
	fputc('\n', f);
	if (c[NATIVE_STAT_ALLOCS_FULL] || c[NATIVE_STAT_PENDING_FULL] || c[NATIVE_STAT_STACK_ERRORS] ||
	    t->stats.kernel_missed || t->stats.sites_dropped)
		fprintf(f, "  LOST: map full %" PRIu64 ", hand-off full %" PRIu64 ", stack errors %" PRIu64
			", kernel-skipped %" PRIu64 ", sites dropped %" PRIu64 "\n",
			c[NATIVE_STAT_ALLOCS_FULL], c[NATIVE_STAT_PENDING_FULL],
			c[NATIVE_STAT_STACK_ERRORS], t->stats.kernel_missed, t->stats.sites_dropped);
	for (size_t i = 0; i < t->nfns && i < 5; i++) {
		struct sym_frame fr;

		symbolizer_lookup(t->sym, t->fns[i].fn, false, &fr);
		fprintf(f, "  cgo %-40s %10" PRIu64 " calls %8.0f/s\n", fr.function, t->fns[i].calls,
			t->fns[i].per_s);
	}
	for (size_t i = 0; i < t->nsites && i < max_sites; i++) {
		const struct native_site *s = &t->sites[i];
		const struct sym_frame *gc, *cc;
		struct site_unwind uw;
		char stopbuf[96];
		size_t nf;

		nf = native_site_frames_unwind(t, s, frames, NATIVE_MAX_FRAMES, &uw);
		fmt_bytes(b, sizeof(b), s->bytes);
		cc = c_caller(frames, nf);
		gc = native_go_caller(frames, nf);
		fprintf(f, "  %10s %8" PRIu64 " blocks  oldest %6.1fs  %s <- %s (%s)", b, s->count,
			now > s->oldest_birth_ns ? (double)(now - s->oldest_birth_ns) / 1e9 : 0,
			nf ? frames[0].function : "?", cc ? cc->function : "?",
			cc ? path_base(cc->object) : "");
		if (gc)
			fprintf(f, " <- %s %s:%d", gc->function, path_base(gc->file), gc->line);
		/* the C stack, each frame with how it was found */
		fputs("\n             C:", f);
		for (size_t k = 0; k < uw.nc && k < nf; k++)
			fprintf(f, "%s %s [%s]", k ? " <-" : "", frames[k].function, uw.how[k]);
		if (uw.stop)
			fprintf(f, " <- %s", stop_text(uw.stop, stopbuf, sizeof(stopbuf)));
		fputc('\n', f);
	}
}

/* Where a C walk stopped is a location of its own in native.pb.gz, at
 * an address no code has (below the first page): one per reason. */
#define STOP_ADDR_BASE 16
#define MAX_STOP_REASONS 32

struct pprof_ctx {
	struct native_trace *t;
	const char *stops[MAX_STOP_REASONS];
	char text[MAX_STOP_REASONS][96];
	size_t nstops;
};

static uint64_t stop_addr(struct pprof_ctx *pc, const char *stop)
{
	size_t i;

	for (i = 0; i < pc->nstops; i++)
		if (!strcmp(pc->stops[i], stop))
			return STOP_ADDR_BASE + i;
	if (pc->nstops == MAX_STOP_REASONS)
		return 0;
	stop_text(stop, pc->text[i], sizeof(pc->text[i]));
	pc->stops[pc->nstops++] = stop;
	return STOP_ADDR_BASE + i;
}

static int pprof_sym(void *ctx, uint64_t address, size_t index, struct pprof_frame *frames,
		     size_t max, size_t *n)
{
	struct pprof_ctx *pc = ctx;
	struct sym_frame f;

	*n = 0;
	if (!max)
		return 0;
	if (address >= STOP_ADDR_BASE && address < STOP_ADDR_BASE + pc->nstops) {
		frames[0] = (struct pprof_frame){ .function = pc->text[address - STOP_ADDR_BASE] };
		*n = 1;
		return 0;
	}
	symbolizer_lookup(pc->t->sym, address, index > 0, &f);
	frames[0] = (struct pprof_frame){ .function = f.function, .file = f.file, .line = f.line };
	*n = 1;
	return 0;
}

int native_trace__write_pprof(struct native_trace *t, const char *path)
{
	static const struct pprof_value_type types[] = { { "inuse_objects", "count" },
							  { "inuse_space", "bytes" } };
	uint64_t addrs[NATIVE_MAX_FRAMES], mapped[256];
	struct pprof_ctx ctx = { .t = t };
	char hows[8 * NATIVE_MAX_FRAMES];
	struct pprof_builder *b;
	size_t nmapped = 0;
	int ret;

	ret = pprof_builder_new(types, 2, &b);
	if (ret)
		return ret;
	pprof_set_default_sample_type(b, "inuse_space");
	pprof_add_comment(b, "memdrift: outstanding C memory (libc allocator) by allocating stack");
	pprof_add_comment(b, "labels: unwind = how each frame was found, leaf first (regs: the "
			     "probed pc, sp: the return address at [rsp], cfi: .eh_frame, fp: frame "
			     "pointer); unwind_stop = why the C walk ended early");
	for (size_t i = 0; i < t->nsites && !ret; i++) {
		const struct native_site *s = &t->sites[i];
		int64_t values[2] = { (int64_t)s->count, (int64_t)s->bytes };
		struct site_unwind uw;
		size_t n = native_site_addrs(t, s, addrs, NATIVE_MAX_FRAMES - 1, &uw), o = 0;
		struct pprof_label labels[2] = { { .key = "unwind", .str = hows } };
		uint64_t sa;

		for (size_t k = 0; k < n && o + 8 < sizeof(hows); k++)
			o += (size_t)snprintf(hows + o, sizeof(hows) - o, "%s%s", k ? "," : "",
					      uw.how[k]);
		if (uw.stop && (sa = stop_addr(&ctx, uw.stop))) {
			memmove(addrs + uw.nc + 1, addrs + uw.nc, (n - uw.nc) * sizeof(*addrs));
			addrs[uw.nc] = sa;
			n++;
			labels[1] = (struct pprof_label){ .key = "unwind_stop", .str = uw.stop };
		}

		for (size_t k = 0; k < n; k++) {
			uint64_t start, limit, pgoff;
			const char *obj;
			bool seen = false;

			if (symbolizer_mapping(t->sym, addrs[k], &start, &limit, &pgoff, &obj))
				continue;
			for (size_t m = 0; m < nmapped; m++)
				seen |= mapped[m] == start;
			if (seen || nmapped == sizeof(mapped) / sizeof(mapped[0]))
				continue;
			mapped[nmapped++] = start;
			pprof_add_mapping(b, start, limit, pgoff, obj, NULL, true, NULL);
		}
		ret = pprof_add_sample_addrs(b, addrs, n, values, labels, uw.stop ? 2 : 1, pprof_sym,
					     &ctx);
		if (ret == -E2BIG)
			ret = 0; /* counted by the builder */
	}
	if (!ret)
		ret = pprof_write_file(b, path);
	pprof_builder_free(b);
	return ret;
}

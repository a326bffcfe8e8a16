/* Layout recovery, the heap side: gcController and memstats counters,
 * profile buckets and memRecords, specials, spans and mheap's arenas
 * (gobin_layout.c says what each pattern reads). */

#include <string.h>

#include "binary/gobin_layout_flow.h"

static int64_t xadd_into(const struct flow *f, size_t *from, uint64_t global, uint8_t size)
{
	const struct ev *e;

	while (global && (e = lf_find_ev(f, from, EV_RMW, size, -1, -2))) {
		const struct val *b = &f->vals[e->base];

		if (b->kind == V_ADDR && b->a >= global && b->a - global < MAX_FIELD_OFFSET)
			return (int64_t)(b->a - global);
	}
	return -1;
}

void layout_gc_update(struct flow *f, struct recovery *r)
{
	uint64_t gc = r->gc;
	size_t i = 0;
	int64_t d = xadd_into(f, &i, gc, 8);

	/* gcController.heapLive.Add(dHeapLive) comes first */
	if (d >= 0)
		layout_found(r, "gc_heap_live", d, "(*gcControllerState).update");
}

/* resetLive(bytesMarked): c.heapMarked = bytesMarked; c.heapLive = bytesMarked */
void layout_reset_live(struct flow *f, struct recovery *r)
{
	int32_t c = lf_entry(f, R_RAX), marked = lf_entry(f, R_RBX);
	const struct ev *e;
	size_t i = 0;

	if ((e = lf_find_ev(f, &i, EV_STORE, 8, c, marked)))
		layout_found(r, "gc_heap_marked", e->disp, "(*gcControllerState).resetLive");
	if (e && (e = lf_find_ev(f, &i, EV_STORE, 8, c, marked)))
		layout_found(r, "gc_heap_live", e->disp, "(*gcControllerState).resetLive");
}

/* heapGoalInternal: goal = c.gcPercentHeapGoal.Load() is its first read of c */
void layout_heap_goal(struct flow *f, struct recovery *r)
{
	const struct ev *e;
	size_t i = 0;

	if ((e = lf_find_ev(f, &i, EV_LOAD, 8, lf_entry(f, R_RAX), -2)))
		layout_found(r, "gc_percent_heap_goal", e->disp, "(*gcControllerState).heapGoalInternal");
}

/* allocLarge: gcController.totalAlloc.Add(npages*pageSize) before update();
 * sweep: gcController.totalFree.Add(nfreed*elemsize) */
static void from_gc_add(struct flow *f, struct recovery *r, const char *field, const char *where)
{
	size_t i = 0;
	int64_t d = xadd_into(f, &i, r->gc, 8);

	if (d >= 0)
		layout_found(r, field, d, where);
}

void layout_alloc_large(struct flow *f, struct recovery *r)
{
	from_gc_add(f, r, "gc_total_alloc", "(*mcache).allocLarge");
}

void layout_sweep(struct flow *f, struct recovery *r)
{
	from_gc_add(f, r, "gc_total_free", "(*sweepLocked).sweep");
}

/* gcMarkTermination: `if work.userForced { memstats.numforcedgc++ }` then
 * `memstats.numgc++`: the last 4-byte increment of memstats */
void layout_mark_termination(struct flow *f, struct recovery *r)
{
	uint64_t ms = r->ms;
	int64_t last = -1;

	for (size_t i = 0; ms && i < f->nevs; i++) {
		const struct ev *e = &f->evs[i];
		const struct val *b = &f->vals[e->base];
		const struct val *v = e->v >= 0 ? &f->vals[e->v] : NULL;

		if (e->kind == EV_CALL || e->size != 4 || b->kind != V_ADDR || b->a < ms ||
		    b->a - ms >= (16u << 10))
			continue;
		if (e->kind == EV_RMW ||
		    (e->kind == EV_STORE && v && v->kind == V_ADD && v->k == 1 &&
		     lf_is_load_of(f, v->base, e->base)))
			last = (int64_t)(b->a - ms);
	}
	if (last >= 0) {
		int *p = layout_field_ptr(r->out, "ms_numgc");

		if (p)
			*p = (int)last;
	}
}

/* (*bucket).stk: return add(b, unsafe.Sizeof(*b)) with length b.nstk */
void layout_bucket_stk(struct flow *f, struct recovery *r)
{
	int32_t b = lf_entry(f, R_RAX);
	const struct val *ra = f->ret_rax >= 0 ? &f->vals[f->ret_rax] : NULL;

	if (ra && ra->kind == V_ADD && ra->base == b && ra->k > 0)
		layout_found(r, "bucket_header_size", ra->k, "(*bucket).stk");
	if (lf_is_load_of(f, f->ret_rbx, b))
		layout_found(r, "bucket_nstk", f->vals[f->ret_rbx].k, "(*bucket).stk");
}

/* (*bucket).mp (where stk is inlined, 1.19-1.21):
 * return add(b, unsafe.Sizeof(*b) + b.nstk*unsafe.Sizeof(uintptr(0))) */
void layout_bucket_mp(struct flow *f, struct recovery *r)
{
	int32_t b = lf_entry(f, R_RAX);
	const struct val *ra = f->ret_rax >= 0 ? &f->vals[f->ret_rax] : NULL;
	const struct val *ix;

	if (!ra || ra->kind != V_ADD || ra->k <= 0 || f->vals[ra->base].kind != V_INDEX)
		return;
	ix = &f->vals[ra->base];
	if (ix->base != b || ix->k != 8 || !lf_is_load_of(f, (int32_t)ix->a, b))
		return;
	layout_found(r, "bucket_header_size", ra->k, "(*bucket).mp");
	layout_found(r, "bucket_nstk", f->vals[ix->a].k, "(*bucket).mp");
}

/* `x := callee(...); x.field = <second argument>`: the first 8-byte store
 * of the entry RBX into the call's result. */
static void arg2_into_result(struct flow *f, struct recovery *r, uint64_t callee,
			     const char *field, const char *where)
{
	int32_t x = callee ? lf_lookup(f, V_RET, -1, 0, callee) : -1;
	const struct ev *e;
	size_t i = 0;

	if (x >= 0 && (e = lf_find_ev(f, &i, EV_STORE, 8, x, lf_entry(f, R_RBX))))
		layout_found(r, field, e->disp, where);
}

/* newBucket(typ, nstk): b := persistentalloc(...); b.nstk = uintptr(nstk) */
void layout_new_bucket(struct flow *f, struct recovery *r)
{
	arg2_into_result(f, r, r->persistentalloc, "bucket_nstk", "newBucket");
}

/* stkbucket(typ, size, stk, alloc): b := newBucket(...); ...; b.size = size */
void layout_stkbucket(struct flow *f, struct recovery *r)
{
	arg2_into_result(f, r, r->new_bucket, "bucket_size", "stkbucket");
}

/* mProf_FlushLocked(index): for b := mbuckets; b != nil; b = b.allnext {
 * mp := b.mp(); mpc := &mp.future[index] ... } with index bounded by
 * len(future) and scaled by sizeof(memRecordCycle) */
void layout_flush_locked(struct flow *f, struct recovery *r)
{
	const struct ev *e;
	size_t i = 0;
	int64_t cycle;

	while (r->bucket_mp && (e = lf_find_ev(f, &i, EV_CALL, 0, -1, -2))) {
		if (e->call != r->bucket_mp || e->v < 0)
			continue;
		if ((e = lf_find_ev(f, &i, EV_LOAD, 8, e->v, -2)))
			layout_found(r, "bucket_allnext", e->disp, "mProf_FlushLocked");
		break;
	}
	if (f->shl_arg0_imm < 4 || f->shl_arg0_imm > 8 || f->cmp_arg0_imm < 1 ||
	    f->cmp_arg0_imm > 16)
		return;
	cycle = 1ll << f->shl_arg0_imm;
	layout_found(r, "memrecord_cycle_size", cycle, "mProf_FlushLocked");
	layout_found(r, "memrecord_size", cycle * (1 + f->cmp_arg0_imm), "mProf_FlushLocked");
}

/* setprofilebucket(p, b): s := specialprofilealloc.alloc();
 * s.special.kind = _KindSpecialProfile; s.b = b */
void layout_setprofilebucket(struct flow *f, struct recovery *r)
{
	const struct ev *e;
	size_t i = 0;
	int32_t sp;

	if (!(e = lf_find_ev(f, &i, EV_STORE, 8, -1, lf_entry(f, R_RBX))))
		return;
	sp = e->base;
	layout_found(r, "specialprofile_b", e->disp, "setprofilebucket");
	for (i = 0; (e = lf_find_ev(f, &i, EV_STORE, 1, sp, -2));)
		if (e->v >= 0 && f->vals[e->v].kind == V_IMM) {
			layout_found(r, "special_kind", e->disp, "setprofilebucket");
			layout_found(r, "kind_special_profile", f->vals[e->v].k, "setprofilebucket");
			break;
		}
}

/* addspecial(p, s, force): span := spanOfHeap(p); offset := p - span.base();
 * kind := s.kind; iter := &span.specials ...; *iter = s; then
 * atomic.Or8(&ha.pageSpecials[arenaPage/8], ...) */
void layout_addspecial(struct flow *f, struct recovery *r)
{
	int32_t span = r->span_of_heap ? lf_lookup(f, V_RET, -1, 0, r->span_of_heap) : -1;
	int32_t s = lf_entry(f, R_RBX);
	const struct ev *e;
	size_t i = 0;

	if (span < 0)
		return;
	for (; i < f->nevs; i++) {
		e = &f->evs[i];
		if ((e->kind == EV_READ || e->kind == EV_LOAD) && e->size == 8 && e->base == span) {
			layout_found(r, "mspan_start_addr", e->disp, "addspecial");
			break;
		}
	}
	i = 0;
	if ((e = lf_find_ev(f, &i, EV_LOAD, 1, s, -2)))
		layout_found(r, "special_kind", e->disp, "addspecial");
	i = 0;
	if ((e = lf_find_ev(f, &i, EV_STORE, 8, span, s)))
		layout_found(r, "mspan_specials", e->disp, "addspecial");
	for (i = 0; (e = lf_find_ev(f, &i, EV_RMW, 1, -1, -2));)
		if (f->vals[e->base].kind == V_INDEX) {
			layout_found(r, "heaparena_page_specials", e->disp, "addspecial");
			break;
		}
}

/* spanOfHeap: ha := mheap_.arenas[0][ri.l2()]; s := ha.spans[(p/pageSize)%pagesPerArena] */
void layout_span_of_heap(struct flow *f, struct recovery *r)
{
	int32_t arenas = -1;

	for (size_t i = 0; r->mheap && i < f->nevs; i++) {
		const struct ev *e = &f->evs[i];
		const struct val *b = &f->vals[e->base];

		if (e->kind == EV_CALL || e->size != 8)
			continue;
		if (arenas < 0 && e->kind == EV_LOAD && b->kind == V_ADDR && b->a >= r->mheap &&
		    b->a - r->mheap < MAX_FAR_OFFSET) {
			layout_found(r, "mheap_arenas", (int64_t)(b->a - r->mheap), "spanOfHeap");
			arenas = e->v;
			continue;
		}
		if (arenas >= 0 && e->kind == EV_LOAD && b->kind == V_INDEX) {
			const struct val *ha = &f->vals[b->base];

			if (ha->kind == V_LOAD && f->vals[ha->base].kind == V_INDEX &&
			    f->vals[ha->base].base == arenas) {
				layout_found(r, "heaparena_spans", e->disp, "spanOfHeap");
				return;
			}
		}
	}
}

/* (*mspan).init(base, npages): span.startAddr = base; span.npages = npages */
void layout_mspan_init(struct flow *f, struct recovery *r)
{
	const struct ev *e;
	size_t i = 0;

	if ((e = lf_find_ev(f, &i, EV_STORE, 8, lf_entry(f, R_RAX), lf_entry(f, R_RBX))))
		layout_found(r, "mspan_start_addr", e->disp, "(*mspan).init");
	i = 0;
	if ((e = lf_find_ev(f, &i, EV_STORE, 8, lf_entry(f, R_RAX), lf_entry(f, R_RCX))))
		layout_found(r, "mspan_npages", e->disp, "(*mspan).init");
}

/* (*mheap).allocSpan(npages, ...) where (*mspan).init is inlined (1.19):
 * s is the P's cached mspan or h.allocMSpanLocked(); s.init(base, npages).
 * Only when (*mspan).init did not say. */
void layout_alloc_span(struct flow *f, struct recovery *r)
{
	int *have = layout_field_ptr(r->out, "mspan_npages");
	const struct ev *e;
	size_t i = 0;

	if (!have || *have != GO_OFF_NONE)
		return;
	while ((e = lf_find_ev(f, &i, EV_STORE, 8, -1, lf_entry(f, R_RBX))))
		if (f->vals[e->base].kind == V_LOAD || f->vals[e->base].kind == V_RET) {
			layout_found(r, "mspan_npages", e->disp, "(*mheap).allocSpan");
			return;
		}
}

/* gcSweep: mheap_.sweepArenas = mheap_.allArenas (heapArenas from 1.25), a
 * slice copied word by word: ptr, len, cap loaded and stored back */
void layout_gc_sweep(struct flow *f, struct recovery *r)
{
	int64_t best = -1;

	for (size_t i = 0; r->mheap && i < f->nevs; i++) {
		const struct ev *e = &f->evs[i];
		const struct val *b = &f->vals[e->base], *v = e->v >= 0 ? &f->vals[e->v] : NULL;
		int64_t d, st;
		int words = 0;

		if (e->kind != EV_STORE || e->size != 8 || b->kind != V_ADDR || !v ||
		    v->kind != V_LOAD || f->vals[v->base].kind != V_ADDR)
			continue;
		d = (int64_t)(f->vals[v->base].a - r->mheap);
		st = (int64_t)(b->a - r->mheap);
		if (d < 0 || d >= MAX_FAR_OFFSET || st < 0 || st >= MAX_FAR_OFFSET || st == d)
			continue;
		/* the three words of one slice: [d, d+8, d+16] into [st, st+8, st+16] */
		for (size_t j = 0; j < f->nevs; j++) {
			const struct ev *g = &f->evs[j];
			const struct val *gb = &f->vals[g->base];
			const struct val *gv = g->v >= 0 ? &f->vals[g->v] : NULL;

			if (g->kind != EV_STORE || g->size != 8 || gb->kind != V_ADDR || !gv ||
			    gv->kind != V_LOAD || f->vals[gv->base].kind != V_ADDR)
				continue;
			for (int w = 1; w <= 2; w++)
				if ((int64_t)(gb->a - r->mheap) == st + 8 * w &&
				    (int64_t)(f->vals[gv->base].a - r->mheap) == d + 8 * w)
					words |= 1 << w;
		}
		if (words == 6 && (best < 0 || d < best))
			best = d;
	}
	if (best >= 0)
		layout_found(r, "mheap_all_arenas", best, "gcSweep");
}

/* The binary's own runtime.waitReasonStrings: `cmp al, N; jb` bounds the
 * index, `lea rdx, [rip+waitReasonStrings]` is the array of N strings. */

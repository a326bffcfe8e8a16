/* Layout recovery, the goroutine side: g, m and sched fields and the wait
 * reasons, from gopark, execute, newproc1, findGoroutineLeaks, malg,
 * mcommoninit, cgocall and waitReason.String (gobin_layout.c says what each
 * reads). */
#include <string.h>

#include "binary/gobin_layout_flow.h"

void layout_gopark(struct flow *f, struct recovery *r)
{
	int32_t g = lf_gval(f), m, curg;
	const struct ev *e;
	size_t i = 0;

	/* the stack check `cmp rsp, [r14+stackguard0]` comes first */
	e = lf_find_ev(f, &i, EV_READ, 8, g, -2);
	if (e && i == 1 && plausible(e->disp))
		r->stackguard = (int)e->disp;
	i = 0;
	e = lf_find_ev(f, &i, EV_LOAD, 8, g, -2); /* mp := acquirem() */
	if (!e)
		return;
	layout_found(r, "g_m", e->disp, "gopark");
	m = e->v;
	e = lf_find_ev(f, &i, EV_LOAD, 8, m, -2); /* gp := mp.curg */
	if (!e)
		return;
	layout_found(r, "m_curg", e->disp, "gopark");
	curg = e->v;
	for (size_t j = i; j < f->nevs; j++) { /* readgstatus(gp) */
		const struct ev *s = &f->evs[j];

		if ((s->kind == EV_LOAD || s->kind == EV_READ) && s->size == 4 && s->base == curg) {
			layout_found(r, "g_atomicstatus", s->disp, "gopark");
			break;
		}
	}
	e = lf_find_ev(f, &i, EV_STORE, 1, curg, lf_entry(f, R_RCX)); /* gp.waitreason = reason */
	if (e)
		layout_found(r, "g_waitreason", e->disp, "gopark");
	/* status != _Grunning && status != _Gscanrunning: _Gscan is its high bit */
	if (f->cmp_status_imm > 0) {
		int64_t bit = 1;

		while (bit * 2 <= f->cmp_status_imm)
			bit *= 2;
		if (f->cmp_status_imm - bit < 16)
			layout_found(r, "status_scan_bit", bit, "gopark");
	}
}

void layout_execute(struct flow *f, struct recovery *r)
{
	uint64_t casgstatus = r->casgstatus;
	int32_t gp = lf_entry(f, R_RAX), g = lf_gval(f);
	const struct ev *e;
	size_t i = 0;

	/* mp.curg = gp; gp.m = mp */
	while ((e = lf_find_ev(f, &i, EV_STORE, 8, -1, gp)))
		if (lf_is_load_of(f, e->base, g)) {
			layout_found(r, "m_curg", e->disp, "execute");
			layout_found(r, "g_m", f->vals[e->base].k, "execute");
			break;
		}
	i = 0;
	while ((e = lf_find_ev(f, &i, EV_CALL, 0, -1, -2)))
		if (casgstatus && e->call == casgstatus)
			break;
	if (!e)
		return;
	e = lf_find_ev(f, &i, EV_STORE, 8, gp, lf_lookup(f, V_IMM, -1, 0, 0)); /* gp.waitsince = 0 */
	if (e)
		layout_found(r, "g_waitsince", e->disp, "execute");
	if (r->stackguard < 0)
		return;
	i = 0;
	while ((e = lf_find_ev(f, &i, EV_STORE, 8, gp, -2))) {
		const struct val *v = e->v >= 0 ? &f->vals[e->v] : NULL;

		/* gp.stackguard0 = gp.stack.lo + stackGuard */
		if (e->disp == r->stackguard && v && v->kind == V_ADD && v->k > 0 &&
		    lf_is_load_of(f, v->base, gp)) {
			layout_found(r, "g_stack_lo", f->vals[v->base].k, "execute");
			break;
		}
	}
}

void layout_newproc1(struct flow *f, struct recovery *r)
{
	uint64_t sched = r->sched, casgstatus = r->casgstatus;
	int32_t fn = lf_entry(f, R_RAX), callergp = lf_entry(f, R_RBX), newg = -1;
	int32_t fnfn = lf_lookup(f, V_LOAD, fn, 0, 0);
	const struct ev *e;
	size_t i = 0;

	while ((e = lf_find_ev(f, &i, EV_STORE, 8, -1, lf_entry(f, R_RCX)))) { /* newg.gopc = callerpc */
		if (newg >= 0 && e->base != newg)
			return; /* two candidates: do not guess */
		newg = e->base;
		layout_found(r, "g_gopc", e->disp, "newproc1");
	}
	if (newg < 0)
		return;
	i = 0;
	if (fnfn >= 0 && (e = lf_find_ev(f, &i, EV_STORE, 8, newg, fnfn))) /* newg.startpc = fn.fn */
		layout_found(r, "g_startpc", e->disp, "newproc1");
	/* newg.parentGoid = callergp.goid (1.21+) */
	for (i = 0; (e = lf_find_ev(f, &i, EV_STORE, 8, newg, -2));)
		if (lf_is_load_of(f, e->v, callergp)) {
			layout_found(r, "g_parent_goid", e->disp, "newproc1");
			layout_found(r, "g_goid", f->vals[e->v].k, "newproc1");
			break;
		}
	/* pp.goidcache = sched.goidgen.Add(_GoidCacheBatch); ...; newg.goid = pp.goidcache */
	if (sched) {
		int32_t goidgen = lf_lookup(f, V_ADDR, -1, 0, sched);

		i = 0;
		if (goidgen >= 0 && lf_find_ev(f, &i, EV_RMW, 8, goidgen, -2) &&
		    (e = lf_find_ev(f, &i, EV_STORE, 8, -1, -2))) {
			int32_t cache = lf_lookup(f, V_LOAD, e->base, e->disp, 0);

			if (cache >= 0 && (e = lf_find_ev(f, &i, EV_STORE, 8, newg, cache)))
				layout_found(r, "g_goid", e->disp, "newproc1");
		}
	}
	/* sp := newg.stack.hi - totalSize; newg.sched.sp = sp */
	for (i = 0; (e = lf_find_ev(f, &i, EV_STORE, 8, newg, -2));) {
		const struct val *v = e->v >= 0 ? &f->vals[e->v] : NULL;

		if (v && v->kind == V_ADD && v->k < 0 && v->k > -1024 && lf_is_load_of(f, v->base, newg)) {
			layout_found(r, "g_stack_hi", f->vals[v->base].k, "newproc1");
			break;
		}
	}
	/* newg = malg(); casgstatus(newg, _Gidle, _Gdead) */
	for (i = 0; casgstatus && (e = lf_find_ev(f, &i, EV_CALL, 0, -1, -2));) {
		const struct val *from = e->a1 >= 0 ? &f->vals[e->a1] : NULL;
		const struct val *to = e->a2 >= 0 ? &f->vals[e->a2] : NULL;

		if (e->call != casgstatus)
			continue;
		if (from && to && from->kind == V_IMM && from->k == 0 && to->kind == V_IMM)
			layout_found(r, "status_dead", to->k, "newproc1");
		break;
	}
	/* if parked { newg.waitreason = waitreason } (1.23+) */
	i = 0;
	if ((e = lf_find_ev(f, &i, EV_STORE, 1, newg, lf_entry(f, R_RSI))))
		layout_found(r, "g_waitreason", e->disp, "newproc1");
}

/* findGoroutineLeaks (1.26+): casgstatus(gp, _Gwaiting, _Gleaked) is its
 * first status change */
void layout_find_leaks(struct flow *f, struct recovery *r)
{
	uint64_t casgstatus = r->casgstatus;
	const struct ev *e;
	size_t i = 0;

	while (casgstatus && (e = lf_find_ev(f, &i, EV_CALL, 0, -1, -2))) {
		const struct val *from = e->a1 >= 0 ? &f->vals[e->a1] : NULL;
		const struct val *to = e->a2 >= 0 ? &f->vals[e->a2] : NULL;

		if (e->call != casgstatus)
			continue;
		if (from && to && from->kind == V_IMM && to->kind == V_IMM && to->k > from->k &&
		    to->k < 0x100)
			layout_found(r, "status_leaked", to->k, "findGoroutineLeaks");
		return;
	}
}

void layout_malg(struct flow *f, struct recovery *r)
{
	uint64_t newobject = r->newobject;
	const struct ev *e;
	size_t i = 0;
	uint64_t size;

	/* newg := new(g): newobject(&type.runtime.g); abi.Type.Size_ is its first word */
	while ((e = lf_find_ev(f, &i, EV_CALL, 0, -1, -2))) {
		if (!newobject || e->call != newobject || e->v < 0 || f->vals[e->v].kind != V_ADDR)
			continue;
		if (gobin_read_u64(f->bin, f->vals[e->v].a, &size) && size >= 64 &&
		    size <= MAX_G_SIZE && size % 8 == 0) {
			int *p = layout_field_ptr(r->out, "g_size");

			if (p)
				*p = (int)size;
		}
		return;
	}
}

void layout_mcommoninit(struct flow *f, struct recovery *r)
{
	uint64_t allm = r->allm;
	int32_t a = allm ? lf_lookup(f, V_ADDR, -1, 0, allm) : -1, head;
	const struct ev *e;
	size_t i = 0;

	if (a < 0 || (head = lf_lookup(f, V_LOAD, a, 0, 0)) < 0)
		return;
	if ((e = lf_find_ev(f, &i, EV_STORE, 8, -1, head))) /* mp.alllink = allm */
		layout_found(r, "m_alllink", e->disp, "mcommoninit");
}

void layout_cgocall(struct flow *f, struct recovery *r)
{
	int *gm = layout_field_ptr(r->out, "g_m");
	int32_t m = gm && *gm >= 0 ? lf_lookup(f, V_LOAD, lf_gval(f), *gm, 0) : -1;
	const struct ev *e;
	size_t i = 0;

	if (m >= 0 && (e = lf_find_ev(f, &i, EV_RMW, 8, m, -2))) /* mp.ncgocall++ */
		layout_found(r, "m_ncgocall", e->disp, "cgocall");
}

/* The first atomic add (lock xadd) into [global, global+MAX_FIELD_OFFSET)
 * of the given size at or after event *from: the field's offset, or -1. */

void layout_wait_reason_string(struct flow *f, struct recovery *r)
{
	struct go_offsets *out = r->out;
	int64_t n = f->cmp_arg0_imm; /* `cmp al, len(waitReasonStrings)` */
	uint64_t arr = 0;
	int got = 0;

	/* the lea of the array is the one after the out-of-range text's */
	for (size_t i = 0; i < f->nvals; i++)
		if (f->vals[i].kind == V_ADDR && f->vals[i].a != f->first_lea_rip)
			arr = f->vals[i].a;
	if (n <= 0 || n > GO_MAX_WAIT_REASONS || !arr)
		return;
	for (int i = 0; i < n; i++) {
		uint64_t ptr, len;
		const uint8_t *p;
		size_t avail;
		char *dst = out->wait_reasons[i];

		dst[0] = '\0';
		if (!gobin_read_u64(f->bin, arr + 16ull * i, &ptr) ||
		    !gobin_read_u64(f->bin, arr + 16ull * i + 8, &len))
			return;
		if (len == 0)
			continue;
		p = gobin_vaddr_ptr(f->bin, ptr, &avail);
		if (!p || len > avail || len >= GO_WAIT_REASON_LEN)
			return;
		for (uint64_t c = 0; c < len; c++)
			if (p[c] < 0x20 || p[c] >= 0x7f)
				return;
		memcpy(dst, p, len);
		dst[len] = '\0';
		got++;
	}
	if (got * 2 < n)
		return;
	out->n_wait_reasons = (int)n;
}


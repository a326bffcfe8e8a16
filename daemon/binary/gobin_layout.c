/* Runtime struct offsets read from the binary's own instructions, for a
 * stripped binary of a Go version the offset table does not know.
 *
 * Each runtime function below is decoded once (Capstone) and run through a
 * small linear value tracker: registers and the frame's spill slots hold
 * symbolic values (the function's register arguments, g (R14), a load
 * [value+disp], value+constant, value+index*scale, a call's results, a
 * constant or a global's address), and every access to memory that is not
 * the frame is logged with its base value, displacement and size. A field
 * is then a statement of the Go source spotted in that log, e.g. in
 * runtime.newproc1 `newg.gopc = callerpc` is the one 8-byte store of the
 * entry RCX. Branches are ignored (the scan is linear; a forward jmp's
 * state carries to its target), so every pattern states facts that hold on
 * every path of the statement it looks for, and each field is checked
 * against the DWARF of every installed toolchain's binaries by
 * tests/unit/test_gobin_layout.c. Functions read, with the Go source they
 * compile (runtime/proc.go unless named):
 *
 *   gopark       mp := acquirem(); gp := mp.curg; readgstatus(gp);
 *                gp.waitreason = reason           g.m, m.curg, g.atomicstatus, g.waitreason
 *   execute      casgstatus(gp, ...); gp.waitsince = 0;
 *                gp.stackguard0 = gp.stack.lo + stackGuard          g.waitsince, g.stack.lo
 *   newproc1     newg.parentGoid = callergp.goid; newg.gopc = callerpc;
 *                newg.startpc = fn.fn; newg.goid = pp.goidcache;
 *                sp := newg.stack.hi - totalSize
 *                                    g.goid, g.parentGoid, g.gopc, g.startpc, g.stack.hi
 *   malg         newg := new(g)                   sizeof(g) from the type descriptor
 *   mcommoninit  mp.alllink = allm                m.alllink
 *   cgocall      mp.ncgocall++ (cgocall.go)       m.ncgocall
 *   (*gcControllerState).update   gcController.heapLive.Add(dHeapLive)  (mgcpacer.go)
 *   (*gcControllerState).resetLive   c.heapMarked = bytesMarked; c.heapLive = bytesMarked
 *   (*gcControllerState).heapGoalInternal   goal = c.gcPercentHeapGoal.Load()
 *   (*mcache).allocLarge   gcController.totalAlloc.Add(...)   (mcache.go)
 *   (*sweepLocked).sweep   gcController.totalFree.Add(...)    (mgcsweep.go)
 *   gcMarkTermination      memstats.numgc++ (the last 4-byte increment of memstats, mgc.go)
 *   findGoroutineLeaks     casgstatus(gp, _Gwaiting, _Gleaked) (mgc.go, 1.26+)
 *   waitReason.String  bounds check and index of waitReasonStrings (runtime2.go)
 *   (*bucket).stk or .mp   add(b, unsafe.Sizeof(*b)) and b.nstk (mprof.go)
 *                          sizeof(bucket), bucket.nstk
 *   newBucket              b.nstk = uintptr(nstk)
 *   stkbucket              b.size = size
 *   mProf_FlushLocked      b = b.allnext; &mp.future[index]: index < len(future),
 *                          scaled by sizeof(memRecordCycle)         memRecord sizes
 *   setprofilebucket       s.special.kind = _KindSpecialProfile; s.b = b (mprof.go)
 *                          special.kind, specialprofile.b, _KindSpecialProfile
 *   addspecial             offset := p - span.base(); kind := s.kind; *iter = s
 *                          (iter from &span.specials); Or8(&ha.pageSpecials[..]) (mheap.go)
 *                          mspan.startAddr, special.kind, mspan.specials, heapArena.pageSpecials
 *   spanOfHeap             mheap_.arenas[0][l2].spans[...]      mheap.arenas, heapArena.spans
 *   (*mspan).init          span.startAddr = base; span.npages = npages
 *                          ((*mheap).allocSpan where it is inlined, 1.19)
 *   gcSweep                mheap_.sweepArenas = mheap_.allArenas  mheap.allArenas
 * Not read from code (nothing needs them): m.procid, gcControllerState.memoryLimit,
 * mstats.last_gc_nanotime and, before 1.19, the gcControllerState.heapGoal field.
 *
 * Files: the value tracker is gobin_layout_flow.c (gobin_layout_flow.h), the
 * patterns gobin_layout_g.c (g, m, sched, wait reasons) and
 * gobin_layout_heap.c (gcController, memstats, buckets, specials, mheap);
 * this file runs them in order and merges the result with the table.
 */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "binary/gobin_internal.h"
#include "binary/gobin_layout_flow.h"
#include "probe/probe_place.h"

/* mheap (~64 KiB of page allocator first) and heapArena (2 MiB of bitmap
 * before spans until 1.22) fields sit far out; constants are small numbers */
static bool plausible_for(const char *field, int64_t value)
{
	if (!strncmp(field, "mheap_", 6) || !strncmp(field, "heaparena_", 10))
		return value >= 0 && value < MAX_FAR_OFFSET;
	if (!strncmp(field, "status_", 7) || !strncmp(field, "kind_", 5))
		return value >= 0 && value <= 0xffff;
	return plausible(value);
}

int *layout_field_ptr(struct go_offsets *o, const char *name)
{
	for (size_t i = 0; i < go_offsets_nfields; i++)
		if (!strcmp(go_offsets_fields[i].name, name))
			return (int *)((char *)o + go_offsets_fields[i].offset);
	return NULL;
}

void layout_found(struct recovery *r, const char *field, int64_t value, const char *where)
{
	int *p = layout_field_ptr(r->out, field);

	if (!p || !plausible_for(field, value))
		return;
	if (*p == GO_OFF_NONE) {
		*p = (int)value;
	} else if (*p != value && *p != -2) {
		log_debug("layout: %s is %d in one function and %lld in %s", field, *p,
			  (long long)value, where);
		*p = -2; /* conflict: reset to GO_OFF_NONE at the end */
	}
}

static uint64_t func_entry(const struct gobin *bin, const char *name)
{
	struct gobin_func fn;

	return gobin_func_by_name(bin, name, &fn) == 0 ? fn.entry : 0;
}

static uint64_t global_addr(const struct gobin *bin, const char *name)
{
	uint64_t a;

	return gobin_global(bin, name, &a) == 0 ? a : 0;
}

/* In this order: later patterns use g.m and stackguard0 from gopark. */
static const struct reader {
	const char *func;
	void (*read)(struct flow *f, struct recovery *r);
} readers[] = {
	{ "runtime.gopark", layout_gopark },
	{ "runtime.execute", layout_execute },
	{ "runtime.newproc1", layout_newproc1 },
	{ "runtime.findGoroutineLeaks", layout_find_leaks },
	{ "runtime.malg", layout_malg },
	{ "runtime.mcommoninit", layout_mcommoninit },
	{ "runtime.cgocall", layout_cgocall },
	{ "runtime.(*gcControllerState).update", layout_gc_update },
	{ "runtime.(*gcControllerState).resetLive", layout_reset_live },
	{ "runtime.(*gcControllerState).heapGoalInternal", layout_heap_goal },
	{ "runtime.(*mcache).allocLarge", layout_alloc_large },
	{ "runtime.(*sweepLocked).sweep", layout_sweep },
	{ "runtime.gcMarkTermination", layout_mark_termination },
	{ "runtime.(*bucket).stk", layout_bucket_stk },
	{ "runtime.(*bucket).mp", layout_bucket_mp },
	{ "runtime.newBucket", layout_new_bucket },
	{ "runtime.stkbucket", layout_stkbucket },
	{ "runtime.mProf_FlushLocked", layout_flush_locked },
	{ "runtime.setprofilebucket", layout_setprofilebucket },
	{ "runtime.addspecial", layout_addspecial },
	{ "runtime.spanOfHeap", layout_span_of_heap },
	{ "runtime.(*mspan).init", layout_mspan_init },
	{ "runtime.(*mheap).allocSpan", layout_alloc_span },
	{ "runtime.gcSweep", layout_gc_sweep },
	{ "runtime.waitReason.String", layout_wait_reason_string },
};

int gobin_layout_recover(const struct gobin *bin, struct go_offsets *out)
{
	struct recovery r = {
		.out = out, .stackguard = -1,
		.casgstatus = func_entry(bin, "runtime.casgstatus"),
		.newobject = func_entry(bin, "runtime.newobject"),
		.sched = global_addr(bin, "runtime.sched"),
		.allm = global_addr(bin, "runtime.allm"),
		.gc = global_addr(bin, "runtime.gcController"),
		.ms = global_addr(bin, "runtime.memstats"),
		.persistentalloc = func_entry(bin, "runtime.persistentalloc"),
		.new_bucket = func_entry(bin, "runtime.newBucket"),
		.bucket_mp = func_entry(bin, "runtime.(*bucket).mp"),
		.mheap = global_addr(bin, "runtime.mheap_"),
		.span_of_heap = func_entry(bin, "runtime.spanOfHeap"),
	};
	struct flow *f;
	cs_insn *ci;
	csh cs;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < go_offsets_nfields; i++)
		*(int *)((char *)out + go_offsets_fields[i].offset) = GO_OFF_NONE;
	out->go_major = bin->ver.major;
	out->go_minor = bin->ver.minor;
	out->source = GO_OFFSETS_TABLE;
	if (bin->machine != EM_X86_64)
		return -ENOTSUP;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	if (probe_disasm_open(&cs, &ci)) {
		free(f);
		return -ENOMEM;
	}
	f->bin = bin;
	lf_find_write_barriers(f);
	for (size_t i = 0; i < sizeof(readers) / sizeof(readers[0]); i++)
		if (lf_run(f, cs, ci, readers[i].func) == 0)
			readers[i].read(f, &r);
	probe_disasm_close(cs, ci);
	free(f);

	for (size_t i = 0; i < go_offsets_nfields; i++) {
		int *p = (int *)((char *)out + go_offsets_fields[i].offset);

		if (*p == -2)
			*p = GO_OFF_NONE;
	}
	return 0;
}

/* ---- merging with the table ---- */

#define HEAP_PROFILE "heap profile (snapshot --heap, heap tiers)"
#define HEAP_WALK "span-special heap walk (the heap profile tier's frees)"
/* What the features read, and what each disables when it is unknown. */
static const struct field_use {
	const char *field;    /* NULL: the wait-reason names */
	const char *label;
	const char *disables; /* NULL: the goroutine list itself */
} field_uses[] = {
	{ "g_atomicstatus", "g.atomicstatus", NULL },
	{ "g_goid", "g.goid", NULL },
	{ "g_gopc", "g.gopc", NULL },
	{ "g_startpc", "g.startpc", NULL },
	{ "g_waitreason", "g.waitreason", "wait reasons" },
	{ "g_waitsince", "g.waitsince", "wait durations" },
	{ "g_stack_lo", "g.stack.lo", "stack sizes" },
	{ "g_stack_hi", "g.stack.hi", "stack sizes" },
	{ "m_alllink", "m.alllink", "cgo call counts" },
	{ "m_ncgocall", "m.ncgocall", "cgo call counts" },
	{ "gc_heap_live", "gcControllerState.heapLive", "heap live bytes" },
	{ "gc_heap_marked", "gcControllerState.heapMarked", "heap marked bytes" },
	{ "gc_percent_heap_goal", "gcControllerState.gcPercentHeapGoal", "heap goal" },
	{ "gc_total_alloc", "gcControllerState.totalAlloc", "allocated-bytes total" },
	{ "gc_total_free", "gcControllerState.totalFree", "freed-bytes total" },
	{ "ms_numgc", "mstats.numgc", "GC cycle count" },
	{ "status_leaked", "_Gleaked", "the leaked status" },
	{ "bucket_header_size", "sizeof(runtime.bucket)", HEAP_PROFILE },
	{ "bucket_allnext", "bucket.allnext", HEAP_PROFILE },
	{ "bucket_nstk", "bucket.nstk", HEAP_PROFILE },
	{ "bucket_size", "bucket.size", HEAP_PROFILE },
	{ "memrecord_size", "sizeof(runtime.memRecord)", HEAP_PROFILE },
	{ "memrecord_cycle_size", "sizeof(runtime.memRecordCycle)", HEAP_PROFILE },
	{ "mheap_arenas", "mheap.arenas", HEAP_WALK },
	{ "mheap_all_arenas", "mheap.allArenas", HEAP_WALK },
	{ "heaparena_spans", "heapArena.spans", HEAP_WALK },
	{ "heaparena_page_specials", "heapArena.pageSpecials", HEAP_WALK },
	{ "mspan_start_addr", "mspan.startAddr", HEAP_WALK },
	{ "mspan_npages", "mspan.npages", HEAP_WALK },
	{ "mspan_specials", "mspan.specials", HEAP_WALK },
	{ "special_kind", "special.kind", HEAP_WALK },
	{ "specialprofile_b", "specialprofile.b", HEAP_WALK },
	{ "kind_special_profile", "_KindSpecialProfile", HEAP_WALK },
	{ NULL, "runtime.waitReasonStrings", "wait reason names" },
};

static int get_field(const struct go_offsets *o, const char *name)
{
	int *p = layout_field_ptr((struct go_offsets *)o, name);

	return p ? *p : GO_OFF_NONE;
}

static bool table_withheld(void)
{
	/* test-only: makes every version look newer than the table */
	const char *e = getenv("MEMDRIFT_TEST_NO_OFFSET_TABLE");

	return e && !strcmp(e, "1");
}

/* Code over the table row: recovered values win, each disagreement named. */
static void merge_row(const struct gobin *bin, const struct go_offsets *code,
		      struct go_offsets *off)
{
	for (size_t i = 0; i < go_offsets_nfields; i++) {
		int c = go_offsets_field(code, i), t = go_offsets_field(off, i);

		if (c == GO_OFF_NONE)
			continue;
		if (t != c)
			log_warn("%s: %s: table says %s=%d, code says %d; using the code's",
				 bin->path, bin->ver.str, go_offsets_fields[i].name, t, c);
		*(int *)((char *)off + go_offsets_fields[i].offset) = c;
	}
	if (code->n_wait_reasons <= 0)
		return;
	for (int i = 0; i < code->n_wait_reasons || i < off->n_wait_reasons; i++) {
		const char *t = i < off->n_wait_reasons ? off->wait_reasons[i] : "(none)";
		const char *c = i < code->n_wait_reasons ? code->wait_reasons[i] : "(none)";

		if (strcmp(t, c)) {
			log_warn("%s: %s: table says wait reason %d is \"%s\", code says \"%s\"; using the code's",
				 bin->path, bin->ver.str, i, t, c);
			break;
		}
	}
	off->n_wait_reasons = code->n_wait_reasons;
	memcpy(off->wait_reasons, code->wait_reasons, sizeof(off->wait_reasons));
}

/* Whether what u names is unknown in off (and something is lost by it). */
static bool lost_field(const struct gobin *bin, const struct go_offsets *off,
		       const struct field_use *u)
{
	if (!u->field)
		return off->n_wait_reasons <= 0;
	if (get_field(off, u->field) != GO_OFF_NONE)
		return false;
	/* no leak detector in this runtime: nothing lost */
	return strcmp(u->field, "status_leaked") || func_entry(bin, "runtime.findGoroutineLeaks");
}

/* "a, b not recovered: X disabled; c not recovered: Y disabled", one group
 * per feature, in field_uses order. */
static void describe_lost(const struct gobin *bin, const struct go_offsets *off,
			  struct strbuf *sb)
{
	const size_t n = sizeof(field_uses) / sizeof(field_uses[0]);

	for (size_t i = 0; i < n; i++) {
		const char *d = field_uses[i].disables;
		bool first = true, earlier = false;

		for (size_t j = 0; j < i && !earlier; j++)
			earlier = field_uses[j].disables && !strcmp(field_uses[j].disables, d);
		if (!d || earlier)
			continue;
		for (size_t j = i; j < n; j++) {
			if (!field_uses[j].disables || strcmp(field_uses[j].disables, d) ||
			    !lost_field(bin, off, &field_uses[j]))
				continue;
			strbuf_printf(sb, "%s%s", first ? (sb->len ? "; " : "") : ", ",
				      field_uses[j].label);
			first = false;
		}
		if (!first)
			strbuf_printf(sb, " not recovered: %s disabled", d);
	}
}

int gobin_offsets_from_code(struct gobin *bin, char *err, size_t errlen)
{
	struct go_offsets code, *off = &bin->offsets;
	const size_t n = sizeof(field_uses) / sizeof(field_uses[0]);
	struct strbuf sb;
	int ret;

	ret = gobin_layout_recover(bin, &code);
	if (ret == -ENOMEM)
		return set_err(err, errlen, ret, "out of memory");
	if (!table_withheld() && bin->ver.major > 0 &&
	    go_offsets_from_table(bin->ver.major, bin->ver.minor, off) == 0) {
		if (ret == 0)
			merge_row(bin, &code, off);
		return 0;
	}
	if (ret)
		return set_err(err, errlen, -ENOTSUP,
			       "%s: %s has no offset table, no DWARF, and code recovery is x86-64 only",
			       bin->path, bin->ver.str);
	/* a version newer than the table: the code's fields alone */
	*off = code;
	off->source = GO_OFFSETS_CODE;
	if (off->status_dead == GO_OFF_NONE)
		off->status_dead = 6; /* _Gdead since go1.0 */
	if (off->status_scan_bit == GO_OFF_NONE)
		off->status_scan_bit = 0x1000;
	for (size_t i = 0; i < n; i++)
		if (field_uses[i].field && !field_uses[i].disables &&
		    lost_field(bin, off, &field_uses[i]))
			return set_err(err, errlen, -ENOTSUP,
				       "%s: %s has no offset table and no DWARF, and %s could not be "
				       "recovered from its code: goroutines unreadable",
				       bin->path, bin->ver.str, field_uses[i].label);
	strbuf_init(&sb, 2048);
	describe_lost(bin, off, &sb);
	if (sb.len)
		log_warn("%s: %s (no offset table, no DWARF; layout read from code): %s", bin->path,
			 bin->ver.str, sb.buf);
	else
		log_info("%s: %s: no offset table, no DWARF; every field read from code",
			 bin->path, bin->ver.str);
	strbuf_free(&sb);
	return 0;
}

const char *gobin_offsets_source(const struct gobin *bin)
{
	const struct go_offsets *o = gobin_offsets(bin);

	if (!o)
		return "none";
	return o->source == GO_OFFSETS_DWARF ? "dwarf" : o->source == GO_OFFSETS_CODE ? "code" : "table";
}
